"""Attacks of a rational participant on the incentives (issue 12), each one a test that the rules defeat.

Every test plays the attack with signed calls on an in-process dev chain and checks that the
attacker gains no more than honest participation would give it. Each fails on the rules the
issue measured (emission ∝ S^β per task, u64 scores, slashing of the current bond, copied CIDs,
usage reports by anyone).
"""
import pytest

from runtime.crypto import Keypair
from runtime.executive import InvalidTransaction
from runtime.modules import history, staking, tasks
from tests.attack_scenarios import copy_attack
from tests.runtime_harness import (
    KEYS,
    UNIT,
    RuntimeHarness,
    commit_hash,
    dev_genesis,
    fails_with,
    failures,
    fake_cid,
    model_hash,
    named,
    submit_models,
)

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (KEYS[n] for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))
MALLORY = Keypair.from_dev_name("mallory")      # the attacker's creator account
MAL_T = Keypair.from_dev_name("mallory-t")      # ... its trainer
MAL_V = Keypair.from_dev_name("mallory-v")      # ... its validator
HEARTBEAT = [1, "cpu", 8192]
SPEC = fake_cid("spec")


def attack_genesis(epoch_length=20, **tasks_overrides):
    config = dev_genesis()
    config["modules"]["system"]["epoch_length"] = epoch_length
    config["modules"]["tasks"].update(tasks_overrides)
    config["modules"]["balances"]["accounts"] += [[k.address, 10**15] for k in (MALLORY, MAL_T, MAL_V)]
    return config


@pytest.fixture()
def h():
    return RuntimeHarness(attack_genesis())


@pytest.fixture()
def h1():
    """Emission for tasks of any size (min_validators_for_emission = 1), to isolate the stake rule."""
    return RuntimeHarness(attack_genesis(min_validators_for_emission=1))


def ok(events):
    assert not failures(events), failures(events)
    return events


def bond(h, trainers=(), validators=(), amount=None):
    calls = []
    for key, stake in trainers:
        calls += [(key, "staking", "bond", ["trainer", stake]), (key, "staking", "heartbeat", [HEARTBEAT])]
    for key, stake in validators:
        calls += [(key, "staking", "bond", ["validator", stake]), (key, "staking", "heartbeat", [HEARTBEAT])]
    ok(h.block(*calls))


def params(n_trainers=1, n_validators=1, min_stake=0, windows=(60, 60, 60)):
    return ["char_lm", n_trainers, n_validators, min_stake, *windows]


# ---------------------------------------------------------------- 1. self-dealing tasks


def test_self_dealing_tasks_cannot_take_the_emission(h1):
    """An attacker fills tasks with its own accounts: its emission share ≤ its share of the stake."""
    h = h1
    bond(h, trainers=[(BOB, 20 * UNIT), (CHARLIE, 20 * UNIT)], validators=[(DAVE, 30 * UNIT), (EVE, 30 * UNIT)])
    ok(h.block((ALICE, "tasks", "create", [SPEC, 1000 * UNIT, params(2, 2)])))
    h.block()
    honest_task = tasks.NextTaskId.get(h.ctx().state) - 1
    bond(h, trainers=[(MAL_T, 100 * UNIT)], validators=[(MAL_V, 100 * UNIT)])
    # fencing honest participants off with a huge min_stake is refused ...
    fails_with(h, MALLORY, "tasks", "create", [SPEC, UNIT, params(min_stake=100 * UNIT)], "InvalidParams")
    # ... and one creator cannot take every task slot
    limit = tasks.Limits.get(h.ctx().state).max_tasks_per_creator
    ok(h.block(*[(MALLORY, "tasks", "create", [SPEC, UNIT, params(min_stake=50 * UNIT)])] * limit))
    h.block()  # selection
    fails_with(h, MALLORY, "tasks", "create", [SPEC, UNIT, params(min_stake=50 * UNIT)], "TooManyActiveTasks")
    attack_tasks = [t for t in tasks.Active.get(h.ctx().state) if t != honest_task]
    assert len(attack_tasks) == limit
    emitted: dict[int, int] = {}
    for _ in range(40):
        for e in named(h.block(), "rewards", "EpochEmission"):
            emitted[e.data[0]] = emitted.get(e.data[0], 0) + e.data[1]
        if emitted:
            break
    ctx = h.ctx()
    for t in attack_tasks:
        members = [a for a, _ in tasks.get_task(ctx, t).trainers + tasks.get_task(ctx, t).validators]
        assert members == [MAL_T.public_key, MAL_V.public_key]
    attacker, total = sum(emitted.get(t, 0) for t in attack_tasks), sum(emitted.values())
    # the attacker holds 200 of the 300 ARENA of (deduplicated) stake in play: at most 2/3 of the emission
    assert attacker * 300 <= total * 200
    assert emitted[honest_task] * 300 >= total * 100 - 300
    ok(h.block((ALICE, "tasks", "create", [SPEC, 1000 * UNIT, params(1, 1)])))  # honest creators still can


