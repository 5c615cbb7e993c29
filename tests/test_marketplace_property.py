"""Property: whatever vouchers hosts report, a period pays out exactly the voucher increases, split by the shares.

For random sequences of reports (two hosts, three users, random increases, one user whose escrow
runs dry), each report must pay

- in total exactly Σ min(increase, escrow left) over its vouchers (the increase over the last
  redeemed voucher of each channel; nothing for replays, never more than the user signed);
- the host ⌊R·host/PPB⌋, the trainer ⌊R·trainer/PPB⌋, the validators together at most
  ⌊R·validators/PPB⌋ (∝ stake × agreement), and the treasury all the rest;

and after every report the marketplace pool holds exactly the escrows, and the period's recorded
usage and payouts both equal the sum of what was paid.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.offchain.vouchers import sign_voucher
from runtime import incentives
from runtime.crypto import Keypair
from runtime.modules import marketplace, treasury
from tests.runtime_harness import UNIT, RuntimeHarness, failures, named
from tests.test_marketplace import ALICE, FERDIE, GRACE, HEIDI, PERIOD, finish_task, market_genesis, ok

IVAN = Keypair.from_dev_name("ivan")
USERS = [GRACE, ALICE, IVAN]
HOSTS = [FERDIE, HEIDI]
IVAN_ESCROW = 5_000


@pytest.fixture(scope="module")
def world():
    h = RuntimeHarness(market_genesis(max_vouchers_per_report=16))
    cid = finish_task(h)
    ok(h.block((ALICE, "balances", "transfer", [IVAN.public_key, 10 * UNIT]),
               *[(k, "staking", "bond", ["host", 10 * UNIT]) for k in HOSTS],
               (GRACE, "marketplace", "deposit", [10**13]), (ALICE, "marketplace", "deposit", [10**13])))
    ok(h.block(*[(k, "marketplace", "register_host", [cid, f"http://127.0.0.1:{8000 + i}", 1 + i])
                 for i, k in enumerate(HOSTS)], (IVAN, "marketplace", "deposit", [IVAN_ESCROW])))
    return h, cid


report_strategy = st.tuples(
    st.integers(0, len(HOSTS) - 1),
    st.lists(st.tuples(st.integers(0, len(USERS) - 1), st.integers(0, 3_000_000_007)), min_size=1, max_size=6),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reports=st.lists(report_strategy, min_size=1, max_size=4))
def test_period_pays_exactly_the_voucher_increases_split_by_shares(world, reports):
    h, cid = world
    shares = dict(marketplace.Shares.get(h.ctx().state))
    genesis_hash = h.genesis_hash
    for host_index, entries in reports:
        host = HOSTS[host_index]
        ctx = h.ctx()
        if (h.number + 1) % PERIOD == 0:
            h.block()  # keep each report inside one period (no emission in this genesis anyway)
            ctx = h.ctx()
        period = (h.number + 1) // PERIOD
        escrow = {u.public_key: marketplace.escrow_of(ctx, u.public_key)[0] for u in USERS}
        channel = {u.public_key: marketplace.Redeemed.get(ctx.state, [u.public_key, host.public_key, cid])
                   for u in USERS}
        vouchers, expected = [], 0
        for user_index, increase in entries:
            user = USERS[user_index]
            queries, amount, nonce = channel[user.public_key]
            if increase == 0:  # a replay of the last redeemed amount: the whole report must fail
                amount_new = amount
            else:
                amount_new = amount + increase
            v = sign_voucher(user, genesis_hash, host.public_key, cid, queries + 1, amount_new, nonce + 1)
            vouchers.append(v.to_list())
            channel[user.public_key] = [queries + 1, amount_new, nonce + 1]
            paid = min(amount_new - amount, escrow[user.public_key])
            escrow[user.public_key] -= paid
            expected += paid
        usage_before = sum(r for _, _, r in marketplace.Usage.get(ctx.state, [cid, period]))
        payouts_before = sum(a for _, _, a in marketplace.Payouts.get(ctx.state, [cid, period]))
        treasury_before = treasury.pot(ctx)
        events = h.block((host, "marketplace", "report_usage", [cid, period, vouchers]))
        ctx = h.ctx()
        fee = (named(events, "system", "ExtrinsicSuccess") or named(events, "system", "ExtrinsicFailed"))[0].data[-1]
        if any(increase == 0 for _, increase in entries):
            assert [f.error for f in failures(events)] == ["StaleVoucher"]
            assert treasury.pot(ctx) - treasury_before == fee
            continue
        assert not failures(events), failures(events)
        reported = named(events, "marketplace", "UsageReported")[0].data
        assert reported[5] == expected
        by_party: dict[str, int] = {}
        for e in named(events, "marketplace", "UsagePaid"):
            by_party[e.data[3]] = by_party.get(e.data[3], 0) + e.data[4]
        to_treasury = treasury.pot(ctx) - treasury_before - fee
        assert sum(by_party.values()) + to_treasury == expected
        assert by_party.get("host", 0) == expected * shares["host"] // incentives.PPB
        assert by_party.get("trainer", 0) == expected * shares["trainer"] // incentives.PPB
        assert by_party.get("validators", 0) <= expected * shares["validators"] // incentives.PPB
        assert to_treasury >= expected * shares["treasury"] // incentives.PPB
        assert h.free(marketplace.POOL_ACCOUNT) == sum(marketplace.escrow_of(ctx, u.public_key)[0] for u in USERS)
        assert {u.public_key: marketplace.escrow_of(ctx, u.public_key)[0] for u in USERS} == escrow
        assert sum(r for _, _, r in marketplace.Usage.get(ctx.state, [cid, period])) - usage_before == expected
        assert sum(a for _, _, a in marketplace.Payouts.get(ctx.state, [cid, period])) - payouts_before == expected


@settings(max_examples=200, deadline=None)
@given(emission=st.integers(0, 10**15), wash=st.integers(1, 10**15), honest=st.integers(0, 10**15),
       host=st.integers(0, 10**9), trainer=st.integers(0, 10**9), validators=st.integers(0, 10**9))
def test_no_wash_trade_gains_whatever_the_shares(emission, wash, honest, host, trainer, validators):
    """A trader holding host, trainer and every validator seat recovers ρ ≤ 1 − u of what it pays; with the
    capped budget split ∝ revenue its entry's emission X satisfies −(1 − ρ)·W + ρ·X ≤ 0 (u > 0)."""
    shares = [("host", host), ("trainer", trainer), ("validators", validators)]
    recoverable = host + trainer + validators
    if recoverable >= incentives.PPB:
        return  # u = 0: genesis refuses a usage emission (test_marketplace), and usage_split any sum > PPB
    budget = incentives.usage_emission_budget(emission, wash + honest, shares + [("treasury", 0)])
    assert budget <= emission and budget * incentives.PPB <= (wash + honest) * (incentives.PPB - recoverable)
    x = budget * wash // (wash + honest)  # the trader's entry (pro_rata rounds down)
    # net, scaled by PPB: −(PPB − ρ)·W + ρ·X with ρ = recoverable (ppb)
    assert -(incentives.PPB - recoverable) * wash + recoverable * x <= 0
