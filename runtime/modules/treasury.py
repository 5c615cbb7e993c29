"""Treasury: a pot that receives fees, rounding remainders and its share of slashes and usage."""
from __future__ import annotations

from runtime.crypto import blake2b_256
from runtime.module import Context, Module
from runtime.modules import balances

TREASURY_ACCOUNT = blake2b_256(b"arena/module/treasury")


def pot(ctx: Context) -> int:
    """The treasury's free funds."""
    return balances.free_balance(ctx, TREASURY_ACCOUNT)


def credit(ctx: Context, amount: int, reason: str) -> None:
    """Deposit funds already withdrawn elsewhere into the treasury pot."""
    if amount:
        balances.deposit(ctx, TREASURY_ACCOUNT, amount)
        ctx.deposit_event("treasury", "Deposit", amount, reason)


class Treasury(Module):
    """The chain's own pot; its account id is blake2b_256("arena/module/treasury")."""

    name = "treasury"
    events = {"Deposit": ["amount", "reason"]}
