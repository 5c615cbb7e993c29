"""Machine-learning core of Arena's off-chain workers (no chain dependency).

The planner calls `get_kind(name).prepare(...)`, trainers `train(...)`, validators
`evaluate(...)`; `sealing` hides the held-out set from trainers and `scores` builds the
commit-reveal hash the chain recomputes.  See docs/task-kinds.md.
"""

from node.offchain.ml.errors import DataRejected, LimitExceeded, MLError, ModelRejected, SpecRejected
from node.offchain.ml.kinds import KINDS, EvalResult, PreparedData, TaskKind, get_kind

__all__ = [
    "KINDS",
    "DataRejected",
    "EvalResult",
    "LimitExceeded",
    "MLError",
    "ModelRejected",
    "PreparedData",
    "SpecRejected",
    "TaskKind",
    "get_kind",
]
