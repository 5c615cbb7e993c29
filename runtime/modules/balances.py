"""Balances: free and reserved funds per account, transfers, and the total issuance.

Invariant: the sum of every account's free + reserved equals `TotalIssuance`; issuance moves only
through `mint` and `burn`.
"""
from __future__ import annotations

from runtime.crypto import ss58_decode
from runtime.module import (
    AccountId,
    Balance,
    Context,
    DispatchError,
    Module,
    StorageMap,
    StorageValue,
    call,
    ensure,
)

DECIMALS = 9  # amounts are integers of the smallest unit; one ARENA is 10**DECIMALS of them
UNIT = 10**DECIMALS

Account = StorageMap("balances", "Account", [0, 0])  # [free, reserved]
TotalIssuance = StorageValue("balances", "TotalIssuance", 0)


class _BalancesError(DispatchError):
    module = "balances"


class InsufficientBalance(_BalancesError):
    """The account's free balance is lower than the amount."""


class InsufficientReserve(_BalancesError):
    """The account's reserved balance is lower than the amount."""


class SelfTransfer(_BalancesError):
    """An account cannot transfer to itself."""


def free_balance(ctx: Context, who: bytes) -> int:
    return Account.get(ctx.state, who)[0]


def reserved_balance(ctx: Context, who: bytes) -> int:
    return Account.get(ctx.state, who)[1]


def _write(ctx: Context, who: bytes, free: int, reserved: int) -> None:
    if free == 0 and reserved == 0:
        Account.remove(ctx.state, who)
    else:
        Account.put(ctx.state, who, [free, reserved])


def withdraw(ctx: Context, who: bytes, amount: int) -> None:
    """Take `amount` from free balance (the caller puts it somewhere else or burns it)."""
    free, reserved = Account.get(ctx.state, who)
    if free < amount:  # not `ensure`: every fee and transfer comes here, the message is built only on failure
        raise InsufficientBalance(f"free balance is {free}, {amount} needed")
    _write(ctx, who, free - amount, reserved)


def deposit(ctx: Context, who: bytes, amount: int) -> None:
    """Add `amount` to free balance (it was withdrawn elsewhere or minted)."""
    free, reserved = Account.get(ctx.state, who)
    _write(ctx, who, free + amount, reserved)


def transfer(ctx: Context, source: bytes, dest: bytes, amount: int) -> None:
    """Move free funds between accounts."""
    withdraw(ctx, source, amount)
    deposit(ctx, dest, amount)


def reserve(ctx: Context, who: bytes, amount: int) -> None:
    """Move free funds into the account's reserve."""
    free, reserved = Account.get(ctx.state, who)
    ensure(free >= amount, InsufficientBalance, f"free balance is {free}, cannot reserve {amount}")
    _write(ctx, who, free - amount, reserved + amount)


def unreserve(ctx: Context, who: bytes, amount: int) -> None:
    """Move reserved funds back to free."""
    free, reserved = Account.get(ctx.state, who)
    ensure(reserved >= amount, InsufficientReserve, f"reserved balance is {reserved}, cannot release {amount}")
    _write(ctx, who, free + amount, reserved - amount)


def take_reserved(ctx: Context, who: bytes, amount: int) -> int:
    """Remove up to `amount` from the reserve and return how much was taken (for slashing)."""
    free, reserved = Account.get(ctx.state, who)
    taken = min(amount, reserved)
    _write(ctx, who, free, reserved - taken)
    return taken


def mint(ctx: Context, who: bytes, amount: int) -> None:
    """Create new funds (emission): the only way issuance grows."""
    deposit(ctx, who, amount)
    TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) + amount)
    ctx.deposit_event("balances", "Minted", who, amount)


def burn(ctx: Context, amount: int) -> None:
    """Destroy funds already withdrawn from an account: the only way issuance shrinks."""
    TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) - amount)
    ctx.deposit_event("balances", "Burned", amount)


class Balances(Module):
    """Accounts' free and reserved funds."""

    name = "balances"
    storage = (Account, TotalIssuance)
    errors = (InsufficientBalance, InsufficientReserve, SelfTransfer)
    events = {
        "Transfer": ["from", "to", "amount"],
        "Minted": ["who", "amount"],
        "Burned": ["amount"],
    }

    @call(weight=10_000)
    @staticmethod
    def transfer(ctx: Context, dest: AccountId, amount: Balance) -> None:
        """Send `amount` of the caller's free balance to `dest`."""
        assert ctx.origin is not None
        ensure(dest != ctx.origin, SelfTransfer)
        transfer(ctx, ctx.origin, dest, amount)
        ctx.deposit_event("balances", "Transfer", ctx.origin, dest, amount)

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        total = 0
        for address, amount in config.get("accounts", []):
            deposit(ctx, ss58_decode(address), int(amount))
            total += int(amount)
        TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) + total)
