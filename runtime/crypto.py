"""Hashing, ed25519 keys and SS58 addresses."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import base58
import nacl.exceptions
import nacl.signing

SS58_PREFIX = 42
_SS58_CONTEXT = b"SS58PRE"


class CryptoError(ValueError):
    """A key, signature or address that cannot be used."""


def blake2b_256(data: bytes) -> bytes:
    """The chain's hash function: blake2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=32).digest()


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s ed25519 signature of `message`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False


@dataclass(frozen=True)
class Keypair:
    """An ed25519 account key pair derived from a 32-byte seed."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise CryptoError(f"seed must be 32 bytes, got {len(self.seed)}")

    @cached_property
    def _signing_key(self) -> nacl.signing.SigningKey:
        # derived once per key pair: the seed-to-key expansion costs as much as a signature
        return nacl.signing.SigningKey(self.seed)

    @cached_property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def address(self) -> str:
        return ss58_encode(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    @classmethod
    def generate(cls) -> Keypair:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_dev_name(cls, name: str) -> Keypair:
        """Dev accounts: seed = blake2b-256(b"arena-dev-seed/" + lowercase name)."""
        return cls(blake2b_256(b"arena-dev-seed/" + name.lower().encode()))


def ss58_encode(public_key: bytes, prefix: int = SS58_PREFIX) -> str:
    """SS58 text form of a 32-byte account id (prefix 42, 2-byte blake2b-512 checksum)."""
    if len(public_key) != 32:
        raise CryptoError(f"account id must be 32 bytes, got {len(public_key)}")
    body = bytes([prefix]) + public_key
    checksum = hashlib.blake2b(_SS58_CONTEXT + body, digest_size=64).digest()[:2]
    return base58.b58encode(body + checksum).decode()


def ss58_decode(address: str, prefix: int = SS58_PREFIX) -> bytes:
    """The 32-byte account id of an SS58 address; raises CryptoError on a bad address."""
    try:
        raw = base58.b58decode(address)
    except ValueError as exc:
        raise CryptoError(f"{address!r} is not base58") from exc
    if len(raw) != 35:
        raise CryptoError(f"{address!r} is not a 32-byte SS58 account address")
    if raw[0] != prefix:
        raise CryptoError(f"{address!r} has network prefix {raw[0]}, expected {prefix}")
    checksum = hashlib.blake2b(_SS58_CONTEXT + raw[:33], digest_size=64).digest()[:2]
    if checksum != raw[33:]:
        raise CryptoError(f"{address!r} has a bad checksum")
    return raw[1:33]


def parse_account(text: str) -> bytes:
    """An account id from an SS58 address or 0x-prefixed 64-hex-digit string."""
    if text.startswith("0x"):
        try:
            raw = bytes.fromhex(text[2:])
        except ValueError as exc:
            raise CryptoError(f"{text!r} is not hex") from exc
        if len(raw) != 32:
            raise CryptoError(f"{text!r} is not 32 bytes")
        return raw
    return ss58_decode(text)
