"""A local multi-node network: N `arena node` processes on 127.0.0.1, one per dev authority.

State lives in a base directory: `localnet.json` (PIDs, ports, peer ids), `chain-spec.json`,
`node-I/` data directories and `node-I.log` logs. `up` again resumes from the same data.

Without an explicit spec, `up -n N` writes a chain spec with exactly N authorities (the first N
dev accounts) and a fresh genesis salt, so that every N finalizes and no two networks share a
genesis hash. Ports are free ones picked at first start (or `--base-port`), kept for resumes.
`up` fails with the node's own error when a node does not start, and `status` reports only
processes it started and nodes whose peer id is the one it expects.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from node.chainspec import Authority, finality_shortfall, new_chain_spec, write_spec
from node.keystore import DEV_NAMES
from node.rpc_client import RpcClient, RpcClientError
from runtime.crypto import Keypair

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = Path(".localnet")
SPEC_FILE = "chain-spec.json"
DEV_STAKE = 1_000_000_000_000
DEV_ENDOWMENT = 1_000_000_000_000_000


class LocalnetError(RuntimeError):
    """The local network cannot be started, queried or stopped as asked."""


@dataclass(frozen=True)
class NodeSlot:
    index: int
    key: str
    rpc_port: int
    p2p_port: int
    peer_id: str
    prometheus_port: int = 0

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


def _check_count(count: int) -> None:
    if not 1 <= count <= len(DEV_NAMES):
        raise LocalnetError(f"a local network has 1 to {len(DEV_NAMES)} nodes (one per dev account), not {count}")


def plan(base: Path, count: int, rpc_base: int, p2p_base: int, prometheus: list[int] | None = None) -> list[NodeSlot]:
    """Node i uses rpc_base+i and p2p_base+i (and prometheus[i] when given)."""
    return plan_ports(base, count, [(rpc_base + i, p2p_base + i, (prometheus or [0] * count)[i]) for i in range(count)])


def plan_ports(base: Path, count: int, ports: list[tuple[int, int, int]]) -> list[NodeSlot]:
    """One slot per node from explicit (rpc, p2p, prometheus) ports; creates the node keys."""
    _check_count(count)
    slots = []
    for i in range(count):
        data = base / f"node-{i}"
        data.mkdir(parents=True, exist_ok=True)
        rpc, p2p, prom = ports[i]
        slots.append(NodeSlot(i, DEV_NAMES[i], rpc, p2p, peer_id_of(data / "node.key"), prom))
    return slots


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # a port a stopped node left in TIME_WAIT is free for its restart (the node reuses it too)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now (the kernel picks them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def allocate_ports(count: int, base_port: int | None = None) -> list[tuple[int, int, int]]:
    """(rpc, p2p, prometheus) per node: base_port+3i, +1, +2 with --base-port, else free ports."""
    if base_port is not None:
        if not 1024 <= base_port <= 65535 - 3 * count:
            raise LocalnetError(f"--base-port {base_port} leaves no room for {3 * count} ports below 65536")
        return [(base_port + 3 * i, base_port + 3 * i + 1, base_port + 3 * i + 2) for i in range(count)]
    ports = free_ports(3 * count)
    return [(ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(count)]


def localnet_spec(count: int, template: Path | None = None, slot_ms: int | None = None) -> dict:
    """A chain spec with exactly `count` authorities: the first `count` dev accounts."""
    from node.genesis import DEFAULT_GENESIS

    config = json.loads(Path(template or DEFAULT_GENESIS).read_text())
    names = DEV_NAMES[:count]
    authorities = [Authority(Keypair.from_dev_name(n).address, DEV_STAKE) for n in names]
    endowed = [(Keypair.from_dev_name(n).address, DEV_ENDOWMENT) for n in DEV_NAMES]
    spec = new_chain_spec(config, name=f"Arena Localnet ({count} nodes)", chain_id=f"arena_localnet_{count}",
                          authorities=authorities, endowed=endowed, slot_duration_ms=slot_ms)
    spec["dev_accounts"] = config.get("dev_accounts", {})
    return spec


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


def _ours(pid: int, data_dir: Path) -> bool:
    """True if `pid` runs and is the `arena node` of `data_dir` (not a stranger that reused the PID)."""
    if not pid or not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the PID
    return str(data_dir).encode() in cmdline and b"node.cli" in cmdline


def spec_path(base: Path, genesis: Path | None) -> Path | None:
    """The spec the nodes of `base` run: the localnet's own if it has one, else `genesis`."""
    own = base / SPEC_FILE
    return own if own.exists() else genesis


