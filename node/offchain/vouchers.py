"""Payment vouchers: what a user signs per query, and how hosts and the chain read it.

A voucher is the fixed-order list

    [user (32 bytes), host (32 bytes), model_cid (str), cumulative_queries, cumulative_amount,
     nonce, signature (64 bytes)]

where `signature` is the user's ed25519 signature of `runtime.modules.marketplace.voucher_message`:

    b"arena/voucher/v1" ‖ encode([genesis_hash, user, host, model_cid, cumulative_queries,
                                  cumulative_amount, nonce])

On the wire (HTTP header `X-Arena-Voucher`) it is hex of `encode(voucher)`; in
`marketplace.report_usage` it is the list itself. docs/marketplace.md gives the bytes.
`check_voucher` is every check a host makes before answering; the host's ledger of accepted
vouchers is node.offchain.host_ledger.
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


# ---------------------------------------------------------------- the host's checks


class VoucherRejected(Exception):
    """A voucher a host refuses; `status` is the HTTP status, `code` a stable name, `last` the channel's newest."""

    def __init__(self, status: int, code: str, message: str, last: Voucher | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.last = last


def check_voucher(voucher: Voucher, *, genesis_hash: bytes, host: bytes, model_cid: str, price: int,
                  last: Voucher | None, redeemed: tuple[int, int, int], escrow_available: int,
                  verified: bool = False) -> None:
    """Every check a host makes before answering a paid query; raises `VoucherRejected`.

    `last` is the channel's newest accepted voucher, `redeemed` the chain's last redeemed
    (queries, amount, nonce) of the channel, `escrow_available` the user's escrow less pending
    withdrawals (and its channel to this host); `verified` skips the signature check when the caller
    has just verified this very voucher.
    """
    redeemed_queries, redeemed_amount, redeemed_nonce = redeemed
    if voucher.host != host:
        raise VoucherRejected(403, "wrong_host", "the voucher names another host")
    if voucher.model_cid != model_cid:
        raise VoucherRejected(403, "wrong_model", f"the voucher is for model {voucher.model_cid}, not {model_cid}")
    if not verified and not voucher.verifies(genesis_hash):
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
