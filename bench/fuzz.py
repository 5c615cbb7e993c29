"""`make fuzz`: a long, bounded fuzz campaign against a real `arena node --dev` (issue 11).

Three surfaces: JSON-RPC over HTTP, JSON-RPC over WebSocket, the Kubo-compatible IPFS API. Each gets
at least `--inputs` inputs (100,000 by default) or `--minutes` of time, whichever ends first, and the
campaign prints, per surface: inputs tried, crashes (the node died, a connection broke without an
answer, a WebSocket closed on us), 5xx answers, answers that are not JSON-RPC/Kubo-shaped, and the
node's RSS before and after. It exits 1 when any crash or 5xx was seen.

    python -m bench.fuzz [--inputs 100000] [--minutes 30] [--seed 1] [--threads 4]
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import random
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ["arena_account", "arena_escrow", "arena_events", "arena_extrinsic", "arena_hash", "arena_history", "arena_hosts", "arena_leaderboard", "arena_marketModel", "arena_marketModels", "arena_marketParams", "arena_metadata", "arena_roles", "arena_selection", "arena_stakes", "arena_task", "arena_tasks", "arena_topModel", "arena_usage", "arena_voucherState", "author_pendingExtrinsics", "author_submitExtrinsic", "chain_getBlock", "chain_getBlockHash", "chain_getFinalizedHead", "chain_getHeader", "state_getReadProof", "state_getStorage", "system_accountNextIndex", "system_chain", "system_health", "system_localPeer", "system_name", "system_peers", "system_properties", "system_version", "chain_subscribeNewHeads", "chain_unsubscribeNewHeads", "chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads", "no_suchMethod"]
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
CIDS = ("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", "QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh51",
        "bafkqaaa", "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "Qm", "")
IPFS_PATHS = ("add", "cat", "get", "pin/add", "block/get", "files/stat", "id", "version", "repo/gc", "nope")
IPFS_OPTS = ("arg", "offset", "length", "timeout", "pin", "only-hash", "cid-version", "raw-leaves", "chunker",
             "recursive", "compress", "compression-level", "quiet", "with-local", "hash")


# -- generators ----------------------------------------------------------------------------------


def json_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased towards what handlers trip over."""
    kind = rng.randrange(14 if depth < 4 else 10)
    if kind == 0:
        return rng.choice([0, 1, -1, 2**63, 2**64, 2**64 - 1, -(2**64), 10**40, 2**31])
    if kind == 1:
        return rng.randrange(-1000, 10**6)
    if kind == 2:
        return rng.choice([0.5, -1e308, 1e308, 3.0])
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return "0x" + rng.randbytes(rng.choice([0, 1, 4, 32, 33, 100])).hex()
    if kind == 5:
        return rng.choice([ALICE, "0x" + "00" * 32, "5" * 48, "0xzz", "0x1", ""]) + rng.choice(["", "x"])
    if kind == 6:
        return rng.choice(CIDS)
    if kind == 7:
        return "".join(rng.choice("abc\u00e9\u2603\x00\"\\ 0x") for _ in range(rng.randrange(20)))
    if kind == 8:
        return rng.choice(["Pending", "training", "trainer", "validator", "host", "planner", "bogus"])
    if kind == 9:
        return rng.randrange(0, 5)
    if kind in (10, 11):
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["at", "number", "address", "task_id", "x", "keys"]): json_value(rng, depth + 1)
            for _ in range(rng.randrange(3))}


