"""Sealing the held-out set to the selected validators (trainers never see it).

Scheme (``SEAL_VERSION`` 1):

* a fresh 32-byte key *k*; ``ciphertext = SecretBox(k).encrypt(data)`` (XSalsa20-Poly1305,
  random 24-byte nonce prepended);
* for each validator's 32-byte ed25519 account key *pk*: ``SealedBox(X25519(pk)).encrypt(k)``
  where ``X25519(pk) = crypto_sign_ed25519_pk_to_curve25519(pk)``;
* a validator derives its X25519 private key with ``crypto_sign_ed25519_sk_to_curve25519``
  from its ed25519 secret key and opens its entry;
* after finalization the planner publishes *k*; anyone re-opens the ciphertext with
  `open_with_key` and checks the result against the spec's ``heldout_blake2b``.

Wire format (`encode_share`): msgpack, ``use_bin_type=True``, the fixed-order list
``[version, ciphertext, [[validator_pk, sealed_key], ...]]`` with entries sorted by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
import nacl.utils

SEAL_VERSION = 1
MAX_SHARE_BYTES = 80 * 2**20
MAX_RECIPIENTS = 1024
# A sealed data key: ephemeral X25519 public key (32) + encrypted 32-byte key + Poly1305 tag (16).
SEALED_KEY_BYTES = 32 + nacl.secret.SecretBox.KEY_SIZE + 16


class SealingError(Exception):
    """Base class of sealing errors."""


class NotARecipient(SealingError):
    """The share holds no key sealed to this validator."""


class CorruptShare(SealingError):
    """The share or ciphertext is malformed, tampered with, or the key is wrong."""


class InvalidRecipientKey(SealingError):
    """A validator public key is not a valid 32-byte ed25519 point."""


@dataclass(frozen=True)
class SealedShare:
    """A held-out set encrypted once, with its key sealed to each selected validator.

    `key` is the plaintext data key, present only on the planner's side (it is never
    encoded); the planner keeps it to publish for the audit after finalization.
    """

    ciphertext: bytes
    recipients: tuple[tuple[bytes, bytes], ...]
    version: int = SEAL_VERSION
    key: bytes | None = field(default=None, repr=False, compare=False)

    def recipient_keys(self) -> list[bytes]:
        """The ed25519 account keys that can open this share."""
        return [pk for pk, _ in self.recipients]


def new_data_key() -> bytes:
    """A fresh random 32-byte SecretBox key."""
    return nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)


def _x25519_public(ed25519_pk: bytes) -> nacl.public.PublicKey:
    if not isinstance(ed25519_pk, bytes) or len(ed25519_pk) != 32:
        raise InvalidRecipientKey(
            f"a validator key must be 32 bytes of ed25519 public key, got {ed25519_pk!r:.80}"
        )
    try:
        return nacl.public.PublicKey(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(ed25519_pk))
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as exc:
        raise InvalidRecipientKey(
            f"validator key {ed25519_pk.hex()} is not a valid ed25519 point: {exc}"
        ) from None


def seal_for_validators(
    data: bytes, validator_pubkeys: list[bytes], *, key: bytes | None = None
) -> SealedShare:
    """Encrypt `data` once and seal its key to each validator (duplicates collapse)."""
    recipients = sorted(set(validator_pubkeys))
    if not recipients:
        raise InvalidRecipientKey("seal_for_validators needs at least one validator key")
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidRecipientKey(f"{len(recipients)} recipients, over the limit of {MAX_RECIPIENTS}")
    key = new_data_key() if key is None else key
    ciphertext = bytes(nacl.secret.SecretBox(key).encrypt(bytes(data)))
    sealed = tuple((pk, bytes(nacl.public.SealedBox(_x25519_public(pk)).encrypt(key))) for pk in recipients)
    return SealedShare(ciphertext, sealed, SEAL_VERSION, key)


def _signing_key(secret: bytes | nacl.signing.SigningKey) -> nacl.signing.SigningKey:
    if isinstance(secret, nacl.signing.SigningKey):
        return secret
    if isinstance(secret, bytes) and len(secret) == 32:
        return nacl.signing.SigningKey(secret)
    if isinstance(secret, bytes) and len(secret) == 64:  # libsodium secret key: seed || public key
        return nacl.signing.SigningKey(secret[:32])
    raise TypeError("expected a 32-byte ed25519 seed, a 64-byte ed25519 secret key, or a SigningKey")


def open_share(share: SealedShare, ed25519_secret: bytes | nacl.signing.SigningKey) -> bytes:
    """The plaintext held-out data, for a validator holding one of the recipient keys."""
    signing = _signing_key(ed25519_secret)
    public = bytes(signing.verify_key)
    sealed_key = dict(share.recipients).get(public)
    if sealed_key is None:
        raise NotARecipient(f"the share is not sealed to validator {public.hex()}")
    secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(bytes(signing) + public)
    try:
        key = nacl.public.SealedBox(nacl.public.PrivateKey(secret)).decrypt(sealed_key)
    except nacl.exceptions.CryptoError:
        raise CorruptShare(f"the key sealed to {public.hex()} does not decrypt (tampered share?)") from None
    return open_with_key(share.ciphertext, key)


def open_with_key(ciphertext: bytes, key: bytes) -> bytes:
    """Decrypt the ciphertext with the published data key (the post-finalization audit)."""
    if not isinstance(key, bytes) or len(key) != nacl.secret.SecretBox.KEY_SIZE:
        raise CorruptShare(f"a data key is {nacl.secret.SecretBox.KEY_SIZE} bytes")
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(ciphertext))
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError):
        raise CorruptShare(
            "the ciphertext does not decrypt with this key (wrong key or tampered data)"
        ) from None


def encode_share(share: SealedShare) -> bytes:
    """Wire bytes: msgpack ``[version, ciphertext, [[pk, sealed_key], ...]]`` (no data key)."""
    entries = [[pk, sealed] for pk, sealed in sorted(share.recipients)]
    return msgpack.packb([share.version, share.ciphertext, entries], use_bin_type=True)


def decode_share(data: bytes) -> SealedShare:
    """Parse wire bytes strictly; `CorruptShare` on anything unexpected."""
    if not isinstance(data, bytes) or len(data) > MAX_SHARE_BYTES:
        raise CorruptShare(f"a share must be bytes of at most {MAX_SHARE_BYTES} bytes")
    try:
        value = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, max_bin_len=MAX_SHARE_BYTES
        )
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise CorruptShare(f"the share is not valid msgpack: {exc}") from None
    if not (isinstance(value, list) and len(value) == 3):
        raise CorruptShare("a share is the list [version, ciphertext, recipients]")
    version, ciphertext, entries = value
    if version != SEAL_VERSION:
        raise CorruptShare(f"share version {version!r} is not {SEAL_VERSION}")
    if not isinstance(ciphertext, bytes) or not isinstance(entries, list) or len(entries) > MAX_RECIPIENTS:
        raise CorruptShare(
            f"a share needs a bytes ciphertext and a list of at most {MAX_RECIPIENTS} recipients"
        )
    recipients = []
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], bytes)
            and len(entry[0]) == 32
            and isinstance(entry[1], bytes)
            and len(entry[1]) == SEALED_KEY_BYTES
        ):
            raise CorruptShare("a recipient entry is [32-byte validator key, sealed data key]")
        recipients.append((entry[0], entry[1]))
    if [pk for pk, _ in recipients] != sorted({pk for pk, _ in recipients}):
        raise CorruptShare("recipient keys must be unique and sorted")
    return SealedShare(ciphertext, tuple(recipients), version)
