"""Typed storage records of the tasks module (TrainerWork, ValidatorVote): same bytes, same RPC JSON."""
import pytest

from node.api_arena import task_json
from runtime.codec import decode, encode
from runtime.crypto import ss58_encode
from runtime.modules import tasks
from tests.runtime_harness import RuntimeHarness, commit_hash, fake_cid, named
from tests.test_tasks import BOB, CHARLIE, DAVE, EVE, create, ok, scores_for, setup_roles, train


def test_records_are_stored_as_the_documented_lists():
    h = RuntimeHarness()
    setup_roles(h)
    task_id, _ = create(h)
    ok(h.block((BOB, "tasks", "start_training", [task_id])))
    started = h.number
    raw = h.state().get(tasks.Work.key([task_id, BOB.public_key]))
    assert raw is not None
    stamp = h.config["timestamp_ms"] + h.best.slot * 1000
    # [started_block, started_ms, submitted_block, submitted_ms, model_cid, commitment, committed_block]
    assert decode(raw) == [started, stamp, 0, 0, "", None, 0]
    assert tasks.Work.get(h.state(), [task_id, BOB.public_key]) == tasks.TrainerWork(started, stamp, 0, 0, "", None, 0)
    assert encode(tasks.TrainerWork(started, stamp, 0, 0, "", None, 0).to_list()) == raw


def test_a_stored_list_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="TrainerWork is a list of 7 fields"):
        tasks.TrainerWork.from_list([1, 2, 3, 4])
    with pytest.raises(ValueError):
        tasks.ValidatorVote.from_list({"started_block": 1})
    vote = tasks.ValidatorVote(3, 4, b"\x01" * 32, 5, 0)
    assert tasks.ValidatorVote.from_list(vote.to_list()) == vote


def test_task_json_shows_work_and_votes():
    h = RuntimeHarness()
    setup_roles(h)
    task_id, _ = create(h)
    train(h, task_id, [CHARLIE, BOB])
    h.block()
    reveal = {DAVE: (scores_for(h, task_id, {BOB: 900, CHARLIE: 600}), b"d"),
              EVE: (scores_for(h, task_id, {BOB: 800, CHARLIE: 700}), b"e")}
    ok(h.block((DAVE, "tasks", "start_validation", [task_id])))
    started = h.number
    events = ok(h.block((DAVE, "tasks", "commit_scores", [task_id, commit_hash(task_id, DAVE.public_key, *reveal[DAVE])])))
    committed = h.number
    commitment = named(events, "tasks", "ScoresCommitted")[0].data[2]

    view = task_json(h.ctx(), tasks.get_task(h.ctx(), task_id))
    bob = next(t for t in view["trainers"] if t["address"] == ss58_encode(BOB.public_key))
    submitted = tasks.Work.get(h.state(), [task_id, BOB.public_key])
    assert submitted is not None
    assert bob["startedBlock"] == submitted.started_block and bob["commitBlock"] == submitted.started_block + 1
    assert bob["submittedBlock"] == submitted.started_block + 2
    assert bob["modelCommitment"] == "0x" + submitted.commitment.hex()
    assert bob["startedAt"] == submitted.started_ms and bob["submittedAt"] == submitted.submitted_ms > 0
    assert bob["modelCid"] == fake_cid(f"model-{BOB.address}")
    dave = next(v for v in view["validators"] if v["address"] == ss58_encode(DAVE.public_key))
    eve = next(v for v in view["validators"] if v["address"] == ss58_encode(EVE.public_key))
    assert dave["startedBlock"] == started and dave["commitBlock"] == committed and dave["revealBlock"] is None
    assert dave["commitment"] == "0x" + commitment.hex()
    assert eve == {"address": ss58_encode(EVE.public_key), "stake": eve["stake"], "startedBlock": None,
                   "startedAt": None, "commitment": None, "commitBlock": None, "revealBlock": None}
