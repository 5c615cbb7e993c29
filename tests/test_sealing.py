"""Sealing the held-out set: only selected validators open it; tampering is detected."""

from __future__ import annotations

import hashlib

import msgpack
import nacl.signing
import pytest

from node.offchain.ml.sealing import (
    CorruptShare,
    InvalidRecipientKey,
    NotARecipient,
    decode_share,
    encode_share,
    open_share,
    open_with_key,
    seal_for_validators,
)

DATA = b"held-out examples " * 1000


@pytest.fixture(scope="module")
def keys() -> list[nacl.signing.SigningKey]:
    return [nacl.signing.SigningKey(hashlib.blake2b(bytes([i]), digest_size=32).digest()) for i in range(3)]


def _pk(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


def test_only_selected_validators_can_open(keys) -> None:
    selected, outsider = keys[:2], keys[2]
    share = decode_share(encode_share(seal_for_validators(DATA, [_pk(k) for k in selected])))
    assert share.key is None  # the data key never travels
    for key in selected:
        assert open_share(share, key) == DATA
        assert open_share(share, bytes(key)) == DATA  # 32-byte seed
        assert open_share(share, bytes(key) + _pk(key)) == DATA  # 64-byte libsodium secret key
    with pytest.raises(NotARecipient, match=_pk(outsider).hex()):
        open_share(share, outsider)


def test_encoding_is_a_fixed_order_list(keys) -> None:
    share = seal_for_validators(DATA, [_pk(keys[1]), _pk(keys[0]), _pk(keys[1])])
    version, ciphertext, entries = msgpack.unpackb(encode_share(share), raw=False)
    assert version == 1 and ciphertext == share.ciphertext
    assert [pk for pk, _ in entries] == sorted([_pk(keys[0]), _pk(keys[1])])
    assert decode_share(encode_share(share)) == share


def test_tampering_is_detected(keys) -> None:
    share = seal_for_validators(DATA, [_pk(keys[0])])
    version, ciphertext, entries = msgpack.unpackb(encode_share(share), raw=False)
    flipped = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    tampered = decode_share(msgpack.packb([version, flipped, entries], use_bin_type=True))
    with pytest.raises(CorruptShare):
        open_share(tampered, keys[0])
    sealed = entries[0][1]
    bad_key = [[entries[0][0], sealed[:-1] + bytes([sealed[-1] ^ 1])]]
    with pytest.raises(CorruptShare, match="does not decrypt"):
        open_share(decode_share(msgpack.packb([version, ciphertext, bad_key], use_bin_type=True)), keys[0])
    for garbage in (
        b"",
        b"\xc1",
        msgpack.packb([2, b"", []]),
        msgpack.packb({"a": 1}),
        encode_share(share)[:-3],
    ):
        with pytest.raises(CorruptShare):
            decode_share(garbage)


def test_audit_with_the_published_key(keys) -> None:
    share = seal_for_validators(DATA, [_pk(keys[0])])
    assert share.key is not None
    assert open_with_key(share.ciphertext, share.key) == DATA
    with pytest.raises(CorruptShare):
        open_with_key(share.ciphertext, bytes(32))
    with pytest.raises(CorruptShare):
        open_with_key(share.ciphertext, b"short")


def test_invalid_recipient_keys() -> None:
    with pytest.raises(InvalidRecipientKey):
        seal_for_validators(DATA, [])
    with pytest.raises(InvalidRecipientKey):
        seal_for_validators(DATA, [b"\x01" * 31])
