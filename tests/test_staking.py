"""Staking: bonds per role, minimums, unbonding, delegation, slashing, heartbeats, bad input."""
import pytest

from runtime.modules import balances, history, staking, treasury
from tests.runtime_harness import KEYS, UNIT, RuntimeHarness, fails_with, failures, named

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (KEYS[n] for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))


@pytest.fixture()
def h():
    return RuntimeHarness()


def test_genesis_authorities_are_bonded(h):
    ctx = h.ctx()
    members = staking.role_members(ctx, "authority")
    assert sorted(members) == sorted(KEYS[n].public_key for n in ("alice", "bob", "charlie", "dave"))
    assert staking.bonded(ctx, ALICE.public_key, "authority") == 1000 * UNIT
    assert h.reserved(ALICE.public_key) == 1000 * UNIT
    assert [c[0] for c in staking.authority_candidates(ctx)] == members


def test_bond_unbond_withdraw(h):
    before = h.free(EVE.public_key)
    events = h.block((EVE, "staking", "bond", ["validator", 50 * UNIT]))
    assert not failures(events)
    assert named(events, "staking", "Bonded")[0].data == [EVE.public_key, "validator", 50 * UNIT, 50 * UNIT]
    assert h.reserved(EVE.public_key) == 50 * UNIT
    fee = before - 50 * UNIT - h.free(EVE.public_key)
    assert 0 < fee < UNIT
    events = h.block((EVE, "staking", "unbond", ["validator", 50 * UNIT]))
    assert not failures(events)
    release = named(events, "staking", "Unbonded")[0].data[3]
    assert release == h.number + staking.unbonding_period(h.ctx())
    assert staking.role_members(h.ctx(), "validator") == []
    assert h.reserved(EVE.public_key) == 50 * UNIT  # still locked while unbonding
    fails_with(h, EVE, "staking", "withdraw_unbonded", [], "NothingToWithdraw")
    h.until(release)
    events = h.block((EVE, "staking", "withdraw_unbonded", []))
    assert named(events, "staking", "Withdrawn")[0].data == [EVE.public_key, 50 * UNIT]
    assert h.reserved(EVE.public_key) == 0


def test_bad_bonds_fail_without_state_change(h):
    assert "at least" in fails_with(h, EVE, "staking", "bond", ["trainer", 1 * UNIT], "BelowMinimum").message
    fails_with(h, EVE, "staking", "bond", ["trainer", 0], "ZeroAmount")
    fails_with(h, EVE, "staking", "bond", ["trainer", 10**18], "InsufficientBalance")
    fails_with(h, EVE, "staking", "unbond", ["trainer", 1], "NotBonded")
    h.block((EVE, "staking", "bond", ["trainer", 20 * UNIT]))
    fails_with(h, EVE, "staking", "unbond", ["trainer", 21 * UNIT], "InsufficientBond")
    fails_with(h, EVE, "staking", "unbond", ["trainer", 15 * UNIT], "BelowMinimum")  # 5 would remain


def test_bad_arguments_are_rejected_before_inclusion(h):
    from runtime.executive import InvalidTransaction
    for args in (["miner", UNIT], ["trainer", -1], [b"trainer", UNIT]):
        xt = h.sign(EVE, "staking", "bond", args, 0)
        with pytest.raises(InvalidTransaction) as info:
            h.check(xt)
        assert info.value.kind == "BadArguments"
    xt = h.sign(EVE, "staking", "heartbeat", [[2, "cpu", 10]], 0)
    with pytest.raises(InvalidTransaction):
        h.check(xt)


