"""Staking: bonds per role, delegation, unbonding, slashing and worker heartbeats.

Roles are "authority", "validator", "trainer" and "host". An account bonds for a role with
`bond(role, amount)`; the bond is moved into its reserved balance and must total at least the
role's genesis minimum. Anyone may `delegate(target, amount)` to an account bonded for some role
(delegated stake counts, discounted by ε, in every role the target holds). `unbond` and
`undelegate` move funds into an unlocking queue, still reserved, that `withdraw_unbonded`
releases once the unbonding period (blocks) has passed. A bond selected for a task is locked
(`lock`, by the tasks module) until the task closes: `unbond` cannot go below the largest lock,
so the stake a task recorded at selection stays slashable for the whole task. Delegations are
not frozen, but one withdrawn from an account that sits in open tasks stays answerable for them:
it is listed in `Exposed` and its unlocking chunk is held until the last of those tasks has closed
(`LockHorizon`), so a delegator cannot leave its operator's slash by undelegating mid-task. A slash takes from the bond of one role
(never below zero); of the slashed amount `slash_treasury_ppb` goes to the treasury and the rest
is burned. Workers post `heartbeat(capabilities)` every epoch: only accounts with a heartbeat in
the current or previous epoch, marked available, can be selected for tasks.

Funds: every unit bonded, delegated or unlocking sits in its owner's reserved balance, so
"free + reserved" still accounts for every unit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from runtime.crypto import ss58_decode
from runtime.module import (
    AccountId,
    ArgCheck,
    Balance,
    Context,
    DispatchError,
    Module,
    Record,
    RecordValue,
    StorageMap,
    call,
    ensure,
)
from runtime.modules import balances, history, system, treasury

PPB = 10**9
ROLES = ("authority", "validator", "trainer", "host")
MAX_DEVICE_KIND = 32


def _is_role(v: Any) -> bool:
    return isinstance(v, str) and v in ROLES


def _is_capabilities(v: Any) -> bool:
    return (
        isinstance(v, list) and len(v) == 3
        and type(v[0]) is int and v[0] in (0, 1)
        and isinstance(v[1], str) and 0 < len(v[1].encode()) <= MAX_DEVICE_KIND
        and type(v[2]) is int and 0 <= v[2] < 2**32
    )


Role = Annotated[str, ArgCheck("role: one of authority, validator, trainer, host", _is_role)]
# [available 0|1, device kind (e.g. "cpu", "cuda:H100"), memory in MiB]
Capabilities = Annotated[list, ArgCheck(
    "capabilities [available 0|1, device kind (1..32 bytes of text), memory MiB (u32)]", _is_capabilities)]

# ---------------------------------------------------------------- storage

MinStake = StorageMap("staking", "MinStake", 0)          # role -> minimum bond


@dataclass(frozen=True)
class StakingParams(Record):
    """Genesis `modules.staking` parameters."""

    unbonding_period: int      # blocks an unbonded or undelegated amount stays reserved
    slash_treasury_ppb: int    # share of every slash credited to the treasury (the rest is burned)
    min_delegation: int


Params = RecordValue("staking", "Params", StakingParams(100, 500_000_000, 1))
Bonded = StorageMap("staking", "Bonded", 0)              # [account, role] -> own bond
Members = StorageMap("staking", "Members", [])           # role -> sorted accounts with a bond
Delegators = StorageMap("staking", "Delegators", [])     # target -> [[delegator, amount]] sorted
Delegations = StorageMap("staking", "Delegations", [])   # delegator -> [[target, amount]] sorted
Unlocking = StorageMap("staking", "Unlocking", [])       # account -> [[release_block, amount]]
# account -> [epoch, block, available, device_kind, memory_mib]
Heartbeat = StorageMap("staking", "Heartbeat", None)
# [account, role] -> [[task_id, amount]] ascending: own bond committed to open tasks at selection
Locks = StorageMap("staking", "Locks", [])
# account -> the last block by which every task that has locked its bonds so far is closed
LockHorizon = StorageMap("staking", "LockHorizon", 0)
# target -> [[delegator, amount, until_block]]: undelegated while the target sat in open tasks;
# still slashable for the target's faults until `until_block` (its unlocking chunk is held that long)
Exposed = StorageMap("staking", "Exposed", [])

# ---------------------------------------------------------------- errors


class _StakingError(DispatchError):
    module = "staking"


class BelowMinimum(_StakingError):
    """The bond would be below the role's minimum stake."""


