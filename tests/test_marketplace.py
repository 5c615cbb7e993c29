"""Marketplace: hosts, escrow, voucher redemption and the usage split, in process, with every bad input."""
import pytest

from node.offchain.vouchers import Voucher, sign_voucher
from runtime.crypto import Keypair
from runtime.modules import balances, marketplace, tasks, treasury
from tests.runtime_harness import (
    KEYS,
    UNIT,
    RuntimeHarness,
    commit_hash,
    dev_genesis,
    fails_with,
    failures,
    fake_cid,
    named,
    submit_models,
)

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (KEYS[n] for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))
GRACE = Keypair.from_dev_name("grace")    # a user
HEIDI = Keypair.from_dev_name("heidi")    # a second host
HEARTBEAT = [1, "cpu", 8192]
PRICE = 1_000_003                         # odd, so the split has rounding remainders
ENDPOINT = "http://127.0.0.1:8100"
PERIOD = 5


def market_genesis(**overrides):
    """The dev genesis with 5-block usage periods, a 10-block withdraw delay, funded grace and heidi."""
    config = dev_genesis()
    section = {"period_blocks": PERIOD, "withdraw_delay": 2 * PERIOD, "usage_emission_per_period": 0,
               "max_vouchers_per_report": 8}
    section.update(overrides)
    config["modules"]["marketplace"] = {**config["modules"].get("marketplace", {}), **section}
    config["modules"]["balances"]["accounts"] += [[GRACE.address, 10**15], [HEIDI.address, 10**15]]
    return config


def ok(events):
    assert not failures(events), failures(events)
    return events


def finish_task(h: RuntimeHarness) -> str:
    """Test fixture: drive a task to finalization by signed calls (bob's model wins); returns its CID."""
    calls = []
    for key in (BOB, CHARLIE):
        calls += [(key, "staking", "bond", ["trainer", 20 * UNIT]), (key, "staking", "heartbeat", [HEARTBEAT])]
    for key, stake in ((DAVE, 30), (EVE, 10)):
        calls += [(key, "staking", "bond", ["validator", stake * UNIT]), (key, "staking", "heartbeat", [HEARTBEAT])]
    ok(h.block(*calls))
    ok(h.block((ALICE, "tasks", "create", [fake_cid("spec"), 100 * UNIT, ["char_lm", 2, 2, 0, 10, 10, 10]])))
    h.block()
    task_id = tasks.NextTaskId.get(h.ctx().state) - 1
    ok(h.block(*[(k, "tasks", "start_training", [task_id]) for k in (BOB, CHARLIE)]))
    submit_models(h, task_id, {k: fake_cid(f"model-{k.address}") for k in (BOB, CHARLIE)})
    h.block()
    scores = {DAVE: ([[BOB.public_key, 900], [CHARLIE.public_key, 600]], b"d"),
              EVE: ([[BOB.public_key, 700], [CHARLIE.public_key, 650]], b"e")}
    for k in scores:
        scores[k] = (sorted(scores[k][0]), scores[k][1])
    ok(h.block(*[(k, "tasks", "start_validation", [task_id]) for k in scores]))
    ok(h.block(*[(k, "tasks", "commit_scores", [task_id, commit_hash(task_id, k.public_key, s, salt)])
                 for k, (s, salt) in scores.items()]))
    h.block()
    ok(h.block(*[(k, "tasks", "reveal_scores", [task_id, s, salt]) for k, (s, salt) in scores.items()]))
    h.block()
    task = tasks.get_task(h.ctx(), task_id)
    assert task.status == "finalized" and task.top_model == fake_cid(f"model-{BOB.address}")
    return task.top_model


@pytest.fixture()
def h():
    return RuntimeHarness(market_genesis())


@pytest.fixture()
def market(h):
    """A finished task, ferdie bonded and registered as host of its top model, grace with 1 ARENA escrow."""
    cid = finish_task(h)
    ok(h.block((FERDIE, "staking", "bond", ["host", 10 * UNIT]), (GRACE, "marketplace", "deposit", [UNIT])))
    ok(h.block((FERDIE, "marketplace", "register_host", [cid, ENDPOINT, PRICE])))
    return cid


def genesis_hash(h: RuntimeHarness) -> bytes:
    return h.genesis_hash


def voucher(h, queries, nonce=None, user=GRACE, host=FERDIE, model=None, amount=None, chain=None) -> list:
    model = model or tasks.get_task(h.ctx(), 0).top_model
    amount = queries * PRICE if amount is None else amount
    return sign_voucher(user, chain or genesis_hash(h), host.public_key, model, queries, amount,
                        queries if nonce is None else nonce).to_list()