def test_one_bond_weighs_the_same_in_one_task_or_many(h1):
    """The emission weight of an account's stake does not grow with the number of tasks it sits in."""
    h = h1
    bond(h, trainers=[(MAL_T, 100 * UNIT)], validators=[(MAL_V, 100 * UNIT)])
    ok(h.block((MALLORY, "tasks", "create", [SPEC, UNIT, params()])))
    h.block()
    one = sum(w for _, w in tasks.emission_weights(h.ctx()))
    ok(h.block(*[(MALLORY, "tasks", "create", [SPEC, UNIT, params()])] * 3))
    h.block()
    four = tasks.emission_weights(h.ctx())
    assert len(four) == 4 and sum(w for _, w in four) == one == 200 * UNIT


def test_tasks_with_too_few_validators_earn_no_emission(h):
    """Under the dev genesis (3 validators needed) a 1-trainer 1-validator task mints nothing for itself."""
    bond(h, trainers=[(MAL_T, 100 * UNIT)], validators=[(MAL_V, 100 * UNIT)])
    ok(h.block((MALLORY, "tasks", "create", [SPEC, UNIT, params()])))
    h.block()
    assert tasks.emission_weights(h.ctx()) == []
    events = h.empty_blocks(21)
    assert not named(events, "rewards", "EpochEmission")


# ---------------------------------------------------------------- 2. u64 poisoning


def test_scores_above_the_rule_maximum_never_reach_a_block(h):
    bad = [[b"\x01" * 32, 2**64 - 1]]
    with pytest.raises(InvalidTransaction) as info:
        h.check(h.sign(ALICE, "tasks", "reveal_scores", [0, bad, b"s"], 0))
    assert info.value.kind == "BadArguments"
    good = [[b"\x01" * 32, tasks.MAX_SCORE]]
    h.check(h.sign(ALICE, "tasks", "reveal_scores", [0, good, b"s"], 0))


def test_history_counters_saturate_instead_of_aborting(h):
    ctx = h.ctx()
    who = BOB.public_key
    history.add(ctx, who, "trainer", consensus_score_sum=2**64 - 1)
    history.add(ctx, who, "trainer", consensus_score_sum=2**64 - 1, rewards=2**70)
    history.note_outcome(ctx, who, "trainer", 0, 1, 2**64 + 5, 0, 2**65)
    record = history.record(ctx, who, "trainer")
    assert record["consensus_score_sum"] == 2**64 - 1 and record["rewards"] == 2**64 - 1
    assert history.recent(ctx, who, "trainer")[-1][2] == 2**64 - 1


# ---------------------------------------------------------------- 3. slashing dodged


def _validator_task(h, validator):
    bond(h, trainers=[(BOB, 20 * UNIT)])
    ok(h.block((ALICE, "tasks", "create", [SPEC, 100 * UNIT, params(1, 1, windows=(5, 5, 5))])))
    h.block()
    task_id = tasks.NextTaskId.get(h.ctx().state) - 1
    assert [v for v, _ in tasks.get_task(h.ctx(), task_id).validators] == [validator.public_key]
    return task_id


