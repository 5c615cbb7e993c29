"""A finished task on a real dev node, driven by signed extrinsics over RPC (shared by UI/client tests)."""
from __future__ import annotations

import time

from node.rpc_client import RpcClient, call_failed
from tests.arena_helpers import KEYS, UNIT, commit_hash, fake_cid, model_hash

ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE = (KEYS[n] for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie"))


def submit_all(client: RpcClient, calls: list) -> list:
    """Sign and submit every call at once (the pool tracks nonces), then wait for all; none may fail."""
    hashes = [client.submit(client.sign(key, module, fn, args)) for key, module, fn, args in calls]
    results = [client.wait_for(h) for h in hashes]
    for (_, module, fn, _), result in zip(calls, results):
        failed = call_failed(result)
        assert failed is None, (module, fn, failed)
    return results


def wait_status(client: RpcClient, task_id: int, status: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.call("arena_task", task_id)
        if task and task["status"] == status:
            return task
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} never reached {status}: {client.call('arena_task', task_id)}")


def submit_models(client: RpcClient, task_id: int, models: dict) -> None:
    """Commit every trainer's model, wait for the model reveal phase, reveal them all."""
    submit_all(client, [(k, "tasks", "commit_model", [task_id, model_hash(task_id, k.public_key, cid)])
                        for k, cid in models.items()])
    wait_status(client, task_id, "model_reveal")
    submit_all(client, [(k, "tasks", "submit_model", [task_id, cid]) for k, cid in models.items()])


def run_finished_task(client: RpcClient, spec_cid: str | None = None, models: dict | None = None,
                      endpoint: str = "http://127.0.0.1:9/v1") -> dict:
    """Bond roles, run task 0 to `finalized` with known scores, register FERDIE as a host of the top model.

    By default the spec and model CIDs are made up; pass real ones (content on the node) and a real
    host `endpoint` where a test needs them (the dashboard's curves and "try the model")."""
    beat = [1, "cpu", 4096]
    submit_all(client, [
        (BOB, "staking", "bond", ["trainer", 20 * UNIT]), (BOB, "staking", "heartbeat", [beat]),
        (CHARLIE, "staking", "bond", ["trainer", 20 * UNIT]), (CHARLIE, "staking", "heartbeat", [beat]),
        (DAVE, "staking", "bond", ["validator", 30 * UNIT]), (DAVE, "staking", "heartbeat", [beat]),
        (EVE, "staking", "bond", ["validator", 30 * UNIT]), (EVE, "staking", "heartbeat", [beat]),
        (FERDIE, "staking", "bond", ["host", 20 * UNIT]),
    ])
    submit_all(client, [(ALICE, "tasks", "create", [spec_cid or fake_cid("spec"), 100 * UNIT,
                                                     ["digits_classifier", 2, 2, 0, 20, 15, 15]])])
    wait_status(client, 0, "training")
    models = models or {BOB: fake_cid("bob-model"), CHARLIE: fake_cid("charlie-model")}
    submit_all(client, [(k, "tasks", "start_training", [0]) for k in models])
    submit_models(client, 0, models)
    wait_status(client, 0, "validation")
    submit_all(client, [(ALICE, "tasks", "publish_validation_share", [0, fake_cid("sealed")])])
    scores = {DAVE: {BOB: 910_000_000, CHARLIE: 400_000_000}, EVE: {BOB: 890_000_000, CHARLIE: 420_000_000}}
    lists = {v: sorted([[t.public_key, s] for t, s in row.items()]) for v, row in scores.items()}
    submit_all(client, [(v, "tasks", "start_validation", [0]) for v in scores])
    submit_all(client, [(v, "tasks", "commit_scores", [0, commit_hash(0, v.public_key, lists[v], b"salt" + v.public_key)])
                        for v in scores])
    wait_status(client, 0, "reveal")
    submit_all(client, [(v, "tasks", "reveal_scores", [0, lists[v], b"salt" + v.public_key]) for v in scores])
    task = wait_status(client, 0, "finalized")
    submit_all(client, [(FERDIE, "marketplace", "register_host", [task["topModel"], endpoint, 2 * UNIT])])
    return {"task": task, "models": models, "scores": scores}
