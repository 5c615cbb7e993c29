"""A whole task on a real `arena node --dev`: signed extrinsics over RPC, the CLI, the arena_* RPC."""
import time

import pytest

from node import cli
from node.rpc_client import call_failed
from tests.arena_helpers import KEYS, UNIT, commit_hash, fake_cid
from tests.finished_task import submit_models
from tests.helpers import NodeProcess

pytestmark = pytest.mark.integration

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (KEYS[n] for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))


@pytest.fixture()
def node(tmp_path):
    proc = NodeProcess(tmp_path / "dev", "--dev").start()
    yield proc
    proc.stop()


def submit_all(client, calls):
    """Sign and submit every call at once (the pool tracks nonces), then wait for all; none may fail."""
    hashes = [client.submit(client.sign(key, module, fn, args)) for key, module, fn, args in calls]
    results = [client.wait_for(h) for h in hashes]
    for (key, module, fn, _), result in zip(calls, results):
        failed = call_failed(result)
        assert failed is None, (module, fn, failed)
    return results


def wait_status(client, task_id, status, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.call("arena_task", task_id)
        if task and task["status"] == status:
            return task
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} never reached {status}: {client.call('arena_task', task_id)}")


def test_task_lifecycle_on_dev_node(node, capsys):
    client = node.client()
    rpc = ["--rpc", node.url]
    # roles: bob via the CLI, the rest by signed extrinsics
    assert cli.main(["stake", "bond", "trainer", "20", "--from", "bob", *rpc]) == 0
    submit_all(client, [
        (BOB, "staking", "heartbeat", [[1, "cpu", 4096]]),
        (CHARLIE, "staking", "bond", ["trainer", 20 * UNIT]), (CHARLIE, "staking", "heartbeat", [[1, "cpu", 4096]]),
        (DAVE, "staking", "bond", ["validator", 30 * UNIT]), (DAVE, "staking", "heartbeat", [[1, "cpu", 4096]]),
        (EVE, "staking", "bond", ["validator", 30 * UNIT]), (EVE, "staking", "heartbeat", [[1, "cuda", 8192]]),
        (FERDIE, "staking", "delegate", [BOB.public_key, 5 * UNIT]),
    ])
    stakes = client.call("arena_stakes", BOB.address)
    assert stakes["bonds"]["trainer"] == 20 * UNIT and stakes["delegatedTo"] == 5 * UNIT
    assert stakes["heartbeat"]["live"] is True

    # a bond below the minimum fails with its named error
    result = client.submit_and_wait(FERDIE, "staking", "bond", ["trainer", 1])
    assert call_failed(result)["data"][1] == "BelowMinimum"

    assert cli.main(["task", "create", "--from", "alice", "--spec-cid", fake_cid("spec"), "--pool", "100",
                     "--kind", "digits_classifier", "--trainers", "2", "--validators", "2",
                     "--training-blocks", "20", "--commit-blocks", "15", "--reveal-blocks", "15", *rpc]) == 0
    assert "task id 0" in capsys.readouterr().out
    task = wait_status(client, 0, "training")
    assert {t["address"] for t in task["trainers"]} == {BOB.address, CHARLIE.address}
    assert {v["address"] for v in task["validators"]} == {DAVE.address, EVE.address}
    assert client.call("arena_tasks", "active")[0]["id"] == 0

    models = {BOB: fake_cid("bob-model"), CHARLIE: fake_cid("charlie-model")}
    submit_all(client, [(k, "tasks", "start_training", [0]) for k in models])
    submit_models(client, 0, models)
    task = wait_status(client, 0, "validation")
    assert all(t["submittedBlock"] >= t["startedBlock"] for t in task["trainers"])
    submit_all(client, [(ALICE, "tasks", "publish_validation_share", [0, fake_cid("sealed")])])

    scores = {DAVE: {BOB: 910, CHARLIE: 400}, EVE: {BOB: 890, CHARLIE: 420}}
    lists = {v: sorted([[t.public_key, s] for t, s in row.items()]) for v, row in scores.items()}
    submit_all(client, [(v, "tasks", "start_validation", [0]) for v in scores])
    submit_all(client, [(v, "tasks", "commit_scores", [0, commit_hash(0, v.public_key, lists[v], b"salt" + v.public_key)])
                        for v in scores])
    wait_status(client, 0, "reveal")
    submit_all(client, [(v, "tasks", "reveal_scores", [0, lists[v], b"salt" + v.public_key]) for v in scores])
    task = wait_status(client, 0, "finalized")

    board = client.call("arena_leaderboard", 0)
    assert [e["address"] for e in board["entries"]] == [BOB.address, CHARLIE.address]
    assert [e["rank"] for e in board["entries"]] == [1, 2]
    assert [e["consensusScore"] for e in board["entries"]] == [890, 400]
    assert board["topModel"] == models[BOB] == task["topModel"]
    assert sum(e["reward"] for e in board["entries"]) + sum(v["reward"] for v in board["validators"]) <= board["reward"]
    assert board["entries"][0]["reward"] > board["entries"][1]["reward"] > 0
    top = client.call("arena_topModel", 0)
    assert top["modelCid"] == models[BOB] and top["trainer"] == BOB.address
    record = client.call("arena_history", BOB.address, "trainer")
    assert record["tasksJoined"] == 1 and record["bestRank"] == 1 and record["rewards"] > 0
    assert client.call("arena_history", DAVE.address, "validator")["recent"][0]["agreementPpb"] > 0
    assert client.call("arena_tasks", "finalized")[0]["topModel"] == models[BOB]

    assert cli.main(["task", "show", "0", *rpc]) == 0
    out = capsys.readouterr().out
    assert models[BOB] in out and "rank" in out
    assert cli.main(["task", "list", *rpc]) == 0
    assert "finalized" in capsys.readouterr().out
