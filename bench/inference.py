"""Paid inference through a host: queries per second, latency and CPU per query, beside the raw limits.

The host app (node.offchain.host_http) runs on its own server (uvicorn + httptools on asyncio,
node.offchain.host_server) on 127.0.0.1 with its real SQLite ledger (group commit, fsync before answering); chain reads (escrow, redeemed state) come from an
in-memory stand-in, so the figure is the host's own cost: HTTP, JSON, voucher verification,
batching, the forward pass and the ledger commit. The digits classifier (64 → 64 → 10 MLP) is
the model. The users run in a process of their own (issue 17: in the host's process they shared
its GIL), one thread per user, each sending its requests one after another on one kept-alive
connection (as the client does, but with the standard library's http.client: see `_clients`):

- one paid query per request (`POST /v1/predict`),
- `BATCH` paid queries per request (`POST /v1/batch`, each query with its own voucher).

Raw limits measured in the same run: voucher verifications/s (`check_voucher`: one ed25519
verification plus the channel checks), empty HTTP requests/s through the same server and
clients (`GET /health`), bare ledger commits/s (one voucher, fsync, same disk: with one query per
request each user waits for a commit, so this and the number of users bound that rate), and the
bare forward rate of the model (one row per call). CPU per
query is the host process's CPU time (all its threads) over the queries it answered, and the
clients' beside it; its inverse is what one host core sustains, the figure that holds on a
machine shared with other work (queries/s swing with the machine's load, printed last).
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import print_rows, rate, row

USERS = 16
CLIENT_PROCESSES = 1  # more gave no more on 2 cores: clients and host share the CPUs (client CPU is printed)
QUERIES_PER_USER = 60
BATCH = 32
BATCHES_PER_USER = 12
PRICE = 1000
GENESIS = b"\x07" * 32


Plan = list[list[tuple[str, dict | None, dict]]]  # per user: (path, JSON body or None for GET, headers)


class _Chain:
    def __call__(self, method: str, *params: object) -> Any:
        if method == "arena_escrow":
            return {"available": 10**15}
        if method == "state_getStorage":
            return None
        return {"cumulativeQueries": 0, "cumulativeAmount": 0, "nonce": 0}


def _clients(base: str, plans: Plan, out: Connection, go: Any) -> None:
    """One thread per user, each sending its requests (path, json, headers) one after another, from `go`, on
    one kept-alive connection (the standard library's http.client: httpx costs ~1.1 ms of CPU per request,
    ~10x this and ~3x the host's whole cost, so on 2 cores clients made with it measured themselves)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    address = urlsplit(base)
    latencies: list[float] = []
    errors: list[str] = []

    def user_loop(plan: list[tuple[str, dict | None, dict]]) -> None:
        conn = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=60)
        try:
            for path, body, headers in plan:
                start = time.perf_counter()
                try:
                    if body is None:
                        conn.request("GET", path)
                    else:
                        conn.request("POST", path, body=json.dumps(body).encode(),
                                     headers={**headers, "Content-Type": "application/json"})
                    reply = conn.getresponse()
                    data = reply.read()
                except (OSError, http.client.HTTPException) as exc:  # a host that stops answering: a reported failure
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                latencies.append(time.perf_counter() - start)
                if reply.status != 200:
                    errors.append(data[:200].decode(errors="replace"))
                elif path == "/v1/batch":
                    errors.extend(str(r["body"])[:200] for r in json.loads(data)["results"] if r["status"] != 200)
        finally:
            conn.close()

    threads = [threading.Thread(target=user_loop, args=(plan,)) for plan in plans]
    out.send("ready")
    go.wait()
    cpu, start = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((start, time.perf_counter(), time.process_time() - cpu, latencies, errors))