def rpc_request(rng: random.Random, need_id: bool = False) -> Any:
    """A JSON-RPC request object, mostly well formed, sometimes not."""
    request: dict[str, Any] = {"jsonrpc": "2.0" if rng.random() < 0.95 else rng.choice(["1.0", 2, None]),
                               "method": rng.choice(METHODS) if rng.random() < 0.95 else json_value(rng)}
    if need_id or rng.random() < 0.9:
        request["id"] = rng.choice([rng.randrange(10**6), "a", None]) if rng.random() < 0.95 else json_value(rng)
        if need_id and not isinstance(request["id"], (int, str)):
            request["id"] = 1
    roll = rng.random()
    if roll < 0.6:
        request["params"] = [json_value(rng) for _ in range(rng.randrange(4))]
    elif roll < 0.75:
        request["params"] = {rng.choice(["at", "number", "address", "task_id", "model"]): json_value(rng)}
    elif roll < 0.9:
        request["params"] = json_value(rng)
    return request


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage: truncation, flips, splices, deep nesting, huge integers."""
    roll = rng.randrange(7)
    if roll == 0 and data:
        return data[: rng.randrange(len(data))]
    if roll == 1 and data:
        out = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if roll == 2:
        depth = rng.choice([40, 1000, 20000])
        return b"[" * depth + b"]" * depth * rng.randrange(2)
    if roll == 3:
        return data.replace(b"[", b"[" + b"9" * rng.choice([100, 5000]) + b",", 1)
    if roll == 4:
        return rng.randbytes(rng.randrange(64))
    if roll == 5:
        return b"[" + b",".join([data] * rng.choice([0, 2, 101])) + b"]"
    return data.replace(b"2.0", b"NaN", 1)


def rpc_body(rng: random.Random, need_id: bool = False) -> bytes:
    """One HTTP/WebSocket JSON-RPC input."""
    if rng.random() < 0.1:
        return json.dumps([rpc_request(rng, need_id=True) for _ in range(rng.randrange(1, 4))]).encode()
    data = json.dumps(rpc_request(rng, need_id)).encode()
    return mutate(rng, data) if rng.random() < 0.3 else data


def ipfs_request(rng: random.Random) -> tuple[str, dict[str, str], bytes]:
    """(path with query, headers, body) for the IPFS API."""
    path = rng.choice(IPFS_PATHS)
    query = []
    for _ in range(rng.randrange(4)):
        name = rng.choice(IPFS_OPTS)
        value = rng.choice([rng.choice(CIDS), "/ipfs/" + rng.choice(CIDS), "true", "false", "-1", "x", "30s",
                            "1ms", "9" * 30, str(rng.randrange(10**6)), ""])
        query.append((name, value))
    headers: dict[str, str] = {}
    body = b""
    if path == "add" or rng.random() < 0.1:
        boundary = rng.choice(["b0undary", "x", ""])
        headers["Content-Type"] = rng.choice([f"multipart/form-data; boundary={boundary}", "text/plain",
                                              "multipart/form-data"])
        part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{rng.randrange(9)}\"\r\n"
                f"Content-Type: {rng.choice(['application/octet-stream', 'application/x-directory'])}\r\n\r\n").encode()
        body = part + rng.randbytes(rng.randrange(2048)) + (f"\r\n--{boundary}--\r\n".encode() if rng.random() < 0.7 else b"")
        if rng.random() < 0.3:
            body = mutate(rng, body)
        query = [q for q in query if q[0] != "pin"] + [("pin", "false")]  # keep the store from growing pinned
    return f"/api/v0/{path}?{urllib.parse.urlencode(query)}", headers, body


# -- the campaign ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one surface saw."""

    inputs: int = 0
    crashes: int = 0
    server_errors: int = 0
    malformed: int = 0
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bad(self, kind: str, detail: str) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)
            if len(self.examples) < 5:
                self.examples.append(f"{kind}: {detail[:300]}")


def rpc_answer_ok(reply: Any) -> bool:
    """A JSON-RPC answer: an object (or list of objects) with `result` xor `error`."""
    items = reply if isinstance(reply, list) else [reply]
    return all(isinstance(r, dict) and r.get("jsonrpc") == "2.0" and (("result" in r) != ("error" in r))
               for r in items)


def http_worker(port: int, tally: Tally, deadline: float, quota: int, seed: int, surface: str) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.monotonic() < deadline:
        with tally.lock:
            if tally.inputs >= quota:
                return
            tally.inputs += 1
        if surface == "http":
            path, headers, body = "/", {"Content-Type": "application/json"}, rpc_body(rng)
        else:
            path, headers, body = ipfs_request(rng)
        for attempt in (1, 2):  # a kept-alive connection the server closed after its last answer: retry fresh
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                if attempt == 2:
                    tally.bad("crashes", f"{type(exc).__name__}: {exc} on {path} {body[:200]!r}")
        else:
            continue
        if response.status >= 500:
            tally.bad("server_errors", f"{response.status} on {path} {body[:200]!r}: {data[:200]!r}")
        elif surface == "http" and response.status != 204:
            try:
                if not rpc_answer_ok(json.loads(data)):
                    tally.bad("malformed", f"{data[:200]!r}")
            except ValueError:
                tally.bad("malformed", f"not JSON: {data[:200]!r}")
        elif surface == "ipfs" and response.status >= 400:
            try:
                reply = json.loads(data)
                if not (isinstance(reply, dict) and reply.get("Type") == "error"):
                    tally.bad("malformed", f"{data[:200]!r}")
            except ValueError:
                tally.bad("malformed", f"not a Kubo error: {data[:200]!r}")
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def ws_worker(port: int, tally: Tally, deadline: float, quota: int, seed: int) -> None:
    import trio
    from trio_websocket import ConnectionClosed, open_websocket_url

    rng = random.Random(seed)

    async def session() -> None:
        while time.monotonic() < deadline and tally.inputs < quota:
            try:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/", message_queue_size=64) as ws:
                    while time.monotonic() < deadline:
                        with tally.lock:
                            if tally.inputs >= quota:
                                return
                            tally.inputs += 1
                        body = rpc_body(rng, need_id=True)
                        frame: bytes | str = body if rng.random() < 0.03 else body.decode("utf-8", "replace")
                        quiet = isinstance(frame, str) and maybe_notification(frame)  # binary frames always get an error
                        await ws.send_message(frame)
                        if quiet:  # damage removed the id: a ping tells us when the frame has been handled
                            await ws.send_message(json.dumps(SENTINEL))
                        with trio.fail_after(60):
                            while True:
                                reply = json.loads(await ws.get_message())
                                if isinstance(reply, dict) and "method" in reply and "id" not in reply:
                                    continue  # a notification of a subscription we made; the answer follows
                                if not rpc_answer_ok(reply):
                                    tally.bad("malformed", f"{reply!r:.200}")
                                if not quiet or reply == SENTINEL_ANSWER:
                                    break
            except ConnectionClosed as exc:
                tally.bad("crashes", f"WebSocket closed: {exc.reason}")
            except (OSError, trio.TooSlowError) as exc:
                tally.bad("crashes", f"{type(exc).__name__}: {exc}")

    trio.run(session)


