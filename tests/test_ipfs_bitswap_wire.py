"""The bitswap protobuf wire format: a message encoded by Helia decodes here, ours round-trip, garbage is refused."""

from __future__ import annotations

import hashlib

import pytest
import trio

from p2p.content.bitswap_wire import (
    BITSWAP_100,
    BITSWAP_110,
    DONT_HAVE,
    HAVE,
    WANT_BLOCK,
    WANT_HAVE,
    MalformedMessage,
    Message,
    MessageReader,
    WantEntry,
    cid_prefix,
    decode_message,
    encode_message,
    frame,
)
from p2p.content.cid import RAW, Cid, parse_cid

# Encoded by @helia/bitswap 2.2.0's BitswapMessage.encode (tests/helia): three wantlist entries
# (want-block + sendDontHave for a CIDv0, want-have priority 5 for its CIDv1, a cancel), one
# payload block b"hello" with a CIDv0 prefix, presences DONT_HAVE (CIDv1) and HAVE (CIDv0).
HELIA_MESSAGE = bytes.fromhex(
    "0a8e010a2c0a22122092d2f33b9284d81df0d7172679b29087e017c0e7ab685b0b58c15e3cdf0e3007100118002000"
    "28010a2e0a240170122092d2f33b9284d81df0d7172679b29087e017c0e7ab685b0b58c15e3cdf0e30071005180020"
    "0128000a2c0a22122092d2f33b9284d81df0d7172679b29087e017c0e7ab685b0b58c15e3cdf0e3007100118012000"
    "280010001a0d0a0400701220120568656c6c6f22280a240170122092d2f33b9284d81df0d7172679b29087e017c0e7"
    "ab685b0b58c15e3cdf0e3007100122240a22122092d2f33b9284d81df0d7172679b29087e017c0e7ab685b0b58c15e"
    "3cdf0e3007"
)
V0 = parse_cid("QmYDnoHKuqBE2uV8ApRTCVaK1vUgehnBRPU9RKBQTdGPs4")
V1 = parse_cid("bafybeies2lztxeue3ao7bvyxez43feeh4al4bz5lnbnqwwgbly6n6drqa4")


def test_message_encoded_by_helia_decodes() -> None:
    message = decode_message(HELIA_MESSAGE)
    assert message.wants == [
        WantEntry(V0, WANT_BLOCK, send_dont_have=True, cancel=False, priority=1),
        WantEntry(V1, WANT_HAVE, send_dont_have=False, cancel=False, priority=5),
        WantEntry(V0, WANT_BLOCK, send_dont_have=False, cancel=True, priority=1),
    ]
    assert not message.full
    [block] = message.received
    assert block.data == b"hello"
    assert block.multihash == bytes((0x12, 0x20)) + hashlib.sha256(b"hello").digest()
    assert message.presences == [(V1, DONT_HAVE), (V0, HAVE)]


def test_round_trip_per_protocol_version() -> None:
    raw_cid = Cid(1, RAW, Cid.for_dag_pb_block(b"raw block").multihash)
    message = Message(
        wants=[WantEntry(V0, WANT_BLOCK, True), WantEntry(V1, WANT_HAVE), WantEntry(V0, cancel=True, priority=-3)],
        full=True,
        blocks=[(V0, b"dag-pb bytes"), (raw_cid, b"raw block")],
        presences=[(V1, DONT_HAVE), (V0, HAVE)],
    )
    back = decode_message(encode_message(message))
    assert back.wants == message.wants and back.full
    assert [b.data for b in back.received] == [b"dag-pb bytes", b"raw block"]
    assert [b.multihash for b in back.received] == [Cid.for_dag_pb_block(b"dag-pb bytes").multihash,
                                                    raw_cid.multihash]
    assert back.presences == message.presences
    # 1.1.0 has no presences and no want-have; 1.0.0 sends bare block bytes
    older = decode_message(encode_message(message, BITSWAP_110))
    assert older.presences == [] and [w.want_type for w in older.wants] == [WANT_BLOCK, WANT_BLOCK]
    oldest = encode_message(message, BITSWAP_100)
    assert cid_prefix(V0) not in oldest
    assert [b.data for b in decode_message(oldest).received] == [b"dag-pb bytes", b"raw block"]


@pytest.mark.parametrize("garbage", [
    b"\x0a\x05abc",                  # field runs past the end
    b"\x1a\x06\x0a\x04\x00\x55\x12\x20",  # prefix of an impossible CIDv0 (raw codec)
    b"\x0a\x04\x0a\x02\x10\x01",     # wantlist entry without a CID
    b"\x0f",                         # unsupported wire type
])
def test_malformed_messages_are_refused(garbage: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(garbage)


def test_block_under_an_unknown_hash_is_not_claimed() -> None:
    # prefix: CIDv1 raw, blake2b-256 (0xb220): this node cannot verify it, so it names no block
    payload = b"\x0a\x06\x01\x55\xa0\xe4\x02\x20" + b"\x12\x01x"
    message = decode_message(b"\x1a" + bytes([len(payload)]) + payload)
    assert [(b.multihash, b.data) for b in message.received] == [(None, b"x")]


class _Chunks:
    """A stream that returns the given chunks, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_reader_splits_frames_across_reads_and_limits_size() -> None:
    async def main() -> None:
        wire = frame(b"a" * 300) + frame(b"") + frame(b"bc")
        pieces = [wire[i:i + 7] for i in range(0, len(wire), 7)]
        reader = MessageReader(_Chunks(pieces))
        assert [await reader.read() for _ in range(4)] == [b"a" * 300, b"", b"bc", None]
        with pytest.raises(MalformedMessage, match="over the"):
            await MessageReader(_Chunks([frame(b"x" * 100)]), max_size=99).read()
        with pytest.raises(MalformedMessage, match="short of a message"):
            await MessageReader(_Chunks([frame(b"xyz")[:-1]])).read()

    trio.run(main)
