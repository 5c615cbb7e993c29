"""The demo's processes: a 4-node local network on 127.0.0.1 and the worker processes against it.

`Network` starts the nodes (fast genesis: 500 ms slots) and the workers, submits the demo's own
extrinsics, notices a worker that died, and stops every process it started, by PID. `DemoNet` is
what the parts of the demo share: RPC URLs, names, top models, processes and what went wrong.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from node import localnet
from node.rpc_client import RpcClient, call_failed
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT

ROOT = Path(__file__).resolve().parents[2]
SLOT_MS = 500
BOND = 20 * UNIT  # each trainer's and validator's own bond (the role minimum is 10 ARENA)

T = TypeVar("T")


class DemoError(RuntimeError):
    """The demo could not proceed (the message says what to look at)."""


@dataclass
class DemoNet:
    """What the parts of the demo share.

    rpc_urls: the RPC URL of each of the 4 nodes (node-0 first); base_dir: the demo's directory
    (node logs `net/node-I.log`, worker logs `workers/*.log`); names: SS58 address → demo name;
    top_models: per task, the `arena_topModel` reply (taskId, modelCid, trainer, kind, specCid,
    consensusScore, reward, auditKey); processes: name → PID of every process the demo started
    (add yours with `net.processes[name] = pid`: the demo stops them at the end); failures: what
    did not happen as narrated (add with `net.fail(text)`): any failure makes the demo exit 1.
    """

    rpc_urls: list[str]
    base_dir: Path
    names: dict[str, str] = field(default_factory=dict)
    top_models: list[dict] = field(default_factory=list)
    processes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        """Record that a step of the demo did not do what it narrates (the run will exit 1)."""
        self.failures.append(text)

    @property
    def top_model(self) -> dict | None:
        """The first task's top model (the digits classifier), if any."""
        return self.top_models[0] if self.top_models else None


def free_port_base(count: int) -> int:
    """A run of `count` free TCP ports on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 16)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise DemoError("no free range of local ports found")


def fast_genesis(path: Path) -> Path:
    """genesis.json with the demo's short slots, written to `path`."""
    config = json.loads((ROOT / "genesis.json").read_text())
    config["slot_duration_ms"] = SLOT_MS
    path.write_text(json.dumps(config))
    return path


class Network:
    """The processes of one demo run and the clock its narration is timed by."""

    def __init__(self, base: Path, console: Console) -> None:
        self.base = base
        self.console = console
        self.net_dir = base / "net"
        self.log_dir = base / "workers"
        self.workers: dict[str, subprocess.Popen] = {}
        self.net = DemoNet([], base)
        self.started = time.monotonic()
        self.rpc = RpcClient("http://127.0.0.1:1", timeout=10)  # replaced once node-0 answers

    def say(self, text: str) -> None:
        """One line of narration, stamped with the seconds since the demo started."""
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/dim] {text}")

    def start_nodes(self) -> None:
        """Start the 4 authorities and wait until node-0 finalizes."""
        genesis = fast_genesis(self.base / "genesis.json")
        rpc_base, p2p_base = free_port_base(4), free_port_base(4)
        self.say(f"starting 4 nodes (alice, bob, charlie, dave) on 127.0.0.1:{rpc_base}-{rpc_base + 3}, "
                 f"{SLOT_MS} ms slots …")
        slots = localnet.up(self.net_dir, 4, genesis, None, rpc_base, p2p_base, wait=90)
        for i, pid in enumerate(localnet.read_state(self.net_dir)["pids"]):
            self.net.processes[f"node-{i}"] = pid
        self.net.rpc_urls = [s.rpc_url for s in slots]
        self.rpc = RpcClient(self.net.rpc_urls[0], timeout=10)
        self.wait_until(lambda: self.rpc.call("system_health")["finalized"] >= 2, 60,
                        f"the network to finalize (see {self.net_dir}/node-*.log)")
        self.say(f"network up: finalizing, block #{self.rpc.call('system_health')['best']}")

    def start_worker(self, name: str, role: str, keys: list[str], rpc_url: str, *extra: str) -> None:
        """`arena worker --role ROLE` for `keys` against `rpc_url`, logging to workers/NAME.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "node.cli", "worker", "--role", role, "--key", ",".join(keys),
                "--rpc", rpc_url, "--data-dir", str(self.base / "worker-state"), "--torch-threads", "1",
                "--bond", f"{BOND}u", *extra]
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.workers[name] = proc
        self.net.processes[name] = proc.pid

    def check_workers(self) -> None:
        """DemoError when a worker process has exited (it should run until the demo stops it)."""
        for name, proc in self.workers.items():
            if proc.poll() is not None:
                raise DemoError(f"worker {name} exited with code {proc.returncode}; see {self.log_dir / name}.log")

    def stop_all(self) -> None:
        """Stop the workers, any process another part added, and the nodes: each by its PID."""
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        state = localnet.read_state(self.net_dir) if self.net_dir.exists() else None
        known = set(state.get("pids", [])) if state else set()
        for name, pid in self.net.processes.items():  # e.g. the marketplace's host worker
            if name not in self.workers and pid not in known:
                localnet.stop_pid(pid)
        if state:
            localnet.down(self.net_dir)

    def submit_all(self, key: Keypair, calls: list[tuple[str, str, list]]) -> None:
        """Submit calls from one key with consecutive nonces, then wait for all of them."""
        nonce = self.rpc.call("system_accountNextIndex", key.address)
        hashes = [self.rpc.submit(self.rpc.sign(key, m, f, a, nonce=nonce + i)) for i, (m, f, a) in enumerate(calls)]
        for xt_hash, (m, f, _) in zip(hashes, calls):
            failed = call_failed(self.rpc.wait_for(xt_hash, timeout=60))
            if failed:
                raise DemoError(f"{m}.{f} failed: {failed['data'][1]}: {failed['data'][2]}")

    def wait_until(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        """The first truthy `predicate()` (polled twice a second while every worker lives), or DemoError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            self.check_workers()
            time.sleep(0.5)
        raise DemoError(f"timed out waiting for {what}; logs in {self.log_dir} and {self.net_dir}")
