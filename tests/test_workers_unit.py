"""Worker logic without a network: role registry, de-duplicated submissions, retries, size limits,
broken model files, plans, the supervisor's restart and stop."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from node.offchain import chain_client, supervisor
from node.offchain.chain_client import CallFailed, ChainClient, WorkerStopped
from node.offchain.content import Content, ContentTooLarge
from node.offchain.context import WorkerContext
from node.offchain.planner_worker import TaskPlan, parse_plan
from node.offchain.worker import UnknownRole, available_roles, device_capabilities, role_runner
from node.rpc_client import RpcClientError
from runtime.crypto import Keypair


@pytest.fixture()
def ctx(tmp_path: Path) -> WorkerContext:
    return WorkerContext(role="validator", key=Keypair.from_dev_name("unit-worker"), rpc_url="http://127.0.0.1:1",
                         ipfs_api="/ip4/127.0.0.1/tcp/1/http", data_dir=tmp_path / "w")


class FakeRpc:
    """Stands in for the worker's ArenaClient: records submissions, answers arena_extrinsic from a table."""

    def __init__(self) -> None:
        self.submitted: list[bytes] = []
        self.status: dict[str, dict | None] = {}
        self.unreachable = 0

    def compose_call(self, module, function, args) -> tuple:
        return module, function, args

    def create_signed_extrinsic(self, call, key, **_kw) -> bytes:
        module, function, args = call
        return f"{module}.{function}:{args}:{len(self.submitted)}".encode()

    def submit(self, encoded: bytes) -> str:
        self.submitted.append(encoded)
        xt_hash = f"0x{len(self.submitted):064x}"
        self.status[xt_hash] = {"status": "pending"}
        return xt_hash

    def include(self, xt_hash: str, events: list | None = None) -> None:
        self.status[xt_hash] = {"status": "inBlock", "blockNumber": 7, "events": events or []}

    def view(self, method: str, *params):
        if self.unreachable:
            self.unreachable -= 1
            raise RpcClientError(-1, "cannot reach node")
        if method == "arena_extrinsic":
            return self.status.get(params[0])
        if method == "system_health":
            return {"finalized": 5, "best": 6}
        raise AssertionError(method)


def client_with(ctx: WorkerContext, rpc: FakeRpc) -> ChainClient:
    client = ChainClient(ctx)
    client.client = rpc  # type: ignore[assignment]
    return client


def include_soon(rpc: FakeRpc, events: list | None = None) -> threading.Thread:
    def later() -> None:
        while not rpc.submitted:
            threading.Event().wait(0.01)
        rpc.include(f"0x{len(rpc.submitted):064x}", events)
    thread = threading.Thread(target=later)
    thread.start()
    return thread


def test_roles_are_discovered_by_module_name():
    assert {"planner", "trainer", "validator"} <= set(available_roles())
    assert callable(role_runner("trainer"))
    with pytest.raises(UnknownRole, match="known roles: .*planner"):
        role_runner("juggler")
    with pytest.raises(UnknownRole):
        role_runner("../etc")


def test_submit_once_is_not_repeated_after_a_restart(ctx):
    rpc = FakeRpc()
    thread = include_soon(rpc)
    first = client_with(ctx, rpc).submit_once("task/1/commit", "tasks", "commit_scores", [1, b"x"], timeout=5)
    thread.join()
    assert first.block_number == 7 and len(rpc.submitted) == 1
    # a new process (fresh client, same state file) asked to do the same action: nothing is signed again
    again = client_with(ctx, rpc).submit_once("task/1/commit", "tasks", "commit_scores", [1, b"x"], timeout=5)
    assert again.xt_hash == first.xt_hash and len(rpc.submitted) == 1


def test_pending_extrinsic_is_awaited_not_resent(ctx):
    rpc = FakeRpc()
    client = client_with(ctx, rpc)
    xt_hash = rpc.submit(b"sent before a crash")
    client.state.data["sent"] = {"task/1/reveal": {"hash": xt_hash}}
    client.state.save()
    threading.Timer(0.2, rpc.include, (xt_hash,)).start()
    assert client_with(ctx, rpc).submit_once("task/1/reveal", "tasks", "reveal_scores", [], timeout=5).xt_hash == xt_hash
    assert len(rpc.submitted) == 1


def test_dropped_extrinsic_is_resent_once(ctx):
    rpc = FakeRpc()
    client = client_with(ctx, rpc)
    client.state.data["sent"] = {"task/1/start": {"hash": "0x" + "ab" * 32}}  # unknown to the node: dropped
    thread = include_soon(rpc)
    client.submit_once("task/1/start", "tasks", "start_validation", [1], timeout=5)
    thread.join()
    assert len(rpc.submitted) == 1