def test_selected_validator_cannot_unbond_its_way_out_of_a_slash(h):
    bond(h, validators=[(MAL_V, 1000 * UNIT)])
    task_id = _validator_task(h, MAL_V)
    fails_with(h, MAL_V, "staking", "unbond", ["validator", 1000 * UNIT], "BondLocked")
    ok(h.block((BOB, "tasks", "start_training", [task_id])))
    submit_models(h, task_id, {BOB: fake_cid("bob-model")})
    h.block()
    scores = [[BOB.public_key, 500]]
    ok(h.block((MAL_V, "tasks", "start_validation", [task_id])))
    ok(h.block((MAL_V, "tasks", "commit_scores", [task_id, commit_hash(task_id, MAL_V.public_key, scores, b"x")])))
    events = h.until(h.number + 15)  # never reveals
    slashed = sum(e.data[2] for e in named(events, "staking", "Slashed"))
    assert slashed == 1000 * UNIT * 20 // 1000  # 2 % of the bond recorded at selection
    assert tasks.get_task(h.ctx(), task_id).status in ("finalized", "failed")
    assert staking.locked(h.ctx(), MAL_V.public_key, "validator") == 0  # released with the task
    ok(h.block((MAL_V, "staking", "unbond", ["validator", 980 * UNIT])))


