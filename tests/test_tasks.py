"""Tasks: the full life cycle in-process, and every bad call failing with its named error."""
import pytest

from runtime.crypto import Keypair
from runtime.modules import history, rewards, staking, tasks, treasury
from tests.runtime_harness import (
    KEYS,
    UNIT,
    RuntimeHarness,
    commit_hash,
    fails_with,
    failures,
    fake_cid,
    genesis_with,
    model_hash,
    named,
    submit_models,
)

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (KEYS[n] for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))
GRACE = Keypair.from_dev_name("grace")
SPEC = fake_cid("spec")
POOL = 100 * UNIT
HEARTBEAT = [1, "cpu", 8192]


@pytest.fixture()
def h():
    return RuntimeHarness()


def ok(events):
    assert not failures(events), failures(events)
    return events


def setup_roles(h, trainers=(BOB, CHARLIE), validators=(DAVE, EVE)):
    calls = [(ALICE, "balances", "transfer", [GRACE.public_key, 1000 * UNIT])]
    for key in trainers:
        calls += [(key, "staking", "bond", ["trainer", 20 * UNIT]), (key, "staking", "heartbeat", [HEARTBEAT])]
    for key in validators:
        calls += [(key, "staking", "bond", ["validator", 30 * UNIT]), (key, "staking", "heartbeat", [HEARTBEAT])]
    ok(h.block(*calls))


def create(h, n_trainers=2, n_validators=2, windows=(10, 10, 10), creator=ALICE, kind="digits_classifier"):
    params = [kind, n_trainers, n_validators, 0, *windows]
    ok(h.block((creator, "tasks", "create", [SPEC, POOL, params])))
    events = h.block()  # selection happens in this block's on_initialize
    task_id = tasks.NextTaskId.get(h.ctx().state) - 1
    return task_id, events


def task(h, task_id):
    return tasks.get_task(h.ctx(), task_id)


def train(h, task_id, trainers):
    ok(h.block(*[(k, "tasks", "start_training", [task_id]) for k in trainers]))
    submit_models(h, task_id, {k: fake_cid(f"model-{k.address}") for k in trainers})


def scores_for(h, task_id, values):
    """[[trainer, score]] sorted by trainer for {key: score}."""
    return sorted([[k.public_key, s] for k, s in values.items()])


# ---------------------------------------------------------------- the happy path


def test_full_lifecycle(h):
    setup_roles(h)
    ok(h.block((FERDIE, "staking", "delegate", [BOB.public_key, 10 * UNIT])))
    pool_before = h.free(tasks.POOL_ACCOUNT)
    task_id, events = create(h)
    t = task(h, task_id)
    assert t.status == "training"
    assert sorted(a for a, _ in t.trainers) == sorted([BOB.public_key, CHARLIE.public_key])
    assert sorted(a for a, _ in t.validators) == sorted([DAVE.public_key, EVE.public_key])
    assert named(events, "tasks", "Selected")
    assert h.free(tasks.POOL_ACCOUNT) - pool_before == POOL
    assert history.record(h.ctx(), BOB.public_key, "trainer")["tasks_joined"] == 1

    train(h, task_id, [CHARLIE, BOB])  # charlie submits first (same block, earlier index)
    work = tasks.Work.get(h.ctx().state, [task_id, BOB.public_key])
    assert work.started_block > 0 and work.committed_block == work.started_block + 1
    assert work.submitted_block == work.committed_block + 1
    assert work.model_cid == fake_cid(f"model-{BOB.address}")
    assert tasks.Submissions.get(h.ctx().state, task_id) == [CHARLIE.public_key, BOB.public_key]

    h.block()  # all submitted: validation opens at this block's start
    assert task(h, task_id).status == "validation"
    ok(h.block((ALICE, "tasks", "publish_validation_share", [task_id, fake_cid("share")])))
    assert task(h, task_id).validation_share == fake_cid("share")
    # bob's model is better; dave and eve broadly agree
    reveal = {
        DAVE: (scores_for(h, task_id, {BOB: 900, CHARLIE: 600}), b"salt-dave"),
        EVE: (scores_for(h, task_id, {BOB: 800, CHARLIE: 700}), b"salt-eve"),
    }
    ok(h.block(*[(k, "tasks", "start_validation", [task_id]) for k in reveal]))
    ok(h.block(*[(k, "tasks", "commit_scores", [task_id, commit_hash(task_id, k.public_key, s, salt)])
                 for k, (s, salt) in reveal.items()]))
    h.block()
    assert task(h, task_id).status == "reveal"
    ok(h.block(*[(k, "tasks", "reveal_scores", [task_id, s, salt]) for k, (s, salt) in reveal.items()]))
    treasury_before = treasury.pot(h.ctx())
    events = h.block()  # everyone revealed: finalized at this block's start
    t = task(h, task_id)
    assert t.status == "finalized"
    assert t.top_model == fake_cid(f"model-{BOB.address}")
    board = tasks.Leaderboard.get(h.ctx().state, task_id)
    assert [row[0] for row in board] == [BOB.public_key, CHARLIE.public_key]
    assert [row[1] for row in board] == [1, 2]
    # stake-weighted median with equal stakes and κ = ½: the lower of the two scores
    assert [row[2] for row in board] == [800, 600]
    paid = sum(e.data[3] for e in named(events, "rewards", "RewardPaid"))
    dust = treasury.pot(h.ctx()) - treasury_before
    assert paid + dust == POOL
    assert h.free(tasks.POOL_ACCOUNT) == pool_before
    # ferdie's delegation earned a part of bob's reward
    assert any(e.data[1] == FERDIE.public_key and e.data[2] == "delegator" for e in named(events, "rewards", "RewardPaid"))
    ctx = h.ctx()
    assert history.record(ctx, BOB.public_key, "trainer")["best_rank"] == 1
    assert history.record(ctx, CHARLIE.public_key, "trainer")["rank_sum"] == 2
    assert history.record(ctx, DAVE.public_key, "validator")["completed"] == 1
    assert history.recent(ctx, BOB.public_key, "trainer")[0][:3] == [task_id, 1, 800]
    assert not tasks.Active.get(ctx.state)
    # the audit key only after finalization, only by the creator, only once
    fails_with(h, BOB, "tasks", "publish_audit_key", [task_id, b"k" * 32], "NotCreator")
    ok(h.block((ALICE, "tasks", "publish_audit_key", [task_id, b"k" * 32])))
    fails_with(h, ALICE, "tasks", "publish_audit_key", [task_id, b"k" * 32], "AlreadyPublished")