def start_node(base: Path, slot: NodeSlot, slots: list[NodeSlot], genesis: Path | None, extra: list[str]) -> int:
    bootnodes = ",".join(s.multiaddr for s in slots if s.index != slot.index)
    args = [sys.executable, "-m", "node.cli", "node", "--base-path", str(base / f"node-{slot.index}"),
            "--rpc-port", str(slot.rpc_port), "--p2p-port", str(slot.p2p_port), "--key", slot.key,
            "--name", f"node-{slot.index}", *extra]
    if slot.prometheus_port:
        args += ["--prometheus-port", str(slot.prometheus_port)]
    if bootnodes:
        args += ["--bootnodes", bootnodes]
    chain = spec_path(base, genesis)
    if chain:
        args += ["--chain", str(chain)]
    with open(base / f"node-{slot.index}.log", "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.pid


def _log_tail(base: Path, index: int, lines: int = 12) -> str:
    path = base / f"node-{index}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def up(base: Path, count: int, genesis: Path | None = None, extra_args: dict[int, list[str]] | None = None,
       rpc_base: int | None = None, p2p_base: int | None = None, wait: float = 60.0,
       base_port: int | None = None, slot_ms: int | None = None) -> list[NodeSlot]:
    """Start the nodes that are not running; wait until each answers RPC as the node we expect.

    `genesis` is a spec used as given; without it the network gets its own spec with exactly
    `count` authorities. Raises `LocalnetError`, with the node's own log lines, when a node fails.
    """
    _check_count(count)
    base.mkdir(parents=True, exist_ok=True)
    state = read_state(base)
    if state and state["count"] != count:
        raise LocalnetError(f"{base} holds a {state['count']}-node network; use -n {state['count']} or another --base-dir")
    if state:
        ports = [tuple(p) for p in state["ports"]]
    elif rpc_base is not None and p2p_base is not None:
        prom = free_ports(count)
        ports = [(rpc_base + i, p2p_base + i, prom[i]) for i in range(count)]
    else:
        ports = allocate_ports(count, base_port)
    if genesis is None and not (base / SPEC_FILE).exists():
        write_spec(base / SPEC_FILE, localnet_spec(count, slot_ms=slot_ms))
    slots = plan_ports(base, count, ports)  # type: ignore[arg-type]
    pids = dict(enumerate(state.get("pids", []))) if state else {}
    to_start = [s for s in slots if not _ours(pids.get(s.index, 0), base / f"node-{s.index}")]
    for slot in to_start:
        for port, what in ((slot.rpc_port, "RPC"), (slot.p2p_port, "p2p"), (slot.prometheus_port, "metrics")):
            if port and not _port_free(port):
                raise LocalnetError(f"node-{slot.index}: {what} port {port} on 127.0.0.1 is in use by another "
                                    f"process; stop it, or start elsewhere with another --base-dir and --base-port")
    for slot in to_start:
        pids[slot.index] = start_node(base, slot, slots, genesis, (extra_args or {}).get(slot.index, []))
    write_state(base, {"count": count, "ports": [list(p) for p in ports], "pids": [pids[i] for i in range(count)],
                       "chain": str(spec_path(base, genesis) or ""),
                       "nodes": [{"key": s.key, "rpc": s.rpc_url, "p2p": s.multiaddr, "peerId": s.peer_id}
                                 for s in slots]})
    deadline = time.monotonic() + wait
    for slot in slots:
        _wait_until_answering(base, slot, pids[slot.index], deadline)
    return slots


def _wait_until_answering(base: Path, slot: NodeSlot, pid: int, deadline: float) -> None:
    client = RpcClient(slot.rpc_url, timeout=3)
    while True:
        if not _alive(pid):
            raise LocalnetError(f"node-{slot.index} exited during start; last lines of {base}/node-{slot.index}.log:\n"
                                f"{_log_tail(base, slot.index)}")
        try:
            local = client.call("system_localPeer")
            if local is None or local.get("peerId") == slot.peer_id:
                return
            raise LocalnetError(f"node-{slot.index}: {slot.rpc_url} is answered by another node (peer "
                                f"{local.get('peerId')}, expected {slot.peer_id})")
        except RpcClientError:
            if time.monotonic() > deadline:
                raise LocalnetError(f"node-{slot.index} did not answer on {slot.rpc_url}; last lines of "
                                    f"{base}/node-{slot.index}.log:\n{_log_tail(base, slot.index)}") from None
            time.sleep(0.3)


def read_state(base: Path) -> dict:
    path = base / "localnet.json"
    if not path.exists():
        return {}
    state = json.loads(path.read_text())
    if "ports" not in state and "rpc_base" in state:  # written before ports were kept per node
        state["ports"] = [[state["rpc_base"] + i, state["p2p_base"] + i, 0] for i in range(state["count"])]
    return state


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
    for i, pid in enumerate(state["pids"]):
        if pid and _ours(pid, base / f"node-{i}"):
            stop_pid(pid)
            stopped += 1
    return stopped


def finality_warning(base: Path) -> str | None:
    """Why this network cannot finalize (its spec's authorities are not run by its nodes), or None."""
    state = read_state(base)
    chain = state.get("chain") if state else None
    from node.genesis import DEFAULT_GENESIS
    config = json.loads(Path(chain or DEFAULT_GENESIS).read_text())
    running = [Keypair.from_dev_name(n["key"]).address for n in state.get("nodes", [])]
    return finality_shortfall(config, running)


def status(base: Path) -> list[dict]:
    """One row per node: our process or not, and what its RPC says (only if it is the node we started)."""
    state = read_state(base)
    if not state:
        raise LocalnetError(f"no local network in {base}")
    rows = []
    for i, node in enumerate(state["nodes"]):
        pid = state["pids"][i]
        running = _ours(pid, base / f"node-{i}")
        row: dict = {"node": f"node-{i}", "key": node["key"], "rpc": node["rpc"], "p2p": node["p2p"],
                     "pid": pid, "running": running}
        if not running:
            row["error"] = "not running"
            rows.append(row)
            continue
        try:
            client = RpcClient(node["rpc"], timeout=3)
            local = client.call("system_localPeer")
            if local is not None and node.get("peerId") and local.get("peerId") != node["peerId"]:
                row["error"] = f"RPC answered by another node (peer {local.get('peerId')})"
            else:
                health = client.call("system_health")
                row.update(best=health["best"], finalized=health["finalized"], peers=health["peers"],
                           syncing=health["isSyncing"])
        except RpcClientError as exc:
            row["error"] = exc.message
        rows.append(row)
    return rows
