"""Network figures on real node processes (127.0.0.1), with the raw limits measured in the same run.

1. A paced sweep on a 4-node network (1 s slots; BENCH_NET_NODES sets another count, each node an
   authority): for each offered rate (BENCH_NET_RATES, tx/s)
   transfers are submitted on a fixed schedule for BENCH_NET_SECONDS, each sender always to the
   same node (its nonces stay in order) and in JSON-RPC batches of at most 100. A refused
   transfer ("pool full, retry") is retried later, as a client would; refusals are counted.
   While offering, every node is followed: its finalized head (a `system_health` poll every
   ~100 ms) and the contents of every finalized block. The RPC figure is `system_health`'s
   latency seen by a client in its own process (`health_probe`, each node every 50 ms): the
   bench process itself is busy signing, submitting and decoding blocks, and its threads wait
   for its GIL (that figure is printed beside, as "bench-process client"). Printed
   per step: offered / accepted / finalized tx/s, p50 and p99 submission→finality latency (on the
   node the transfer was sent to), forks (reorgs and kept fork blocks from the nodes' logs),
   `system_health` p99, largest block, CPU of the node processes per finalized transfer, and
   how long their threads were runnable but waited for a core (/proc schedstat).
   A node that exits, or stops answering, is reported as a failure of that step.
2. Blocks per second when a fresh node syncs BENCH_SYNC_BLOCKS blocks from a peer.

Raw limits (same run, same machine): ed25519 verifications/s on one thread and on every core,
and the runtime's own cost of a transfer (check incl. signature, apply) in-process; from them the
signature bound (all cores / the nodes, each verifying every transfer once) and the runtime bound
(all cores / the nodes, each checking and applying every transfer).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_rows, rate, row
from node import localnet
from node.chain import Chain
from node.genesis import load_chain_spec
from node.storage import ChainStore
from runtime.crypto import Keypair, blake2b_256
from runtime.executive import SPEC_VERSION
from runtime.types import Call, sign_extrinsic

ROOT = Path(__file__).resolve().parent.parent
NODES = int(os.environ.get("BENCH_NET_NODES", "4"))  # the figure is for 4 nodes on this machine
SENDERS = int(os.environ.get("BENCH_NET_SENDERS", "1024"))
RATES = [int(r) for r in os.environ.get("BENCH_NET_RATES", "200,500,1000,2000,3000,4000").split(",") if r.strip()]
STEP_S = float(os.environ.get("BENCH_NET_SECONDS", "20"))
DRAIN_S = float(os.environ.get("BENCH_NET_DRAIN", "8"))
SYNC_BLOCKS = int(os.environ.get("BENCH_SYNC_BLOCKS", "10000"))
CORES = os.cpu_count() or 1
BATCH = 100
TICK_S = 0.02
HEALTH_TIMEOUT_S = 5.0
POOL_FULL = 1014


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


# ------------------------------------------------------------------ raw limits


def verification_rates() -> tuple[float, float]:
    """ed25519 verifications/s on one thread, and on CORES threads (pynacl releases the GIL)."""
    key = nacl.signing.SigningKey.generate()
    message = b"m" * 120
    signature = key.sign(message).signature
    verify_key = key.verify_key

    def batch() -> int:
        for _ in range(300):
            verify_key.verify(message, signature)
        return 300

    one = rate(batch, 1.0)
    results: list[float] = []
    threads = [threading.Thread(target=lambda: results.append(rate(batch, 1.0))) for _ in range(CORES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return one, sum(results)


def runtime_costs(genesis: Path, keys: list[Keypair], workdir: Path,
                  clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """Seconds per transfer of the runtime's check (with its signature) and of its apply, in-process
    (by `clock`: the wall clock, or `time.process_time` for this process's CPU time)."""
    spec = load_chain_spec(genesis)
    chain = Chain(spec, ChainStore(str(workdir / "runtime-cost")))
    sink = Keypair.from_dev_name("bench-sink").public_key
    xts = [sign_extrinsic(k, Call("balances", "transfer", [sink, 1]), 0, spec.genesis_hash, SPEC_VERSION)
           for k in keys[:2000]]
    chain.verified_signatures.clear()
    start = clock()
    for x in xts:
        chain.check_for_pool(x)
    check = (clock() - start) / len(xts)
    # apply: build one block of them (signatures now cached, as on a node that admitted them)
    start = clock()
    block, _, _rejected = chain.build_block(keys[0], 10**9, spec.config["timestamp_ms"] + 1000, xts, budget_s=60.0)
    apply = (clock() - start) / max(1, len(block.extrinsics))
    chain.store.close()
    return check, apply


# ------------------------------------------------------------------ load and following


@dataclass
class Step:
    rate: int
    submitted_at: dict[bytes, float] = field(default_factory=dict)
    node_of: dict[bytes, int] = field(default_factory=dict)
    refused: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Follow:
    """What the followers saw: finalized block contents, each node's finality times, RPC latencies."""
    block_of: dict[bytes, int] = field(default_factory=dict)      # tx hash -> finalized block number
    block_size: dict[int, int] = field(default_factory=dict)
    fin_time: list[dict[int, float]] = field(default_factory=list)  # per node: block number -> first seen final
    health_latency: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def _call(client: httpx.Client, url: str, method: str, *params: object, timeout: float = HEALTH_TIMEOUT_S) -> object:
    reply = client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=timeout)
    body = reply.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


