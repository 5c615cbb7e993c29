"""Slots and slot authors.

Time is cut into slots of fixed duration; slot `s` starts at `s * slot_duration_ms` (Unix ms).
The author of a slot is drawn from the epoch's authority set with probability proportional to
stake, using the epoch randomness snapshotted by the session module:

    r = int(blake2b_256(epoch_randomness ‖ slot as 8 bytes big-endian)) mod total_stake

and the author is the first authority (sorted by account id) whose cumulative stake exceeds r.
"""
from __future__ import annotations

import time

from runtime.crypto import blake2b_256


class SlotError(ValueError):
    """A header whose author may not author its slot."""


def now_ms() -> int:
    """Wall-clock Unix milliseconds (node side only; the runtime never reads the clock)."""
    return time.time_ns() // 1_000_000


def current_slot(slot_duration_ms: int, at_ms: int | None = None) -> int:
    return (now_ms() if at_ms is None else at_ms) // slot_duration_ms


def slot_author(authorities: list[list], epoch_randomness: bytes, slot: int) -> bytes:
    """The account that may author `slot`: stake-weighted choice over the epoch randomness."""
    ordered = sorted((bytes(a), int(s)) for a, s in authorities if int(s) > 0)
    total = sum(s for _, s in ordered)
    if total == 0:
        raise SlotError("the authority set is empty")
    r = int.from_bytes(blake2b_256(epoch_randomness + slot.to_bytes(8, "big")), "big") % total
    for account, stake in ordered:
        if r < stake:
            return account
        r -= stake
    raise AssertionError("unreachable: r < total")