def _drive(base: str, plans: Plan) -> dict:
    """Run the plans from CLIENT_PROCESSES processes of their own, started together; elapsed, CPU of host and
    clients, latencies."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    pipes, processes = [], []
    for i in range(CLIENT_PROCESSES):
        receive, send = context.Pipe(duplex=False)
        processes.append(context.Process(target=_clients, args=(base, plans[i::CLIENT_PROCESSES], send, go)))
        pipes.append(receive)
        processes[-1].start()
    for receive in pipes:
        receive.recv()  # ready: imports done, threads made
    host_cpu = time.process_time()
    go.set()
    results = [receive.recv() for receive in pipes]
    host_cpu = time.process_time() - host_cpu
    for process in processes:
        process.join(30)
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    client_cpu = sum(r[2] for r in results)
    latencies = [latency for r in results for latency in r[3]]
    errors = [error for r in results for error in r[4]]
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    latencies.sort()
    return {"elapsed": elapsed, "host_cpu": host_cpu, "client_cpu": client_cpu, "latencies": latencies}


def _plans(host: Any, row_in: list[float]) -> tuple[Plan, Plan, Plan]:
    """Requests per user: single paid queries, batches of paid queries, empty requests."""
    from node.offchain.vouchers import sign_voucher
    from runtime.crypto import Keypair

    def vouchers(prefix: str, count: int) -> list[list[str]]:
        users = [Keypair.from_dev_name(f"{prefix}-{i}") for i in range(USERS)]
        return [[sign_voucher(u, GENESIS, host.public_key, "QmBench", n, n * PRICE, n).to_hex()
                 for n in range(1, count + 1)] for u in users]

    single: Plan = [[("/v1/predict", {"input": row_in}, {"X-Arena-Voucher": v}) for v in signed]
              for signed in vouchers("bench-user", QUERIES_PER_USER)]
    batched: Plan = []
    for signed in vouchers("bench-batch-user", BATCH * BATCHES_PER_USER):
        batched.append([("/v1/batch", {"queries": [{"voucher": v, "input": row_in} for v in signed[i:i + BATCH]]}, {})
                        for i in range(0, len(signed), BATCH)])
    empty: Plan = [[("/health", None, {})] * QUERIES_PER_USER for _ in range(USERS)]
    return single, batched, empty


def _commit_rate(ledger_path: str, host: Any) -> float:
    """Bare ledger commits/s: one staged voucher, one transaction and fsync each."""
    from node.offchain.host_ledger import VoucherLedger
    from node.offchain.vouchers import sign_voucher
    from runtime.crypto import Keypair

    user = Keypair.from_dev_name("bench-user-commit")
    vouchers = [sign_voucher(user, GENESIS, host.public_key, "QmBench", n, n * PRICE, n) for n in range(1, 2001)]
    ledger = VoucherLedger(ledger_path)
    done, start = 0, time.perf_counter()
    while done < len(vouchers) and time.perf_counter() - start < 1.0:
        ledger.accept(vouchers[done])
        ledger.commit()
        done += 1
    elapsed = time.perf_counter() - start
    ledger.close()
    return done / elapsed


def _limits(module: Any, host: Any, row_in: list[float]) -> tuple[float, float, float]:
    """The bare forward rate (1 row per call), voucher verifications/s and CPU seconds per verification."""
    import torch

    from node.offchain.vouchers import check_voucher, sign_voucher
    from runtime.crypto import Keypair

    x = torch.tensor([row_in]) / 16.0

    def forward() -> int:
        with torch.inference_mode():
            for _ in range(200):
                module(x)
        return 200

    user = Keypair.from_dev_name("bench-user-limit")
    vouchers = [sign_voucher(user, GENESIS, host.public_key, "QmBench", n, n * PRICE, n) for n in range(1, 201)]

    def verify() -> int:
        for v in vouchers:
            check_voucher(v, genesis_hash=GENESIS, host=host.public_key, model_cid="QmBench", price=PRICE, last=None,
                          redeemed=(0, 0, 0), escrow_available=10**15)
        return len(vouchers)

    cpu, wall, done = time.process_time(), time.perf_counter(), 0
    while time.perf_counter() - wall < 1.0:
        done += verify()
    return rate(forward, 1.0), done / (time.perf_counter() - wall), (time.process_time() - cpu) / done


def run() -> list[dict]:
    import httpx
    import torch

    from node.offchain.host_ledger import VoucherLedger
    from node.offchain.host_worker import HostService, ServedModel, build_app, free_port, serve_in_thread
    from node.offchain.ml import get_kind
    from runtime.crypto import Keypair

    torch.set_num_threads(1)
    kind = get_kind("digits_classifier")
    spec = kind.prepare(None, 3).spec
    module = kind.build_model(spec).eval()
    host = Keypair.from_dev_name("bench-host")
    row_in = [float(i % 17) for i in range(64)]
    forward_rate, verify_rate, verify_cpu = _limits(module, host, row_in)
    single, batched, empty = _plans(host, row_in)
    with tempfile.TemporaryDirectory(prefix="arena-bench-inference-") as tmp:
        commit_rate = _commit_rate(str(Path(tmp) / "bare.sqlite"), host)
        ledger = VoucherLedger(str(Path(tmp) / "vouchers.sqlite"))
        service = HostService(host.public_key, GENESIS, ledger, _Chain())
        service.models["QmBench"] = ServedModel("QmBench", 0, "digits_classifier", spec, module, PRICE)
        stop = threading.Event()
        port = free_port()
        thread = serve_in_thread(build_app(service), port, stop)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/health")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        empty_run = _drive(base, empty)
        commits = ledger.commits
        single_run = _drive(base, single)
        single_commits, commits = ledger.commits - commits, ledger.commits
        batch_run = _drive(base, batched)
        batch_commits = ledger.commits - commits
        stop.set()
        thread.join(10)
        ledger.close()
    return _rows(empty_run, single_run, batch_run, single_commits, batch_commits, forward_rate, verify_rate,
                 verify_cpu, commit_rate)


def _rows(empty: dict, single: dict, batch: dict, single_commits: int, batch_commits: int, forward_rate: float,
          verify_rate: float, verify_cpu: float, commit_rate: float) -> list[dict]:
    one, many = USERS * QUERIES_PER_USER, USERS * BATCH * BATCHES_PER_USER
    empty_rate = USERS * QUERIES_PER_USER / empty["elapsed"]
    single_rate, batch_rate = one / single["elapsed"], many / batch["elapsed"]
    load = os.getloadavg()[0]
    return [
        row(f"paid queries/s, {BATCH} per request (/v1/batch, {USERS} users)", batch_rate, "queries/s",
            "voucher verifications/s (ed25519 + checks, 1 thread)", verify_rate),
        row("paid queries/s, 1 per request (/v1/predict)", single_rate, "queries/s",
            "empty HTTP requests/s (GET /health, same clients)", empty_rate),
        row("host CPU per paid query, batched", 1e6 * batch["host_cpu"] / many, "µs",
            "CPU per voucher verification (µs)", 1e6 * verify_cpu),
        row("paid queries/s one host core sustains (1 / host CPU per query)", many / max(batch["host_cpu"], 1e-9),
            "queries/s", "voucher verifications per CPU second", 1 / verify_cpu),
        row("client CPU per paid query, batched", 1e6 * batch["client_cpu"] / many, "µs",
            "host CPU per paid query, batched (µs)", 1e6 * batch["host_cpu"] / many),
        row("host CPU per paid query, 1 per request", 1e6 * single["host_cpu"] / one, "µs",
            "host CPU per empty request (µs)", 1e6 * empty["host_cpu"] / (USERS * QUERIES_PER_USER)),
        row("paid queries/s one host core sustains, 1 per request", one / max(single["host_cpu"], 1e-9), "queries/s",
            "empty requests/s one host core sustains", USERS * QUERIES_PER_USER / max(empty["host_cpu"], 1e-9)),
        row("client CPU per paid query, 1 per request", 1e6 * single["client_cpu"] / one, "µs",
            "host CPU per paid query, 1 per request (µs)", 1e6 * single["host_cpu"] / one),
        row("queries per ledger commit (fsync), batched", many / max(batch_commits, 1), "queries",
            "queries per commit, 1 per request", one / max(single_commits, 1)),
        row("ledger commits/s, 1 per request", single_commits / single["elapsed"], "commits/s",
            "bare ledger commits/s (1 voucher + fsync, same disk)", commit_rate),
        row("paid query latency p50, 1 per request", 1000 * statistics.median(single["latencies"]), "ms",
            "bare forward time per row (ms)", 1000 / forward_rate),
        row(f"batch request latency p50 ({BATCH} queries)", 1000 * statistics.median(batch["latencies"]), "ms",
            "p99 (ms)", 1000 * batch["latencies"][int(len(batch["latencies"]) * 0.99) - 1]),
        row("machine load (1-min average) at the end", load, "", "CPUs", os.cpu_count() or 0),
    ]


if __name__ == "__main__":
    print_rows(run())
