"""`make demo` must fail (exit 1, saying what went wrong) when a step it narrates did not happen,
and it tells each task from the chain's events in block order.

Seen before: "task 0 ended failed … no top model to serve" and the demo still exited 0. These
tests drive the demo's own narration code (node/demo/) with the events a node's `arena_events`
returns, on the failure paths and on a training phase, without starting a network.
"""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path

import pytest
from rich.console import Console

from node.demo.market import run_marketplace_demo
from node.demo.network import DemoError
from node.demo.run import Demo
from node.demo.story import Narrator
from node.rpc_client import RpcClient
from runtime.crypto import Keypair


def _demo(tmp_path: Path) -> tuple[Demo, io.StringIO]:
    out = io.StringIO()
    demo = Demo(tmp_path, Console(file=out, width=200, highlight=False))
    with socket.socket() as sock:  # a port nobody listens on: the node is gone
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.network.rpc = RpcClient(f"http://127.0.0.1:{port}", timeout=2)
    return demo, out


def _event(name: str, **fields: object) -> dict:
    """A tasks event as `arena_events` returns it (data in declared order, and by field name)."""
    return {"phase": 0, "module": "tasks", "name": name, "data": list(fields.values()), "fields": fields}


def _created(creator: str, task_id: int = 0, kind: str = "digits_classifier") -> dict:
    return _event("TaskCreated", task_id=task_id, creator=creator, spec_cid="QmSpec", kind=kind,
                  reward_pool=200 * 10**9)


def test_a_failed_task_and_no_top_model_fail_the_demo(tmp_path: Path) -> None:
    demo, out = _demo(tmp_path)
    eve = demo.keys["eve"].address
    narrator = Narrator(demo.network, eve, count=1)
    narrator.on_block(5, [_created(eve)])
    narrator.on_block(9, [_event("PhaseChanged", task_id=0, status="failed", block=9, window_end=9)])
    assert narrator.done
    run_marketplace_demo(demo.net, demo.console)  # no top model: the marketplace cannot run
    assert demo.net.failures == [
        "task 0 (digits_classifier) ended failed",
        "no top model to serve: the marketplace could not run",
    ]
    with pytest.raises(DemoError) as raised:
        demo.check_outcome()
    message = str(raised.value)
    assert "2 step(s) did not do what the demo narrates" in message
    assert "task 0 (digits_classifier) ended failed" in message and "no top model" in message
    assert "task 0 (digits_classifier) ended failed" in out.getvalue()


def test_the_reason_of_a_failed_task_comes_from_its_event(tmp_path: Path) -> None:
    demo, _ = _demo(tmp_path)
    eve = demo.keys["eve"].address
    narrator = Narrator(demo.network, eve, count=1)
    narrator.on_block(5, [_created(eve, kind="char_lm")])
    narrator.on_block(30, [_event("PhaseChanged", task_id=0, status="failed", block=30, window_end=30),
                           _event("TaskFailed", task_id=0, reason="no model submitted")])
    assert demo.net.failures == ["task 0 (char_lm) ended failed: no model submitted"]


def test_training_is_told_in_block_order_from_chain_events(tmp_path: Path) -> None:
    demo, out = _demo(tmp_path)
    eve, good, poor = (demo.keys[n].address for n in ("eve", "trainer-good", "trainer-poor"))
    narrator = Narrator(demo.network, eve, count=1)
    other = Keypair.from_dev_name("mallory").address  # someone else's task is not told
    narrator.on_block(4, [_created(other, task_id=7), _created(eve)])
    narrator.on_block(6, [_event("PhaseChanged", task_id=0, status="training", block=6, window_end=246)])
    narrator.on_block(7, [_event("TrainingStarted", task_id=0, trainer=poor, block=7, timestamp_ms=3_500),
                          _event("TrainingStarted", task_id=7, trainer=poor, block=7, timestamp_ms=3_500)])
    narrator.on_block(8, [_event("TrainingStarted", task_id=0, trainer=good, block=8, timestamp_ms=4_000)])
    narrator.on_block(20, [_event("ModelCommitted", task_id=0, trainer=good, commitment=b"g" * 32, block=20,
                                  timestamp_ms=10_000)])
    narrator.on_block(31, [_event("ModelCommitted", task_id=0, trainer=poor, commitment=b"p" * 32, block=31,
                                  timestamp_ms=15_500)])
    narrator.on_block(32, [_event("PhaseChanged", task_id=0, status="model_reveal", block=32, window_end=37)])
    narrator.on_block(33, [_event("ModelSubmitted", task_id=0, trainer=good, model_cid="QmGood", block=33,
                                  timestamp_ms=16_500),
                           _event("ModelSubmitted", task_id=0, trainer=poor, model_cid="QmPoor", block=33,
                                  timestamp_ms=16_500)])
    told = [re.sub(r"^\s*[0-9.]+s ", "", line).strip() for line in out.getvalue().splitlines()]
    assert told == [
        "task 0 created by eve: kind digits_classifier, reward pool 200 ARENA, spec QmSpec",
        "task 0 → phase training at block #6 (window until #246)",
        "task 0: trainer-poor start_training at block #7",
        "task 0: trainer-good start_training at block #8",
        "task 0: trainer-good commit_model at block #20 after 6.0 s of training (CID hidden until reveal)",
        "task 0: trainer-poor commit_model at block #31 after 12.0 s of training (CID hidden until reveal)",
        "task 0 → phase model_reveal at block #32 (window until #37)",
        "task 0: trainer-good submit_model (reveal) at block #33: QmGood",
        "task 0: trainer-poor submit_model (reveal) at block #33: QmPoor",
    ]
    assert not narrator.done and demo.net.failures == []


def test_a_clean_run_passes_the_outcome_check(tmp_path: Path) -> None:
    demo, _ = _demo(tmp_path)
    demo.check_outcome()  # nothing recorded: no error
