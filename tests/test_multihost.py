"""Nodes and workers as separate hosts: each in its own network namespace on a private bridge.

Four authorities of a new network (`arena chain-spec new`, keys put in place with `arena key
insert`) run in four namespaces with non-loopback listen, RPC and bootnode addresses; a fifth
namespace holds a client and a worker that reach their node only over the bridge. Cutting one
host's link leaves the other three finalizing; restoring it, the host catches up. Nothing is
sent outside the namespaces the test creates (tests/netns.py: no default route).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.localnet import peer_id_of
from node.rpc_client import RpcClient, RpcClientError
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT
from tests.helpers import ROOT
from tests.netns import CIDR, NetnsLab, unavailable

pytestmark = pytest.mark.integration

AUTHORITIES = ("alice", "bob", "charlie", "dave")
P2P, RPC = 30333, 9933


def _arena(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def lab():
    reason = unavailable()
    if reason:
        if os.environ.get("ARENA_REQUIRE_NETNS"):
            pytest.fail(f"multi-host test cannot run: {reason}")
        pytest.skip(reason)
    with NetnsLab(5) as made:  # a failure to create namespaces as root fails the test, saying why
        yield made


class Hosts:
    """Node and worker processes inside the lab's namespaces, stopped by PID."""

    def __init__(self, lab: NetnsLab, tmp: Path) -> None:
        self.lab, self.tmp = lab, tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, host: int, *args: str) -> subprocess.Popen:
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = self.lab.popen(host, [sys.executable, "-m", "node.cli", *args], cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(self.tmp.glob("*.log")))


def test_four_hosts_finalize_serve_a_remote_worker_and_survive_a_cut_link(lab: NetnsLab, tmp_path: Path) -> None:
    worker_key = Keypair.from_dev_name("multihost-validator")
    spec = tmp_path / "spec.json"
    made = _arena("chain-spec", "new", "--name", "Multihost", "--id", "multihost", "--slot-ms", "500",
                  *[a for name in AUTHORITIES for a in ("--authority", name)],
                  "--endow", "alice=1000000", "-o", str(spec))
    assert made.returncode == 0, made.stderr
    peers = []
    for i, name in enumerate(AUTHORITIES):
        base = tmp_path / f"node-{i}"
        inserted = _arena("key", "insert", "--base-path", str(base), "--key", name, "--chain", str(spec))
        assert inserted.returncode == 0 and "warning" not in inserted.stderr, inserted.stderr
        peers.append(f"/ip4/{lab.address(i)}/tcp/{P2P}/p2p/{peer_id_of(base / 'node.key')}")
    hosts = Hosts(lab, tmp_path)
    urls = [f"http://{lab.address(i)}:{RPC}" for i in range(4)]

    def health(i: int, via: int = 4) -> dict | None:
        try:
            return lab.call(via, lambda: RpcClient(urls[i], timeout=3).call("system_health"))
        except RpcClientError:
            return None

    def wait(predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, proc in hosts.procs.items() if proc.poll() is not None]
            if dead:
                raise AssertionError(f"{', '.join(dead)} exited while waiting for {what}\n{hosts.logs()}")
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}\n{hosts.logs()}")

    def finalized(i: int, via: int = 4) -> int:
        h = health(i, via)
        return h["finalized"] if h else -1

    try:
        for i in range(4):
            hosts.start(f"node-{i}", i, "node", "--chain", str(spec), "--base-path", str(tmp_path / f"node-{i}"),
                        "--name", f"host-{i}", "--listen-addr", f"/ip4/{lab.address(i)}/tcp/{P2P}",
                        "--allow-cidr", CIDR, "--rpc-addr", f"{lab.address(i)}:{RPC}", "--rpc-external",
                        "--bootnodes", ",".join(p for j, p in enumerate(peers) if j != i))
        wait(lambda: all(finalized(i) >= 3 for i in range(4)), 60, "all four hosts finalize")
        local = lab.call(4, lambda: RpcClient(urls[0]).call("system_localPeer"))
        assert local["listen"] == peers[0]  # peers are told the host's own address, not loopback

        # a client on a fifth host funds the worker's account through host 0's RPC
        sent = subprocess.run(lab.exec_args(4, [sys.executable, "-m", "node.cli", "tx", "transfer", "--from", "alice",
                                                "--to", worker_key.address, "--amount", "100", "--rpc", urls[0]]),
                              check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        # a worker on the fifth host bonds through host 1's RPC
        hosts.start("worker", 4, "worker", "--role", "validator", "--key", "//multihost-validator", "--rpc", urls[1],
                    "--data-dir", str(tmp_path / "worker"), "--bond", "20")
        def worker_bonded() -> bool:  # read on another host: the bond is on the chain, not just in one pool
            stakes = lab.call(4, lambda: RpcClient(urls[2]).call("arena_stakes", worker_key.address))
            return stakes["bonds"].get("validator") == 20 * UNIT
        wait(worker_bonded, 60, "the remote worker's bond on chain")

        # cut host 3: the other three (3/4 of the stake) keep finalizing, host 3 cannot
        lab.cut(3)
        cut_at = max(finalized(i) for i in range(3))
        stuck = finalized(3, via=3)
        wait(lambda: min(finalized(i) for i in range(3)) >= cut_at + 4, 60, "finality without host 3")
        assert finalized(3, via=3) <= max(stuck, cut_at)
        # restore it: it catches up to what the others finalized meanwhile, on the same chain
        lab.restore(3)
        target = min(finalized(i) for i in range(3))
        wait(lambda: finalized(3, via=4) >= target, 60, "host 3 catches up")
        same = lab.call(4, lambda: [RpcClient(urls[i]).call("chain_getBlockHash", target) for i in (0, 3)])
        assert same[0] == same[1]
        assert hosts.procs["worker"].poll() is None, hosts.logs()
    finally:
        hosts.stop()


def test_worker_ipfs_api_follows_a_remote_node() -> None:
    from node.urls import ipfs_api_multiaddr

    assert ipfs_api_multiaddr("http://10.0.0.5:9933", None) == "/ip4/10.0.0.5/tcp/9933/http"
    assert ipfs_api_multiaddr("http://node.example:9933", None) == "/dns/node.example/tcp/9933/http"
    assert ipfs_api_multiaddr("http://[fd00::5]:9933", None) == "/ip6/fd00::5/tcp/9933/http"
    assert ipfs_api_multiaddr("http://10.0.0.5:9933", "http://10.0.0.9:5001") == "/ip4/10.0.0.9/tcp/5001/http"
    assert ipfs_api_multiaddr("http://10.0.0.5:9933", "/ip4/10.0.0.9/tcp/5001") == "/ip4/10.0.0.9/tcp/5001"