def test_delegated_stake_is_slashed_like_bonded_stake(h):
    """10 bonded + 990 delegated from the operator's own second account loses what 1,000 bonded loses."""
    bond(h, validators=[(MAL_V, 10 * UNIT)])
    ok(h.block((MALLORY, "staking", "delegate", [MAL_V.public_key, 990 * UNIT])))
    task_id = _validator_task(h, MAL_V)
    ok(h.block((BOB, "tasks", "start_training", [task_id])))
    submit_models(h, task_id, {BOB: fake_cid("bob-model")})
    events = h.until(h.number + 15)  # never commits
    slashed = {(e.data[0], e.data[1]): e.data[2] for e in named(events, "staking", "Slashed")}
    assert slashed == {(MAL_V.public_key, "validator"): 10 * UNIT // 100,
                       (MALLORY.public_key, "delegator"): 990 * UNIT // 100}
    assert staking.delegated_to(h.ctx(), MAL_V.public_key) == 990 * UNIT - 990 * UNIT // 100


def test_undelegating_mid_task_does_not_escape_the_slash(h):
    """A delegator that pulls its 990 ARENA out after its operator was seated still shares the slash."""
    bond(h, validators=[(MAL_V, 10 * UNIT)])
    ok(h.block((MALLORY, "staking", "delegate", [MAL_V.public_key, 990 * UNIT])))
    task_id = _validator_task(h, MAL_V)
    ok(h.block((MALLORY, "staking", "undelegate", [MAL_V.public_key, 990 * UNIT])))
    assert staking.delegated_to(h.ctx(), MAL_V.public_key) == 0
    ok(h.block((BOB, "tasks", "start_training", [task_id])))
    submit_models(h, task_id, {BOB: fake_cid("bob-model")})
    events = h.until(h.number + 15)  # never commits
    assert tasks.get_task(h.ctx(), task_id).status == "failed"  # nothing revealed; the absentee is still slashed
    slashed = {(e.data[0], e.data[1]): e.data[2] for e in named(events, "staking", "Slashed")}
    assert slashed == {(MAL_V.public_key, "validator"): 10 * UNIT // 100,
                       (MALLORY.public_key, "delegator"): 990 * UNIT // 100}
    assert sum(a for _, a in staking.Unlocking.get(h.ctx().state, MALLORY.public_key)) == 990 * UNIT - 990 * UNIT // 100


def test_undelegated_stake_is_held_until_the_operators_tasks_close():
    """With an unbonding period shorter than the task, the undelegated chunk is released only after it closes."""
    config = attack_genesis()
    config["modules"]["staking"]["unbonding_period"] = 1
    h = RuntimeHarness(config)
    bond(h, validators=[(MAL_V, 10 * UNIT)])
    ok(h.block((MALLORY, "staking", "delegate", [MAL_V.public_key, 990 * UNIT])))
    task_id = _validator_task(h, MAL_V)
    events = h.block((MALLORY, "staking", "undelegate", [MAL_V.public_key, 990 * UNIT]))
    (left,) = named(events, "staking", "Undelegated")
    task = tasks.get_task(h.ctx(), task_id)
    model_reveal = tasks.Limits.get(h.ctx().state).model_reveal_blocks
    assert left.data[3] > (task.timeline[-1][1] + task.training_blocks + model_reveal + task.commit_blocks
                           + task.reveal_blocks)
    h.block()
    fails_with(h, MALLORY, "staking", "withdraw_unbonded", [], "NothingToWithdraw")


# ---------------------------------------------------------------- 4. copied models


def test_a_copied_model_cid_is_refused(h):
    """Two trainers that reveal the same CID: the first reveal owns it, the second is refused."""
    bond(h, trainers=[(BOB, 20 * UNIT), (MAL_T, 200 * UNIT)], validators=[(DAVE, 30 * UNIT)])
    ok(h.block((ALICE, "tasks", "create", [SPEC, 100 * UNIT, params(2, 1)])))
    h.block()
    task_id = tasks.NextTaskId.get(h.ctx().state) - 1
    ok(h.block((BOB, "tasks", "start_training", [task_id]), (MAL_T, "tasks", "start_training", [task_id])))
    honest = fake_cid("bob-original")
    ok(h.block(*[(k, "tasks", "commit_model", [task_id, model_hash(task_id, k.public_key, honest)]) for k in (BOB, MAL_T)]))
    ok(h.block((BOB, "tasks", "submit_model", [task_id, honest])))
    fails_with(h, MAL_T, "tasks", "submit_model", [task_id, honest], "DuplicateModel")
    assert tasks.Submissions.get(h.ctx().state, task_id) == [BOB.public_key]


def test_a_copier_cannot_copy_or_tweak_a_model_it_sees():
    """Models are committed in the training window and revealed after it: no CID is on chain before the
    commit deadline, a commitment is bound to its trainer, and a reveal must match the revealer's own
    commitment. On the old rule (CIDs submitted in the training window) the copier fetched the honest
    model, changed one byte and was paid for the new CID."""
    h = RuntimeHarness(attack_genesis(model_reveal_blocks=10))
    bond(h, trainers=[(BOB, 20 * UNIT), (CHARLIE, 20 * UNIT), (MAL_T, 200 * UNIT)], validators=[(DAVE, 30 * UNIT)])
    ok(h.block((ALICE, "tasks", "create", [SPEC, 100 * UNIT, params(3, 1, windows=(8, 8, 8))])))
    h.block()
    task_id = tasks.NextTaskId.get(h.ctx().state) - 1
    ok(h.block(*[(k, "tasks", "start_training", [task_id]) for k in (BOB, CHARLIE, MAL_T)]))
    honest, tweaked = fake_cid("bob-original"), fake_cid("bob-original, one byte changed")
    events = ok(h.block((BOB, "tasks", "commit_model", [task_id, model_hash(task_id, BOB.public_key, honest)])))
    assert not [e for e in events if honest in e.data]
    bob_commitment = tasks.Work.get(h.ctx().state, [task_id, BOB.public_key]).commitment
    # all the copier sees before the deadline is Bob's commitment: it copies those bytes (charlie never commits)
    ok(h.block((MAL_T, "tasks", "commit_model", [task_id, bob_commitment])))
    assert tasks.Work.get(h.ctx().state, [task_id, BOB.public_key]).model_cid == ""
    assert tasks.Submissions.get(h.ctx().state, task_id) == []
    fails_with(h, MAL_T, "tasks", "submit_model", [task_id, honest], "WrongPhase")  # no reveal in the training window
    h.until(tasks.get_task(h.ctx(), task_id).phase_end)
    assert tasks.get_task(h.ctx(), task_id).status == "model_reveal"
    fails_with(h, CHARLIE, "tasks", "submit_model", [task_id, fake_cid("charlie")], "ModelNotCommitted")
    fails_with(h, MAL_T, "tasks", "commit_model", [task_id, model_hash(task_id, MAL_T.public_key, honest)],
               "WrongPhase")
    # Bob's commitment is bound to Bob: revealed by another trainer it does not match
    fails_with(h, MAL_T, "tasks", "submit_model", [task_id, honest], "CommitmentMismatch")
    ok(h.block((BOB, "tasks", "submit_model", [task_id, honest])))
    # the honest CID is public now, but the copier cannot reveal a tweak of it either
    fails_with(h, MAL_T, "tasks", "submit_model", [task_id, tweaked], "CommitmentMismatch")
    h.until(tasks.get_task(h.ctx(), task_id).phase_end)
    assert tasks.get_task(h.ctx(), task_id).status == "validation"
    fails_with(h, MAL_T, "tasks", "submit_model", [task_id, tweaked], "WrongPhase")
    assert tasks.Submissions.get(h.ctx().state, task_id) == [BOB.public_key]


# ---------------------------------------------------------------- 5, 6. capture of a task's vote, lazy validators


def run_task(h, trainers, scores_by_validator):
    """Create a task for exactly these participants, train, commit and reveal; returns (board, validator results)."""
    validators = list(scores_by_validator)
    ok(h.block((ALICE, "tasks", "create", [SPEC, 100 * UNIT, params(len(trainers), len(validators), windows=(5, 5, 5))])))
    h.block()
    task_id = tasks.NextTaskId.get(h.ctx().state) - 1
    t = tasks.get_task(h.ctx(), task_id)
    assert sorted(a for a, _ in t.trainers) == sorted(k.public_key for k in trainers)
    assert sorted(a for a, _ in t.validators) == sorted(k.public_key for k in validators)
    ok(h.block(*[(k, "tasks", "start_training", [task_id]) for k in trainers]))
    submit_models(h, task_id, {k: fake_cid(f"model-{k.address}") for k in trainers})
    h.block()
    reveal = {k: (sorted([[t.public_key, s] for t, s in row.items()]), b"salt") for k, row in scores_by_validator.items()}
    ok(h.block(*[(k, "tasks", "start_validation", [task_id]) for k in validators]))
    ok(h.block(*[(k, "tasks", "commit_scores", [task_id, commit_hash(task_id, k.public_key, s, salt)])
                 for k, (s, salt) in reveal.items()]))
    h.block()
    ok(h.block(*[(k, "tasks", "reveal_scores", [task_id, s, salt]) for k, (s, salt) in reveal.items()]))
    h.block()
    assert tasks.get_task(h.ctx(), task_id).status == "finalized"
    results = {v: (agreement, reward) for v, agreement, reward in tasks.ValidatorResults.get(h.ctx().state, task_id)}
    return tasks.Leaderboard.get(h.ctx().state, task_id), results


def test_one_heavy_validator_cannot_decide_a_task(h):
    """94 % of a task's validation stake in one account: it still cannot rank its friend's bad model first."""
    bond(h, trainers=[(BOB, 20 * UNIT), (MAL_T, 20 * UNIT)],
         validators=[(DAVE, 30 * UNIT), (EVE, 30 * UNIT), (MAL_V, 1000 * UNIT)])
    honest = {BOB: 900, MAL_T: 500}
    board, results = run_task(h, [BOB, MAL_T], {DAVE: honest, EVE: honest, MAL_V: {BOB: 0, MAL_T: tasks.MAX_SCORE}})
    assert board[0][0] == BOB.public_key and [row[2] for row in board] == [900, 500]
    assert results[MAL_V.public_key][1] == 0  # ordered the models backwards: no pay
    assert results[DAVE.public_key][1] > 0


def test_a_49_percent_bloc_far_from_consensus_loses_its_vote(h):
    """Two colluding validators with 49 % of the vote score the best model 0 and their friend the maximum.

    With the plain median the bloc makes each model's consensus the honest extreme on its side:
    the best model gets its lowest honest score (860) and falls behind the runner-up (870). The
    refined pass discounts validators far from the first consensus, so the honest median decides.
    """
    bloc = [MAL_V, MALLORY]
    bond(h, trainers=[(BOB, 20 * UNIT), (CHARLIE, 20 * UNIT), (MAL_T, 20 * UNIT)],
         validators=[(DAVE, 17 * UNIT), (EVE, 17 * UNIT), (FERDIE, 17 * UNIT)] + [(k, 24_500_000_000) for k in bloc])
    honest = [{BOB: 900, CHARLIE: 880, MAL_T: 500}, {BOB: 860, CHARLIE: 875, MAL_T: 520},
              {BOB: 910, CHARLIE: 870, MAL_T: 510}]
    push = {BOB: 0, CHARLIE: 0, MAL_T: tasks.MAX_SCORE}
    board, results = run_task(h, [BOB, CHARLIE, MAL_T], {DAVE: honest[0], EVE: honest[1], FERDIE: honest[2],
                                                         MAL_V: push, MALLORY: push})
    assert [row[0] for row in board] == [BOB.public_key, CHARLIE.public_key, MAL_T.public_key]
    assert [row[2] for row in board] == [900, 875, 510]  # the honest medians
    assert results[MAL_V.public_key][1] == 0


def test_a_lazy_validator_earns_at_most_half_an_honest_one(h):
    """A validator that gives every model the same score, without evaluating, is not paid for it."""
    bond(h, trainers=[(BOB, 20 * UNIT), (CHARLIE, 20 * UNIT), (MAL_T, 20 * UNIT)],
         validators=[(DAVE, 30 * UNIT), (EVE, 30 * UNIT), (MAL_V, 30 * UNIT)])
    _, results = run_task(h, [BOB, CHARLIE, MAL_T], {
        DAVE: {BOB: 900, CHARLIE: 600, MAL_T: 300},
        EVE: {BOB: 850, CHARLIE: 650, MAL_T: 350},
        MAL_V: {BOB: 700, CHARLIE: 700, MAL_T: 700},
    })
    honest = min(results[DAVE.public_key][1], results[EVE.public_key][1])
    assert 2 * results[MAL_V.public_key][1] <= honest


# ---------------------------------------------------------------- 7. selection grinding


def test_withholding_selection_blocks_does_not_raise_the_authors_seat_rate():
    """The author of every selection block withholds it (up to 4 times) unless its trainer is seated.

    Five trainers of equal stake share one seat per task: honest odds 1 in 5. Each withheld
    block hands the draw to a later slot with a new reveal; under a one-shot beacon draw that
    lifts the attacker's rate to 1 − 0.8^5 ≈ 0.67. Seat credits make the beacon decide only
    when an account sits, not how often: over 20 tasks the attacker sits 20 / 5 times, ± one.
    """
    trainers = [MAL_T] + [Keypair.from_dev_name(f"trainer-{i}") for i in range(4)]
    config = attack_genesis(epoch_length=10_000, max_tasks_per_creator=100)
    config["modules"]["balances"]["accounts"] += [[k.address, 10**15] for k in trainers[1:]]
    h = RuntimeHarness(config)
    bond(h, trainers=[(k, 20 * UNIT) for k in trainers], validators=[(DAVE, 30 * UNIT)])
    honest_authors = [KEYS[n] for n in ("alice", "bob", "charlie", "dave")]
    seated = 0
    tasks_run = 20
    for round_ in range(tasks_run):
        ok(h.block((ALICE, "tasks", "create", [SPEC, UNIT, params(windows=(200, 5, 5))])))
        before = h.snapshot()
        for attempt in range(5):
            if attempt:
                h.restore(before)  # the block is withheld: a later slot's author draws again
            author = MALLORY if attempt == 0 else honest_authors[(round_ + attempt) % 4]
            selected = named(h.block(author=author, skip_slots=attempt), "tasks", "Selected")
            assert len(selected) == 1
            if MAL_T.public_key in selected[0].data[1]:
                seated += 1
                break
    assert seated <= tasks_run // 5 + 1, f"the attacker sat in {seated} of {tasks_run} tasks"


# ---------------------------------------------------------------- 8. sybil splitting


def _seats_over_tasks(attacker_bonds, tasks_run=25):
    """Seats the attacker's trainer accounts win in `tasks_run` one-seat tasks beside 4 honest 100 ARENA trainers."""
    mine = [Keypair.from_dev_name(f"sybil-{i}") for i in range(len(attacker_bonds))]
    honest = [Keypair.from_dev_name(f"honest-{i}") for i in range(4)]
    config = attack_genesis(epoch_length=10_000, max_tasks_per_creator=100)
    config["modules"]["balances"]["accounts"] += [[k.address, 10**15] for k in mine + honest]
    h = RuntimeHarness(config)
    bond(h, trainers=list(zip(mine, attacker_bonds)) + [(k, 100 * UNIT) for k in honest], validators=[(DAVE, 30 * UNIT)])
    seats = 0
    for _ in range(tasks_run):
        ok(h.block((ALICE, "tasks", "create", [SPEC, UNIT, params(windows=(200, 5, 5))])))
        (selected,) = named(h.block(), "tasks", "Selected")
        seats += sum(1 for k in mine if k.public_key in selected.data[1])
    return seats


def test_splitting_a_stake_over_accounts_wins_no_more_seats():
    """100 ARENA in one account or in five of 20, beside 400 honest: a fifth of the seats either way."""
    single = _seats_over_tasks([100 * UNIT])
    split = _seats_over_tasks([20 * UNIT] * 5)
    fair = 25 // 5  # the attacker holds a fifth of the trainer stake
    assert split <= fair + 1, f"five accounts sat {split} times in 25 tasks (one account: {single})"
    assert abs(single - fair) <= 1


def test_a_fresh_key_does_not_wipe_a_bad_record(h):
    """Reputation is earned: a new account starts no better than one that missed every deadline."""
    bond(h, trainers=[(MAL_T, 20 * UNIT)], validators=[(DAVE, 30 * UNIT)])
    for _ in range(2):
        ok(h.block((ALICE, "tasks", "create", [SPEC, UNIT, params(windows=(2, 2, 2))])))
        h.empty_blocks(4)  # selected, never submits: the task fails, the deadline is recorded
    ctx = h.ctx()
    assert history.record(ctx, MAL_T.public_key, "trainer")["missed_deadlines"] == 2
    bad = history.reputation_ppb(ctx, MAL_T.public_key, "trainer")
    fresh = history.reputation_ppb(ctx, MALLORY.public_key, "trainer")
    assert fresh <= bad
    # nor does a fresh key jump the seat queue: it starts at the lowest credit among its rivals
    credit = tasks.SeatCredit.get(ctx.state, ["trainer", MAL_T.public_key])
    assert tasks.seat_credits(ctx, "trainer", [MAL_T.public_key, MALLORY.public_key])[1] <= credit


# ---------------------------------------------------------------- the pure pieces of 5 and 6


def test_capped_weights_keep_every_voter_under_the_share():
    from runtime.incentives import PPB, capped_weights
    third = PPB // 3
    assert capped_weights([1000, 30, 30], third) == [30, 30, 30]          # too few voters: one vote each
    assert capped_weights([30, 30, 30], third) == [30, 30, 30]
    weights = capped_weights([1000, 40, 40, 40, 40], third)
    assert weights[1:] == [40, 40, 40, 40] and 3 * weights[0] <= sum(weights)
    assert capped_weights([500, 10, 0], PPB) == [500, 10, 0]
    assert capped_weights([0, 0], third) == [0, 0]


def test_order_agreement_pays_for_the_order_not_for_guessing():
    from runtime.incentives import PPB, order_agreement_ppb
    consensus = [900, 600, 300]
    assert order_agreement_ppb(consensus, [880, 610, 290]) == PPB
    assert order_agreement_ppb(consensus, [700, 700, 700]) == 0
    assert order_agreement_ppb(consensus, [300, 600, 900]) == 0
    # one swapped pair among near-equal models costs little
    assert order_agreement_ppb([900, 600, 590], [900, 580, 600]) > 9 * PPB // 10
    assert order_agreement_ppb([500], [1]) == PPB


def test_the_refined_consensus_stays_inside_the_honest_range():
    """51 % honest (noisy) against a 49 % bloc scoring anything: every consensus lies between honest scores."""
    import random

    from runtime.incentives import PPB, aggregate_scores
    rng = random.Random(5)
    trainers = [bytes([100 + i]) * 32 for i in range(4)]
    validators = [bytes([1 + i]) * 32 for i in range(5)]
    stakes = list(zip(validators, [245, 245, 170, 170, 170]))
    for _ in range(600):
        quality = [rng.uniform(0.3, 0.9) for _ in trainers]
        noise = rng.choice([0.01, 0.02, 0.05, 0.1])
        honest = [[int(max(0.0, q + rng.gauss(0, noise)) * PPB) for q in quality] for _ in range(3)]
        if rng.random() < 0.3:
            bloc = [[rng.randrange(PPB) for _ in trainers] for _ in range(2)]
        else:  # hug the honest extremes, just outside them
            step = int(rng.choice([0.005, 0.01, 0.02, 0.05, 0.1]) * PPB)
            bloc = [[min(PPB, max(h[t] for h in honest) + step) if rng.random() < 0.5
                     else max(0, min(h[t] for h in honest) - step) for t in range(4)] for _ in range(2)]
        reveals = [(v, list(zip(trainers, row))) for v, row in zip(validators, bloc + honest)]
        result = aggregate_scores(stakes, reveals, trainers, max_share_ppb=PPB // 3, refine=True)
        for t, (_, agreed) in enumerate(result.consensus):
            assert min(h[t] for h in honest) <= agreed <= max(h[t] for h in honest)


def test_the_copy_attack_pays_the_copier_nothing():
    """bench/attacks.py row 4, played on the runtime: every copy a copier with 10× the stake tries is refused."""
    copy = copy_attack()
    assert list(copy.refused.values()) == ["", "CommitmentMismatch", "CommitmentMismatch", "WrongPhase"]
    assert copy.copier_pay == 0 < copy.original_pay
