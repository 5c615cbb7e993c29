"""Decide paid queries in batches: check each voucher against chain state and the ledger, answer, commit.

`HostService.process` takes a batch of `Job`s (one per paid query), checks their vouchers in
(user, nonce) order against the ledger's in-memory channel state, the chain's redeemed state
and the user's escrow (its shared escrow plus the channel it locked for this host,
`marketplace.deposit_for`), runs each model once for its accepted queries, and commits the
accepted vouchers to the ledger in one transaction (group commit) before any answer leaves.
`Batcher` collects concurrent requests (each one or several queries) into such batches.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from node.offchain.host_ledger import VoucherLedger
from node.offchain.host_models import ServedModel
from node.offchain.vouchers import Voucher, VoucherRejected, check_voucher
from runtime.codec import decode
from runtime.modules.marketplace import Channel

ESCROW_TTL_S = 2.0


@dataclass
class Job:
    """One paid query on its way through the batcher."""

    model_cid: str
    voucher: Voucher
    payload: Any
    result: Any = None
    error: tuple[int, str, str, Voucher | None] | None = None


@dataclass
class Group:
    """The jobs of one HTTP request, answered together."""

    jobs: list[Job]
    done: anyio.Event = field(default_factory=anyio.Event)


class HostService:
    """Models, voucher checks against chain state, the ledger, and the batch step."""

    def __init__(self, host_key: bytes, genesis_hash: bytes, ledger: VoucherLedger, reader: Any) -> None:
        self.host = host_key
        self.genesis_hash = genesis_hash
        self.ledger = ledger
        self.reader = reader  # call(method, *params) against the node
        self.models: dict[str, ServedModel] = {}
        self._escrow: dict[bytes, tuple[float, int, int]] = {}  # user -> (read at, shared, channel)
        self._redeemed: dict[tuple[bytes, str], tuple[int, int, int]] = {}
        self.lock = threading.Lock()
        self.stats = {"answered": 0, "rejected": 0, "batches": 0}

    def escrow_available(self, user: bytes, fresh: bool = False) -> int:
        """What `user` can still pay this host: its shared escrow and, once read, its channel to this host.

        The channel (escrow only this host can be paid from) is read on the first shortfall
        (`fresh`), so users without one cost one chain read per escrow refresh, not two.
        """
        cached = self._escrow.get(user)
        if fresh or cached is None or time.monotonic() - cached[0] > ESCROW_TTL_S:
            shared = int(self.reader("arena_escrow", "0x" + user.hex())["available"])
            channel = self.channel_available(user) if fresh else 0
            cached = (time.monotonic(), shared, channel)
            self._escrow[user] = cached
        return cached[1] + cached[2]

    def channel_available(self, user: bytes) -> int:
        """Balance less pending withdrawal of the channel `user` locked for this host (0 when none)."""
        raw = self.reader("state_getStorage", "0x" + Channel.key([user, self.host]).hex())
        if raw is None:
            return 0
        balance, requested, _release = decode(bytes.fromhex(raw.removeprefix("0x")))
        return int(balance) - int(requested)

    def redeemed(self, user: bytes, model_cid: str) -> tuple[int, int, int]:
        key = (user, model_cid)
        if key not in self._redeemed:
            reply = self.reader("arena_voucherState", "0x" + user.hex(), "0x" + self.host.hex(), model_cid)
            self._redeemed[key] = (reply["cumulativeQueries"], reply["cumulativeAmount"], reply["nonce"])
        return self._redeemed[key]

    def forget_redeemed(self, model_cid: str) -> None:
        """After a report: read the redeemed state of `model_cid` and every escrow afresh (they moved together;
        a cached escrow from before the redemption beside a fresh redeemed amount would count the paid part twice)."""
        self._redeemed = {k: v for k, v in self._redeemed.items() if k[1] != model_cid}
        self._escrow = {}

    def owed_elsewhere(self, user: bytes, model_cid: str) -> int:
        """What `user`'s accepted, unredeemed vouchers for this host's other models owe (same escrow)."""
        owed = 0
        for other in self.ledger.models_of(user):
            newest = self.ledger.newest(user, other)
            if other != model_cid and newest is not None:
                owed += max(0, newest.cumulative_amount - self.redeemed(user, other)[1])
        return owed

    def check(self, voucher: Voucher, model: ServedModel) -> None:
        """Every check of one paid query (`check_voucher`); raises `VoucherRejected`."""
        kwargs = {"genesis_hash": self.genesis_hash, "host": self.host, "model_cid": model.cid, "price": model.price,
                  "last": self.ledger.newest(voucher.user, model.cid), "redeemed": self.redeemed(voucher.user, model.cid)}
        elsewhere = self.owed_elsewhere(voucher.user, model.cid)
        try:
            check_voucher(voucher, escrow_available=self.escrow_available(voucher.user) - elsewhere,
                          **kwargs)  # type: ignore[arg-type]
        except VoucherRejected as exc:
            if exc.code != "escrow_exhausted":
                raise
            check_voucher(voucher, escrow_available=self.escrow_available(voucher.user, fresh=True) - elsewhere,
                          verified=True, **kwargs)  # type: ignore[arg-type]

    def process(self, batch: list[Job]) -> None:
        """Verify in (user, nonce) order, answer per model in one pass, make accepted vouchers durable."""
        with self.lock:
            self.stats["batches"] += 1
            accepted: dict[str, list[Job]] = {}
            refused: set[tuple[bytes, str]] = set()  # channels with a refused voucher in this batch
            for job in sorted(batch, key=lambda j: (j.voucher.user, j.voucher.nonce)):
                model = self.models.get(job.model_cid)
                channel = (job.voucher.user, job.model_cid)
                try:
                    if channel in refused:  # signed on top of a refused voucher: it would pay for that query too
                        raise VoucherRejected(409, "previous_refused", "an earlier voucher of this channel in the "
                                              "batch was refused; sign again from the channel's newest",
                                              self.ledger.newest(*channel))
                    if model is None:
                        raise VoucherRejected(404, "unknown_model", f"this host does not serve {job.model_cid}")
                    self.check(job.voucher, model)
                except VoucherRejected as exc:
                    job.error = (exc.status, exc.code, exc.message, exc.last)
                    refused.add(channel)
                    continue
                except Exception as exc:  # noqa: BLE001 - the node is unreachable: refuse, do not guess
                    job.error = (503, "chain_unavailable", f"cannot read chain state: {exc}", None)
                    refused.add(channel)
                    continue
                self.ledger.accept(job.voucher)
                accepted.setdefault(model.cid, []).append(job)
            self._answer(accepted)
            answered = sum(1 for j in batch if j.error is None)
            self.stats["answered"] += answered
            self.stats["rejected"] += len(batch) - answered

    def _answer(self, accepted: dict[str, list[Job]]) -> None:
        """Run each model once over its accepted jobs, then commit their vouchers (no answer, no charge)."""
        try:
            for cid, jobs in accepted.items():
                for job, answer in zip(jobs, self.models[cid].run([j.payload for j in jobs])):
                    job.result = answer
            self.ledger.commit()
        except Exception as exc:  # noqa: BLE001 - no answer, no charge
            self.ledger.discard()
            for jobs in accepted.values():
                for job in jobs:
                    job.result, job.error = None, (500, "inference_failed", f"{type(exc).__name__}: {exc}", None)


class Batcher:
    """Collects concurrent requests and hands their jobs to `HostService.process` in batches."""

    def __init__(self, service: HostService, max_batch: int = 256) -> None:
        self.service = service
        self.max_batch = max_batch
        self.send, self.receive = anyio.create_memory_object_stream[Group](1024)
        self.running = False

    async def submit(self, jobs: list[Job]) -> list[Job]:
        """Queue one request's jobs and wait until all of them are decided (and the accepted ones durable)."""
        group = Group(jobs)
        await self.send.send(group)
        await group.done.wait()
        return jobs

    async def loop(self) -> None:
        if self.running:  # started by the ASGI lifespan and by serve_in_thread: one loop is enough
            return
        self.running = True
        try:
            await self._loop()
        finally:
            self.running = False

    async def _loop(self) -> None:
        while True:
            groups = [await self.receive.receive()]
            size = len(groups[0].jobs)
            while size < self.max_batch:
                try:
                    groups.append(self.receive.receive_nowait())
                except anyio.WouldBlock:
                    break
                size += len(groups[-1].jobs)
            await anyio.to_thread.run_sync(self.service.process, [j for g in groups for j in g.jobs])
            for group in groups:
                group.done.set()
