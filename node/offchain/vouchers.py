"""Payment vouchers: what a user signs per query, and how hosts and the chain read it.

A voucher is the fixed-order list

    [user (32 bytes), host (32 bytes), model_cid (str), cumulative_queries, cumulative_amount,
     nonce, signature (64 bytes)]

where `signature` is the user's ed25519 signature of `runtime.modules.marketplace.voucher_message`:

    b"arena/voucher/v1" ‖ encode([genesis_hash, user, host, model_cid, cumulative_queries,
                                  cumulative_amount, nonce])

On the wire (HTTP header `X-Arena-Voucher`) it is hex of `encode(voucher)`; in
`marketplace.report_usage` it is the list itself. docs/marketplace.md gives the bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.codec import CodecError, decode, encode
from runtime.crypto import Keypair, verify
from runtime.modules.marketplace import _is_voucher, voucher_message

MAX_VOUCHER_BYTES = 512


class VoucherError(ValueError):
    """A voucher that cannot be parsed or does not verify."""


@dataclass(frozen=True)
class Voucher:
    """One signed voucher."""

    user: bytes
    host: bytes
    model_cid: str
    cumulative_queries: int
    cumulative_amount: int
    nonce: int
    signature: bytes

    def to_list(self) -> list:
        return [self.user, self.host, self.model_cid, self.cumulative_queries, self.cumulative_amount, self.nonce,
                self.signature]

    def encode(self) -> bytes:
        return encode(self.to_list())

    def to_hex(self) -> str:
        return self.encode().hex()

    def message(self, genesis_hash: bytes) -> bytes:
        return voucher_message(genesis_hash, self.user, self.host, self.model_cid, self.cumulative_queries,
                               self.cumulative_amount, self.nonce)

    def verifies(self, genesis_hash: bytes) -> bool:
        """True when the user signed this voucher for the chain with `genesis_hash`."""
        return verify(self.user, self.message(genesis_hash), self.signature)

    @classmethod
    def from_list(cls, value: object) -> Voucher:
        if not _is_voucher(value):
            raise VoucherError("a voucher is [user (32 bytes), host (32 bytes), model_cid (≤ 128 chars), "
                               "cumulative_queries, cumulative_amount, nonce (u64), signature (64 bytes)]")
        assert isinstance(value, list)
        return cls(*value)

    @classmethod
    def decode(cls, data: bytes) -> Voucher:
        if len(data) > MAX_VOUCHER_BYTES:
            raise VoucherError(f"voucher is {len(data)} bytes, limit {MAX_VOUCHER_BYTES}")
        try:
            return cls.from_list(decode(data))
        except CodecError as exc:
            raise VoucherError(f"voucher does not decode: {exc}") from exc

    @classmethod
    def from_hex(cls, text: str) -> Voucher:
        text = text.strip().removeprefix("0x")
        if len(text) > 2 * MAX_VOUCHER_BYTES:
            raise VoucherError(f"voucher is longer than {MAX_VOUCHER_BYTES} bytes")
        try:
            data = bytes.fromhex(text)
        except ValueError as exc:
            raise VoucherError("voucher header must be hex") from exc
        return cls.decode(data)


def sign_voucher(key: Keypair, genesis_hash: bytes, host: bytes, model_cid: str, cumulative_queries: int,
                 cumulative_amount: int, nonce: int) -> Voucher:
    """The user `key` signs a voucher owing `host` `cumulative_amount` for `cumulative_queries` queries."""
    message = voucher_message(genesis_hash, key.public_key, host, model_cid, cumulative_queries, cumulative_amount,
                              nonce)
    return Voucher(key.public_key, host, model_cid, cumulative_queries, cumulative_amount, nonce, key.sign(message))


# ---------------------------------------------------------------- the host's ledger


class VoucherRejected(Exception):
    """A voucher a host refuses; `status` is the HTTP status, `code` a stable name, `last` the channel's newest."""

    def __init__(self, status: int, code: str, message: str, last: Voucher | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.last = last


class VoucherLedger:
    """The host's durable record of the newest accepted voucher per channel (user, model).

    SQLite in WAL mode with `synchronous=FULL`: `commit()` returns only once the accepted
    vouchers are on disk, so a host that crashes loses no voucher it answered a query for.
    Rows keep the voucher bytes, so a restarted host reports exactly what users signed.
    """

    def __init__(self, path: str) -> None:
        import sqlite3

        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS channel (user BLOB NOT NULL, model TEXT NOT NULL, nonce INTEGER NOT NULL, "
            "amount INTEGER NOT NULL, queries INTEGER NOT NULL, voucher BLOB NOT NULL, reported_nonce INTEGER "
            "NOT NULL DEFAULT 0, PRIMARY KEY (user, model))")
        self._pending: dict[tuple[bytes, str], Voucher] = {}

    def close(self) -> None:
        self._db.close()

    def newest(self, user: bytes, model_cid: str) -> Voucher | None:
        """The newest accepted voucher of a channel (including ones not yet committed)."""
        pending = self._pending.get((user, model_cid))
        if pending is not None:
            return pending
        row = self._db.execute("SELECT voucher FROM channel WHERE user=? AND model=?", (user, model_cid)).fetchone()
        return Voucher.decode(row[0]) if row else None

    def accept(self, voucher: Voucher) -> None:
        """Stage a verified voucher as its channel's newest; `commit()` makes it durable."""
        self._pending[(voucher.user, voucher.model_cid)] = voucher

    def discard(self) -> None:
        """Forget staged vouchers (their queries were not answered)."""
        self._pending.clear()

    def commit(self) -> None:
        """Write the staged vouchers in one transaction and fsync."""
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
        self._pending.clear()

    def unreported(self, model_cid: str) -> list[Voucher]:
        """Newest vouchers of `model_cid` not yet known to be redeemed on chain."""
        rows = self._db.execute("SELECT voucher FROM channel WHERE model=? AND nonce > reported_nonce ORDER BY user",
                                (model_cid,)).fetchall()
        return [Voucher.decode(r[0]) for r in rows]

    def mark_reported(self, model_cid: str, user: bytes, nonce: int) -> None:
        """Record that the channel's voucher `nonce` is redeemed on chain."""
        self._db.execute("UPDATE channel SET reported_nonce=MAX(reported_nonce, ?) WHERE user=? AND model=?",
                         (nonce, user, model_cid))

    def totals(self) -> dict[str, list[int]]:
        """model → [channels, queries, amount] accepted so far."""
        rows = self._db.execute("SELECT model, COUNT(*), SUM(queries), SUM(amount) FROM channel GROUP BY model")
        return {m: [c, q, a] for m, c, q, a in rows.fetchall()}


def check_voucher(voucher: Voucher, *, genesis_hash: bytes, host: bytes, model_cid: str, price: int,
                  last: Voucher | None, redeemed: tuple[int, int, int], escrow_available: int) -> None:
    """Every check a host makes before answering a paid query; raises `VoucherRejected`.

    `last` is the channel's newest accepted voucher, `redeemed` the chain's last redeemed
    (queries, amount, nonce) of the channel, `escrow_available` the user's escrow less pending
    withdrawals.
    """
    redeemed_queries, redeemed_amount, redeemed_nonce = redeemed
    if voucher.host != host:
        raise VoucherRejected(403, "wrong_host", "the voucher names another host")
    if voucher.model_cid != model_cid:
        raise VoucherRejected(403, "wrong_model", f"the voucher is for model {voucher.model_cid}, not {model_cid}")
    if not voucher.verifies(genesis_hash):
        raise VoucherRejected(401, "bad_signature", "the voucher signature does not verify for its user on this chain")
    last_nonce = max(last.nonce if last else 0, redeemed_nonce)
    last_amount = max(last.cumulative_amount if last else 0, redeemed_amount)
    last_queries = max(last.cumulative_queries if last else 0, redeemed_queries)
    if voucher.nonce <= last_nonce:
        raise VoucherRejected(409, "replayed", f"nonce {voucher.nonce} was already used; the channel is at nonce "
                              f"{last_nonce}", last)
    if voucher.cumulative_amount < last_amount:
        raise VoucherRejected(409, "amount_backwards", f"cumulative amount {voucher.cumulative_amount} is below "
                              f"the accepted {last_amount}", last)
    if voucher.cumulative_amount - last_amount < price or voucher.cumulative_queries <= last_queries:
        raise VoucherRejected(402, "underpaid", f"the voucher adds {voucher.cumulative_amount - last_amount}, a query "
                              f"costs {price}; cumulative_amount must be at least {last_amount + price} and "
                              f"cumulative_queries above {last_queries}", last)
    owed = voucher.cumulative_amount - redeemed_amount
    if owed > escrow_available:
        raise VoucherRejected(402, "escrow_exhausted", f"the user's escrow has {escrow_available} available, the "
                              f"vouchers to this host owe {owed}; deposit more", last)