class NotBonded(_StakingError):
    """The account has no bond for this role."""


class InsufficientBond(_StakingError):
    """Cannot unbond more than is bonded."""


class NotARoleAccount(_StakingError):
    """The delegation target is not bonded for any role."""


class SelfDelegation(_StakingError):
    """An account cannot delegate to itself; bond instead."""


class InsufficientDelegation(_StakingError):
    """Cannot undelegate more than is delegated to that target."""


class NothingToWithdraw(_StakingError):
    """No unlocking funds have passed their unbonding period."""


class ZeroAmount(_StakingError):
    """The amount must be positive."""


class TooManyUnlocking(_StakingError):
    """The unlocking queue is full; withdraw released funds first."""


class BondLocked(_StakingError):
    """The bond is committed to open tasks (the stake recorded at selection) and cannot be unbonded yet."""


MAX_UNLOCKING = 32

# ---------------------------------------------------------------- reads


def bonded(ctx: Context, who: bytes, role: str) -> int:
    """`who`'s own bond for `role`."""
    return Bonded.get(ctx.state, [who, role])


def role_members(ctx: Context, role: str) -> list[bytes]:
    """Accounts with a non-zero bond for `role`, sorted by account bytes."""
    return Members.get(ctx.state, role)


def roles_of(ctx: Context, who: bytes) -> list[str]:
    return [role for role in ROLES if bonded(ctx, who, role) > 0]


def delegated_to(ctx: Context, who: bytes) -> int:
    """Total stake delegated to `who`."""
    return sum(amount for _, amount in Delegators.get(ctx.state, who))


def delegators_of(ctx: Context, who: bytes) -> list[tuple[bytes, int]]:
    return [(d, a) for d, a in Delegators.get(ctx.state, who)]


def min_stake(ctx: Context, role: str) -> int:
    return MinStake.get(ctx.state, role)


def unbonding_period(ctx: Context) -> int:
    return Params.get(ctx.state).unbonding_period


def heartbeat_of(ctx: Context, who: bytes) -> list | None:
    return Heartbeat.get(ctx.state, who)


def is_live(ctx: Context, who: bytes) -> bool:
    """A heartbeat marked available in the current or the previous epoch."""
    beat = Heartbeat.get(ctx.state, who)
    return beat is not None and beat[2] == 1 and beat[0] + 1 >= system.current_epoch(ctx)


def locked(ctx: Context, who: bytes, role: str) -> int:
    """The part of `who`'s `role` bond committed to open tasks (the largest single lock).

    One bond can back several tasks at once; each task may slash at most a fraction of what it
    locked, so the bond that must stay is the largest lock, not their sum.
    """
    return max((amount for _, amount in Locks.get(ctx.state, [who, role])), default=0)


def locked_for(ctx: Context, who: bytes, role: str, task_id: int) -> int:
    """What task `task_id` locked of `who`'s `role` bond at selection (0 if none)."""
    return next((amount for t, amount in Locks.get(ctx.state, [who, role]) if t == task_id), 0)


def lock(ctx: Context, who: bytes, role: str, task_id: int, amount: int, until: int = 0) -> None:
    """Commit `amount` of `who`'s `role` bond to task `task_id` until `release` (unbond refuses to go below).

    `until`: the last block by which the task is certain to have closed; delegations withdrawn
    before then stay slashable for this account's faults until then (`undelegate`).
    """
    entries = [e for e in Locks.get(ctx.state, [who, role]) if e[0] != task_id]
    Locks.put(ctx.state, [who, role], sorted(entries + [[task_id, amount]]))
    if until > LockHorizon.get(ctx.state, who):
        LockHorizon.put(ctx.state, who, until)


def release(ctx: Context, who: bytes, role: str, task_id: int) -> None:
    """Drop task `task_id`'s lock on `who`'s `role` bond."""
    entries = [e for e in Locks.get(ctx.state, [who, role]) if e[0] != task_id]
    if entries:
        Locks.put(ctx.state, [who, role], entries)
    else:
        Locks.remove(ctx.state, [who, role])


def authority_candidates(ctx: Context) -> list[list]:
    """[[account, own bond + delegated]] for every bonded authority (read by session)."""
    return [[who, bonded(ctx, who, "authority") + delegated_to(ctx, who)] for who in role_members(ctx, "authority")]


# ---------------------------------------------------------------- writes


