"""Marketplace: hosts serve a finished task's top model, users pay per query from an escrow.

One file because hosts, escrows, channels and vouchers are one payment state machine.

    deposit ─► escrow ─(user-signed vouchers, off chain)─► report_usage ─► host / trainer /
                 │                                                          validators / treasury
                 └─ request_withdraw ──(withdraw_delay blocks)──► withdraw

1. A host bonded for the "host" role calls `register_host(model_cid, endpoint, price_per_query)`
   for a model that is the top model of a finalized task; `deregister_host(model_cid)` removes it.
   The first registration of a model caches its task, trainer and validator weights
   (`ModelInfo`), so every later redemption pays the same parties.
2. A user moves funds into the escrow with `deposit(amount)`: they leave the user's free balance
   for the marketplace pool account, and `Escrow[user]` records the user's part of that pool.
3. Off chain, with each query the user signs a voucher (`voucher_message`): the *cumulative*
   number of queries and amount it owes one host for one model, and a nonce that grows by one
   per voucher. The host keeps only the newest voucher of each user. A user may instead lock
   funds for one host with `deposit_for(host, amount)` (a channel): redemption by that host
   takes from the channel first, then from the shared escrow; no other host can touch the
   channel, so a host that accepts vouchers only up to its channel is never outrun.
4. `report_usage(model_cid, period, vouchers)` (only by an account that registered as a host of
   this model and is still bonded as a host; for the current or the previous usage period)
   redeems vouchers: each must be signed by its user for this chain, name the
   caller as host and this model, and exceed the last redeemed voucher of its channel (user,
   host, model) in nonce and amount. Only the increase over the last redeemed voucher is paid,
   taken from the user's escrow (a short escrow pays what it holds and the shortfall is
   reported in the event). Any bad voucher fails the whole report.
5. The revenue of a report is split by `usage_shares_ppb` (runtime.incentives.usage_split):
   "host" to the caller, "trainer" to the trainer of the model, "validators" among the task's
   validators ∝ stake × agreement, "treasury" and every rounding remainder to the treasury.
6. At the first block of period p + 2, the usage emission of period p is minted: at most
   `usage_emission_per_period`, and at most the unrecoverable share u of the revenue redeemed
   for p (u = the treasury's share: what no host, trainer or validator gets back), so a host
   that pays itself through a second account loses money (wash trading). It is split across
   (model, host) ∝ revenue redeemed for p, and each part is split like revenue.
7. `request_withdraw(amount)` starts the withdraw delay (≥ 2 periods, so hosts can redeem the
   vouchers they accepted); `withdraw()` then pays out min(requested, escrow left).

Funds: the marketplace pool account holds exactly Σ Escrow + Σ Channel balances between blocks; revenue
and emission leave it in full within the call / hook that created them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from runtime import incentives
from runtime.codec import encode
from runtime.crypto import blake2b_256, verify
from runtime.module import (
    U64,
    AccountId,
    ArgCheck,
    Balance,
    Context,
    DispatchError,
    Module,
    Record,
    RecordValue,
    StorageMap,
    StorageValue,
    Text,
    call,
    ensure,
)
from runtime.modules import balances, staking, system, tasks, treasury

PPB = incentives.PPB
POOL_ACCOUNT = blake2b_256(b"arena/module/marketplace")  # holds every user's escrow
VOUCHER_DOMAIN = b"arena/voucher/v1"
MAX_VOUCHERS_CAP = 256      # hard cap per report, whatever genesis says
MAX_HOSTS_PER_MODEL = 64
MAX_MODELS_PER_HOST = 16
MAX_TASK_SCAN = 4096        # register_host looks this many tasks back for the model
PARTIES = ("host", "trainer", "validators", "treasury")
DEFAULT_SHARES = [["host", 500_000_000], ["trainer", 250_000_000], ["validators", 150_000_000],
                  ["treasury", 100_000_000]]

# ---------------------------------------------------------------- vouchers


def voucher_message(genesis_hash: bytes, user: bytes, host: bytes, model_cid: str, cumulative_queries: int,
                    cumulative_amount: int, nonce: int) -> bytes:
    """The bytes a user signs: b"arena/voucher/v1" ‖ encode([genesis_hash, user, host, model, queries, amount, nonce])."""
    return VOUCHER_DOMAIN + encode([genesis_hash, user, host, model_cid, cumulative_queries, cumulative_amount, nonce])


def _is_voucher(v: Any) -> bool:
    return (
        isinstance(v, list) and len(v) == 7
        and isinstance(v[0], bytes) and len(v[0]) == 32
        and isinstance(v[1], bytes) and len(v[1]) == 32
        and isinstance(v[2], str) and len(v[2]) <= 128
        and all(type(x) is int and 0 <= x < 2**64 for x in v[3:6])
        and isinstance(v[6], bytes) and len(v[6]) == 64
    )


def _is_vouchers(v: Any) -> bool:
    return isinstance(v, list) and 0 < len(v) <= MAX_VOUCHERS_CAP and all(_is_voucher(x) for x in v)


Vouchers = Annotated[list, ArgCheck(
    f"vouchers [[user (32 bytes), host (32 bytes), model_cid, cumulative_queries, cumulative_amount, nonce, "
    f"signature (64 bytes)], ...] (1..{MAX_VOUCHERS_CAP})", _is_vouchers)]

_ENDPOINT = re.compile(r"^https?://[^\s]{1,240}$")

# ---------------------------------------------------------------- storage



@dataclass(frozen=True)
class MarketParams(Record):
    """Genesis `modules.marketplace` parameters."""

    period_blocks: int
    withdraw_delay: int
    max_vouchers_per_report: int
    usage_emission_per_period: int


Params = RecordValue("marketplace", "Params", MarketParams(20, 40, 64, 0))
Shares = StorageValue("marketplace", "Shares", DEFAULT_SHARES)         # [[party, ppb]]
ChainGenesis = StorageValue("marketplace", "ChainGenesis", None)   # see `chain_genesis`
# model_cid -> [task_id, trainer, [[validator, stake, agreement_ppb]]]
ModelInfo = StorageMap("marketplace", "ModelInfo", None)
Host = StorageMap("marketplace", "Host", None)            # [model_cid, host] -> [endpoint, price, block]
HostsOf = StorageMap("marketplace", "HostsOf", [])        # model_cid -> hosts sorted
ModelsOf = StorageMap("marketplace", "ModelsOf", [])      # host -> model CIDs sorted
Escrow = StorageMap("marketplace", "Escrow", [0, 0, 0])   # user -> [balance, withdraw_requested, release_block]
# [user, host, model_cid] -> [cumulative_queries, cumulative_amount, nonce] of the last redeemed voucher
Redeemed = StorageMap("marketplace", "Redeemed", [0, 0, 0])
Usage = StorageMap("marketplace", "Usage", [])            # [model_cid, period] -> [[host, queries, revenue]]
Payouts = StorageMap("marketplace", "Payouts", [])        # [model_cid, period] -> [[party, who, amount]]
PeriodUsage = StorageMap("marketplace", "PeriodUsage", [])  # period -> [[model_cid, host, revenue]]
Served = StorageMap("marketplace", "Served", None)        # [model_cid, host] -> block first registered (kept)
# [user, host] -> [balance, withdraw_requested, release_block]: escrow only `host` can be paid from
Channel = StorageMap("marketplace", "Channel", [0, 0, 0])

# ---------------------------------------------------------------- errors


class _MarketError(DispatchError):
    module = "marketplace"


class NotAHost(_MarketError):
    """The caller has no bond for the "host" role of at least the role's minimum."""


