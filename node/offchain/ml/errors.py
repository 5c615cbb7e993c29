"""Named errors of the off-chain ML library.

Every error carries a message a planner, trainer or validator operator can act on.
"""

from __future__ import annotations


class MLError(Exception):
    """Base class of every error raised by `node.offchain.ml`."""


class SpecRejected(MLError):
    """A task spec is malformed, names an unknown kind, or exceeds a hard limit."""


class DataRejected(MLError):
    """A data set (planner source file or serialized split) cannot be used."""


class ModelRejected(MLError):
    """A model file is not an acceptable model for the task spec (never parsed unsafely)."""


class LimitExceeded(MLError):
    """A training request asks for more than the spec allows (epochs, learning rate, device)."""
