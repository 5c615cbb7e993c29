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