class UnknownModel(_MarketError):
    """The model is not the top model of a finalized task."""


class InvalidEndpoint(_MarketError):
    """The endpoint must be an http:// or https:// URL without spaces."""


class ZeroPrice(_MarketError):
    """The price per query must be at least 1 unit."""


class TooManyHosts(_MarketError):
    """The model or the host has reached its registration limit."""


class NotRegistered(_MarketError):
    """The caller is not registered as a host of this model."""


class ZeroAmount(_MarketError):
    """The amount must be positive."""


class InsufficientEscrow(_MarketError):
    """The escrow holds less than the amount."""


class NoWithdrawRequest(_MarketError):
    """There is no withdraw request to complete."""


class WithdrawDelay(_MarketError):
    """The withdraw delay has not passed yet."""


class WrongPeriod(_MarketError):
    """Usage can only be reported for the current or the previous period."""


class TooManyVouchers(_MarketError):
    """The report carries more vouchers than allowed."""


class ForeignVoucher(_MarketError):
    """A voucher names another host or another model."""


class BadVoucherSignature(_MarketError):
    """A voucher's signature does not verify for its user on this chain."""


class StaleVoucher(_MarketError):
    """A voucher does not exceed the last redeemed voucher of its channel (replayed or going backwards)."""


# ---------------------------------------------------------------- reads