def test_selection_excludes_creator_and_stale_heartbeats(h):
    setup_roles(h, trainers=(BOB, CHARLIE, FERDIE))
    ok(h.block((BOB, "staking", "bond", ["validator", 30 * UNIT])))  # bob holds both roles
    task_id, _ = create(h, n_trainers=3, n_validators=3, creator=CHARLIE)
    t = task(h, task_id)
    trainers = {a for a, _ in t.trainers}
    validators = {a for a, _ in t.validators}
    assert CHARLIE.public_key not in trainers | validators
    assert not trainers & validators
    assert trainers | validators == {BOB.public_key, FERDIE.public_key, DAVE.public_key, EVE.public_key}


def test_no_eligible_validator_cancels_and_refunds(h):
    setup_roles(h, validators=())
    before = h.free(ALICE.public_key)
    task_id, _ = create(h)
    assert task(h, task_id).status == "cancelled"
    fees = before - h.free(ALICE.public_key)
    assert 0 < fees < UNIT  # the pool came back, only the fee is gone


def test_missing_validator_is_slashed_and_missing_trainer_recorded(h):
    setup_roles(h)
    task_id, _ = create(h, windows=(4, 4, 4))
    train(h, task_id, [BOB])  # charlie never submits
    h.block()  # bob revealed: validation opens
    assert task(h, task_id).status == "validation"
    scores = scores_for(h, task_id, {BOB: 500})
    ok(h.block((DAVE, "tasks", "start_validation", [task_id])))
    ok(h.block((DAVE, "tasks", "commit_scores", [task_id, commit_hash(task_id, DAVE.public_key, scores, b"s")])))
    h.until(task(h, task_id).phase_end)  # eve never commits
    assert task(h, task_id).status == "reveal"
    eve_bond = staking.bonded(h.ctx(), EVE.public_key, "validator")
    ok(h.block((DAVE, "tasks", "reveal_scores", [task_id, scores, b"s"])))
    events = h.block()
    assert task(h, task_id).status == "finalized"
    slashed = named(events, "staking", "Slashed")
    expected = eve_bond * rewards.params(h.ctx())["slash_no_commit_ppb"] // 10**9
    assert [(e.data[0], e.data[2]) for e in slashed] == [(EVE.public_key, expected)]
    ctx = h.ctx()
    assert history.record(ctx, CHARLIE.public_key, "trainer")["missed_deadlines"] == 1
    assert history.record(ctx, EVE.public_key, "validator")["missed_deadlines"] == 1
    assert history.reputation_ppb(ctx, EVE.public_key, "validator") < history.reputation_ppb(ctx, DAVE.public_key, "validator")


