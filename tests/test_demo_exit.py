"""`make demo` must fail (exit 1, saying what went wrong) when a step it narrates did not happen.

Seen before: "task 0 ended failed … no top model to serve" and the demo still exited 0. These
tests drive the demo's own narration code on the failure paths, without starting a network.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from rich.console import Console

from node.demo import Demo, DemoError
from node.offchain.demo_story import Narrator
from node.offchain.market_demo import run_marketplace_demo
from node.rpc_client import RpcClient


def _demo(tmp_path: Path) -> tuple[Demo, io.StringIO]:
    out = io.StringIO()
    demo = Demo(tmp_path, Console(file=out, width=200, highlight=False))
    with socket.socket() as sock:  # a port nobody listens on: the node is gone
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.rpc = RpcClient(f"http://127.0.0.1:{port}", timeout=2)
    return demo, out


def test_a_failed_task_and_no_top_model_fail_the_demo(tmp_path: Path) -> None:
    demo, out = _demo(tmp_path)
    narrator = Narrator(demo)
    failed_task = {"id": 0, "kind": "digits_classifier", "status": "failed",
                   "timeline": [{"status": "training", "block": 5}, {"status": "failed", "block": 9}]}
    narrator.finished(failed_task)
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


def test_a_clean_run_passes_the_outcome_check(tmp_path: Path) -> None:
    demo, _ = _demo(tmp_path)
    demo.check_outcome()  # nothing recorded: no error
