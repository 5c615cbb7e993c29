"""End to end on a real dev node: a trained model becomes a task's top model, a host serves it, a user pays.

A digits classifier is trained with the ML library (seconds), added through the node's IPFS API,
and a task is driven to finalization by signed extrinsics (bob trains, charlie validates). The
host worker runs as a child process (`arena model serve`), the user queries it with
`ArenaModelClient`; the host is SIGKILLed after the queries and restarted from its ledger, and
the usage must still be redeemed exactly once, with host, trainer, validator and treasury paid.
"""
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from node.offchain.user_client import ArenaModelClient, ModelQueryError
from node.rpc_client import call_failed
from runtime.crypto import Keypair, blake2b_256
from runtime.modules import tasks
from runtime.modules.balances import UNIT
from tests.helpers import ALICE, BOB, CHARLIE, ROOT, NodeProcess, free_port
from tests.netutil import fast_genesis

pytestmark = pytest.mark.integration

EVE = Keypair.from_dev_name("eve")        # the user
HOST = Keypair.from_dev_name("host-e2e")
PRICE = 1_000_003
QUERIES = 5


def ok(result):
    failed = call_failed(result)
    assert failed is None, failed
    return result


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def finished_task(client, model: bytes, spec: dict, train: bytes) -> tuple[int, str]:
    import ipfshttpclient

    ipfs = ipfshttpclient.client.Client(f"/ip4/127.0.0.1/tcp/{client.url.rsplit(':', 1)[1]}/http", timeout=60)
    spec["data"]["train_cid"] = ipfs.add_bytes(train)
    spec_cid = ipfs.add_bytes(json.dumps(spec, sort_keys=True).encode())
    model_cid = ipfs.add_bytes(model)
    for key, role in ((BOB, "trainer"), (CHARLIE, "validator")):
        ok(client.submit_and_wait(key, "staking", "bond", [role, 20 * UNIT]))
        ok(client.submit_and_wait(key, "staking", "heartbeat", [[1, "cpu", 1024]]))
    ok(client.submit_and_wait(ALICE, "tasks", "create", [spec_cid, 50 * UNIT, ["digits_classifier", 1, 1, 0, 30, 30, 30]]))
    task_id = max(t["id"] for t in client.call("arena_tasks"))
    wait(lambda: client.call("arena_task", task_id)["status"] == "training", 20, "selection")
    ok(client.submit_and_wait(BOB, "tasks", "start_training", [task_id]))
    ok(client.submit_and_wait(BOB, "tasks", "commit_model",
                              [task_id, tasks.model_commitment(task_id, BOB.public_key, model_cid)]))
    wait(lambda: client.call("arena_task", task_id)["status"] == "model_reveal", 20, "model reveal")
    ok(client.submit_and_wait(BOB, "tasks", "submit_model", [task_id, model_cid]))
    wait(lambda: client.call("arena_task", task_id)["status"] == "validation", 20, "validation")
    scores, salt = [[BOB.public_key, 900_000_000]], b"salt"
    ok(client.submit_and_wait(CHARLIE, "tasks", "start_validation", [task_id]))
    ok(client.submit_and_wait(CHARLIE, "tasks", "commit_scores",
                              [task_id, tasks.commitment(task_id, CHARLIE.public_key, scores, salt)]))
    wait(lambda: client.call("arena_task", task_id)["status"] == "reveal", 20, "reveal")
    ok(client.submit_and_wait(CHARLIE, "tasks", "reveal_scores", [task_id, scores, salt]))
    wait(lambda: client.call("arena_task", task_id)["status"] == "finalized", 20, "finalization")
    top = client.call("arena_topModel", task_id)
    assert top["modelCid"] == model_cid
    return task_id, model_cid


def start_host(node, tmp, port):
    log = open(tmp / "host.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "node.cli", "model", "serve", "--key", "//host-e2e", "--rpc", node.url,
         "--port", str(port), "--price", f"{PRICE}u", "--report-blocks", "4", "--data-dir", str(tmp / "workers")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop(proc, sig=signal.SIGTERM):
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)