def params(ctx: Context) -> dict[str, int]:
    p = Params.get(ctx.state)
    return {"period_blocks": p.period_blocks, "withdraw_delay": p.withdraw_delay,
            "max_vouchers_per_report": p.max_vouchers_per_report, "usage_emission_per_period": p.usage_emission_per_period}


def current_period(ctx: Context) -> int:
    """Usage periods are `period_blocks` long: period p covers blocks [p·len, (p+1)·len)."""
    return ctx.block_number // Params.get(ctx.state).period_blocks


def escrow_of(ctx: Context, user: bytes) -> list[int]:
    """[balance, withdraw_requested, release_block] of `user`'s escrow."""
    return Escrow.get(ctx.state, user)


def chain_genesis(ctx: Context) -> bytes:
    """The genesis hash vouchers are bound to.

    Kept from system.BlockHash[0] (present for the first BLOCK_HASH_HISTORY blocks) by the first
    marketplace call, or at block BLOCK_HASH_HISTORY at the latest, so no block before any
    marketplace activity writes marketplace state.
    """
    stored = ChainGenesis.get(ctx.state)
    if stored is not None:
        return stored
    found = system.BlockHash.get(ctx.state, 0)
    assert found is not None, "the genesis hash left the block hash history before it was kept"
    ChainGenesis.put(ctx.state, found)
    return found


def find_task_of_model(ctx: Context, model_cid: str) -> tasks.Task | None:
    """The newest finalized task (among the last MAX_TASK_SCAN) whose top model is `model_cid`."""
    last = tasks.NextTaskId.get(ctx.state) - 1
    for task_id in range(last, max(-1, last - MAX_TASK_SCAN), -1):
        raw = tasks.TaskById.get(ctx.state, task_id)
        if raw is not None:
            task = tasks.Task.from_list(raw)
            if task.status == "finalized" and task.top_model == model_cid:
                return task
    return None


def model_info(ctx: Context, model_cid: str) -> list:
    """[task_id, trainer, [[validator, stake, agreement_ppb]]], cached on first use."""
    info = ModelInfo.get(ctx.state, model_cid)
    if info is not None:
        return info
    task = find_task_of_model(ctx, model_cid)
    ensure(task is not None, UnknownModel, f"model {model_cid} is not the top model of a finalized task")
    assert task is not None
    trainer = tasks.Leaderboard.get(ctx.state, task.id)[0][0]
    stakes = {who: stake for who, stake in task.validators}
    validators = [[v, stakes.get(v, 0), agreement]
                  for v, agreement, _ in tasks.ValidatorResults.get(ctx.state, task.id)]
    info = [task.id, trainer, validators]
    ModelInfo.put(ctx.state, model_cid, info)
    return info


# ---------------------------------------------------------------- paying out


def _add_payout(ctx: Context, model_cid: str, period: int, party: str, who: bytes, amount: int) -> None:
    rows = {(p, w): a for p, w, a in Payouts.get(ctx.state, [model_cid, period])}
    rows[(party, who)] = rows.get((party, who), 0) + amount
    Payouts.put(ctx.state, [model_cid, period], [[p, w, rows[(p, w)]] for p, w in sorted(rows)])