def follower(index: int, url: str, follow: Follow) -> None:
    """Poll one node's finalized head; fetch finalized blocks nobody has fetched yet."""
    client = httpx.Client()
    seen = 0
    failing_since: float | None = None
    times = follow.fin_time[index]
    while not follow.stop.is_set():
        began = time.monotonic()
        try:
            health = _call(client, url, "system_health")
            done = time.monotonic()
            failing_since = None
            assert isinstance(health, dict)
            with follow.lock:
                follow.health_latency.append(done - began)
            fin = int(health["finalized"])
            for number in range(seen + 1, fin + 1):
                with follow.lock:
                    times.setdefault(number, done)
                    known = number in follow.block_size
                if not known:
                    block_hash = _call(client, url, "chain_getBlockHash", number, timeout=30)
                    block = _call(client, url, "chain_getBlock", block_hash, timeout=30)
                    assert isinstance(block, dict)
                    xts = block["block"]["extrinsics"]
                    with follow.lock:
                        follow.block_size[number] = len(xts)
                        for x in xts:
                            follow.block_of[blake2b_256(bytes.fromhex(x[2:]))] = number
            seen = max(seen, fin)
        except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > 10:
                with follow.lock:
                    follow.failures.append(f"node-{index} RPC failing for 10 s: {type(exc).__name__}: {exc}")
                failing_since = now
        time.sleep(max(0.0, 0.1 - (time.monotonic() - began)))


PROBE_PERIOD_S = 0.05


def health_probe(urls: list[str], out: Any, stop: Any) -> None:
    """In a process of its own, as a user's client would be: time `system_health` on every node
    each PROBE_PERIOD_S; put (monotonic start, seconds) on `out` (a failure counts as the timeout)."""
    import http.client
    import urllib.parse

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system_health", "params": []}).encode()
    conns: dict[str, http.client.HTTPConnection] = {}
    while not stop.is_set():
        began_round = time.monotonic()
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            began = time.monotonic()
            try:
                conn = conns.get(url)
                if conn is None:
                    conn = conns[url] = http.client.HTTPConnection(parts.hostname, parts.port, timeout=HEALTH_TIMEOUT_S)
                conn.request("POST", parts.path or "/", body, {"Content-Type": "application/json"})
                reply = conn.getresponse()
                data = reply.read()
                if reply.status != 200 or b'"result"' not in data:
                    raise OSError(f"HTTP {reply.status}")
                out.put((began, time.monotonic() - began))
            except (OSError, http.client.HTTPException):
                conns.pop(url, None)
                out.put((began, HEALTH_TIMEOUT_S))
        time.sleep(max(0.0, PROBE_PERIOD_S - (time.monotonic() - began_round)))


def drain_probe(probe: Any, into: list[tuple[float, float]]) -> None:
    """Move what the probe measured so far into `into`."""
    while True:
        try:
            into.append(probe.get_nowait())
        except Empty:
            return