def test_paid_queries_are_served_reported_and_split(tmp_path):
    from sklearn.datasets import load_digits

    from node.offchain.ml import get_kind

    kind = get_kind("digits_classifier")
    prepared = kind.prepare(None, 11)
    model = kind.train(prepared.spec, prepared.train_bytes, epochs=3, lr=0.01, seed=1)
    genesis = fast_genesis(tmp_path, slot_ms=300, marketplace={"period_blocks": 4, "withdraw_delay": 8,
                                                               "usage_emission_per_period": 0})
    node = NodeProcess(tmp_path / "node", "--dev", "--genesis", str(genesis)).start()
    host = None
    try:
        client = node.client()
        task_id, cid = finished_task(client, model, prepared.spec, prepared.train_bytes)
        ok(client.submit_and_wait(ALICE, "balances", "transfer", [HOST.public_key, 30 * UNIT]))
        port = free_port()
        host = start_host(node, tmp_path, port)
        wait(lambda: client.call("arena_hosts", cid), 60, "host registration")
        assert client.call("arena_hosts", cid)[0]["endpoint"] == f"http://127.0.0.1:{port}"
        before = {k.address: client.call("arena_account", k.address)["free"] for k in (BOB, CHARLIE, HOST)}
        treasury_before = client.call("arena_account", "0x" + blake2b_256(b"arena/module/treasury").hex())["free"]

        user = ArenaModelClient(node.url, EVE, state_dir=tmp_path / "client", deposit=UNIT)
        digits = load_digits()
        correct = 0
        for i in range(QUERIES):
            answer = user.query(task_id, [float(x) for x in digits.data[i]])
            assert answer.cost == PRICE and answer.cumulative_amount == (i + 1) * PRICE
            correct += answer.output[0]["label"] == int(digits.target[i])
        assert correct >= 3
        unpaid = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"input": [0.0] * 64})
        assert unpaid.status_code == 402 and unpaid.json()["error"]["code"] == "payment_required"
        with pytest.raises(ModelQueryError, match="bad_input"):
            user.query(task_id, [1.0, 2.0])  # refused before payment: the channel does not move

        stop(host, signal.SIGKILL)  # crash mid-period: the ledger on disk must still be redeemed
        host = start_host(node, tmp_path, port)

        def redeemed():
            state = client.call("arena_voucherState", EVE.address, HOST.address, cid)
            return state["cumulativeAmount"] == QUERIES * PRICE
        wait(redeemed, 60, "usage report")

        def serving():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").json()["models"] >= 1
            except httpx.HTTPError:
                return False
        wait(serving, 60, "the restarted host to serve")
        assert client.call("arena_escrow", EVE.address)["balance"] == UNIT - QUERIES * PRICE
        current = client.call("arena_marketParams")["currentPeriod"]
        usage = [client.call("arena_usage", cid, p) for p in range(current + 1)]
        assert sum(u["revenue"] for u in usage) == QUERIES * PRICE
        assert sum(u["queries"] for u in usage) == QUERIES
        payouts = [p for u in usage for p in u["payouts"]]
        assert sum(p["amount"] for p in payouts) == QUERIES * PRICE
        # under load the host may have reported in several extrinsics (and periods): each report splits its
        # own revenue, rounding down, so a party's total is within one unit per report of the whole split
        by_party: dict[str, int] = {}
        for p in payouts:
            assert p["address"] == {"host": HOST.address, "trainer": BOB.address, "validators": CHARLIE.address,
                                    "treasury": p["address"]}[p["party"]]
            by_party[p["party"]] = by_party.get(p["party"], 0) + p["amount"]
        revenue = QUERIES * PRICE
        for party, share in (("host", 50), ("trainer", 25), ("validators", 15)):
            assert 0 <= revenue * share // 100 - by_party[party] <= QUERIES, (party, by_party)
        after = {k.address: client.call("arena_account", k.address)["free"] for k in (BOB, CHARLIE)}
        assert after[BOB.address] - before[BOB.address] == by_party["trainer"]
        assert after[CHARLIE.address] - before[CHARLIE.address] == by_party["validators"]
        treasury_after = client.call("arena_account", "0x" + blake2b_256(b"arena/module/treasury").hex())["free"]
        assert treasury_after - treasury_before >= revenue - revenue // 2 - revenue // 4 - revenue * 15 // 100
        # the user's state survives a restart of the client: the next voucher continues the channel
        user.close()
        again = ArenaModelClient(node.url, EVE, state_dir=tmp_path / "client", deposit=UNIT)
        answer = again.query(cid, [float(x) for x in digits.data[9]])
        assert answer.cumulative_amount == (QUERIES + 1) * PRICE  # the refused query was not charged
        # many queries in one request (/v1/batch), each with its own voucher: a refused one and those
        # signed on top of it cost nothing
        rows = [[float(x) for x in digits.data[i]] for i in range(10, 14)]
        results = again.query_many(cid, rows[:2] + [[1.0, 2.0]] + rows[2:])
        assert [type(r).__name__ for r in results] == ["Answer"] * 2 + ["ModelQueryError"] * 3
        assert [r.code for r in results[2:]] == ["bad_input", "previous_refused", "previous_refused"]
        assert results[1].cumulative_amount == (QUERIES + 3) * PRICE
        assert [a.cumulative_amount for a in again.query_many(cid, rows[2:])] == [
            (QUERIES + 4) * PRICE, (QUERIES + 5) * PRICE]
        again.close()
        # a user with only a channel to this host (deposit_for) is served from it: no shared escrow needed
        dave = Keypair.from_dev_name("dave-channel")
        ok(client.submit_and_wait(ALICE, "balances", "transfer", [dave.public_key, 10 * UNIT]))
        ok(client.submit_and_wait(dave, "marketplace", "deposit_for", [HOST.public_key, 3 * PRICE]))
        channel_user = ArenaModelClient(node.url, dave, state_dir=tmp_path / "client", deposit=UNIT)
        assert [a.cost for a in channel_user.query_many(cid, rows[:3])] == [PRICE] * 3
        assert client.call("arena_escrow", dave.address)["balance"] == 0
        channel_user.close()
    finally:
        stop(host)
        node.stop()