def split_usage(ctx: Context, model_cid: str, period: int, host: bytes, amount: int, reason: str) -> None:
    """Pay `amount`, sitting in the pool account, to host / trainer / validators / treasury by the shares."""
    _, trainer, validators = model_info(ctx, model_cid)
    parts, remainder = incentives.usage_split(amount, [(p, s) for p, s in Shares.get(ctx.state)])
    to_treasury = remainder
    for party, part in parts:
        if party == "host":
            payees = [(host, part)]
        elif party == "trainer":
            payees = [(trainer, part)]
        elif party == "validators":
            dist = incentives.validator_rewards(part, [(v, s, a) for v, s, a in validators])
            payees = dist.payouts
            to_treasury += dist.remainder
        else:  # "treasury"
            to_treasury += part
            continue
        for who, paid in payees:
            balances.transfer(ctx, POOL_ACCOUNT, who, paid)
            _add_payout(ctx, model_cid, period, party, who, paid)
            ctx.deposit_event("marketplace", "UsagePaid", model_cid, period, who, party, paid, reason)
    if to_treasury:
        balances.withdraw(ctx, POOL_ACCOUNT, to_treasury)
        treasury.credit(ctx, to_treasury, f"usage {model_cid} period {period}")
        _add_payout(ctx, model_cid, period, "treasury", treasury.TREASURY_ACCOUNT, to_treasury)


def _record_usage(ctx: Context, model_cid: str, period: int, host: bytes, queries: int, revenue: int) -> None:
    rows = {h: [q, r] for h, q, r in Usage.get(ctx.state, [model_cid, period])}
    q, r = rows.get(host, [0, 0])
    rows[host] = [q + queries, r + revenue]
    Usage.put(ctx.state, [model_cid, period], [[h, *rows[h]] for h in sorted(rows)])
    totals = {(m, h): r for m, h, r in PeriodUsage.get(ctx.state, period)}
    totals[(model_cid, host)] = totals.get((model_cid, host), 0) + revenue
    PeriodUsage.put(ctx.state, period, [[m, h, totals[(m, h)]] for m, h in sorted(totals)])


def redeem(ctx: Context, host: bytes, model_cid: str, voucher: list) -> tuple[int, int, int]:
    """Check one voucher and take its increase from the user's escrow: (queries, paid, shortfall)."""
    user, v_host, v_model, queries, amount, nonce, signature = voucher
    ensure(v_host == host and v_model == model_cid, ForeignVoucher,
           f"voucher of user 0x{user.hex()[:16]} is for host 0x{v_host.hex()[:16]} model {v_model}")
    message = voucher_message(chain_genesis(ctx), user, host, model_cid, queries, amount, nonce)
    ensure(verify(user, message, signature), BadVoucherSignature,
           f"voucher of user 0x{user.hex()[:16]} (nonce {nonce}) is not signed by that user for this chain")
    last_queries, last_amount, last_nonce = Redeemed.get(ctx.state, [user, host, model_cid])
    ensure(nonce > last_nonce and amount > last_amount and queries >= last_queries, StaleVoucher,
           f"voucher of user 0x{user.hex()[:16]} (nonce {nonce}, amount {amount}, queries {queries}) does not "
           f"exceed the redeemed one (nonce {last_nonce}, amount {last_amount}, queries {last_queries})")
    Redeemed.put(ctx.state, [user, host, model_cid], [queries, amount, nonce])
    increase = amount - last_amount
    locked, c_requested, c_release = Channel.get(ctx.state, [user, host])
    from_channel = min(increase, locked)
    if from_channel:
        _put_channel(ctx, user, host, locked - from_channel, c_requested, c_release)
    balance, requested, release = Escrow.get(ctx.state, user)
    paid = from_channel + min(increase - from_channel, balance)
    _put_escrow(ctx, user, balance - (paid - from_channel), requested, release)
    ctx.deposit_event("marketplace", "VoucherRedeemed", user, host, model_cid, queries - last_queries, paid,
                      increase - paid)
    return queries - last_queries, paid, increase - paid