def period(h) -> int:
    return (h.number + 1) // PERIOD  # the period of the next block


def report(h, cid, vouchers, host=FERDIE, at=None):
    return h.block((host, "marketplace", "report_usage", [cid, period(h) if at is None else at, vouchers]))


def pool_matches_escrows(h, users=(GRACE, ALICE, BOB)):
    ctx = h.ctx()
    assert h.free(marketplace.POOL_ACCOUNT) == sum(marketplace.escrow_of(ctx, u.public_key)[0] for u in users)


# ---------------------------------------------------------------- the happy path


def test_paid_usage_splits_by_shares(h, market):
    cid = market
    assert marketplace.Host.get(h.ctx().state, [cid, FERDIE.public_key])[:2] == [ENDPOINT, PRICE]
    assert marketplace.HostsOf.get(h.ctx().state, cid) == [FERDIE.public_key]
    watched = [FERDIE, BOB, DAVE, EVE]
    before = {k.address: h.free(k.public_key) for k in watched}
    treasury_before = treasury.pot(h.ctx())
    events = ok(report(h, cid, [voucher(h, 7)]))
    revenue = 7 * PRICE
    fee = named(events, "system", "ExtrinsicSuccess")[0].data[1]
    gain = {k.address: h.free(k.public_key) - before[k.address] for k in watched}
    assert gain[FERDIE.address] + fee == revenue * 500_000_000 // 10**9
    assert gain[BOB.address] == revenue * 250_000_000 // 10**9
    validators_part = revenue * 150_000_000 // 10**9
    # dave: stake 30 × agreement, eve: stake 10 × agreement; both paid, dave more
    assert 0 < gain[EVE.address] < gain[DAVE.address]
    assert gain[DAVE.address] + gain[EVE.address] <= validators_part
    to_treasury = treasury.pot(h.ctx()) - treasury_before - fee
    assert gain[FERDIE.address] + fee + gain[BOB.address] + gain[DAVE.address] + gain[EVE.address] + to_treasury == revenue
    assert to_treasury >= revenue // 10
    assert marketplace.escrow_of(h.ctx(), GRACE.public_key)[0] == UNIT - revenue
    pool_matches_escrows(h)
    reported = named(events, "marketplace", "UsageReported")[0].data
    assert reported[2:] == [FERDIE.public_key, 1, 7, revenue, 0]
    p = reported[1]
    assert marketplace.Usage.get(h.ctx().state, [cid, p]) == [[FERDIE.public_key, 7, revenue]]
    payouts = marketplace.Payouts.get(h.ctx().state, [cid, p])
    assert sum(a for _, _, a in payouts) == revenue
    assert {party for party, _, _ in payouts} == {"host", "trainer", "validators", "treasury"}
    # a later voucher pays only its increase
    before = h.free(BOB.public_key)
    ok(report(h, cid, [voucher(h, 10)]))
    assert h.free(BOB.public_key) - before == 3 * PRICE * 250_000_000 // 10**9
    assert marketplace.escrow_of(h.ctx(), GRACE.public_key)[0] == UNIT - 10 * PRICE


def test_two_hosts_and_two_users_in_one_report(h, market):
    cid = market
    ok(h.block((HEIDI, "staking", "bond", ["host", 10 * UNIT]), (ALICE, "marketplace", "deposit", [UNIT])))
    ok(h.block((HEIDI, "marketplace", "register_host", [cid, "https://heidi.example/v1", 5])))
    assert marketplace.HostsOf.get(h.ctx().state, cid) == sorted([FERDIE.public_key, HEIDI.public_key])
    events = ok(report(h, cid, [voucher(h, 2), voucher(h, 3, user=ALICE)]))
    assert named(events, "marketplace", "UsageReported")[0].data[5] == 5 * PRICE
    events = ok(report(h, cid, [voucher(h, 4, host=HEIDI, amount=20)], host=HEIDI))
    assert named(events, "marketplace", "UsageReported")[0].data[5] == 20
    pool_matches_escrows(h)


def test_deregistered_host_still_redeems(h, market):
    cid = market
    ok(h.block((FERDIE, "marketplace", "deregister_host", [cid])))
    assert marketplace.HostsOf.get(h.ctx().state, cid) == []
    ok(report(h, cid, [voucher(h, 1)]))
    fails_with(h, FERDIE, "marketplace", "deregister_host", [cid], "NotRegistered")