def _set_bond(ctx: Context, who: bytes, role: str, amount: int) -> None:
    members = Members.get(ctx.state, role)
    if amount:
        Bonded.put(ctx.state, [who, role], amount)
        if who not in members:
            Members.put(ctx.state, role, sorted(members + [who]))
    else:
        Bonded.remove(ctx.state, [who, role])
        if who in members:
            members.remove(who)
            Members.put(ctx.state, role, members)


def _push_unlocking(ctx: Context, who: bytes, amount: int, not_before: int = 0) -> int:
    """Queue `amount` for release after the unbonding period (and not before `not_before`); returns the block."""
    chunks = Unlocking.get(ctx.state, who)
    ensure(len(chunks) < MAX_UNLOCKING, TooManyUnlocking, f"{len(chunks)} chunks are unlocking (limit {MAX_UNLOCKING})")
    release = max(ctx.block_number + unbonding_period(ctx), not_before)
    chunks.append([release, amount])
    Unlocking.put(ctx.state, who, chunks)
    return release


def _update_pairs(pairs: list[list], key: bytes, delta: int) -> list[list]:
    found = {k: v for k, v in pairs}
    value = found.get(key, 0) + delta
    if value:
        found[key] = value
    else:
        found.pop(key, None)
    return [[k, found[k]] for k in sorted(found)]


def slash(ctx: Context, who: bytes, role: str, amount: int, reason: str) -> int:
    """Take up to `amount` from `who`'s bond for `role`; split treasury / burn; returns the amount taken.

    A bond left below the role's minimum stays bonded but is no longer eligible for selection
    until topped up.
    """
    taken = min(amount, bonded(ctx, who, role))
    if taken == 0:
        return 0
    _set_bond(ctx, who, role, bonded(ctx, who, role) - taken)
    balances.take_reserved(ctx, who, taken)
    to_treasury = taken * Params.get(ctx.state).slash_treasury_ppb // PPB
    treasury.credit(ctx, to_treasury, f"slash:{reason}")
    if taken - to_treasury:
        balances.burn(ctx, taken - to_treasury)
    history.add(ctx, who, role, slashed=taken, slash_count=1)
    ctx.deposit_event("staking", "Slashed", who, role, taken, reason)
    return taken


def _burn_slash(ctx: Context, who: bytes, taken: int, reason: str) -> None:
    """Remove `taken` from `who`'s reserved balance: the treasury's share credited, the rest burned."""
    balances.take_reserved(ctx, who, taken)
    to_treasury = taken * Params.get(ctx.state).slash_treasury_ppb // PPB
    treasury.credit(ctx, to_treasury, f"slash:{reason}")
    if taken - to_treasury:
        balances.burn(ctx, taken - to_treasury)
    ctx.deposit_event("staking", "Slashed", who, "delegator", taken, reason)


def _take_unlocking(ctx: Context, who: bytes, amount: int) -> int:
    """Cut up to `amount` from `who`'s still-locked unlocking chunks, latest release first; returns what was cut."""
    chunks = sorted(Unlocking.get(ctx.state, who), reverse=True)
    left = amount
    for chunk in chunks:
        if chunk[0] > ctx.block_number and left:
            cut = min(left, chunk[1])
            chunk[1] -= cut
            left -= cut
    kept = sorted([c for c in chunks if c[1] > 0])
    if kept:
        Unlocking.put(ctx.state, who, kept)
    else:
        Unlocking.remove(ctx.state, who)
    return amount - left


