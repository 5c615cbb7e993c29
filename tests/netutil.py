"""Helpers for multi-node tests: a local network with fast slots in a temp dir."""
from __future__ import annotations

import json
import random
import socket
import time
from pathlib import Path

from node import localnet
from node.rpc_client import RpcClient, RpcClientError
from tests.helpers import ROOT


def fast_genesis(tmp: Path, slot_ms: int = 500, **module_overrides: dict) -> Path:
    config = json.loads((ROOT / "genesis.json").read_text())
    config["slot_duration_ms"] = slot_ms
    for name, section in module_overrides.items():
        config["modules"].setdefault(name, {}).update(section)
    path = tmp / "genesis.json"
    path.write_text(json.dumps(config))
    return path


def _ports_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_base(count: int) -> int:
    for _ in range(100):
        base = random.randrange(20000, 60000, 16)
        if _ports_free(base, count):
            return base
    raise RuntimeError("no free port range")


class Net:
    """A localnet in a temp directory; stops its own processes by PID."""

    def __init__(self, tmp: Path, count: int = 4, slot_ms: int = 500, extra: dict | None = None, **genesis) -> None:
        self.base = tmp / "net"
        self.count = count
        self.genesis = fast_genesis(tmp, slot_ms, **genesis)
        self.extra = extra or {}
        self.rpc_base = free_port_base(count)
        self.p2p_base = free_port_base(count)
        self.slots: list[localnet.NodeSlot] = []

    def up(self) -> Net:
        self.slots = localnet.up(self.base, self.count, self.genesis, self.extra, self.rpc_base, self.p2p_base)
        return self

    def client(self, i: int) -> RpcClient:
        return RpcClient(self.slots[i].rpc_url, timeout=10)

    def pid(self, i: int) -> int:
        return localnet.read_state(self.base)["pids"][i]

    def kill(self, i: int) -> None:
        import os
        import signal
        os.kill(self.pid(i), signal.SIGKILL)

    def down(self) -> None:
        if self.base.exists() and localnet.read_state(self.base):
            localnet.down(self.base)

    def health(self, i: int) -> dict | None:
        try:
            return self.client(i).call("system_health")
        except RpcClientError:
            return None

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; last={last}\n{self.logs()}")

    def logs(self, tail: int = 1500) -> str:
        """The end of every node's log, for failure messages."""
        out = []
        for i in range(self.count):
            path = self.base / f"node-{i}.log"
            out.append(f"--- node-{i}\n" + (path.read_text(errors="replace")[-tail:] if path.exists() else "(no log)"))
        return "\n".join(out)

    def finalized_numbers(self, nodes) -> list[int]:
        out = []
        for i in nodes:
            h = self.health(i)
            out.append(h["finalized"] if h else -1)
        return out

    def finalized_chain(self, i: int) -> dict[int, str]:
        c = self.client(i)
        fin = c.call("chain_getHeader", c.call("chain_getFinalizedHead"))["number"]
        return {n: c.call("chain_getBlockHash", n) for n in range(fin + 1)}