def offer(urls: list[str], queues: list[list[bytes]], step: Step, duration: float) -> float:
    """Submit on schedule: `step.rate` tx/s in total, sender k always to node k % NODES."""
    per_node = [[q for k, q in enumerate(queues) if k % NODES == n] for n in range(NODES)]
    start = time.monotonic()
    lock = threading.Lock()

    def run(node: int) -> None:
        client = httpx.Client()
        senders = per_node[node]
        cursor = [0] * len(senders)   # next unsent transfer of each sender
        turn = 0                      # round-robin over senders
        due_total = 0.0
        sent = 0
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= duration:
                return
            due_total = step.rate / NODES * elapsed
            want = int(due_total) - sent
            while want > 0:
                batch: list[tuple[int, bytes]] = []
                tries = 0
                while len(batch) < min(BATCH, want) and tries < len(senders):
                    k = turn % len(senders)
                    turn += 1
                    if cursor[k] < len(senders[k]) and all(s != k for s, _ in batch):
                        batch.append((k, senders[k][cursor[k]]))
                        tries = 0
                    else:
                        tries += 1
                if not batch:
                    break
                body = [{"jsonrpc": "2.0", "id": i, "method": "author_submitExtrinsic", "params": ["0x" + x.hex()]}
                        for i, (_, x) in enumerate(batch)]
                now = time.monotonic()
                try:
                    replies = client.post(urls[node], json=body, timeout=30).json()
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        step.errors.append(f"node-{node} submit: {type(exc).__name__}: {exc}")
                    time.sleep(0.2)
                    break
                by_id = {r.get("id"): r for r in replies} if isinstance(replies, list) else {}
                for i, (k, x) in enumerate(batch):
                    reply = by_id.get(i, {})
                    error = reply.get("error")
                    if error is None or "AlreadyInPool" in str(error.get("message", "")):
                        digest = blake2b_256(x)
                        with lock:
                            step.submitted_at.setdefault(digest, now)
                            step.node_of[digest] = node
                        cursor[k] += 1
                        sent += 1
                        want -= 1
                    elif error.get("code") == POOL_FULL:
                        with lock:
                            step.refused += 1
                        sent += 1           # the slot in the schedule is used; the transfer is retried later
                        want -= 1
                    else:
                        cursor[k] += 1      # invalid (e.g. stale after a lost pool entry): skip it
                        sent += 1
                        want -= 1
                        with lock:
                            if len(step.errors) < 20:
                                step.errors.append(f"node-{node}: {error.get('message', error)}"[:200])
            time.sleep(TICK_S)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(NODES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # what was sent is consumed: drop it from the queues for the next step
    for q in queues:
        sent_here = 0
        while sent_here < len(q) and blake2b_256(q[sent_here]) in step.submitted_at:
            sent_here += 1
        del q[:sent_here]
    return time.monotonic() - start


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def core_wait_seconds(pids: list[int]) -> float:
    """Seconds the processes' threads have spent runnable but waiting for a core (schedstat)."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return total / 1e9


def log_counts(base: Path) -> tuple[int, int]:
    """Reorgs and kept fork blocks over all nodes' logs so far."""
    reorgs = forks = 0
    for index in range(NODES):
        try:
            text = (base / f"node-{index}.log").read_text(errors="replace")
        except OSError:
            continue
        reorgs += len(re.findall(r"reorg: retracting", text))
        forks += len(re.findall(r"kept fork block", text))
    return reorgs, forks


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def presign(spec, keys: list[Keypair], per_key: int) -> list[list[bytes]]:
    dest = Keypair.from_dev_name("bench-sink").public_key
    return [[sign_extrinsic(key, Call("balances", "transfer", [dest, 1 + nonce]), nonce, spec.genesis_hash, SPEC_VERSION)
             for nonce in range(per_key)] for key in keys]


def sweep(tmp: Path) -> tuple[list[dict], list[dict]]:
    from tests.netutil import free_port_base

    keys = [Keypair.from_dev_name(f"bench-{i}") for i in range(SENDERS)]
    genesis = bench_genesis(tmp, keys, authorities=NODES)
    spec = load_chain_spec(genesis)
    verify_one, verify_all = verification_rates()
    check_s, apply_s = runtime_costs(genesis, keys, tmp)
    sig_bound = verify_all / NODES
    runtime_bound = CORES / (NODES * (check_s + apply_s))
    runtime_cpu_per_tx = NODES * (check_s + apply_s)
    total = int(sum(RATES) * STEP_S * 1.3) + SENDERS
    per_key = total // SENDERS + 1
    t0 = time.perf_counter()
    queues = presign(spec, keys, per_key)
    print(f"   presigned {per_key * SENDERS} transfers in {time.perf_counter() - t0:.1f} s; "
          f"verify {verify_one:.0f}/s (1 thread), {verify_all:.0f}/s ({CORES} threads); "
          f"check {check_s * 1e6:.0f} us + apply {apply_s * 1e6:.0f} us per transfer", flush=True)
    base = tmp / "net"
    slots = localnet.up(base, NODES, genesis, None, free_port_base(NODES), free_port_base(NODES))
    urls = [s.rpc_url for s in slots]
    pids = list(localnet.read_state(base)["pids"])
    follow = Follow(fin_time=[{} for _ in range(NODES)])
    threads = [threading.Thread(target=follower, args=(i, u, follow), daemon=True) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    context = multiprocessing.get_context("spawn")
    probe_out, probe_stop = context.Queue(), context.Event()
    probe = context.Process(target=health_probe, args=(urls, probe_out, probe_stop), daemon=True)
    probe.start()
    probed: list[tuple[float, float]] = []
    table: list[dict] = []
    rows: list[dict] = []
    every: dict[bytes, tuple[float, int]] = {}  # all steps' accepted transfers: (sent at, node)
    try:
        time.sleep(3)
        for offered in RATES:
            step = Step(offered)
            cpu0, wait0, (reorgs0, forks0) = cpu_seconds(pids), core_wait_seconds(pids), log_counts(base)
            with follow.lock:
                n_health = len(follow.health_latency)
            start = time.monotonic()
            window = offer(urls, queues, step, STEP_S)
            end = start + window
            cpu_offer, wait_offer = cpu_seconds(pids) - cpu0, core_wait_seconds(pids) - wait0
            # finalized during the window, on the node each transfer was sent to
            deadline = time.monotonic() + DRAIN_S
            while time.monotonic() < deadline:
                with follow.lock:
                    pending = sum(1 for h in step.submitted_at if h not in follow.block_of)
                if not pending:
                    break
                time.sleep(0.2)
            every.update({d: (t, step.node_of[d]) for d, t in step.submitted_at.items()})
            reorgs1, forks1 = log_counts(base)
            with follow.lock:
                latencies = []
                final = 0
                for digest, sent in step.submitted_at.items():
                    number = follow.block_of.get(digest)
                    if number is None:
                        continue
                    when = follow.fin_time[step.node_of[digest]].get(number)
                    if when is None:
                        continue
                    final += 1
                    latencies.append(when - sent)
                # throughput: transfers of any step that became final (on their node) while this
                # step offered load; a backlog of earlier steps counts where it is finalized
                in_window = 0
                for digest, (_, node) in every.items():
                    number = follow.block_of.get(digest)
                    when = follow.fin_time[node].get(number) if number is not None else None
                    if when is not None and start <= when <= end:
                        in_window += 1
                loaded_health = follow.health_latency[n_health:]
                drain_probe(probe_out, probed)
                health = [seconds for began, seconds in probed if start <= began <= end]
                sizes = [follow.block_size.get(n, 0) for n in follow.fin_time[0] if start <= follow.fin_time[0][n] <= time.monotonic()]
                failures = list(follow.failures)
                follow.failures.clear()
            dead = [f"node-{i} exited" for i, pid in enumerate(pids) if not localnet._alive(pid)]
            problems = dead + failures + ([f"{len(step.errors)} submit errors, e.g. {step.errors[0]}"] if step.errors else [])
            entry = {
                "offered": offered, "sent_per_s": (len(step.submitted_at) + step.refused) / window,
                "accepted_per_s": len(step.submitted_at) / window, "refused": step.refused,
                "finalized_per_s": in_window / window, "finalized_total": final, "accepted_total": len(step.submitted_at),
                "p50_s": percentile(latencies, 0.5), "p99_s": percentile(latencies, 0.99),
                "reorgs": reorgs1 - reorgs0, "fork_blocks": forks1 - forks0,
                "rpc_p99_ms": percentile(health, 0.99) * 1000, "rpc_p50_ms": percentile(health, 0.5) * 1000,
                "rpc_p99_loaded_client_ms": percentile(loaded_health, 0.99) * 1000, "max_block": max(sizes, default=0),
                "cpu_ms_per_tx": cpu_offer / in_window * 1000 if in_window else float("nan"),
                "failures": problems,
                # how much CPU the nodes got, and how busy the machine was (others' work too)
                "node_cores": cpu_offer / window, "load_avg": os.getloadavg()[0],
                # how long their threads were runnable but had no core (a reply waits that long too)
                "core_wait": wait_offer / window,
            }
            table.append(entry)
            print(f"   offered {offered:5d}/s: finalized {entry['finalized_per_s']:7.1f}/s  "
                  f"accepted {entry['accepted_per_s']:7.1f}/s refused {step.refused:6d}  "
                  f"p50 {entry['p50_s']:.2f}s p99 {entry['p99_s']:.2f}s  reorgs {entry['reorgs']} forks {entry['fork_blocks']}  "
                  f"rpc p50/p99 {entry['rpc_p50_ms']:.0f}/{entry['rpc_p99_ms']:.0f} ms "
                  f"(bench-process client p99 {entry['rpc_p99_loaded_client_ms']:.0f} ms)  max block {entry['max_block']}  "
                  f"cpu {entry['cpu_ms_per_tx']:.2f} ms/tx  nodes used {entry['node_cores']:.2f} cores "
                  f"and waited {entry['core_wait']:.2f} s/s for one, "
                  f"load avg {entry['load_avg']:.1f}  {'; '.join(problems) or 'ok'}", flush=True)
            if dead:
                break
    finally:
        follow.stop.set()
        probe_stop.set()
        probe.join(timeout=10)
        if probe.is_alive():
            probe.kill()
        localnet.down(base)
    peak = max((e["finalized_per_s"] for e in table), default=0.0)
    for e in table:
        tag = f"offered {e['offered']}/s"
        fail = " FAILED: " + "; ".join(e["failures"]) if e["failures"] else ""
        rows += [
            row(f"{NODES} nodes, {tag}: finalized tx/s{fail}", e["finalized_per_s"], "tx/s", f"runtime bound, {NODES} nodes", runtime_bound),
            row(f"{NODES} nodes, {tag}: p50 submission->finality", e["p50_s"], "s", "slot duration", 1.0),
            row(f"{NODES} nodes, {tag}: p99 submission->finality", e["p99_s"], "s", "slot duration", 1.0),
            row(f"{NODES} nodes, {tag}: system_health p99, own-process client", e["rpc_p99_ms"], "ms", "issue-17 aim", 100.0),
            row(f"{NODES} nodes, {tag}: reorgs + fork blocks", e["reorgs"] + e["fork_blocks"], "count", "none", 0.0),
            row(f"{NODES} nodes, {tag}: CPU per finalized transfer", e["cpu_ms_per_tx"], "ms", f"runtime work, {NODES} nodes",
                runtime_cpu_per_tx * 1000),
            row(f"{NODES} nodes, {tag}: CPU the nodes got", e["node_cores"], "cores",
                f"cores (load avg {e['load_avg']:.1f})", CORES),
            row(f"{NODES} nodes, {tag}: time the nodes waited for a core", e["core_wait"], "s/s",
                "their CPU time, s/s", e["node_cores"]),
        ]
    rows += [
        row(f"{NODES} nodes: peak finalized tx/s of the sweep", peak, "tx/s", f"signature bound, {NODES} nodes", sig_bound),
        row("ed25519 verifications/s, 1 thread", verify_one, "/s", f"all {CORES} cores", verify_all),
        row("runtime check + apply per transfer, 1 node", (check_s + apply_s) * 1e6, "us", "check alone", check_s * 1e6),
    ]
    return rows, table


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
            except (httpx.HTTPError, KeyError, ValueError):
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


def print_sweep(table: list[dict]) -> None:
    print(f"{'offered':>8} {'accepted':>9} {'refused':>8} {'final/s':>8} {'p50 s':>6} {'p99 s':>6} "
          f"{'reorg':>5} {'fork':>5} {'rpc p99':>8} {'max blk':>7} {'cpu ms/tx':>9} {'cores':>5} {'wait':>5} {'load':>5}  status")
    for e in table:
        print(f"{e['offered']:8d} {e['accepted_per_s']:9.0f} {e['refused']:8d} {e['finalized_per_s']:8.0f} "
              f"{e['p50_s']:6.2f} {e['p99_s']:6.2f} {e['reorgs']:5d} {e['fork_blocks']:5d} {e['rpc_p99_ms']:7.0f}ms "
              f"{e['max_block']:7d} {e['cpu_ms_per_tx']:9.2f} {e['node_cores']:5.2f} {e['core_wait']:5.2f} {e['load_avg']:5.1f}  "
              f"{'; '.join(e['failures']) or 'ok'}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"terminated by signal {signum}")  # unwinds through the `finally` that stops our nodes


def run() -> list[dict]:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    keep = os.environ.get("BENCH_NET_KEEP")  # a folder to keep the nodes' data and logs in
    if keep:
        rows, table = sweep(Path(keep))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows, table = sweep(Path(tmp) / "a")
    print_sweep(table)
    if os.environ.get("BENCH_NET_SYNC", "1") != "0":
        with tempfile.TemporaryDirectory() as tmp:
            rows += sync_rate(Path(tmp) / "b")
    return rows


if __name__ == "__main__":
    print_rows(run())
