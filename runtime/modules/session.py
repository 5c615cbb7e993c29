"""Session: the authority set, epoch randomness, and equivocation reports.

The authority set and the randomness that picks slot authors are fixed for an epoch: both are
snapshotted at the first block of each epoch. Authorities are the top `max_authorities` accounts
by stake bonded for the "authority" role (when anyone is bonded for it), otherwise the
genesis set stays. Anyone may report an equivocation — two headers sealed by one author for one
slot, or two finality votes by one voter for different blocks in one round — and the offender is
slashed.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.codec import CodecError, decode, encode
from runtime.crypto import ss58_decode, verify
from runtime.module import (
    U32,
    Bytes,
    Context,
    DispatchError,
    Module,
    Record,
    RecordValue,
    StorageMap,
    StorageValue,
    call,
    ensure,
)
from runtime.modules import staking, system
from runtime.types import Header

Authorities = StorageValue("session", "Authorities", [])      # [[account, stake], ...] sorted by account
SetId = StorageValue("session", "SetId", 0)
# The set before the current one: its members can still be proven to have equivocated.
PreviousAuthorities = StorageValue("session", "PreviousAuthorities", [])
EpochRandomness = StorageValue("session", "EpochRandomness", bytes(32))


@dataclass(frozen=True)
class SessionParams(Record):
    """Genesis `modules.session` parameters."""

    max_authorities: int   # the authority set is the top N by stake
    slash_ppb: int         # fraction of an equivocator's authority bond slashed


Params = RecordValue("session", "Params", SessionParams(16, 100_000_000))
# [kind, offender, slot] or [kind, offender, set_id, round] -> block reported
Offences = StorageMap("session", "Offences", None)

KIND_BLOCK = 0
KIND_VOTE = 1


class _SessionError(DispatchError):
    module = "session"


class InvalidEvidence(_SessionError):
    """The equivocation evidence does not prove an offence."""


class AlreadyReported(_SessionError):
    """This offence was already reported and punished."""


def grandpa_vote_message(set_id: int, round_number: int, stage: int, number: int, block_hash: bytes) -> bytes:
    """What a finality voter signs: a prevote (stage 0) or precommit (stage 1) in one round of one set."""
    return encode(["arena/grandpa", set_id, round_number, stage, number, block_hash])


def authorities(ctx: Context) -> list[list]:
    return Authorities.get(ctx.state)


def stake_of(ctx: Context, who: bytes) -> int:
    for account, stake in Authorities.get(ctx.state):
        if account == who:
            return stake
    return 0


def _set_members(ctx: Context, set_id: int | None) -> set[bytes]:
    """Members of the current set, and of the previous one (set_id - 1), or of both when None."""
    current = SetId.get(ctx.state)
    members: set[bytes] = set()
    if set_id is None or set_id == current:
        members |= {bytes(a) for a, s in Authorities.get(ctx.state) if s > 0}
    if set_id is None or set_id == current - 1:
        members |= {bytes(a) for a, s in PreviousAuthorities.get(ctx.state) if s > 0}
    return members


def _decode_header(raw: bytes) -> Header:
    try:
        return Header.decode(raw)
    except (CodecError, ValueError) as exc:
        raise InvalidEvidence(f"header does not decode: {exc}") from exc


def _check_block_evidence(first: bytes, second: bytes) -> tuple[bytes, int, int | None]:
    a, b = _decode_header(first), _decode_header(second)
    ensure(a.slot == b.slot, InvalidEvidence, f"headers are for slots {a.slot} and {b.slot}")
    ensure(a.author == b.author, InvalidEvidence, "headers have different authors")
    ensure(a.hash != b.hash, InvalidEvidence, "the two headers are the same block")
    for h in (a, b):
        ensure(verify(h.author, h.signing_payload(), h.seal), InvalidEvidence, "a header's seal does not verify")
    return a.author, a.slot, None


def _decode_vote(raw: bytes) -> list:
    """A signed vote: [set_id, round, stage, number, block_hash, voter, signature]."""
    try:
        vote = decode(raw)
    except CodecError as exc:
        raise InvalidEvidence(f"vote does not decode: {exc}") from exc
    ensure(isinstance(vote, list) and len(vote) == 7, InvalidEvidence,
           "a vote is [set_id, round, stage, number, hash, voter, signature]")
    ensure(all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**64 for x in vote[:4]), InvalidEvidence,
           "vote set_id, round, stage and number must be integers")
    ensure(all(isinstance(x, bytes) for x in vote[4:]), InvalidEvidence, "malformed vote")
    return vote


def _check_vote_evidence(first: bytes, second: bytes) -> tuple[bytes, int, int]:
    """Two precommits or two prevotes by one voter in one round of one set, for different blocks."""
    a, b = _decode_vote(first), _decode_vote(second)
    ensure(a[:3] == b[:3], InvalidEvidence, "votes are for different sets, rounds or stages")
    ensure(a[5] == b[5], InvalidEvidence, "votes are by different voters")
    ensure(a[4] != b[4], InvalidEvidence, "votes are for the same block")
    for v in (a, b):
        message = grandpa_vote_message(v[0], v[1], v[2], v[3], v[4])
        ensure(verify(v[5], message, v[6]), InvalidEvidence, "a vote signature does not verify")
    return a[5], a[1], a[0]


def rotate(ctx: Context) -> None:
    """At an epoch start: snapshot the beacon and, if staking names candidates, the new authority set."""
    EpochRandomness.put(ctx.state, system.Randomness.get(ctx.state))
    candidates = [c for c in staking.authority_candidates(ctx) if c[1] > 0]
    if not candidates:
        return
    max_authorities = Params.get(ctx.state).max_authorities
    chosen = sorted(candidates, key=lambda c: (-c[1], c[0]))[:max_authorities]
    new_set = sorted([[a, s] for a, s in chosen])
    if new_set != Authorities.get(ctx.state):
        PreviousAuthorities.put(ctx.state, Authorities.get(ctx.state))
        Authorities.put(ctx.state, new_set)
        SetId.put(ctx.state, SetId.get(ctx.state) + 1)
        # The finality gadget hands over to the new set at this block once it is final (docs/consensus.md).
        ctx.deposit_event("session", "NewAuthorities", SetId.get(ctx.state), new_set)


class Session(Module):
    """Who authors and finalizes blocks this epoch, and punishment for equivocation."""

    name = "session"
    storage = (Authorities, SetId, PreviousAuthorities, EpochRandomness, Params, Offences)
    errors = (InvalidEvidence, AlreadyReported)
    events = {
        "NewAuthorities": ["set_id", "authorities"],
        "EquivocationSlashed": ["offender", "kind", "round", "amount"],
    }

    @staticmethod
    def on_initialize(ctx: Context) -> None:
        if system.is_epoch_start(ctx):
            rotate(ctx)

    @call(weight=200_000)
    @staticmethod
    def report_equivocation(ctx: Context, kind: U32, first: Bytes, second: Bytes) -> None:
        """Prove that an authority signed two blocks for one slot (kind 0) or two prevotes or two
        precommits in one finality round (kind 1). Only members of the current or previous authority
        set can equivocate: anyone else's double signature is just an invalid block or vote."""
        ensure(kind in (KIND_BLOCK, KIND_VOTE), InvalidEvidence, "kind must be 0 (blocks) or 1 (votes)")
        check = _check_block_evidence if kind == KIND_BLOCK else _check_vote_evidence
        offender, round_number, set_id = check(first, second)
        ensure(offender in _set_members(ctx, set_id), InvalidEvidence,
               "offender is not a staked member of the current or previous authority set")
        offence = [kind, offender, round_number] if set_id is None else [kind, offender, set_id, round_number]
        ensure(not Offences.contains(ctx.state, offence), AlreadyReported)
        Offences.put(ctx.state, offence, ctx.block_number)
        fraction = Params.get(ctx.state).slash_ppb
        amount = staking.slash_authority(ctx, offender, fraction)
        ctx.deposit_event("session", "EquivocationSlashed", offender, kind, round_number, amount)

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        Params.put(ctx.state, SessionParams(int(config.get("max_authorities", 16)), int(config.get("slash_ppb", 100_000_000))))
        chosen = sorted([[ss58_decode(a), int(s)] for a, s in config.get("authorities", [])])
        Authorities.put(ctx.state, chosen)
        EpochRandomness.put(ctx.state, system.Randomness.get(ctx.state))