def test_no_submission_fails_and_refunds(h):
    setup_roles(h)
    task_id, _ = create(h, windows=(3, 3, 3))
    h.until(task(h, task_id).phase_end)
    assert task(h, task_id).status == "failed"


def test_finalize_by_anyone_when_everyone_revealed(h):
    setup_roles(h)
    task_id, _ = create(h, n_validators=1)
    train(h, task_id, [BOB, CHARLIE])
    h.block()
    validator = DAVE if task(h, task_id).validators[0][0] == DAVE.public_key else EVE
    scores = scores_for(h, task_id, {BOB: 3, CHARLIE: 0})
    ok(h.block((validator, "tasks", "start_validation", [task_id]),
               (validator, "tasks", "commit_scores", [task_id, commit_hash(task_id, validator.public_key, scores, b"")])))
    h.block()
    fails_with(h, FERDIE, "tasks", "finalize", [task_id], "NotFinished")
    ok(h.block((validator, "tasks", "reveal_scores", [task_id, scores, b""]),
               (FERDIE, "tasks", "finalize", [task_id])))
    board = tasks.Leaderboard.get(h.ctx().state, task_id)
    assert task(h, task_id).status == "finalized"
    assert board[1][0] == CHARLIE.public_key and board[1][3] == 0  # unscored model earns nothing


# ---------------------------------------------------------------- bad input


def test_bad_creation(h):
    params = ["digits_classifier", 2, 2, 0, 10, 10, 10]
    fails_with(h, ALICE, "tasks", "create", [SPEC, POOL, ["no_such_kind", *params[1:]]], "UnknownKind")
    fails_with(h, ALICE, "tasks", "create", [SPEC, POOL, [params[0], 0, *params[2:]]], "InvalidParams")
    fails_with(h, ALICE, "tasks", "create", [SPEC, POOL, [*params[:4], 0, 10, 10]], "InvalidParams")
    fails_with(h, ALICE, "tasks", "create", [SPEC, POOL, [*params[:4], 10**6, 10, 10]], "InvalidParams")
    fails_with(h, ALICE, "tasks", "create", [SPEC, 1, params], "PoolTooSmall")
    fails_with(h, ALICE, "tasks", "start_training", [7], "UnknownTask")


def test_bad_arguments_never_reach_a_block(h):
    from runtime.executive import InvalidTransaction
    bad = [
        ["not-a-cid", POOL, ["digits_classifier", 2, 2, 0, 10, 10, 10]],
        [SPEC, POOL, ["digits_classifier", 2, 2, 0, 10, 10]],
        [SPEC, POOL, ["Digits!", 2, 2, 0, 10, 10, 10]],
        [SPEC, POOL, ["digits_classifier", 2, 2, -1, 10, 10, 10]],
    ]
    for args in bad:
        with pytest.raises(InvalidTransaction) as info:
            h.check(h.sign(ALICE, "tasks", "create", args, 0))
        assert info.value.kind == "BadArguments"
    with pytest.raises(InvalidTransaction):
        h.check(h.sign(ALICE, "tasks", "reveal_scores", [0, [[b"x", 1]], b""], 0))


def test_out_of_phase_and_unselected_calls():
    h = RuntimeHarness(genesis_with(tasks={"model_reveal_blocks": 6}))
    setup_roles(h)
    task_id, _ = create(h, windows=(15, 8, 8))
    cid = fake_cid("m")
    fails_with(h, FERDIE, "tasks", "start_training", [task_id], "NotSelected")
    fails_with(h, BOB, "tasks", "commit_model", [task_id, model_hash(task_id, BOB.public_key, cid)],
               "TrainingNotStarted")
    fails_with(h, BOB, "tasks", "submit_model", [task_id, cid], "WrongPhase")  # no reveal while training
    fails_with(h, DAVE, "tasks", "start_validation", [task_id], "WrongPhase")
    fails_with(h, DAVE, "tasks", "commit_scores", [task_id, bytes(32)], "WrongPhase")
    fails_with(h, BOB, "tasks", "publish_validation_share", [task_id, cid], "NotCreator")
    fails_with(h, ALICE, "tasks", "finalize", [task_id], "WrongPhase")
    fails_with(h, ALICE, "tasks", "publish_audit_key", [task_id, b"key"], "WrongPhase")
    ok(h.block((BOB, "tasks", "start_training", [task_id])))
    fails_with(h, BOB, "tasks", "start_training", [task_id], "AlreadyStarted")
    ok(h.block((BOB, "tasks", "commit_model", [task_id, bytes(32)])))
    events = ok(h.block((BOB, "tasks", "commit_model", [task_id, model_hash(task_id, BOB.public_key, cid)])))
    assert named(events, "tasks", "ModelCommitted")[0].data[:3] == [task_id, BOB.public_key,
                                                                       model_hash(task_id, BOB.public_key, cid)]
    ok(h.block((CHARLIE, "tasks", "start_training", [task_id])))
    other = fake_cid("charlie")
    ok(h.block((CHARLIE, "tasks", "commit_model", [task_id, model_hash(task_id, CHARLIE.public_key, other)])))
    ok(h.block((BOB, "tasks", "submit_model", [task_id, cid])))  # every trainer committed: reveal opens early
    assert task(h, task_id).status == "model_reveal"
    fails_with(h, BOB, "tasks", "submit_model", [task_id, cid], "AlreadySubmitted")
    fails_with(h, CHARLIE, "tasks", "submit_model", [task_id, cid], "CommitmentMismatch")
    h.until(task(h, task_id).phase_end)  # reveal window over
    assert task(h, task_id).status == "validation"
    fails_with(h, CHARLIE, "tasks", "submit_model", [task_id, other], "WrongPhase")  # after the window
    fails_with(h, BOB, "tasks", "start_validation", [task_id], "NotSelected")  # a trainer acting as validator
    fails_with(h, DAVE, "tasks", "commit_scores", [task_id, bytes(32)], "ValidationNotStarted")
    fails_with(h, DAVE, "tasks", "reveal_scores", [task_id, [], b""], "WrongPhase")