# ---------------------------------------------------------------- registration errors


def test_register_host_rejections(h, market):
    cid = market
    fails_with(h, HEIDI, "marketplace", "register_host", [cid, ENDPOINT, PRICE], "NotAHost")
    ok(h.block((HEIDI, "staking", "bond", ["host", 10 * UNIT])))
    fails_with(h, HEIDI, "marketplace", "register_host", [fake_cid("nothing"), ENDPOINT, PRICE], "UnknownModel")
    loser = fake_cid(f"model-{CHARLIE.address}")  # submitted but not the top model
    fails_with(h, HEIDI, "marketplace", "register_host", [loser, ENDPOINT, PRICE], "UnknownModel")
    fails_with(h, HEIDI, "marketplace", "register_host", [cid, "ftp://x", PRICE], "InvalidEndpoint")
    fails_with(h, HEIDI, "marketplace", "register_host", [cid, "http://a b", PRICE], "InvalidEndpoint")
    fails_with(h, HEIDI, "marketplace", "register_host", [cid, ENDPOINT, 0], "ZeroPrice")


# ---------------------------------------------------------------- escrow


def test_escrow_deposit_and_delayed_withdraw(h, market):
    fails_with(h, GRACE, "marketplace", "deposit", [0], "ZeroAmount")
    fails_with(h, GRACE, "marketplace", "withdraw", [], "NoWithdrawRequest")
    fails_with(h, GRACE, "marketplace", "request_withdraw", [UNIT + 1], "InsufficientEscrow")
    ok(h.block((GRACE, "marketplace", "request_withdraw", [UNIT])))
    release = marketplace.escrow_of(h.ctx(), GRACE.public_key)[2]
    assert release == h.number + 2 * PERIOD
    fails_with(h, GRACE, "marketplace", "withdraw", [], "WithdrawDelay")
    # during the delay the host still redeems what it accepted: the withdraw pays what is left
    ok(report(h, market, [voucher(h, 3)]))
    h.until(release - 1)
    free = h.free(GRACE.public_key)
    events = ok(h.block((GRACE, "marketplace", "withdraw", [])))
    fee = named(events, "system", "ExtrinsicSuccess")[0].data[1]
    assert h.free(GRACE.public_key) - free + fee == UNIT - 3 * PRICE
    assert marketplace.escrow_of(h.ctx(), GRACE.public_key) == [0, 0, 0]
    pool_matches_escrows(h)


def test_exhausted_and_withdrawn_escrow_pays_only_what_is_there(h, market):
    cid = market
    small = Keypair.from_dev_name("ivan")
    ok(h.block((ALICE, "balances", "transfer", [small.public_key, 10 * UNIT])))
    ok(h.block((small, "marketplace", "deposit", [2 * PRICE])))
    events = ok(report(h, cid, [voucher(h, 5, user=small)]))
    redeemed = named(events, "marketplace", "VoucherRedeemed")[0].data
    assert redeemed[4:] == [2 * PRICE, 3 * PRICE]  # paid, shortfall
    assert marketplace.escrow_of(h.ctx(), small.public_key) == [0, 0, 0]
    # exhausted: a newer voucher pays nothing and nobody is paid
    events = ok(report(h, cid, [voucher(h, 6, user=small)]))
    assert named(events, "marketplace", "UsageReported")[0].data[5:] == [0, PRICE]
    assert not named(events, "marketplace", "UsagePaid")
    # withdrawn: grace takes everything out, then a voucher pays nothing
    ok(h.block((GRACE, "marketplace", "request_withdraw", [UNIT])))
    h.until(marketplace.escrow_of(h.ctx(), GRACE.public_key)[2])
    ok(h.block((GRACE, "marketplace", "withdraw", [])))
    events = ok(report(h, cid, [voucher(h, 1)]))
    assert named(events, "marketplace", "VoucherRedeemed")[0].data[4:] == [0, PRICE]
    assert h.free(marketplace.POOL_ACCOUNT) == 0


# ---------------------------------------------------------------- bad vouchers


