"""Commit-reveal helpers for validator scores.

The commitment the chain's runtime recomputes at reveal time is exactly::

    blake2b(msgpack.packb([task_id, validator, scores, salt], use_bin_type=True),
            digest_size=32).digest()

with ``task_id`` an int, ``validator`` the validator's 32-byte account key, ``salt`` bytes
(`new_salt`: 32 random bytes) and ``scores`` the list ``[[trainer_account, score], ...]``
(32-byte accounts, int scores in ``[0, 2**64)``) sorted by trainer account bytes, one entry
per trainer.  msgpack encodes lists as arrays, bytes as bin, ints in their shortest form.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Sequence

import msgpack

MAX_SCORE = 2**64 - 1


class InvalidScores(ValueError):
    """A score list cannot be committed to (bad account, duplicate trainer, bad score)."""


def canonical_scores(scores: Iterable[Sequence[object]]) -> list[list[object]]:
    """``[[trainer, score], ...]`` sorted by trainer; the order both commit and reveal use."""
    result: list[list[object]] = []
    for entry in scores:
        if len(entry) != 2:
            raise InvalidScores(f"a score entry is [trainer_account, score], got {entry!r:.80}")
        trainer, score = entry
        if not isinstance(trainer, bytes) or len(trainer) != 32:
            raise InvalidScores(f"a trainer account is 32 bytes, got {trainer!r:.80}")
        if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= MAX_SCORE:
            raise InvalidScores(f"score for {trainer.hex()} must be an int in [0, 2**64), got {score!r}")
        result.append([trainer, score])
    result.sort(key=lambda item: item[0])  # type: ignore[arg-type, return-value]
    for before, after in itertools.pairwise(result):
        if before[0] == after[0]:
            duplicate = after[0]
            assert isinstance(duplicate, bytes)
            raise InvalidScores(f"trainer {duplicate.hex()} appears twice")
    return result


def commitment_preimage(
    task_id: int, validator: bytes, scores: Iterable[Sequence[object]], salt: bytes
) -> bytes:
    """The msgpack bytes that are hashed (useful to compare with the runtime's encoder)."""
    if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 0:
        raise InvalidScores(f"task_id must be a non-negative int, got {task_id!r}")
    if not isinstance(validator, bytes) or len(validator) != 32:
        raise InvalidScores("validator must be its 32-byte account key")
    if not isinstance(salt, bytes):
        raise InvalidScores("salt must be bytes")
    return msgpack.packb([task_id, validator, canonical_scores(scores), salt], use_bin_type=True)


def score_commitment(task_id: int, validator: bytes, scores: list[list], salt: bytes) -> bytes:  # type: ignore[type-arg]
    """blake2b-256 of ``msgpack([task_id, validator, sorted scores, salt])`` (module docstring)."""
    return hashlib.blake2b(commitment_preimage(task_id, validator, scores, salt), digest_size=32).digest()


def verify_commitment(
    commitment: bytes,
    task_id: int,
    validator: bytes,
    scores: list[list],
    salt: bytes,  # type: ignore[type-arg]
) -> bool:
    """Whether revealed `scores` and `salt` match an earlier `commitment`."""
    try:
        return score_commitment(task_id, validator, scores, salt) == commitment
    except InvalidScores:
        return False


def new_salt() -> bytes:
    """32 random bytes for a commitment."""
    return os.urandom(32)