def test_commit_reveal_errors(h):
    setup_roles(h)
    task_id, _ = create(h, windows=(6, 6, 6))
    train(h, task_id, [BOB, CHARLIE])
    h.block()
    good = scores_for(h, task_id, {BOB: 10, CHARLIE: 20})
    ok(h.block((DAVE, "tasks", "start_validation", [task_id]), (EVE, "tasks", "start_validation", [task_id])))
    ok(h.block((DAVE, "tasks", "commit_scores", [task_id, commit_hash(task_id, DAVE.public_key, good, b"d")])))
    fails_with(h, DAVE, "tasks", "commit_scores", [task_id, bytes(32)], "AlreadyCommitted")
    fails_with(h, DAVE, "tasks", "reveal_scores", [task_id, good, b"d"], "WrongPhase")  # reveal before its window
    h.until(task(h, task_id).phase_end)  # eve never committed
    assert task(h, task_id).status == "reveal"
    fails_with(h, EVE, "tasks", "reveal_scores", [task_id, good, b"e"], "NotCommitted")
    fails_with(h, DAVE, "tasks", "reveal_scores", [task_id, good, b"wrong salt"], "CommitmentMismatch")
    fails_with(h, DAVE, "tasks", "reveal_scores", [task_id, [[BOB.public_key, 11], good[1]], b"d"], "CommitmentMismatch")
    fails_with(h, DAVE, "tasks", "commit_scores", [task_id, bytes(32)], "WrongPhase")


@pytest.mark.parametrize("case", ["stranger", "partial", "unsorted"])
def test_reveal_must_score_exactly_the_submitted_models(h, case):
    setup_roles(h)
    task_id, _ = create(h, n_validators=1, windows=(6, 6, 6))
    train(h, task_id, [BOB, CHARLIE])
    h.block()
    validator = DAVE if task(h, task_id).validators[0][0] == DAVE.public_key else EVE
    good = scores_for(h, task_id, {BOB: 10, CHARLIE: 20})
    scores, error = {
        "stranger": (sorted(good + [[FERDIE.public_key, 5]]), "UnknownTrainer"),
        "partial": (good[:1], "IncompleteScores"),
        "unsorted": (good[::-1], "IncompleteScores"),
    }[case]
    ok(h.block((validator, "tasks", "start_validation", [task_id]),
               (validator, "tasks", "commit_scores", [task_id, commit_hash(task_id, validator.public_key, scores, b"x")])))
    h.block()
    assert task(h, task_id).status == "reveal"
    fails_with(h, validator, "tasks", "reveal_scores", [task_id, scores, b"x"], error)


def test_commitment_matches_offchain_library():
    from node.offchain.ml.scores import score_commitment
    validator, a, b = (bytes([i]) * 32 for i in (1, 2, 3))
    scores = [[a, 5], [b, 2**64 - 1]]
    assert tasks.commitment(9, validator, scores, b"salt") == score_commitment(9, validator, scores, b"salt")


def test_genesis_refuses_a_model_reveal_window_of_zero_blocks():
    with pytest.raises(ValueError, match="model_reveal_blocks"):
        RuntimeHarness(genesis_with(tasks={"model_reveal_blocks": 0}))