def test_failed_call_is_remembered_and_not_retried(ctx):
    rpc = FakeRpc()
    failure = [{"module": "system", "name": "ExtrinsicFailed", "data": ["tasks", "WrongPhase", "task 1 is in reveal"]}]
    thread = include_soon(rpc, failure)
    with pytest.raises(CallFailed, match="WrongPhase"):
        client_with(ctx, rpc).submit_once("task/1/submit", "tasks", "submit_model", [1, "Qm"], timeout=5)
    thread.join()
    with pytest.raises(CallFailed, match="WrongPhase"):
        client_with(ctx, rpc).submit_once("task/1/submit", "tasks", "submit_model", [1, "Qm"], timeout=5)
    assert len(rpc.submitted) == 1


def test_reads_retry_with_backoff_until_the_node_answers(ctx, monkeypatch):
    monkeypatch.setattr(chain_client, "BACKOFF_START_S", 0.01)
    rpc = FakeRpc()
    rpc.unreachable = 3
    assert client_with(ctx, rpc).finalized_number() == 5


def test_reads_stop_when_the_worker_is_stopped(ctx, monkeypatch):
    monkeypatch.setattr(chain_client, "BACKOFF_START_S", 0.01)
    rpc = FakeRpc()
    rpc.unreachable = 10**6
    ctx.stop.set()
    with pytest.raises(WorkerStopped):
        client_with(ctx, rpc).finalized_number()


class FakeIpfs:
    def __init__(self, size: int) -> None:
        self.size = size
        self.cat_calls = 0

    files: object = None  # set per test: mirrors ipfshttpclient's attribute

    def cat(self, cid, length=None):
        self.cat_calls += 1
        return b"x" * min(self.size, length or self.size)


def test_fetch_refuses_a_huge_file_before_downloading(ctx):
    fake = FakeIpfs(10_000_000)
    fake.files = type("F", (), {"stat": staticmethod(lambda path: {"Size": fake.size})})()
    content = Content(ctx)
    content._client = fake
    with pytest.raises(ContentTooLarge, match="over the limit of 1000"):
        content.fetch("QmHuge", 1000, "model")
    assert fake.cat_calls == 0
    fake.size = 10
    assert content.fetch("QmSmall", 1000) == b"x" * 10


@pytest.mark.parametrize("mode", ["truncated", "wrong_arch", "pickle", "huge"])
def test_broken_model_files_score_zero(mode):
    from node.offchain.ml import get_kind
    from node.offchain.trainer_worker import break_model

    kind = get_kind("digits_classifier")
    prepared = kind.prepare(None, seed=3)
    spec = prepared.spec
    model = kind.train(spec, prepared.train_bytes, epochs=1, lr=0.01, seed=1, quality="poor")
    result = kind.evaluate(spec, break_model(model, mode, spec), prepared.heldout_bytes)
    assert result.score == 0 and result.rejected
    assert kind.evaluate(spec, model, prepared.heldout_bytes).score > 0


def test_task_plan_from_the_command_line():
    plan = parse_plan("custom_csv:/data/x.csv", {"n_trainers": 2, "training_blocks": 50})
    assert plan["kind"] == "custom_csv" and plan["source"] == "/data/x.csv" and plan["n_trainers"] == 2
    assert TaskPlan(**plan).params() == ["custom_csv", 2, 3, 0, 50, 60, 30]


def test_heartbeat_capabilities_fit_the_runtime_check():
    available, device, memory = device_capabilities("cpu")
    assert available == 1 and 0 < len(device.encode()) <= 32 and 0 <= memory < 2**32


def test_supervisor_restarts_a_crashing_worker_and_stops_it_by_pid(tmp_path, monkeypatch):
    import trio

    starts = tmp_path / "starts"
    script = (f"import os, sys, time; open({str(starts)!r}, 'a').write(str(os.getpid()) + '\\n'); "
              "sys.exit(3) if len(open(%r).read().split()) < 3 else time.sleep(60)" % str(starts))
    monkeypatch.setattr(supervisor, "worker_command", lambda *a: [sys.executable, "-c", script])
    monkeypatch.setattr(supervisor, "RESTART_MIN_S", 0.05)

    async def main() -> None:
        with trio.move_on_after(8):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(supervisor.supervise_role, "trainer", "eve", "http://x", tmp_path)
                while not starts.exists() or len(starts.read_text().split()) < 3:
                    await trio.sleep(0.05)
                await trio.sleep(0.3)
                nursery.cancel_scope.cancel()

    trio.run(main)
    pids = [int(p) for p in starts.read_text().split()]
    assert len(pids) == 3
    import os
    for pid in pids:  # every child is gone (the last one was stopped on cancellation)
        with pytest.raises((ProcessLookupError, ChildProcessError)):
            os.kill(pid, 0)
