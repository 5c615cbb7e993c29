"""Network figures on real node processes (127.0.0.1):

1. on a 4-node network (1 s slots): p50/p99 submission→finality latency at a light load, then
   sustained signed transfers per second from submission to finality under an offered load
   above capacity, with its latencies;
2. blocks per second when a fresh node syncs 10,000 blocks from a peer.

Raw limits printed beside them, measured in the same run: the single-core block import rate
(bench/import.py's measurement) and ed25519 verifications per second.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_rows, row
from node import localnet
from node.chain import Chain
from node.genesis import load_chain_spec
from node.storage import ChainStore
from runtime.crypto import Keypair, blake2b_256
from runtime.executive import SPEC_VERSION
from runtime.types import Call, sign_extrinsic

ROOT = Path(__file__).resolve().parent.parent
SENDERS = int(os.environ.get("BENCH_NET_SENDERS", "512"))
TARGET_TPS = int(os.environ.get("BENCH_NET_TPS", "2500"))
DURATION_S = float(os.environ.get("BENCH_NET_SECONDS", "20"))
LIGHT_TPS = int(os.environ.get("BENCH_NET_LIGHT_TPS", "100"))
LIGHT_SECONDS = float(os.environ.get("BENCH_NET_LIGHT_SECONDS", "10"))
SYNC_BLOCKS = int(os.environ.get("BENCH_SYNC_BLOCKS", "10000"))


def bench_genesis(tmp: Path, keys: list[Keypair], authorities: int = 4, slot_ms: int = 1000) -> Path:
    config = json.loads((ROOT / "genesis.json").read_text())
    config["slot_duration_ms"] = slot_ms
    config["modules"]["balances"]["accounts"] += [[k.address, 10**13] for k in keys]
    session = config["modules"].get("session", {})
    session["authorities"] = session.get("authorities", [])[:authorities]
    kept = {a for a, _ in session["authorities"]}
    staking = config["modules"].get("staking", {})
    staking["bonds"] = [b for b in staking.get("bonds", []) if b[1] != "authority" or b[0] in kept]
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "genesis.json"
    path.write_text(json.dumps(config))
    return path


def presign(spec, keys: list[Keypair], first_nonce: int, per_key: int) -> list[list[bytes]]:
    dest = Keypair.from_dev_name("bench-sink").public_key
    out = []
    for key in keys:
        xts = []
        for nonce in range(first_nonce, first_nonce + per_key):
            call = Call("balances", "transfer", [dest, 1 + nonce])
            xts.append(sign_extrinsic(key, call, nonce, spec.genesis_hash, SPEC_VERSION))
        out.append(xts)
    return out


def rpc_batch(client: httpx.Client, url: str, xts: list[bytes]) -> None:
    body = [{"jsonrpc": "2.0", "id": i, "method": "author_submitExtrinsic", "params": ["0x" + x.hex()]}
            for i, x in enumerate(xts)]
    client.post(url, json=body, timeout=30)


def offer_load(urls: list[str], signed: list[list[bytes]], tps: int, duration: float) -> tuple[dict[bytes, float], float]:
    """Submit pre-signed transfers round-robin over the nodes at about `tps` for `duration` seconds."""
    submitted_at: dict[bytes, float] = {}
    senders = len(signed)
    step = 0.1
    per_step = max(1, round(tps * step / senders))
    per_key = len(signed[0])
    client = httpx.Client()
    start = time.monotonic()
    cursor = 0
    while time.monotonic() - start < duration and cursor < per_key:
        tick = time.monotonic()
        batch = [x for k in range(senders) for x in signed[k][cursor:cursor + per_step]]
        cursor += per_step
        now = time.monotonic()
        for x in batch:
            submitted_at[blake2b_256(x)] = now
        parts = [batch[i::len(urls)] for i in range(len(urls))]
        threads = [threading.Thread(target=rpc_batch, args=(client, urls[i], part[j:j + 100]))
                   for i, part in enumerate(parts) for j in range(0, len(part), 100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(max(0.0, step - (time.monotonic() - tick)))
    return submitted_at, time.monotonic() - start


def follow_finality(url: str, submitted_at: dict[bytes, float], from_block: int, timeout: float) -> tuple[dict[bytes, float], int]:
    """Poll finalized blocks until every submitted transfer is final (or the timeout)."""
    rpc = httpx.Client()

    def call(method: str, *params: object) -> object:
        reply = rpc.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        return reply.json()["result"]

    finalized_at: dict[bytes, float] = {}
    seen = from_block
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(finalized_at) < len(submitted_at):
        fin = call("chain_getHeader", call("chain_getFinalizedHead"))["number"]
        now = time.monotonic()
        for n in range(seen + 1, fin + 1):
            block = call("chain_getBlock", call("chain_getBlockHash", n))["block"]
            for x in block["extrinsics"]:
                digest = blake2b_256(bytes.fromhex(x[2:]))
                if digest in submitted_at:
                    finalized_at.setdefault(digest, now)
        seen = max(seen, fin)
        time.sleep(0.1)
    return finalized_at, seen


def measure(urls: list[str], signed: list[list[bytes]], tps: int, duration: float, from_block: int):
    submitted_at, window = offer_load(urls, signed, tps, duration)
    start = min(submitted_at.values())
    finalized_at, last_block = follow_finality(urls[0], submitted_at, from_block, 90)
    latencies = sorted(finalized_at[h] - submitted_at[h] for h in finalized_at)
    end = max(finalized_at.values()) if finalized_at else start
    rate = len(latencies) / max(end - start, window)
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan")
    return rate, len(submitted_at) / window, p50, p99, len(finalized_at), len(submitted_at), last_block


def throughput(tmp: Path) -> list[dict]:
    from tests.netutil import free_port_base

    keys = [Keypair.from_dev_name(f"bench-{i}") for i in range(SENDERS)]
    genesis = bench_genesis(tmp, keys)
    spec = load_chain_spec(genesis)
    light_per_key = int(LIGHT_TPS * LIGHT_SECONDS / SENDERS) + 1
    heavy_per_key = int(TARGET_TPS * DURATION_S / SENDERS) + 1
    light = presign(spec, keys, 0, light_per_key)
    heavy = presign(spec, keys, light_per_key, heavy_per_key)
    base = tmp / "net"
    slots = localnet.up(base, 4, genesis, None, free_port_base(4), free_port_base(4))
    urls = [s.rpc_url for s in slots]
    try:
        time.sleep(3)
        _, _, l_p50, l_p99, l_done, l_sent, last = measure(urls, light, LIGHT_TPS, LIGHT_SECONDS, 0)
        h_rate, h_offered, h_p50, h_p99, h_done, h_sent, _ = measure(urls, heavy, TARGET_TPS, DURATION_S, last)
    finally:
        localnet.down(base)
    return [
        row(f"4 nodes, light load: p50 submission->finality ({l_done}/{l_sent} final)", l_p50, "s",
            "slot duration", 1.0),
        row("4 nodes, light load: p99 submission->finality", l_p99, "s", "slot duration", 1.0),
        row(f"4 nodes, saturated: transfers finalized/s ({h_done}/{h_sent} final)", h_rate, "tx/s",
            "offered load (tx/s)", h_offered),
        row("4 nodes, saturated: p50 submission->finality", h_p50, "s", "slot duration", 1.0),
        row("4 nodes, saturated: p99 submission->finality", h_p99, "s", "slot duration", 1.0),
    ]


def sync_rate(tmp: Path) -> list[dict]:
    genesis = bench_genesis(tmp, [], authorities=1, slot_ms=1000)
    spec = load_chain_spec(genesis)
    base = tmp / "sync"
    from tests.netutil import free_port_base
    rpc_base, p2p_base = free_port_base(2), free_port_base(2)
    localnet.plan(base, 2, rpc_base, p2p_base)  # creates node keys
    chain = Chain(spec, ChainStore(str(base / "node-0" / "db")))
    alice = Keypair.from_dev_name("alice")
    first_slot = (time.time_ns() // 1_000_000) // 1000 - SYNC_BLOCKS - 10
    build_start = time.perf_counter()
    for i in range(SYNC_BLOCKS):
        slot = first_slot + i
        chain.build_block(alice, slot, slot * 1000, [])
    build_rate = SYNC_BLOCKS / (time.perf_counter() - build_start)
    chain.store.close()
    try:
        slots = localnet.up(base, 1, genesis, None, rpc_base, p2p_base)
        # second node: fresh, bootnode = node-0
        slot1 = localnet.plan(base, 2, rpc_base, p2p_base)[1]
        state = localnet.read_state(base)
        pid = localnet.start_node(base, slot1, localnet.plan(base, 2, rpc_base, p2p_base), genesis, ["--key", "ferdie"])
        state["pids"].append(pid)
        state["count"] = 2
        localnet.write_state(base, state)
        launched = time.monotonic()
        client = httpx.Client()
        best = 0
        first_seen: tuple[float, int] | None = None  # (time, best) when the first synced block showed up
        while time.monotonic() - launched < 120:
            try:
                r = client.post(slot1.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "system_health", "params": []})
                best = r.json()["result"]["best"]
                if best > 0 and first_seen is None:
                    first_seen = (time.monotonic(), best)
                if best >= SYNC_BLOCKS:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        done_at = time.monotonic()
        with_start = best / (done_at - launched)
        synced = (best - first_seen[1]) / (done_at - first_seen[0]) if first_seen and done_at > first_seen[0] else 0.0
    finally:
        localnet.down(base)
    del slots
    return [
        row(f"fresh node syncs {SYNC_BLOCKS} blocks: import rate while syncing", synced, "blocks/s",
            "same blocks built in-process, 1 core", build_rate),
        row(f"fresh node syncs {SYNC_BLOCKS} blocks: including process start", with_start, "blocks/s",
            "same blocks built in-process, 1 core", build_rate),
    ]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"terminated by signal {signum}")  # unwinds through the `finally` that stops our nodes


def run() -> list[dict]:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory() as tmp:
        rows = throughput(Path(tmp) / "a")
    with tempfile.TemporaryDirectory() as tmp:
        rows += sync_rate(Path(tmp) / "b")
    return rows


if __name__ == "__main__":
    print_rows(run())