SENTINEL = {"jsonrpc": "2.0", "id": "sentinel", "method": "system_name"}
SENTINEL_ANSWER = {"jsonrpc": "2.0", "id": "sentinel", "result": "arena"}


def maybe_notification(body: str) -> bool:
    """Whether a frame may be a JSON-RPC notification (no id anywhere), which gets no answer by design."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return False
    items = value if isinstance(value, list) and value else [value]
    return all(isinstance(item, dict) and "id" not in item for item in items)


def rss_mib(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def run_surface(name: str, port: int, quota: int, seconds: float, threads: int, seed: int) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    if name == "websocket":
        workers = [threading.Thread(target=ws_worker, args=(port, tally, deadline, quota, seed + i))
                   for i in range(threads)]
    else:
        surface = "http" if name == "json-rpc" else "ipfs"
        workers = [threading.Thread(target=http_worker, args=(port, tally, deadline, quota, seed + i, surface))
                   for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per surface (default 100000)")
    parser.add_argument("--minutes", type=float, default=30.0, help="time bound of the whole campaign")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)

    from tests.helpers import NodeProcess

    surfaces = ("json-rpc", "websocket", "ipfs")
    per_surface = args.minutes * 60 / len(surfaces)
    with tempfile.TemporaryDirectory(prefix="arena-fuzz-") as tmp:
        node = NodeProcess(Path(tmp) / "node", "--dev").start(timeout=60)
        assert node.proc is not None
        pid = node.proc.pid
        try:
            rows = []
            for index, name in enumerate(surfaces):
                before = rss_mib(pid)
                started = time.monotonic()
                tally = run_surface(name, node.rpc_port, args.inputs, per_surface, args.threads, args.seed + 100 * index)
                alive = node.proc.poll() is None
                if not alive:
                    tally.bad("crashes", f"the node exited with {node.proc.returncode}")
                after = rss_mib(pid) if alive else float("nan")
                rows.append((name, tally, time.monotonic() - started, before, after))
                print(f"{name}: {tally.inputs} inputs in {time.monotonic() - started:.0f} s", file=sys.stderr)
                if not alive:
                    break
        finally:
            node.stop()
        log = node.log_path.read_text(errors="replace").splitlines()
    # what the node logged besides its routine block lines, by shape (timestamp dropped)
    noise = collections.Counter(" ".join(line.split(" ")[2:5])[:100] for line in log
                                if " imported #" not in line and " INFO " not in line)
    print(f"{'surface':10} {'inputs':>8} {'seconds':>8} {'crashes':>8} {'5xx':>6} {'malformed':>9} "
          f"{'RSS before MiB':>15} {'RSS after MiB':>14}")
    failed = False
    for name, tally, seconds, before, after in rows:
        print(f"{name:10} {tally.inputs:8d} {seconds:8.0f} {tally.crashes:8d} {tally.server_errors:6d} "
              f"{tally.malformed:9d} {before:15.1f} {after:14.1f}")
        failed |= bool(tally.crashes or tally.server_errors or tally.malformed)
        for example in tally.examples:
            print(f"    {example}")
    print(f"node log: {len(log)} lines, {sum(noise.values())} of them warnings or worse, for "
          f"{sum(t.inputs for _, t, *_ in rows)} inputs (target: {args.inputs} per surface, bound {args.minutes:g} min)")
    for shape, count in noise.most_common(5):
        print(f"    {count:6d} × {shape}")
    short = [name for name, tally, *_ in rows if tally.inputs < args.inputs]
    if short:
        print(f"note: {', '.join(short)} stopped at the time bound before {args.inputs} inputs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