def _put_escrow(ctx: Context, user: bytes, balance: int, requested: int, release: int) -> None:
    if balance == 0 and requested == 0:
        Escrow.remove(ctx.state, user)
    else:
        Escrow.put(ctx.state, user, [balance, requested, release])


def _put_channel(ctx: Context, user: bytes, host: bytes, balance: int, requested: int, release: int) -> None:
    if balance == 0 and requested == 0:
        Channel.remove(ctx.state, [user, host])
    else:
        Channel.put(ctx.state, [user, host], [balance, requested, release])


def channel_of(ctx: Context, user: bytes, host: bytes) -> list[int]:
    """[balance, withdraw_requested, release_block] of the escrow `user` locked for `host` alone."""
    return Channel.get(ctx.state, [user, host])


def pay_period_emission(ctx: Context, period: int) -> None:
    """Mint the usage emission of `period`, capped, and split it ∝ redeemed revenue, then like revenue.

    The cap (`incentives.usage_emission_budget`): at most the unrecoverable (treasury) share of
    the period's revenue is minted, so every (model, host) entry gets at most that share of its
    own revenue and paying oneself through a second account loses money (docs/incentives.md,
    attack 9). What the cap leaves of `usage_emission_per_period` is not minted.
    """
    emission = Params.get(ctx.state).usage_emission_per_period
    entries = PeriodUsage.get(ctx.state, period)
    revenue = sum(r for _, _, r in entries)
    if emission == 0 or revenue == 0:
        return
    budget = incentives.usage_emission_budget(emission, revenue, [(p, s) for p, s in Shares.get(ctx.state)])
    if budget < emission:
        ctx.deposit_event("marketplace", "UsageEmissionCapped", period, revenue, emission, budget)
    if budget == 0:
        return
    keys = {blake2b_256(encode([m, h])): (m, h) for m, h, _ in entries}
    dist = incentives.pro_rata(budget, [(blake2b_256(encode([m, h])), r) for m, h, r in entries])
    balances.mint(ctx, POOL_ACCOUNT, budget - dist.remainder)
    if dist.remainder:
        balances.mint(ctx, treasury.TREASURY_ACCOUNT, dist.remainder)
        ctx.deposit_event("treasury", "Deposit", dist.remainder, f"usage emission remainder period {period}")
    for key, amount in dist.payouts:
        model_cid, host = keys[key]
        ctx.deposit_event("marketplace", "UsageEmission", model_cid, period, host, amount)
        split_usage(ctx, model_cid, period, host, amount, "emission")


# ---------------------------------------------------------------- module


