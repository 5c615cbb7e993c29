"""Proof-of-stake consensus: slot authors, finality votes, equivocation evidence."""
