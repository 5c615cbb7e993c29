"""Block validity: the header rules every imported block must pass, in one place.

Import (`node.chain`), gossip validation and sync all reach these through `Chain.import_block`:
1. `check_header(header, parent, body_root)` — before execution, for any block, fork or not:
   number follows the parent, slot after the parent's, timestamp not going back, the author's
   seal, the author's randomness reveal for the slot, and the extrinsics root of the body.
2. `check_slot_author(header, parent_state)` — at execution, against the parent state: the
   author owns the slot by the epoch's authority set and randomness (consensus.slots).
State transition validity (extrinsics, state root) is the runtime's, checked by execution.
"""
from __future__ import annotations

from consensus.slots import SlotError, slot_author
from runtime.crypto import ss58_encode, verify
from runtime.modules import session
from runtime.state import Overlay
from runtime.types import Header


class InvalidHeader(ValueError):
    """A header that breaks a consensus rule, with the rule it breaks."""


def randao_message(slot: int) -> bytes:
    """What an author signs as its randomness reveal for a slot (ed25519 is deterministic: no grinding)."""
    return b"arena/randao/" + slot.to_bytes(8, "big")


def seals_verify(header: Header) -> bool:
    """True when the header's seal and randomness reveal are its author's signatures.

    Pure and thread-safe (pynacl releases the GIL): sync checks a fetched range with it off the
    event loop, and `check_header` then skips the two verifications for those exact headers.
    """
    return verify(header.author, header.signing_payload(), header.seal) and verify(
        header.author, randao_message(header.slot), header.randao_reveal)


def check_header(header: Header, parent: Header, body_root: bytes, seals_verified: bool = False) -> None:
    """Raise InvalidHeader unless `header` may follow `parent` and commits to a body with `body_root`.

    `seals_verified`: the caller has already seen `seals_verify(header)` hold for this header.
    """
    if header.number != parent.number + 1:
        raise InvalidHeader(f"block number {header.number} does not follow parent {parent.number}")
    if header.slot <= parent.slot:
        raise InvalidHeader(f"slot {header.slot} is not after parent slot {parent.slot}")
    if header.timestamp_ms < parent.timestamp_ms:
        raise InvalidHeader("timestamp goes backwards")
    if not seals_verified and not verify(header.author, header.signing_payload(), header.seal):
        raise InvalidHeader("bad seal: the header is not signed by its author")
    if not seals_verified and not verify(header.author, randao_message(header.slot), header.randao_reveal):
        raise InvalidHeader("bad randao reveal")
    if body_root != header.extrinsics_root:
        raise InvalidHeader("extrinsics root mismatch")


def expected_author(parent_state: Overlay, slot: int) -> bytes:
    """The slot author chosen by the parent state's epoch authority set and randomness."""
    try:
        return slot_author(session.Authorities.get(parent_state), session.EpochRandomness.get(parent_state), slot)
    except SlotError as exc:
        raise InvalidHeader(str(exc)) from exc


def check_slot_author(header: Header, parent_state: Overlay) -> None:
    """Raise InvalidHeader unless the header's author owns its slot by the parent state's epoch data."""
    expected = expected_author(parent_state, header.slot)
    if header.author != expected:
        raise InvalidHeader(f"slot {header.slot} belongs to {ss58_encode(expected)}, not {ss58_encode(header.author)}")
