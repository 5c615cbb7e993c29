"""Paid inference through a host: queries per second and latency, beside the bare model and voucher rates.

The host app (node.offchain.host_worker) runs on hypercorn on 127.0.0.1 with its real SQLite
ledger; chain reads (escrow, redeemed state) come from an in-memory stand-in, so the figure is
the host's own cost: HTTP, JSON, voucher verification, batching, the forward pass and the fsync'd
ledger commit. Users are threads, each sending its paid queries one after another (as the
client does); the digits classifier (64 → 64 → 10 MLP) is the model.

The users run in a process of their own (issue 17: in the host's process they shared its GIL).
Limits measured in the same run: the bare forward rate of that model (one row per call, as an
unbatched host would run it) and the bare voucher-verification rate (`check_voucher`, i.e. one
ed25519 verification plus the channel checks).
"""
from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from bench.common import print_rows, rate, row

USERS = 16
QUERIES_PER_USER = 60
PRICE = 1000
GENESIS = b"\x07" * 32


class _Chain:
    def __call__(self, method: str, *params: object) -> dict:
        if method == "arena_escrow":
            return {"available": 10**15}
        return {"cumulativeQueries": 0, "cumulativeAmount": 0, "nonce": 0}


def _clients(url: str, row_in: list[float], signed: list[list[str]], out: Connection) -> None:
    """One thread per user, each sending its paid queries one after another (as the client does)."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []

    def user_loop(vouchers: list[str]) -> None:
        with httpx.Client(timeout=30) as http:
            for voucher in vouchers:
                start = time.perf_counter()
                try:
                    reply = http.post(url, json={"input": row_in}, headers={"X-Arena-Voucher": voucher})
                except httpx.HTTPError as exc:  # a host that stops answering is a reported failure
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
                latencies.append(time.perf_counter() - start)
                if reply.status_code != 200:
                    errors.append(reply.text[:200])

    threads = [threading.Thread(target=user_loop, args=(v,)) for v in signed]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((time.perf_counter() - start, latencies, errors))


def run() -> list[dict]:
    import httpx
    import torch

    from node.offchain.host_worker import HostService, ServedModel, build_app, free_port, serve_in_thread
    from node.offchain.ml import get_kind
    from node.offchain.vouchers import VoucherLedger, check_voucher, sign_voucher
    from runtime.crypto import Keypair

    torch.set_num_threads(1)
    kind = get_kind("digits_classifier")
    spec = kind.prepare(None, 3).spec
    module = kind.build_model(spec).eval()
    host = Keypair.from_dev_name("bench-host")
    users = [Keypair.from_dev_name(f"bench-user-{i}") for i in range(USERS)]
    row_in = [float(i % 17) for i in range(64)]

    x = torch.tensor([row_in]) / 16.0

    def forward() -> int:
        with torch.inference_mode():
            for _ in range(200):
                module(x)
        return 200

    forward_rate = rate(forward, 1.0)
    vouchers = [sign_voucher(users[0], GENESIS, host.public_key, "QmBench", n, n * PRICE, n) for n in range(1, 201)]

    def verify() -> int:
        for v in vouchers:
            check_voucher(v, genesis_hash=GENESIS, host=host.public_key, model_cid="QmBench", price=PRICE, last=None,
                          redeemed=(0, 0, 0), escrow_available=10**15)
        return len(vouchers)

    verify_rate = rate(verify, 1.0)

    with tempfile.TemporaryDirectory(prefix="arena-bench-inference-") as tmp:
        ledger = VoucherLedger(str(Path(tmp) / "vouchers.sqlite"))
        service = HostService(host.public_key, GENESIS, ledger, _Chain())
        service.models["QmBench"] = ServedModel("QmBench", 0, "digits_classifier", spec, module, PRICE)
        stop = threading.Event()
        port = free_port()
        thread = serve_in_thread(build_app(service), port, stop)
        url = f"http://127.0.0.1:{port}/v1/predict"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        signed = [[sign_voucher(u, GENESIS, host.public_key, "QmBench", n, n * PRICE, n).to_hex()
                   for n in range(1, QUERIES_PER_USER + 1)] for u in users]
        # The users run in their own process, so the host's figure is not shared with its clients' GIL.
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        clients = context.Process(target=_clients, args=(url, row_in, signed, send))
        clients.start()
        elapsed, latencies, errors = receive.recv()
        clients.join(30)
        stop.set()
        thread.join(10)
        batches = service.stats["batches"]
        ledger.close()
    if errors:
        raise RuntimeError(f"{len(errors)} paid queries failed, first: {errors[0]}")
    total = USERS * QUERIES_PER_USER
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return [
        row(f"paid queries/s through the host ({USERS} users, batched)", total / elapsed, "queries/s",
            "bare model forward, 1 row per call", forward_rate),
        row("paid queries/s through the host", total / elapsed, "queries/s",
            "bare voucher verification (ed25519 + checks)", verify_rate),
        row("mean batch size", total / max(batches, 1), "queries", "users", USERS),
        row("paid query latency p50", p50, "ms", "bare forward time per row (ms)", 1000 / forward_rate),
        row("paid query latency p99", p99, "ms", "p50 (ms)", p50),
    ]


if __name__ == "__main__":
    print_rows(run())
