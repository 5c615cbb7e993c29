"""Off-chain workers: the planner, trainer, validator and host roles, each a loop driven by the chain (`ml/` trains and scores)."""
