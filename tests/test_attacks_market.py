"""Marketplace attacks of issue 12: wash-traded usage reports and one escrow promised to several hosts."""
import pytest

from runtime.modules import marketplace
from tests.attack_scenarios import wash_trade
from tests.runtime_harness import UNIT, RuntimeHarness, fails_with, named
from tests.test_marketplace import (
    ENDPOINT,
    FERDIE,
    GRACE,
    HEIDI,
    PRICE,
    finish_task,
    market_genesis,
    ok,
    period,
    report,
    voucher,
)


@pytest.fixture()
def h():
    return RuntimeHarness(market_genesis(usage_emission_per_period=UNIT))


def test_usage_is_reported_only_by_a_registered_bonded_host(h):
    """Heidi redeems vouchers signed by her own second account (grace) to claim usage emission."""
    cid = finish_task(h)
    ok(h.block((FERDIE, "staking", "bond", ["host", 10 * UNIT]), (GRACE, "marketplace", "deposit", [UNIT])))
    ok(h.block((FERDIE, "marketplace", "register_host", [cid, ENDPOINT, PRICE])))
    wash = voucher(h, 50, host=HEIDI)
    # no bond, never registered
    fails_with(h, HEIDI, "marketplace", "report_usage", [cid, period(h), [wash]], "NotRegistered")
    # bonded but never registered for this model
    ok(h.block((HEIDI, "staking", "bond", ["host", 10 * UNIT])))
    fails_with(h, HEIDI, "marketplace", "report_usage", [cid, period(h), [wash]], "NotRegistered")
    # registered, then unbonded: no longer a host
    ok(h.block((HEIDI, "marketplace", "register_host", [cid, ENDPOINT, PRICE])))
    ok(h.block((HEIDI, "staking", "unbond", ["host", 10 * UNIT])))
    fails_with(h, HEIDI, "marketplace", "report_usage", [cid, period(h), [wash]], "NotAHost")
    # the honest host still redeems
    events = ok(report(h, cid, [voucher(h, 3)]))
    assert named(events, "marketplace", "UsageReported")[0].data[5] == 3 * PRICE


def test_a_bonded_host_loses_by_paying_itself():
    """Wash trade by a registered, bonded host that is also the model's trainer and every validator of its task.

    It pays 0.1 ARENA to itself from a second account in a period where an honest host of the same
    model serves 0.1 ARENA, with 1 ARENA of usage emission. On the old rule (the whole emission split
    ∝ revenue) it gained +0.24 ARENA, +2.4 per ARENA paid, and halved the honest host's emission;
    with the emission capped at the treasury's tenth of the revenue it loses u² = 1 % of what it
    pays (fees aside), and the honest host's emission is what it would be without the trade.
    """
    trade = wash_trade(wash=UNIT // 10, honest_queries=100, emission=UNIT)
    assert trade.gain <= 0
    assert trade.gain <= -(trade.paid // 100) + 2        # u² of it, give or take rounding
    assert trade.honest_emission == trade.honest_emission_alone == trade.honest_revenue // 10
    assert trade.minted <= (trade.paid + trade.honest_revenue) // 10


def test_a_channel_pays_only_its_host(h):
    """0.99 ARENA locked for ferdie: heidi's voucher for the whole amount takes none of it."""
    cid = finish_task(h)
    amount = 99 * UNIT // 100
    ok(h.block((FERDIE, "staking", "bond", ["host", 10 * UNIT]), (HEIDI, "staking", "bond", ["host", 10 * UNIT]),
               (GRACE, "marketplace", "deposit_for", [FERDIE.public_key, amount])))
    ok(h.block((FERDIE, "marketplace", "register_host", [cid, ENDPOINT, PRICE]),
               (HEIDI, "marketplace", "register_host", [cid, ENDPOINT, PRICE])))
    assert marketplace.channel_of(h.ctx(), GRACE.public_key, FERDIE.public_key)[0] == amount
    events = ok(report(h, cid, [voucher(h, 1, host=HEIDI, amount=amount)], host=HEIDI))
    assert named(events, "marketplace", "VoucherRedeemed")[0].data[4:] == [0, amount]  # paid 0, shortfall all
    events = ok(report(h, cid, [voucher(h, 1, amount=amount)]))
    assert named(events, "marketplace", "VoucherRedeemed")[0].data[4:] == [amount, 0]
    assert marketplace.channel_of(h.ctx(), GRACE.public_key, FERDIE.public_key) == [0, 0, 0]
    assert h.free(marketplace.POOL_ACCOUNT) == 0


def test_a_channel_withdraws_only_after_the_delay(h):
    ok(h.block((GRACE, "marketplace", "deposit_for", [FERDIE.public_key, UNIT])))
    fails_with(h, GRACE, "marketplace", "request_channel_withdraw", [FERDIE.public_key, 2 * UNIT], "InsufficientEscrow")
    ok(h.block((GRACE, "marketplace", "request_channel_withdraw", [FERDIE.public_key, UNIT])))
    fails_with(h, GRACE, "marketplace", "withdraw_channel", [FERDIE.public_key], "WithdrawDelay")
    h.until(marketplace.channel_of(h.ctx(), GRACE.public_key, FERDIE.public_key)[2])
    before = h.free(GRACE.public_key)
    events = ok(h.block((GRACE, "marketplace", "withdraw_channel", [FERDIE.public_key])))
    assert named(events, "marketplace", "Withdrawn")[0].data[1] == UNIT
    assert h.free(GRACE.public_key) > before
    assert h.free(marketplace.POOL_ACCOUNT) == 0
