"""`arena localnet` tells the truth: N nodes finalize with N authorities, a node that cannot start
fails `up` with its own error, and `status` never reports a process it did not start."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node import localnet
from node.genesis import load_chain_spec
from node.rpc_client import RpcClient
from tests.helpers import ROOT

pytestmark = pytest.mark.integration


def arena(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_two_nodes_finalize_on_their_own_chain(tmp_path: Path) -> None:
    base = tmp_path / "net"
    started = arena("localnet", "up", "-n", "2", "--base-dir", str(base), "--slot-ms", "500")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "warning" not in started.stderr
        spec = load_chain_spec(base / localnet.SPEC_FILE)
        assert len(spec.config["modules"]["session"]["authorities"]) == 2
        assert spec.genesis_hash != load_chain_spec(None).genesis_hash
        deadline = time.monotonic() + 60
        while True:
            rows = json.loads(arena("localnet", "status", "--json", "--base-dir", str(base)).stdout)
            if all(row.get("finalized", 0) >= 2 for row in rows):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
        assert [row["key"] for row in rows] == ["alice", "bob"] and all(row["peers"] == 1 for row in rows)
        table = arena("localnet", "status", "--base-dir", str(base)).stdout
        assert "final" in table and rows[0]["p2p"] in table and str(rows[0]["pid"]) in table
    finally:
        arena("localnet", "down", "--base-dir", str(base))


def test_a_spec_that_cannot_finalize_is_called_out(tmp_path: Path) -> None:
    # the repository's genesis has four authorities: two of them hold half the stake
    base = tmp_path / "net"
    try:
        localnet.up(base, 2, ROOT / "genesis.json")
        assert "never be finalized" in (localnet.finality_warning(base) or "")
    finally:
        localnet.down(base)


def test_port_in_use_fails_up_and_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = arena("localnet", "up", "-n", "1", "--base-dir", str(tmp_path / "net"), "--base-port", str(port))
        assert result.returncode == 1
        assert f"port {port}" in result.stderr and "in use" in result.stderr


def test_node_that_exits_fails_up_with_its_error(tmp_path: Path) -> None:
    base = tmp_path / "net"
    with pytest.raises(localnet.LocalnetError) as failed:
        localnet.up(base, 1, extra_args={0: ["--allow-cidr", "not-a-cidr"]})
    assert "exited during start" in str(failed.value) and "not-a-cidr" in str(failed.value)


def test_status_does_not_read_a_stranger(tmp_path: Path) -> None:
    base = tmp_path / "net"
    slots = localnet.up(base, 1)
    pid = localnet.read_state(base)["pids"][0]
    os.kill(pid, signal.SIGKILL)
    while localnet._alive(pid):
        time.sleep(0.1)
    # another node (another identity, another data directory) now answers on node-0's RPC port
    stranger = subprocess.Popen([sys.executable, "-m", "node.cli", "node", "--base-path", str(tmp_path / "other"),
                                 "--rpc-port", str(slots[0].rpc_port), "--p2p-port", "0"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = RpcClient(slots[0].rpc_url, timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.call("system_health")
                break
            except Exception:  # noqa: BLE001 - still starting
                assert time.monotonic() < deadline
                time.sleep(0.2)
        row = localnet.status(base)[0]
        assert "best" not in row and row["error"] and not row["running"]
        # and `up` does not mistake it for node-0: the port is taken, so it says so
        with pytest.raises(localnet.LocalnetError, match="in use"):
            localnet.up(base, 1)
    finally:
        stranger.send_signal(signal.SIGTERM)
        stranger.wait(timeout=20)