def test_forged_vouchers_rejected(h, market):
    cid = market
    good = voucher(h, 3)
    inflated = good[:4] + [good[4] * 10] + good[5:]          # host raises the amount
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [inflated]], "BadVoucherSignature")
    impostor = voucher(h, 3)
    impostor[6] = sign_voucher(HEIDI, genesis_hash(h), FERDIE.public_key, cid, 3, 3 * PRICE, 3).signature
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [impostor]], "BadVoucherSignature")
    other_chain = voucher(h, 3, chain=bytes(32))
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [other_chain]], "BadVoucherSignature")
    # one bad voucher fails the whole report: the good one is not paid either
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [good, inflated]], "BadVoucherSignature")
    assert marketplace.escrow_of(h.ctx(), GRACE.public_key)[0] == UNIT


def test_foreign_vouchers_rejected(h, market):
    cid = market
    ok(h.block((HEIDI, "staking", "bond", ["host", 10 * UNIT])))
    ok(h.block((HEIDI, "marketplace", "register_host", [cid, ENDPOINT, PRICE])))
    for_heidi = voucher(h, 2, host=HEIDI)
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [for_heidi]], "ForeignVoucher")
    wrong_model = voucher(h, 2, model=fake_cid("other"))
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [wrong_model]], "ForeignVoucher")
    fails_with(h, FERDIE, "marketplace", "report_usage", [fake_cid("other"), period(h), [wrong_model]],
               "UnknownModel")


def test_replayed_and_backwards_vouchers_rejected(h, market):
    cid = market
    first = voucher(h, 5)
    ok(report(h, cid, [first]))
    paid_escrow = marketplace.escrow_of(h.ctx(), GRACE.public_key)[0]
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [first]], "StaleVoucher")
    backwards = voucher(h, 4, nonce=9)                          # newer nonce, smaller amount
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [backwards]], "StaleVoucher")
    old_nonce = voucher(h, 9, nonce=5)                          # larger amount, reused nonce
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [old_nonce]], "StaleVoucher")
    same_amount = voucher(h, 6, nonce=6, amount=5 * PRICE)
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [same_amount]], "StaleVoucher")
    assert marketplace.escrow_of(h.ctx(), GRACE.public_key)[0] == paid_escrow
    # the same voucher twice in one report: the second is stale
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), [voucher(h, 8), voucher(h, 8)]],
               "StaleVoucher")
    # older then newer in one report: only the total increase is paid
    ok(report(h, cid, [voucher(h, 6), voucher(h, 8)]))
    assert marketplace.escrow_of(h.ctx(), GRACE.public_key)[0] == UNIT - 8 * PRICE
    assert marketplace.Redeemed.get(h.ctx().state, [GRACE.public_key, FERDIE.public_key, cid]) == [8, 8 * PRICE, 8]


def test_report_limits(h, market):
    cid = market
    now = period(h)
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, now + 1, [voucher(h, 1)]], "WrongPeriod")
    h.empty_blocks(2 * PERIOD)
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h) - 2, [voucher(h, 1)]], "WrongPeriod")
    ok(report(h, cid, [voucher(h, 1)], at=period(h) - 1))       # the previous period is still open
    many = [voucher(h, 2 + i, user=u) for i, u in enumerate([GRACE] * 9)]
    fails_with(h, FERDIE, "marketplace", "report_usage", [cid, period(h), many], "TooManyVouchers")


def test_malformed_report_arguments_are_not_included(h, market):
    from runtime.executive import InvalidTransaction
    from runtime.modules import system
    bad = voucher(h, 1)[:6]
    state = h.state()
    nonce = system.nonce_of(h.ctx(), FERDIE.public_key)
    encoded = h.sign(FERDIE, "marketplace", "report_usage", [market, 0, [bad]], nonce)
    with pytest.raises(InvalidTransaction, match="vouchers"):
        h.runtime.check_extrinsic(state, encoded, h.number + 1)


def test_voucher_wire_round_trip(h, market):
    v = Voucher.from_list(voucher(h, 3))
    assert Voucher.from_hex(v.to_hex()) == v
    assert v.verifies(genesis_hash(h)) and not v.verifies(bytes(32))


# ---------------------------------------------------------------- usage emission


