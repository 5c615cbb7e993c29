"""A local multi-node network: N `arena node` processes on 127.0.0.1, one per dev authority.

State lives in a base directory: `localnet.json` (PIDs, ports, peer ids), `node-I/` data
directories and `node-I.log` logs. `up` again resumes from the same data.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from node.keystore import DEV_NAMES
from node.rpc_client import RpcClient, RpcClientError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = Path(".localnet")
RPC_BASE_PORT = 9933
P2P_BASE_PORT = 30333


class LocalnetError(RuntimeError):
    """The local network cannot be started, queried or stopped as asked."""


@dataclass(frozen=True)
class NodeSlot:
    index: int
    key: str
    rpc_port: int
    p2p_port: int
    peer_id: str

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"


def peer_id_of(key_path: Path) -> str:
    from libp2p.peer.id import ID

    from p2p.host import load_or_create_node_key
    return ID.from_pubkey(load_or_create_node_key(key_path).public_key).to_base58()


def plan(base: Path, count: int, rpc_base: int = RPC_BASE_PORT, p2p_base: int = P2P_BASE_PORT) -> list[NodeSlot]:
    if not 1 <= count <= len(DEV_NAMES):
        raise LocalnetError(f"a local network has 1 to {len(DEV_NAMES)} nodes")
    slots = []
    for i in range(count):
        data = base / f"node-{i}"
        data.mkdir(parents=True, exist_ok=True)
        slots.append(NodeSlot(i, DEV_NAMES[i], rpc_base + i, p2p_base + i, peer_id_of(data / "node.key")))
    return slots


def _alive(pid: int) -> bool:
    """True while the process runs; reaps it first if it is our exited child (a zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_node(base: Path, slot: NodeSlot, slots: list[NodeSlot], genesis: Path | None, extra: list[str]) -> int:
    bootnodes = ",".join(s.multiaddr for s in slots if s.index != slot.index)
    args = [sys.executable, "-m", "node.cli", "node", "--base-path", str(base / f"node-{slot.index}"),
            "--rpc-port", str(slot.rpc_port), "--p2p-port", str(slot.p2p_port), "--key", slot.key,
            "--name", f"node-{slot.index}", "--prometheus-port", str(slot.rpc_port + 100), *extra]
    if bootnodes:
        args += ["--bootnodes", bootnodes]
    if genesis:
        args += ["--genesis", str(genesis)]
    with open(base / f"node-{slot.index}.log", "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.pid


def up(base: Path, count: int, genesis: Path | None = None, extra_args: dict[int, list[str]] | None = None,
       rpc_base: int = RPC_BASE_PORT, p2p_base: int = P2P_BASE_PORT, wait: float = 60.0) -> list[NodeSlot]:
    """Start the nodes that are not running; wait until each answers RPC."""
    base.mkdir(parents=True, exist_ok=True)
    state = read_state(base)
    if state and state["count"] != count:
        raise LocalnetError(f"{base} holds a {state['count']}-node network; use -n {state['count']} or another --base-dir")
    if state:
        rpc_base, p2p_base = state["rpc_base"], state["p2p_base"]
    slots = plan(base, count, rpc_base, p2p_base)
    pids = dict(enumerate(state.get("pids", []))) if state else {}
    for slot in slots:
        pid = pids.get(slot.index)
        if pid and _alive(pid):
            continue
        pids[slot.index] = start_node(base, slot, slots, genesis, (extra_args or {}).get(slot.index, []))
    write_state(base, {"count": count, "rpc_base": rpc_base, "p2p_base": p2p_base,
                       "pids": [pids[i] for i in range(count)],
                       "nodes": [{"key": s.key, "rpc": s.rpc_url, "p2p": s.multiaddr} for s in slots]})
    deadline = time.monotonic() + wait
    for slot in slots:
        client = RpcClient(slot.rpc_url, timeout=3)
        while True:
            try:
                client.call("system_health")
                break
            except RpcClientError:
                if time.monotonic() > deadline:
                    raise LocalnetError(f"node-{slot.index} did not answer on {slot.rpc_url}; see {base}/node-{slot.index}.log")
                if not _alive(pids[slot.index]):
                    raise LocalnetError(f"node-{slot.index} exited; see {base}/node-{slot.index}.log")
                time.sleep(0.3)
    return slots


def read_state(base: Path) -> dict:
    path = base / "localnet.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(base: Path, state: dict) -> None:
    tmp = base / "localnet.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(base / "localnet.json")


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process we started, then SIGKILL if it lingers."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def down(base: Path) -> int:
    state = read_state(base)
    if not state:
        raise LocalnetError(f"no local network in {base}")
    stopped = 0
    for pid in state["pids"]:
        if pid and _alive(pid):
            stop_pid(pid)
            stopped += 1
    return stopped


def status(base: Path) -> list[dict]:
    state = read_state(base)
    if not state:
        raise LocalnetError(f"no local network in {base}")
    rows = []
    for i, node in enumerate(state["nodes"]):
        row = {"node": f"node-{i}", "key": node["key"], "rpc": node["rpc"], "pid": state["pids"][i],
               "running": _alive(state["pids"][i])}
        try:
            client = RpcClient(node["rpc"], timeout=3)
            health = client.call("system_health")
            row.update(best=health["best"], finalized=health["finalized"], peers=health["peers"],
                       syncing=health["isSyncing"])
        except RpcClientError as exc:
            row["error"] = exc.message
        rows.append(row)
    return rows
