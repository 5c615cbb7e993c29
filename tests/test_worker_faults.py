"""Faults on a real network: the trainers' node is killed mid-task and comes back; the planner is
given a data set that does not parse. Workers log, wait with backoff and carry on: the task still
finishes, no worker process dies, nothing is sent twice."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from node import localnet
from runtime.types import Extrinsic
from tests.netutil import Net
from tests.test_workers_e2e import KEYS, UNIT, Workers, submit_all

pytestmark = pytest.mark.integration

TRAINERS = ("e2e-good", "e2e-poor")
VALIDATORS = ("e2e-val-1", "e2e-val-2")


def test_node_outage_and_bad_data(tmp_path):
    net = Net(tmp_path, slot_ms=500).up()
    workers = Workers(tmp_path)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    try:
        rpc = [s.rpc_url for s in net.slots]
        client = net.client(0)
        net.wait(lambda: client.call("system_health")["finalized"] >= 2, 60, "finality")
        submit_all(client, KEYS["alice"], [("balances", "transfer", [KEYS[n].public_key, 1000 * UNIT])
                                           for n in (*TRAINERS, *VALIDATORS)])
        trainers = workers.start("trainers", "trainer", [f"//{n}" for n in TRAINERS], rpc[1], "--quality", "good,poor")
        validators = workers.start("validators", "validator", [f"//{n}" for n in VALIDATORS], rpc[2])
        planner = workers.start("planner", "planner", ["eve"], rpc[0], "--task", f"custom_csv:{bad_csv}",
                                "--task", "digits_classifier", "--epochs", "10", "--trainers", "2",
                                "--validators", "2", "--windows", "200,100,60")
        net.wait(lambda: client.call("arena_task", 0), 120, f"task creation\n{workers.logs()}")
        net.kill(1)  # the trainers' node goes away mid-task
        time.sleep(6)
        assert trainers.poll() is None, workers.logs()
        localnet.up(net.base, 4, net.genesis, net.extra, net.rpc_base, net.p2p_base)
        task = net.wait(lambda: (t := client.call("arena_task", 0)) and t["status"] == "finalized" and t["auditKey"]
                        and t, 150, f"finalization\n{workers.logs()}")
        assert task["kind"] == "digits_classifier"  # the unparseable CSV never became a task
        assert all(p.poll() is None for p in (trainers, validators, planner)), workers.logs()
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("trainers", "planner")}
        assert "event=rpc_unreachable" in logs["trainers"] or "event=submit_retry" in logs["trainers"]
        assert "event=plan_failed plan=0 kind=custom_csv" in logs["planner"]
        assert logs["trainers"].count("event=step_error") <= 3  # backed off, no crash loop
        board = client.call("arena_leaderboard", 0)
        assert [e["address"] for e in board["entries"]] == [KEYS[n].address for n in TRAINERS]
        calls: Counter = Counter()
        signers = {KEYS[n].public_key: n for n in (*TRAINERS, *VALIDATORS, "eve")}
        for number in range(1, client.call("chain_getHeader")["number"] + 1):
            block = client.call("chain_getBlock", client.call("chain_getBlockHash", number))
            for raw in block["block"]["extrinsics"]:
                xt = Extrinsic.decode(bytes.fromhex(raw[2:]))
                if xt.signer in signers and xt.call.module == "tasks":
                    calls[(signers[xt.signer], xt.call.function)] += 1
        assert calls and all(count == 1 for count in calls.values()), calls
    finally:
        workers.stop()
        net.down()