def slash_delegators(ctx: Context, target: bytes, fraction_ppb: int, reason: str) -> int:
    """Slash every delegation to `target` by ⌊amount · fraction_ppb / PPB⌋; returns the total taken.

    Delegators share their operator's faults in proportion to what they put behind it, so stake
    routed through a delegation is exactly as much at risk as stake bonded directly. That includes
    stake undelegated while the target sat in open tasks (`Exposed`): it is taken from the
    delegator's unlocking chunk, which `undelegate` keeps locked until those tasks have closed.
    """
    total = 0
    for delegator, amount in delegators_of(ctx, target):
        taken = amount * fraction_ppb // PPB
        if taken == 0:
            continue
        Delegators.put(ctx.state, target, _update_pairs(Delegators.get(ctx.state, target), delegator, -taken))
        Delegations.put(ctx.state, delegator, _update_pairs(Delegations.get(ctx.state, delegator), target, -taken))
        _burn_slash(ctx, delegator, taken, reason)
        total += taken
    exposed = []
    for delegator, amount, until in Exposed.get(ctx.state, target):
        if until < ctx.block_number:
            continue  # the tasks it was exposed to have all closed
        taken = _take_unlocking(ctx, delegator, amount * fraction_ppb // PPB)
        if taken:
            _burn_slash(ctx, delegator, taken, reason)
            total += taken
        exposed.append([delegator, amount - taken, until])
    if exposed:
        Exposed.put(ctx.state, target, exposed)
    else:
        Exposed.remove(ctx.state, target)
    return total


def slash_fraction(ctx: Context, who: bytes, role: str, fraction_ppb: int, reason: str) -> int:
    """Slash ⌊bond · fraction_ppb / PPB⌋ of `who`'s bond for `role`."""
    return slash(ctx, who, role, bonded(ctx, who, role) * fraction_ppb // PPB, reason)


def slash_authority(ctx: Context, who: bytes, fraction_ppb: int) -> int:
    """Equivocation punishment used by the session module."""
    return slash_fraction(ctx, who, "authority", fraction_ppb, "equivocation")


def bond_funds(ctx: Context, who: bytes, role: str, amount: int) -> None:
    """Reserve `amount` and add it to `who`'s bond for `role` (checks the minimum)."""
    ensure(amount > 0, ZeroAmount)
    total = bonded(ctx, who, role) + amount
    minimum = min_stake(ctx, role)
    ensure(total >= minimum, BelowMinimum, f"a {role} bond must be at least {minimum}, this one would be {total}")
    balances.reserve(ctx, who, amount)
    _set_bond(ctx, who, role, total)


# ---------------------------------------------------------------- module


class Staking(Module):
    """Bonds per role, delegations, unbonding queue, slashing and heartbeats."""

    name = "staking"
    storage = (MinStake, Params, Bonded, Members, Delegators, Delegations, Unlocking, Heartbeat, Locks, LockHorizon,
               Exposed)
    errors = (BelowMinimum, NotBonded, InsufficientBond, NotARoleAccount, SelfDelegation,
              InsufficientDelegation, NothingToWithdraw, ZeroAmount, TooManyUnlocking, BondLocked)
    events: ClassVar[dict[str, list[str]]] = {
        "Bonded": ["who", "role", "amount", "total"],
        "Unbonded": ["who", "role", "amount", "release_block"],
        "Delegated": ["delegator", "target", "amount"],
        "Undelegated": ["delegator", "target", "amount", "release_block"],
        "Withdrawn": ["who", "amount"],
        "Slashed": ["who", "role", "amount", "reason"],
        "Heartbeat": ["who", "epoch", "available", "device_kind", "memory_mib"],
    }

    @call(weight=50_000)
    @staticmethod
    def bond(ctx: Context, role: Role, amount: Balance) -> None:
        """Bond `amount` more of the caller's free balance for `role` (total ≥ the role's minimum)."""
        assert ctx.origin is not None
        bond_funds(ctx, ctx.origin, role, amount)
        ctx.deposit_event("staking", "Bonded", ctx.origin, role, amount, bonded(ctx, ctx.origin, role))

    @call(weight=50_000)
    @staticmethod
    def unbond(ctx: Context, role: Role, amount: Balance) -> None:
        """Start unbonding `amount` of the caller's `role` bond; what remains must be 0 or ≥ the minimum."""
        assert ctx.origin is not None
        current = bonded(ctx, ctx.origin, role)
        ensure(current > 0, NotBonded, f"no {role} bond")
        ensure(amount > 0, ZeroAmount)
        ensure(amount <= current, InsufficientBond, f"{role} bond is {current}, cannot unbond {amount}")
        remaining = current - amount
        minimum = min_stake(ctx, role)
        ensure(remaining == 0 or remaining >= minimum, BelowMinimum,
               f"{remaining} would remain bonded as {role}, minimum is {minimum}; unbond all or less")
        held = locked(ctx, ctx.origin, role)
        ensure(remaining >= held, BondLocked,
               f"{held} of the {role} bond is committed to open tasks; at most {max(0, current - held)} can be unbonded")
        _set_bond(ctx, ctx.origin, role, remaining)
        _push_unlocking(ctx, ctx.origin, amount)
        ctx.deposit_event("staking", "Unbonded", ctx.origin, role, amount, ctx.block_number + unbonding_period(ctx))

    @call(weight=50_000)
    @staticmethod
    def delegate(ctx: Context, target: AccountId, amount: Balance) -> None:
        """Delegate `amount` of free balance to `target`, an account bonded for some role."""
        assert ctx.origin is not None
        ensure(target != ctx.origin, SelfDelegation)
        ensure(amount > 0, ZeroAmount)
        ensure(bool(roles_of(ctx, target)), NotARoleAccount, "target has no bond for any role")
        minimum = Params.get(ctx.state).min_delegation
        ensure(amount >= minimum, BelowMinimum, f"a delegation must be at least {minimum}")
        balances.reserve(ctx, ctx.origin, amount)
        Delegators.put(ctx.state, target, _update_pairs(Delegators.get(ctx.state, target), ctx.origin, amount))
        Delegations.put(ctx.state, ctx.origin, _update_pairs(Delegations.get(ctx.state, ctx.origin), target, amount))
        ctx.deposit_event("staking", "Delegated", ctx.origin, target, amount)

    @call(weight=50_000)
    @staticmethod
    def undelegate(ctx: Context, target: AccountId, amount: Balance) -> None:
        """Start unbonding `amount` of what the caller delegated to `target`."""
        assert ctx.origin is not None
        ensure(amount > 0, ZeroAmount)
        current = {t: a for t, a in Delegations.get(ctx.state, ctx.origin)}.get(target, 0)
        ensure(amount <= current, InsufficientDelegation, f"{current} is delegated to that target, cannot undelegate {amount}")
        Delegators.put(ctx.state, target, _update_pairs(Delegators.get(ctx.state, target), ctx.origin, -amount))
        Delegations.put(ctx.state, ctx.origin, _update_pairs(Delegations.get(ctx.state, ctx.origin), target, -amount))
        horizon = LockHorizon.get(ctx.state, target)
        release = _push_unlocking(ctx, ctx.origin, amount, not_before=horizon + 1)
        if horizon >= ctx.block_number:  # the target sits in open tasks: the stake stays answerable for them
            live = [e for e in Exposed.get(ctx.state, target) if e[2] >= ctx.block_number]
            Exposed.put(ctx.state, target, live + [[ctx.origin, amount, horizon]])
        ctx.deposit_event("staking", "Undelegated", ctx.origin, target, amount, release)

    @call(weight=30_000)
    @staticmethod
    def withdraw_unbonded(ctx: Context) -> None:
        """Release every unlocking chunk whose unbonding period is over back to free balance."""
        assert ctx.origin is not None
        chunks = Unlocking.get(ctx.state, ctx.origin)
        ready = sum(amount for release, amount in chunks if release <= ctx.block_number)
        pending = [[release, amount] for release, amount in chunks if release > ctx.block_number]
        first = min((release for release, _ in pending), default=None)
        ensure(ready > 0, NothingToWithdraw,
               "nothing is unlocking" if first is None else f"the next chunk is released at block {first}")
        balances.unreserve(ctx, ctx.origin, ready)
        if pending:
            Unlocking.put(ctx.state, ctx.origin, pending)
        else:
            Unlocking.remove(ctx.state, ctx.origin)
        ctx.deposit_event("staking", "Withdrawn", ctx.origin, ready)

    @call(weight=20_000)
    @staticmethod
    def heartbeat(ctx: Context, capabilities: Capabilities) -> None:
        """Declare availability and hardware for this epoch (bonded accounts only)."""
        assert ctx.origin is not None
        ensure(bool(roles_of(ctx, ctx.origin)), NotBonded, "only accounts bonded for a role send heartbeats")
        available, device, memory = capabilities
        epoch = system.current_epoch(ctx)
        Heartbeat.put(ctx.state, ctx.origin, [epoch, ctx.block_number, available, device, memory])
        ctx.deposit_event("staking", "Heartbeat", ctx.origin, epoch, available, device, memory)

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        minimums = config.get("min_stake", {})
        for role in ROLES:
            MinStake.put(ctx.state, role, int(minimums.get(role, 0)))
        Params.put(ctx.state, StakingParams(
            int(config.get("unbonding_period", 100)),
            int(config.get("slash_treasury_ppb", 500_000_000)),
            int(config.get("min_delegation", 1)),
        ))
        for address, role, amount in config.get("bonds", []):
            if role not in ROLES:
                raise ValueError(f"genesis bond for unknown role {role!r}")
            # Genesis bonds are created at genesis (added to the issuance) and go straight into
            # the reserve, so that the genesis balances stay spendable as listed.
            balances.mint(ctx, ss58_decode(address), int(amount))
            bond_funds(ctx, ss58_decode(address), role, int(amount))

