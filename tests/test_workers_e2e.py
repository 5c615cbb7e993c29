"""End to end on a real 4-node network with real worker processes and real torch training.

One digits_classifier task: a planner, three trainers (good, poor, broken) in one process,
three validators. validator-1 runs with the `crash-after-commit` fault: its process exits
right after its commitment is included; the test restarts it (without the fault) and it must
still reveal, from its persisted scores and salt. Then: the leaderboard order (good > poor >
broken = 0), rewards moved, every worker extrinsic was sent exactly once, and the audit from
the published key reproduces the revealed scores.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from node.rpc_client import RpcClient
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT
from runtime.types import Extrinsic
from tests.helpers import ROOT
from tests.netutil import Net

pytestmark = pytest.mark.integration

TRAINERS = {"e2e-good": "good", "e2e-poor": "poor", "e2e-broken": "broken"}
VALIDATORS = ("e2e-val-1", "e2e-val-2", "e2e-val-3")
KEYS = {name: Keypair.from_dev_name(name) for name in (*TRAINERS, *VALIDATORS, "eve", "alice", "ferdie")}
TASK_TIMEOUT_S = 150


def submit_all(client: RpcClient, key: Keypair, calls: list) -> None:
    nonce = client.call("system_accountNextIndex", key.address)
    hashes = [client.submit(client.sign(key, m, f, a, nonce=nonce + i)) for i, (m, f, a) in enumerate(calls)]
    for xt_hash in hashes:
        client.wait_for(xt_hash, timeout=60)


class Workers:
    """Worker processes started by the test, stopped by PID."""

    def __init__(self, base) -> None:
        self.base = base
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, role: str, keys: list[str], rpc: str, *extra: str) -> subprocess.Popen:
        args = [sys.executable, "-m", "node.cli", "worker", "--role", role, "--key", ",".join(keys), "--rpc", rpc,
                "--data-dir", str(self.base / "state"), "--bond", "20", *extra]
        with open(self.base / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(self.base.glob("*.log")))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers-e2e")
    net = Net(tmp, slot_ms=500).up()
    workers = Workers(tmp)
    try:
        yield run_scenario(net, workers)
    finally:
        workers.stop()
        net.down()


def run_scenario(net: Net, workers: Workers) -> dict:
    rpc = [net.slots[i].rpc_url for i in range(4)]
    client = net.client(0)
    net.wait(lambda: client.call("system_health")["finalized"] >= 2, 60, "finality")
    submit_all(client, KEYS["alice"], [("balances", "transfer", [KEYS[n].public_key, 1000 * UNIT])
                                       for n in (*TRAINERS, *VALIDATORS)])
    workers.start("trainers", "trainer", [f"//{n}" for n in TRAINERS], rpc[1], "--quality", ",".join(TRAINERS.values()))
    crashing = workers.start("validator-1", "validator", [f"//{VALIDATORS[0]}"], rpc[2], "--fault", "crash-after-commit")
    workers.start("validators", "validator", [f"//{n}" for n in VALIDATORS[1:]], rpc[3])
    good = KEYS["e2e-good"]
    net.wait(lambda: client.call("arena_stakes", good.address)["bonds"].get("trainer"), 90, "trainer bond")
    submit_all(client, KEYS["ferdie"], [("staking", "delegate", [good.public_key, 10 * UNIT])])
    balances_before = {n: client.call("arena_account", KEYS[n].address)["free"] for n in KEYS}
    workers.start("planner", "planner", ["eve"], rpc[0], "--task", "digits_classifier", "--epochs", "20",
                  "--windows", "200,100,60")
    deadline = time.monotonic() + TASK_TIMEOUT_S
    restarted = False
    while time.monotonic() < deadline:
        if not restarted and crashing.poll() is not None:
            crash_code = crashing.returncode
            task = client.call("arena_task", 0)
            committed_before_restart = {v["address"]: (v["commitment"], v["revealBlock"]) for v in task["validators"]}
            workers.start("validator-1-restarted", "validator", [f"//{VALIDATORS[0]}"], rpc[2])
            restarted = True
        task = client.call("arena_task", 0)
        if task and task["status"] in ("finalized", "failed", "cancelled") and task["auditKey"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"task did not finish: {client.call('arena_task', 0)}\n{workers.logs()}")
    assert restarted, workers.logs()
    return {"net": net, "client": client, "task": task, "crash_code": crash_code, "workers": workers,
            "committed_before_restart": committed_before_restart, "balances_before": balances_before,
            "board": client.call("arena_leaderboard", 0)}


def test_leaderboard_order_and_rewards(scenario):
    task, board, client = scenario["task"], scenario["board"], scenario["client"]
    assert task["status"] == "finalized", scenario["workers"].logs()
    order = [e["address"] for e in board["entries"]]
    assert order == [KEYS[n].address for n in ("e2e-good", "e2e-poor", "e2e-broken")]
    scores = [e["consensusScore"] for e in board["entries"]]
    assert scores[0] > scores[1] > 0 and scores[2] == 0
    assert board["entries"][0]["reward"] > board["entries"][1]["reward"] > 0 == board["entries"][2]["reward"]
    assert task["topModel"] == board["entries"][0]["modelCid"]
    before = scenario["balances_before"]
    after = {n: client.call("arena_account", KEYS[n].address)["free"] for n in KEYS}
    assert after["e2e-good"] > before["e2e-good"]
    assert after["ferdie"] > before["ferdie"]  # the delegator was paid
    assert all(v["reward"] > 0 and v["agreementPpb"] == 10**9 for v in board["validators"])


def test_validator_crash_between_commit_and_reveal_still_reveals(scenario):
    validator = KEYS[VALIDATORS[0]].address
    assert scenario["crash_code"] == 17
    commitment, reveal = scenario["committed_before_restart"][validator]
    assert commitment is not None and reveal is None
    final = {v["address"]: v for v in scenario["task"]["validators"]}[validator]
    assert final["commitment"] == commitment and final["revealBlock"]


def test_every_worker_extrinsic_was_sent_once(scenario):
    client = scenario["client"]
    workers = {KEYS[n].public_key: n for n in (*TRAINERS, *VALIDATORS, "eve")}
    calls: Counter = Counter()
    failures = []
    best = client.call("chain_getHeader")["number"]
    for number in range(1, best + 1):
        block_hash = client.call("chain_getBlockHash", number)
        for raw in client.call("chain_getBlock", block_hash)["block"]["extrinsics"]:
            xt = Extrinsic.decode(bytes.fromhex(raw[2:]))
            if xt.signer in workers and xt.call.module == "tasks":
                calls[(workers[xt.signer], xt.call.function)] += 1
        for event in client.call("arena_events", block_hash):
            if event["module"] == "system" and event["name"] == "ExtrinsicFailed":
                failures.append(event)
    assert failures == [], failures
    assert all(count == 1 for count in calls.values()), calls
    for name in VALIDATORS:
        assert calls[(name, "commit_scores")] == 1 and calls[(name, "reveal_scores")] == 1
    for name in TRAINERS:
        assert calls[(name, "submit_model")] == 1
    assert calls[("eve", "create")] == 1 and calls[("eve", "publish_audit_key")] == 1


def test_audit_reproduces_the_revealed_scores(scenario):
    from node.offchain.audit import audit_task

    report = audit_task(scenario["net"].slots[3].rpc_url, 0)
    assert report.reproduced, report
    assert len(report.revealed) == 3
    assert report.recomputed[KEYS["e2e-broken"].address] == 0
