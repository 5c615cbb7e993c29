"""The host's books: a durable ledger of the newest accepted voucher per channel, and its usage reports.

`VoucherLedger` keeps every channel's (user, model) newest voucher in memory, so a paid query
never reads SQLite, and writes accepted vouchers to SQLite (WAL, `synchronous=FULL`) in one
transaction per batch of queries: many queries share one commit and one fsync (group commit),
and none is answered before that commit returns, so a crash loses no acknowledged payment.
`UsageReporter` redeems each channel's newest unreported voucher on chain
(`marketplace.report_usage`), checking chain state first so a restarted host neither loses nor
double-reports usage.
"""
from __future__ import annotations

import sqlite3
import threading
from typing import Any

from node.offchain.chain_client import CallFailed
from node.offchain.vouchers import Voucher
from runtime.codec import encode
from runtime.crypto import blake2b_256

Channel = tuple[bytes, str]  # (user, model_cid)


class VoucherLedger:
    """The newest accepted voucher per channel (user, model): in memory, durable in SQLite.

    `accept` stages a verified voucher; `commit` writes every staged voucher in one transaction
    and fsync and only then makes them the channels' newest; `discard` drops the staged ones.
    Rows keep the voucher bytes, so a restarted host reports exactly what users signed.
    """

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS channel (user BLOB NOT NULL, model TEXT NOT NULL, nonce INTEGER NOT NULL, "
            "amount INTEGER NOT NULL, queries INTEGER NOT NULL, voucher BLOB NOT NULL, reported_nonce INTEGER "
            "NOT NULL DEFAULT 0, PRIMARY KEY (user, model))")
        self._newest: dict[Channel, Voucher] = {}
        self._reported: dict[Channel, int] = {}
        self._models_of: dict[bytes, set[str]] = {}
        for raw, reported in self._db.execute("SELECT voucher, reported_nonce FROM channel").fetchall():
            voucher = Voucher.decode(raw)
            self._remember(voucher)
            self._reported[(voucher.user, voucher.model_cid)] = reported
        self._pending: dict[Channel, Voucher] = {}
        self.commits = 0

    def _remember(self, voucher: Voucher) -> None:
        self._newest[(voucher.user, voucher.model_cid)] = voucher
        self._models_of.setdefault(voucher.user, set()).add(voucher.model_cid)

    def close(self) -> None:
        self._db.close()

    def newest(self, user: bytes, model_cid: str) -> Voucher | None:
        """The newest accepted voucher of a channel (including ones staged in this batch)."""
        key = (user, model_cid)
        return self._pending.get(key) or self._newest.get(key)

    def models_of(self, user: bytes) -> set[str]:
        """The models `user` has an accepted voucher for (committed ones)."""
        return self._models_of.get(user, set())

    def accept(self, voucher: Voucher) -> None:
        """Stage a verified voucher as its channel's newest; `commit()` makes it durable."""
        self._pending[(voucher.user, voucher.model_cid)] = voucher

    def discard(self) -> None:
        """Forget staged vouchers (their queries were not answered)."""
        self._pending.clear()

    def commit(self) -> None:
        """Write the staged vouchers in one transaction and fsync (group commit), then hold them in memory."""
        if not self._pending:
            return
        rows = [(v.user, v.model_cid, v.nonce, v.cumulative_amount, v.cumulative_queries, v.encode())
                for v in self._pending.values()]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO channel (user, model, nonce, amount, queries, voucher) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (user, model) DO UPDATE SET nonce=excluded.nonce, amount=excluded.amount, "
                "queries=excluded.queries, voucher=excluded.voucher WHERE excluded.nonce > channel.nonce", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for voucher in self._pending.values():
            self._remember(voucher)
        self._pending.clear()
        self.commits += 1

    def unreported(self, model_cid: str) -> list[Voucher]:
        """Newest vouchers of `model_cid` not yet known to be redeemed on chain, by user."""
        return [v for (user, model), v in sorted(self._newest.items())
                if model == model_cid and v.nonce > self._reported.get((user, model), 0)]

    def mark_reported(self, model_cid: str, redeemed: list[tuple[bytes, int]]) -> None:
        """Record that each (user, nonce) voucher of `model_cid` is redeemed on chain (one transaction)."""
        if not redeemed:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("UPDATE channel SET reported_nonce=MAX(reported_nonce, ?) WHERE user=? AND model=?",
                                 [(nonce, user, model_cid) for user, nonce in redeemed])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for user, nonce in redeemed:
            key = (user, model_cid)
            self._reported[key] = max(self._reported.get(key, 0), nonce)

    def totals(self) -> dict[str, list[int]]:
        """model → [channels, queries, amount] accepted so far."""
        found: dict[str, list[int]] = {}
        for (_, model), v in self._newest.items():
            entry = found.setdefault(model, [0, 0, 0])
            entry[0] += 1
            entry[1] += v.cumulative_queries
            entry[2] += v.cumulative_amount
        return found


class UsageReporter:
    """Redeems every channel's newest unredeemed voucher, per model, in chunks of the chain's limit."""

    def __init__(self, chain: Any, ledger: VoucherLedger, lock: threading.Lock, host_address: str, log: Any) -> None:
        self.chain, self.ledger, self.lock = chain, ledger, lock
        self.host_address, self.log = host_address, log

    def pending(self, cid: str) -> list[Voucher]:
        """Unreported vouchers of `cid` that the chain has not redeemed yet (the rest are marked reported)."""
        with self.lock:
            candidates = self.ledger.unreported(cid)
        pending, done = [], []
        for v in candidates:
            state = self.chain.call("arena_voucherState", "0x" + v.user.hex(), self.host_address, cid)
            if state["nonce"] >= v.nonce or state["cumulativeAmount"] >= v.cumulative_amount:
                done.append((v.user, v.nonce))  # already redeemed (e.g. reported just before a crash)
            else:
                pending.append(v)
        with self.lock:
            self.ledger.mark_reported(cid, done)
        return pending

    def report(self, cid: str, limit: int, period: int) -> None:
        """Report `cid`'s pending vouchers for `period`, `limit` per extrinsic."""
        pending = self.pending(cid)
        for start in range(0, len(pending), limit):
            chunk = pending[start:start + limit]
            digest = blake2b_256(encode([v.to_list() for v in chunk])).hex()[:16]
            try:
                inclusion = self.chain.submit_once(f"report/{cid}/{period}/{digest}", "marketplace", "report_usage",
                                                   [cid, period, [v.to_list() for v in chunk]])
            except CallFailed as exc:
                self.log.warning("event=report_failed model=%s period=%d vouchers=%d error=%s", cid, period,
                                 len(chunk), exc)
                continue
            with self.lock:
                self.ledger.mark_reported(cid, [(v.user, v.nonce) for v in chunk])
            revenue = sum(e["data"][5] for e in inclusion.events if e["name"] == "UsageReported")
            self.log.info("event=usage_reported model=%s period=%d vouchers=%d revenue=%d block=%d", cid, period,
                          len(chunk), revenue, inclusion.block_number)