def test_delegation(h):
    fails_with(h, FERDIE, "staking", "delegate", [EVE.public_key, 5 * UNIT], "NotARoleAccount")
    fails_with(h, FERDIE, "staking", "delegate", [FERDIE.public_key, 5 * UNIT], "SelfDelegation")
    h.block((EVE, "staking", "bond", ["trainer", 20 * UNIT]))
    events = h.block((FERDIE, "staking", "delegate", [EVE.public_key, 5 * UNIT]))
    assert not failures(events)
    ctx = h.ctx()
    assert staking.delegated_to(ctx, EVE.public_key) == 5 * UNIT
    assert h.reserved(FERDIE.public_key) == 5 * UNIT
    fails_with(h, FERDIE, "staking", "undelegate", [EVE.public_key, 6 * UNIT], "InsufficientDelegation")
    events = h.block((FERDIE, "staking", "undelegate", [EVE.public_key, 5 * UNIT]))
    assert not failures(events)
    assert staking.delegated_to(h.ctx(), EVE.public_key) == 0
    assert staking.Unlocking.get(h.ctx().state, FERDIE.public_key)[0][1] == 5 * UNIT


def test_heartbeat(h):
    fails_with(h, EVE, "staking", "heartbeat", [[1, "cpu", 4096]], "NotBonded")
    h.block((EVE, "staking", "bond", ["trainer", 20 * UNIT]))
    events = h.block((EVE, "staking", "heartbeat", [[1, "cuda:H100", 81920]]))
    assert not failures(events)
    ctx = h.ctx()
    assert staking.heartbeat_of(ctx, EVE.public_key)[2:] == [1, "cuda:H100", 81920]
    assert staking.is_live(ctx, EVE.public_key)
    h.until(45)  # two epochs later (epoch length 20): stale
    assert not staking.is_live(h.ctx(), EVE.public_key)


def test_slash_splits_between_treasury_and_burn(h):
    h.block((EVE, "staking", "bond", ["validator", 100 * UNIT]))
    ctx = h.ctx()
    issuance = balances.TotalIssuance.get(ctx.state)
    pot = treasury.pot(ctx)
    taken = staking.slash(ctx, EVE.public_key, "validator", 10 * UNIT, "test")
    assert taken == 10 * UNIT
    assert staking.bonded(ctx, EVE.public_key, "validator") == 90 * UNIT
    assert balances.reserved_balance(ctx, EVE.public_key) == 90 * UNIT
    share = staking.Params.get(ctx.state).slash_treasury_ppb
    to_treasury = taken * share // 10**9
    assert treasury.pot(ctx) - pot == to_treasury
    assert issuance - balances.TotalIssuance.get(ctx.state) == taken - to_treasury
    assert history.record(ctx, EVE.public_key, "validator")["slashed"] == taken
    # never more than bonded
    assert staking.slash(ctx, EVE.public_key, "validator", 10**18, "test") == 90 * UNIT
    assert staking.role_members(ctx, "validator") == []


def test_session_reads_and_slashes_authority_stake_through_staking(h):
    """The authority set at an epoch start is the top bonded stake, and an equivocation slashes the bond."""
    from runtime.modules import session
    from runtime.types import Header
    h.block((EVE, "staking", "bond", ["authority", 2000 * UNIT]))
    events = h.until(system_epoch_start(h))
    new_sets = named(events, "session", "NewAuthorities")
    assert new_sets and EVE.public_key in [a for a, _ in new_sets[-1].data[1]]
    assert session.stake_of(h.ctx(), EVE.public_key) == 2000 * UNIT

    def sealed(parent: bytes) -> bytes:
        header = Header(parent, 5, 5, 0, EVE.public_key, bytes(64), bytes(32), bytes(32))
        return header.with_seal(EVE.sign(header.signing_payload())).encode()

    free = h.free(EVE.public_key)
    events = h.block((ALICE, "session", "report_equivocation", [session.KIND_BLOCK, sealed(b"a" * 32), sealed(b"b" * 32)]))
    assert not failures(events), failures(events)
    fraction = session.Params.get(h.ctx().state).slash_ppb
    assert named(events, "session", "EquivocationSlashed")[0].data[3] == 2000 * UNIT * fraction // 10**9
    assert staking.bonded(h.ctx(), EVE.public_key, "authority") == 2000 * UNIT - 2000 * UNIT * fraction // 10**9
    assert h.free(EVE.public_key) == free  # the bond pays, not the free balance


def system_epoch_start(h) -> int:
    from runtime.modules import system
    length = system.epoch_length(h.ctx())
    return (h.number // length + 1) * length
