"""Session: the authority set, epoch randomness, and equivocation reports.

The authority set and the randomness that picks slot authors are fixed for an epoch: both are
snapshotted at the first block of each epoch. Authorities are the top `max_authorities` accounts
by stake bonded for the "authority" role (when the staking module reports any), otherwise the
genesis set stays. Anyone may report an equivocation — two headers sealed by one author for one
slot, or two finality votes by one voter for different blocks in one round — and the offender is
slashed.
"""
from __future__ import annotations

from collections.abc import Callable

from runtime.codec import CodecError, decode, encode
from runtime.crypto import ss58_decode, verify
from runtime.module import (
    U32,
    Bytes,
    Context,
    DispatchError,
    Module,
    StorageMap,
    StorageValue,
    call,
    ensure,
)
from runtime.modules import balances, system, treasury
from runtime.types import Header

Authorities = StorageValue("session", "Authorities", [])      # [[account, stake], ...] sorted by account
SetId = StorageValue("session", "SetId", 0)
EpochRandomness = StorageValue("session", "EpochRandomness", bytes(32))
# [max_authorities, slash_ppb]
Params = StorageValue("session", "Params", [16, 100_000_000])
Offences = StorageMap("session", "Offences", None)            # [kind, offender, round] -> block reported

KIND_BLOCK = 0
KIND_VOTE = 1

# The staking module registers these when present (keeps session free of an import cycle).
authority_candidates: Callable[[Context], list[list]] | None = None
slash_authority: Callable[[Context, bytes, int], int] | None = None


class _SessionError(DispatchError):
    module = "session"


class InvalidEvidence(_SessionError):
    """The equivocation evidence does not prove an offence."""


class AlreadyReported(_SessionError):
    """This offence was already reported and punished."""


def vote_message(set_id: int, round_number: int, number: int, block_hash: bytes) -> bytes:
    """What a finality voter signs."""
    return encode(["arena/vote", set_id, round_number, number, block_hash])


def authorities(ctx: Context) -> list[list]:
    return Authorities.get(ctx.state)


def stake_of(ctx: Context, who: bytes) -> int:
    for account, stake in Authorities.get(ctx.state):
        if account == who:
            return stake
    return 0


def _decode_header(raw: bytes) -> Header:
    try:
        return Header.decode(raw)
    except (CodecError, ValueError) as exc:
        raise InvalidEvidence(f"header does not decode: {exc}") from exc


def _check_block_evidence(first: bytes, second: bytes) -> tuple[bytes, int]:
    a, b = _decode_header(first), _decode_header(second)
    ensure(a.slot == b.slot, InvalidEvidence, f"headers are for slots {a.slot} and {b.slot}")
    ensure(a.author == b.author, InvalidEvidence, "headers have different authors")
    ensure(a.hash != b.hash, InvalidEvidence, "the two headers are the same block")
    for h in (a, b):
        ensure(verify(h.author, h.signing_payload(), h.seal), InvalidEvidence, "a header's seal does not verify")
    return a.author, a.slot


def _decode_vote(raw: bytes) -> list:
    """A signed vote: [set_id, round, number, block_hash, voter, signature]."""
    try:
        vote = decode(raw)
    except CodecError as exc:
        raise InvalidEvidence(f"vote does not decode: {exc}") from exc
    ensure(isinstance(vote, list) and len(vote) == 6, InvalidEvidence, "a vote is [set_id, round, number, hash, voter, signature]")
    return vote


def _check_vote_evidence(first: bytes, second: bytes) -> tuple[bytes, int]:
    a, b = _decode_vote(first), _decode_vote(second)
    ensure(a[0] == b[0] and a[1] == b[1], InvalidEvidence, "votes are for different sets or rounds")
    ensure(a[4] == b[4], InvalidEvidence, "votes are by different voters")
    ensure(a[3] != b[3], InvalidEvidence, "votes are for the same block")
    for v in (a, b):
        ensure(isinstance(v[4], bytes) and isinstance(v[5], bytes), InvalidEvidence, "malformed vote")
        ensure(verify(v[4], vote_message(v[0], v[1], v[2], v[3]), v[5]), InvalidEvidence, "a vote signature does not verify")
    return a[4], a[1]


def rotate(ctx: Context) -> None:
    """At an epoch start: snapshot the beacon and, if staking names candidates, the new authority set."""
    EpochRandomness.put(ctx.state, system.Randomness.get(ctx.state))
    if authority_candidates is None:
        return
    candidates = [c for c in authority_candidates(ctx) if c[1] > 0]
    if not candidates:
        return
    max_authorities = Params.get(ctx.state)[0]
    chosen = sorted(candidates, key=lambda c: (-c[1], c[0]))[:max_authorities]
    new_set = sorted([[a, s] for a, s in chosen])
    if new_set != Authorities.get(ctx.state):
        Authorities.put(ctx.state, new_set)
        SetId.put(ctx.state, SetId.get(ctx.state) + 1)
        ctx.deposit_event("session", "NewAuthorities", SetId.get(ctx.state), [a for a, _ in new_set])


class Session(Module):
    """Who authors and finalizes blocks this epoch, and punishment for equivocation."""

    name = "session"
    storage = (Authorities, SetId, EpochRandomness, Params, Offences)
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
        """Prove that an authority signed two blocks for one slot (kind 0) or two votes in one round (kind 1)."""
        ensure(kind in (KIND_BLOCK, KIND_VOTE), InvalidEvidence, "kind must be 0 (blocks) or 1 (votes)")
        check = _check_block_evidence if kind == KIND_BLOCK else _check_vote_evidence
        offender, round_number = check(first, second)
        ensure(stake_of(ctx, offender) > 0 or slash_authority is not None, InvalidEvidence, "offender is not an authority")
        offence = [kind, offender, round_number]
        ensure(not Offences.contains(ctx.state, offence), AlreadyReported)
        Offences.put(ctx.state, offence, ctx.block_number)
        fraction = Params.get(ctx.state)[1]
        if slash_authority is not None:
            amount = slash_authority(ctx, offender, fraction)
        else:
            free = balances.free_balance(ctx, offender)
            amount = free * fraction // 10**9
            balances.withdraw(ctx, offender, amount)
            treasury.credit(ctx, amount, "equivocation")
        ctx.deposit_event("session", "EquivocationSlashed", offender, kind, round_number, amount)

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        Params.put(ctx.state, [int(config.get("max_authorities", 16)), int(config.get("slash_ppb", 100_000_000))])
        chosen = sorted([[ss58_decode(a), int(s)] for a, s in config.get("authorities", [])])
        Authorities.put(ctx.state, chosen)
        EpochRandomness.put(ctx.state, system.Randomness.get(ctx.state))
