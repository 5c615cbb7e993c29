"""`make fuzz`: a long, bounded fuzz campaign against a real `arena node --dev` (issue 11).

Three surfaces: JSON-RPC over HTTP, JSON-RPC over WebSocket, the Kubo-compatible IPFS API. Each gets
`--inputs` inputs (100,000 by default) or its share of `--minutes`, whichever ends first (time a fast
surface leaves over goes to the next), and the campaign prints, per surface: inputs tried, crashes (the node died, or no answer in 60 s), 5xx
answers, answers that are not JSON-RPC/Kubo-shaped, connections dropped without an answer (for the
WebSocket: abnormal closes), early answers and reconnects (see `Tally`), and the node's RSS before
and after. It exits 1 when any crash, 5xx, malformed answer or dropped connection was seen.

    python -m bench.fuzz [--inputs 100000] [--minutes 40] [--seed 1] [--threads 4]
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
    """What one surface saw.

    Failures (the campaign exits 1 on any): `crashes` (the node exited, or no answer within 60 s),
    `server_errors` (5xx), `malformed` (an answer not in the surface's dialect), `dropped` (the
    server closed the connection without answering: an HTTP reset or broken pipe on a fresh
    connection, a WebSocket closed on us — finding 6 says a bad frame gets an error and the
    connection stays open). Counted, not failures: `reconnects` (the server had closed a kept-alive
    connection after its last answer, which HTTP allows; the request is sent again on a fresh
    connection) and `early_answers` (the server answered and closed before reading the whole body:
    a refusal, as docs/rpc.md says for bodies over the limit).
    """

    inputs: int = 0
    crashes: int = 0
    server_errors: int = 0
    malformed: int = 0
    dropped: int = 0
    reconnects: int = 0
    early_answers: int = 0
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bad(self, kind: str, detail: str) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)
            if len(self.examples) < 5:
                self.examples.append(f"{kind}: {detail[:300]}")

    def count(self, kind: str) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)

    @property
    def failures(self) -> int:
        return self.crashes + self.server_errors + self.malformed + self.dropped


def rpc_answer_ok(reply: Any) -> bool:
    """A JSON-RPC answer: an object (or list of objects) with `result` xor `error`."""
    items = reply if isinstance(reply, list) else [reply]
    return all(isinstance(r, dict) and r.get("jsonrpc") == "2.0" and (("result" in r) != ("error" in r))
               for r in items)


def http_worker(port: int, tally: Tally, deadline: float, quota: int, seed: int, surface: str) -> None:
    rng = random.Random(seed)

    def fresh() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    conn = fresh()
    while time.monotonic() < deadline:
        with tally.lock:
            if tally.inputs >= quota:
                return
            tally.inputs += 1
        if surface == "http":
            path, headers, body = "/", {"Content-Type": "application/json"}, rpc_body(rng)
        else:
            path, headers, body = ipfs_request(rng)
        response, data, conn = http_exchange(conn, fresh, tally, path, headers, body)
        if response is None:
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
        if response.will_close or conn.sock is None:
            conn.close()
            conn = fresh()


def http_exchange(conn: http.client.HTTPConnection, fresh: Any, tally: Tally, path: str, headers: dict[str, str],
                  body: bytes) -> tuple[http.client.HTTPResponse | None, bytes, http.client.HTTPConnection]:
    """One request; (response or None, body, connection to use next), every outcome counted honestly.

    A send that fails is not the end: the server may have answered (and closed) before reading the
    whole body, so the answer is read anyway. A kept-alive connection the server closed after its
    last answer is retried once on a fresh one; anything else without an answer is `dropped`.
    """
    for attempt in (1, 2):
        reused = conn.sock is not None
        send_error: OSError | None = None
        try:
            conn.request("POST", path, body=body, headers=headers)
        except OSError as exc:
            send_error = exc
        try:
            if send_error is not None and conn.sock is None:
                raise send_error  # not even connected: there is nothing to read
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = fresh()
            if reused and attempt == 1 and _closed_by_peer(send_error or exc):
                tally.count("reconnects")
                continue
            if isinstance(exc, TimeoutError):
                tally.bad("crashes", f"no answer in 60 s on {path} {body[:200]!r}")
            else:
                what = f"{type(send_error).__name__} while sending, then " if send_error else ""
                tally.bad("dropped", f"{what}{type(exc).__name__}: {exc} on a {'reused' if reused else 'fresh'} "
                                     f"connection, {path} {len(body)} B {body[:160]!r}")
            return None, b"", conn
        if send_error is not None:
            tally.count("early_answers")
            if response.status < 400:
                tally.bad("malformed", f"{response.status} answered before the body was read ({type(send_error).__name__})"
                                       f" on {path} {len(body)} B")
        return response, data, conn
    return None, b"", conn


def _closed_by_peer(exc: BaseException) -> bool:
    """A reset, broken pipe or EOF: what a client sees on a connection the server had closed."""
    return isinstance(exc, (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine))


def ws_worker(port: int, tally: Tally, deadline: float, quota: int, seed: int) -> None:
    import trio
    from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

    rng = random.Random(seed)
    frame: bytes | str = ""

    async def session() -> None:
        nonlocal frame
        while time.monotonic() < deadline and tally.inputs < quota:
            try:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/", message_queue_size=64) as ws:
                    while time.monotonic() < deadline:
                        with tally.lock:
                            if tally.inputs >= quota:
                                return
                            tally.inputs += 1
                        body = rpc_body(rng, need_id=True)
                        frame = body if rng.random() < 0.03 else body.decode("utf-8", "replace")
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
                tally.bad("dropped", f"WebSocket closed on us: {exc.reason} after {frame[:200]!r}")
            except trio.TooSlowError:
                tally.bad("crashes", f"no answer in 60 s to {frame[:200]!r}")
            except (OSError, HandshakeError) as exc:
                tally.bad("dropped", f"{type(exc).__name__}: {exc}")

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
    parser.add_argument("--minutes", type=float, default=40.0, help="time bound of the whole campaign (default 40)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)

    from tests.helpers import NodeProcess

    surfaces = ("json-rpc", "websocket", "ipfs")
    campaign_end = time.monotonic() + args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="arena-fuzz-") as tmp:
        node = NodeProcess(Path(tmp) / "node", "--dev").start(timeout=60)
        assert node.proc is not None
        pid = node.proc.pid
        try:
            rows = []
            for index, name in enumerate(surfaces):
                before = rss_mib(pid)
                started = time.monotonic()
                share = (campaign_end - started) / (len(surfaces) - index)  # time a fast surface left goes on
                tally = run_surface(name, node.rpc_port, args.inputs, share, args.threads, args.seed + 100 * index)
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
    print(f"{'surface':10} {'inputs':>8} {'seconds':>8} {'crashes':>8} {'5xx':>6} {'malformed':>9} {'dropped':>8} "
          f"{'early answers':>13} {'reconnects':>10} {'RSS before MiB':>15} {'RSS after MiB':>14}")
    failed = False
    for name, tally, seconds, before, after in rows:
        print(f"{name:10} {tally.inputs:8d} {seconds:8.0f} {tally.crashes:8d} {tally.server_errors:6d} "
              f"{tally.malformed:9d} {tally.dropped:8d} {tally.early_answers:13d} {tally.reconnects:10d} "
              f"{before:15.1f} {after:14.1f}")
        failed |= bool(tally.failures)
        for example in tally.examples:
            print(f"    {example}")
    print("dropped: connections the node closed without an answer (websocket: abnormal closes), a failure; "
          "early answers: answered before the body was read, then closed; reconnects: kept-alive connections "
          "the node had closed after an answer, request sent again")
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