def _two_hosts_report(emission):
    """Ferdie redeems 3 queries and heidi 1 in one period; returns (h, cid, period, events up to its payout)."""
    h = RuntimeHarness(market_genesis(usage_emission_per_period=emission))
    cid = finish_task(h)
    ok(h.block((FERDIE, "staking", "bond", ["host", 10 * UNIT]), (HEIDI, "staking", "bond", ["host", 10 * UNIT]),
               (GRACE, "marketplace", "deposit", [UNIT])))
    ok(h.block((FERDIE, "marketplace", "register_host", [cid, ENDPOINT, PRICE]),
               (HEIDI, "marketplace", "register_host", [cid, ENDPOINT, PRICE])))
    if (h.number + 1) % PERIOD == 0:
        h.block()
    p = period(h)
    ok(h.block((FERDIE, "marketplace", "report_usage", [cid, p, [voucher(h, 3)]]),
               (HEIDI, "marketplace", "report_usage", [cid, p, [voucher(h, 1, host=HEIDI)]])))
    issuance = balances.TotalIssuance.get(h.ctx().state)
    events = h.until((p + 2) * PERIOD)
    minted = sum(e.data[1] for e in named(events, "balances", "Minted"))
    task_minted = sum(e.data[1] for e in named(events, "rewards", "EpochEmission"))
    assert balances.TotalIssuance.get(h.ctx().state) - issuance == minted
    return h, cid, p, events, minted - task_minted


def test_usage_emission_split_by_redeemed_usage():
    # revenue 4 × PRICE: the treasury's tenth of it (400,001) is above the emission, so all of it is minted
    emission = 100_007
    h, cid, p, events, usage_minted = _two_hosts_report(emission)
    emitted = {e.data[2]: e.data[3] for e in named(events, "marketplace", "UsageEmission")}
    assert emitted[FERDIE.public_key] == emission * 3 // 4
    assert emitted[HEIDI.public_key] == emission * 1 // 4
    assert not named(events, "marketplace", "UsageEmissionCapped")
    # every minted unit is the emission (task emission minted at epoch starts aside)
    assert usage_minted == emission
    paid = sum(e.data[4] for e in named(events, "marketplace", "UsagePaid") if e.data[5] == "emission")
    payouts = marketplace.Payouts.get(h.ctx().state, [cid, p])
    assert sum(a for _, _, a in payouts) == 4 * PRICE + sum(emitted.values())
    assert paid <= sum(emitted.values())
    assert h.free(marketplace.POOL_ACCOUNT) == marketplace.escrow_of(h.ctx(), GRACE.public_key)[0]


def test_usage_emission_is_capped_at_the_treasury_share_of_revenue():
    """1 ARENA of emission against 4 × PRICE of revenue: only the treasury's tenth of the revenue is minted."""
    h, cid, p, events, usage_minted = _two_hosts_report(UNIT)
    revenue = 4 * PRICE
    budget = revenue * 100_000_000 // 10**9
    assert named(events, "marketplace", "UsageEmissionCapped")[0].data == [p, revenue, UNIT, budget]
    emitted = {e.data[2]: e.data[3] for e in named(events, "marketplace", "UsageEmission")}
    assert emitted == {FERDIE.public_key: budget * 3 // 4, HEIDI.public_key: budget // 4}
    for host, queries in ((FERDIE, 3), (HEIDI, 1)):
        assert emitted[host.public_key] <= queries * PRICE // 10   # no entry above its own revenue's tenth
    assert usage_minted == budget      # the rest of the period's 1 ARENA is never minted
    payouts = marketplace.Payouts.get(h.ctx().state, [cid, p])
    assert sum(a for _, _, a in payouts) == revenue + sum(emitted.values())  # + the pro-rata dust, minted to the treasury
    assert h.free(marketplace.POOL_ACCOUNT) == marketplace.escrow_of(h.ctx(), GRACE.public_key)[0]


def test_genesis_rejects_bad_parameters():
    for bad in ({"withdraw_delay": PERIOD}, {"usage_shares_ppb": [["host", 900_000_000], ["trainer", 200_000_000]]},
                {"usage_shares_ppb": [["miner", 1]]}, {"max_vouchers_per_report": 0},
                {"usage_emission_per_period": -1}):
        with pytest.raises(ValueError):
            RuntimeHarness(market_genesis(**bad))


def test_genesis_refuses_usage_emission_that_the_cap_would_never_mint():
    no_treasury = [["host", 600_000_000], ["trainer", 250_000_000], ["validators", 150_000_000]]
    with pytest.raises(ValueError, match="give the treasury a share"):
        RuntimeHarness(market_genesis(usage_shares_ppb=no_treasury, usage_emission_per_period=UNIT))
    RuntimeHarness(market_genesis(usage_shares_ppb=no_treasury, usage_emission_per_period=0))
    # an unassigned share is as unrecoverable as the treasury's
    RuntimeHarness(market_genesis(usage_shares_ppb=no_treasury[:2] + [["validators", 100_000_000]],
                                  usage_emission_per_period=UNIT))