class Marketplace(Module):
    """Hosts, user escrows, voucher redemption and the usage split."""

    name = "marketplace"
    storage = (Params, Shares, ChainGenesis, ModelInfo, Host, HostsOf, ModelsOf, Escrow, Redeemed, Usage,
               Payouts, PeriodUsage, Served, Channel)
    errors = (NotAHost, UnknownModel, InvalidEndpoint, ZeroPrice, TooManyHosts, NotRegistered, ZeroAmount,
              InsufficientEscrow, NoWithdrawRequest, WithdrawDelay, WrongPeriod, TooManyVouchers,
              ForeignVoucher, BadVoucherSignature, StaleVoucher)
    events: ClassVar[dict[str, list[str]]] = {
        "HostRegistered": ["model_cid", "host", "endpoint", "price_per_query"],
        "HostDeregistered": ["model_cid", "host"],
        "Deposited": ["user", "amount", "balance"],
        "ChannelFunded": ["user", "host", "amount", "balance"],
        "WithdrawRequested": ["user", "amount", "release_block"],
        "Withdrawn": ["user", "amount"],
        "VoucherRedeemed": ["user", "host", "model_cid", "queries", "paid", "shortfall"],
        "UsageReported": ["model_cid", "period", "host", "vouchers", "queries", "revenue", "shortfall"],
        "UsagePaid": ["model_cid", "period", "who", "party", "amount", "reason"],
        "UsageEmission": ["model_cid", "period", "host", "amount"],
        "UsageEmissionCapped": ["period", "revenue", "total", "amount"],
    }

    @call(weight=100_000)
    @staticmethod
    def register_host(ctx: Context, model_cid: tasks.Cid, endpoint: Text, price_per_query: Balance) -> None:
        """Serve `model_cid` (a finalized task's top model) at `endpoint` for `price_per_query` units."""
        assert ctx.origin is not None
        bond, minimum = staking.bonded(ctx, ctx.origin, "host"), staking.min_stake(ctx, "host")
        ensure(bond > 0 and bond >= minimum, NotAHost, f"host bond is {bond}, at least {max(minimum, 1)} needed")
        ensure(bool(_ENDPOINT.match(endpoint)), InvalidEndpoint, f"endpoint {endpoint!r:.80} is not an http(s) URL")
        ensure(price_per_query > 0, ZeroPrice)
        model_info(ctx, model_cid)
        chain_genesis(ctx)
        hosts = HostsOf.get(ctx.state, model_cid)
        models = ModelsOf.get(ctx.state, ctx.origin)
        if ctx.origin not in hosts:
            ensure(len(hosts) < MAX_HOSTS_PER_MODEL, TooManyHosts, f"model has {len(hosts)} hosts (limit {MAX_HOSTS_PER_MODEL})")
            ensure(len(models) < MAX_MODELS_PER_HOST, TooManyHosts,
                   f"host serves {len(models)} models (limit {MAX_MODELS_PER_HOST})")
            HostsOf.put(ctx.state, model_cid, sorted(hosts + [ctx.origin]))
            ModelsOf.put(ctx.state, ctx.origin, sorted(models + [model_cid]))
        Host.put(ctx.state, [model_cid, ctx.origin], [endpoint, price_per_query, ctx.block_number])
        if not Served.contains(ctx.state, [model_cid, ctx.origin]):
            Served.put(ctx.state, [model_cid, ctx.origin], ctx.block_number)
        ctx.deposit_event("marketplace", "HostRegistered", model_cid, ctx.origin, endpoint, price_per_query)

    @call(weight=50_000)
    @staticmethod
    def deregister_host(ctx: Context, model_cid: tasks.Cid) -> None:
        """Stop serving `model_cid`; vouchers already accepted stay redeemable."""
        assert ctx.origin is not None
        ensure(Host.contains(ctx.state, [model_cid, ctx.origin]), NotRegistered, f"not a host of {model_cid}")
        Host.remove(ctx.state, [model_cid, ctx.origin])
        hosts = [h for h in HostsOf.get(ctx.state, model_cid) if h != ctx.origin]
        models = [m for m in ModelsOf.get(ctx.state, ctx.origin) if m != model_cid]
        if hosts:
            HostsOf.put(ctx.state, model_cid, hosts)
        else:
            HostsOf.remove(ctx.state, model_cid)
        if models:
            ModelsOf.put(ctx.state, ctx.origin, models)
        else:
            ModelsOf.remove(ctx.state, ctx.origin)
        ctx.deposit_event("marketplace", "HostDeregistered", model_cid, ctx.origin)

    @call(weight=30_000)
    @staticmethod
    def deposit(ctx: Context, amount: Balance) -> None:
        """Move `amount` of free balance into the caller's escrow."""
        assert ctx.origin is not None
        ensure(amount > 0, ZeroAmount)
        chain_genesis(ctx)
        balances.transfer(ctx, ctx.origin, POOL_ACCOUNT, amount)
        balance, requested, release = Escrow.get(ctx.state, ctx.origin)
        _put_escrow(ctx, ctx.origin, balance + amount, requested, release)
        ctx.deposit_event("marketplace", "Deposited", ctx.origin, amount, balance + amount)

    @call(weight=30_000)
    @staticmethod
    def deposit_for(ctx: Context, host: AccountId, amount: Balance) -> None:
        """Lock `amount` of free balance in an escrow that only `host` can be paid from (a channel).

        A host that accepts vouchers only up to its channel's balance can never be outrun by
        another host redeeming the same funds first.
        """
        assert ctx.origin is not None
        ensure(amount > 0, ZeroAmount)
        chain_genesis(ctx)
        balances.transfer(ctx, ctx.origin, POOL_ACCOUNT, amount)
        balance, requested, release = Channel.get(ctx.state, [ctx.origin, host])
        _put_channel(ctx, ctx.origin, host, balance + amount, requested, release)
        ctx.deposit_event("marketplace", "ChannelFunded", ctx.origin, host, amount, balance + amount)

    @call(weight=30_000)
    @staticmethod
    def request_channel_withdraw(ctx: Context, host: AccountId, amount: Balance) -> None:
        """Ask to take `amount` back from the channel to `host` after the withdraw delay."""
        assert ctx.origin is not None
        ensure(amount > 0, ZeroAmount)
        balance, _, _ = Channel.get(ctx.state, [ctx.origin, host])
        ensure(amount <= balance, InsufficientEscrow, f"the channel holds {balance}, cannot withdraw {amount}")
        release = ctx.block_number + Params.get(ctx.state).withdraw_delay
        _put_channel(ctx, ctx.origin, host, balance, amount, release)
        ctx.deposit_event("marketplace", "WithdrawRequested", ctx.origin, amount, release)

    @call(weight=30_000)
    @staticmethod
    def withdraw_channel(ctx: Context, host: AccountId) -> None:
        """Pay out a channel withdraw request whose delay is over: min(requested, channel left)."""
        assert ctx.origin is not None
        balance, requested, release = Channel.get(ctx.state, [ctx.origin, host])
        ensure(requested > 0, NoWithdrawRequest, "call request_channel_withdraw first")
        ensure(ctx.block_number >= release, WithdrawDelay, f"the withdraw is released at block {release}")
        amount = min(requested, balance)
        if amount:
            balances.transfer(ctx, POOL_ACCOUNT, ctx.origin, amount)
        _put_channel(ctx, ctx.origin, host, balance - amount, 0, 0)
        ctx.deposit_event("marketplace", "Withdrawn", ctx.origin, amount)

    @call(weight=30_000)
    @staticmethod
    def request_withdraw(ctx: Context, amount: Balance) -> None:
        """Ask to withdraw `amount` of escrow after the withdraw delay (replaces an earlier request)."""
        assert ctx.origin is not None
        ensure(amount > 0, ZeroAmount)
        balance, _, _ = Escrow.get(ctx.state, ctx.origin)
        ensure(amount <= balance, InsufficientEscrow, f"escrow holds {balance}, cannot withdraw {amount}")
        release = ctx.block_number + Params.get(ctx.state).withdraw_delay
        _put_escrow(ctx, ctx.origin, balance, amount, release)
        ctx.deposit_event("marketplace", "WithdrawRequested", ctx.origin, amount, release)

    @call(weight=30_000)
    @staticmethod
    def withdraw(ctx: Context) -> None:
        """Pay out a withdraw request whose delay is over: min(requested, escrow left)."""
        assert ctx.origin is not None
        balance, requested, release = Escrow.get(ctx.state, ctx.origin)
        ensure(requested > 0, NoWithdrawRequest, "call request_withdraw first")
        ensure(ctx.block_number >= release, WithdrawDelay, f"the withdraw is released at block {release}")
        amount = min(requested, balance)
        if amount:
            balances.transfer(ctx, POOL_ACCOUNT, ctx.origin, amount)
        _put_escrow(ctx, ctx.origin, balance - amount, 0, 0)
        ctx.deposit_event("marketplace", "Withdrawn", ctx.origin, amount)

    @call(weight=2_000_000)
    @staticmethod
    def report_usage(ctx: Context, model_cid: tasks.Cid, period: U64, vouchers: Vouchers) -> None:
        """Redeem users' newest vouchers for `model_cid` in `period` (the current or previous one)."""
        assert ctx.origin is not None
        now = current_period(ctx)
        ensure(period <= now and period + 1 >= now, WrongPeriod,
               f"period {period} cannot be reported at block {ctx.block_number} (period {now}); report {now} or {now - 1}")
        limit = Params.get(ctx.state).max_vouchers_per_report
        ensure(len(vouchers) <= limit, TooManyVouchers, f"{len(vouchers)} vouchers, limit {limit} per report")
        ensure(ModelInfo.contains(ctx.state, model_cid), UnknownModel, f"model {model_cid} was never registered")
        ensure(Served.contains(ctx.state, [model_cid, ctx.origin]), NotRegistered,
               f"the caller never registered as a host of {model_cid}")
        bond, minimum = staking.bonded(ctx, ctx.origin, "host"), staking.min_stake(ctx, "host")
        ensure(bond > 0 and bond >= minimum, NotAHost, f"host bond is {bond}, at least {max(minimum, 1)} needed")
        queries = revenue = shortfall = 0
        for voucher in vouchers:
            q, paid, short = redeem(ctx, ctx.origin, model_cid, voucher)
            queries, revenue, shortfall = queries + q, revenue + paid, shortfall + short
        _record_usage(ctx, model_cid, period, ctx.origin, queries, revenue)
        ctx.deposit_event("marketplace", "UsageReported", model_cid, period, ctx.origin, len(vouchers), queries,
                          revenue, shortfall)
        if revenue:
            split_usage(ctx, model_cid, period, ctx.origin, revenue, "usage")

    @staticmethod
    def on_initialize(ctx: Context) -> None:
        """Keep the genesis hash before it leaves the block hash history; period starts pay emission."""
        if ctx.block_number == system.BLOCK_HASH_HISTORY:
            chain_genesis(ctx)
        period_blocks = Params.get(ctx.state).period_blocks
        if ctx.block_number % period_blocks == 0 and ctx.block_number >= 2 * period_blocks:
            pay_period_emission(ctx, ctx.block_number // period_blocks - 2)

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        period_blocks = int(config.get("period_blocks", 20))
        delay = int(config.get("withdraw_delay", 2 * period_blocks))
        max_vouchers = int(config.get("max_vouchers_per_report", 64))
        emission = int(config.get("usage_emission_per_period", 0))
        if period_blocks < 1:
            raise ValueError("marketplace.period_blocks must be at least 1")
        if delay < 2 * period_blocks:
            raise ValueError(f"marketplace.withdraw_delay ({delay}) must be at least 2 periods ({2 * period_blocks} "
                             f"blocks) so hosts can redeem what they accepted")
        if not 1 <= max_vouchers <= MAX_VOUCHERS_CAP:
            raise ValueError(f"marketplace.max_vouchers_per_report must be 1..{MAX_VOUCHERS_CAP}")
        pairs: list[tuple[str, int]] = [(str(p), int(s)) for p, s in config.get("usage_shares_ppb", DEFAULT_SHARES)]
        parties = [p for p, _ in pairs]
        if len(set(parties)) != len(parties) or any(p not in PARTIES for p in parties):
            raise ValueError(f"marketplace.usage_shares_ppb parties must be distinct, from {', '.join(PARTIES)}")
        incentives.usage_split(0, pairs)  # checks each share and the sum ≤ PPB
        if emission < 0:
            raise ValueError(f"marketplace.usage_emission_per_period ({emission}) must be at least 0")
        if emission and incentives.usage_emission_budget(emission, PPB, pairs) == 0:
            raise ValueError(
                f"marketplace.usage_emission_per_period is {emission} but usage_shares_ppb give host, trainer and "
                f"validators all of the revenue: usage emission is capped at the treasury's share of the revenue "
                f"(so that paying oneself does not pay), so none could ever be minted; give the treasury a share "
                f"or set usage_emission_per_period to 0")
        shares = [[p, s] for p, s in pairs]
        Params.put(ctx.state, MarketParams(period_blocks, delay, max_vouchers, emission))
        Shares.put(ctx.state, shares)
