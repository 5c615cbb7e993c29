"""The IPFS bitswap wire format (`/ipfs/bitswap/1.2.0`, `1.1.0`, `1.0.0`), as boxo and Helia speak it.

Every message is a protobuf `Message` preceded by its length as an unsigned varint:

    message Message {
      message Wantlist {
        enum WantType { Block = 0; Have = 1; }
        message Entry { bytes block = 1; int32 priority = 2; bool cancel = 3;
                        WantType wantType = 4; bool sendDontHave = 5; }
        repeated Entry entries = 1;  bool full = 2;
      }
      message Block { bytes prefix = 1; bytes data = 2; }
      enum BlockPresenceType { Have = 0; DontHave = 1; }
      message BlockPresence { bytes cid = 1; BlockPresenceType type = 2; }
      Wantlist wantlist = 1;
      repeated bytes blocks = 2;                  // 1.0.0: bare block bytes, CIDv0 implied
      repeated Block payload = 3;                 // 1.1.0+: CID prefix + bytes
      repeated BlockPresence blockPresences = 4;  // 1.2.0
      int32 pendingBytes = 5;
    }

A received block carries no CID, only a prefix (version, codec, hash function, digest length):
the receiver hashes the bytes itself, so every block is identified by what it hashes to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from p2p.content.cid import DAG_PB, SHA2_256, SHA2_256_LEN, Cid, decode_varint, encode_varint
from p2p.content.dagpb import protobuf_fields
from p2p.content.errors import InvalidBlock, InvalidCid

BITSWAP_120 = "/ipfs/bitswap/1.2.0"
BITSWAP_110 = "/ipfs/bitswap/1.1.0"
BITSWAP_100 = "/ipfs/bitswap/1.0.0"
PROTOCOLS = (BITSWAP_120, BITSWAP_110, BITSWAP_100)

WANT_BLOCK = 0
WANT_HAVE = 1
HAVE = 0
DONT_HAVE = 1
MAX_MESSAGE = 4 * 1024 * 1024 + 64 * 1024  # boxo and Helia cap messages at 4 MiB of data


class MalformedMessage(Exception):
    """A bitswap message that does not decode: a protocol violation by its sender."""


@dataclass(frozen=True)
class WantEntry:
    """One wantlist entry: a CID wanted (as a block or a presence) or cancelled."""

    cid: Cid
    want_type: int = WANT_BLOCK
    send_dont_have: bool = False
    cancel: bool = False
    priority: int = 1


@dataclass(frozen=True)
class ReceivedBlock:
    """A block as it came off the wire: its sha2-256 multihash (computed here) and its bytes.

    `multihash` is None when the prefix names a hash function this node does not implement.
    """

    multihash: bytes | None
    data: bytes


@dataclass
class Message:
    """A decoded (or to be encoded) bitswap message."""

    wants: list[WantEntry] = field(default_factory=list)
    full: bool = False
    blocks: list[tuple[Cid, bytes]] = field(default_factory=list)  # outgoing: (CID asked for, bytes)
    received: list[ReceivedBlock] = field(default_factory=list)  # incoming, hashed on decode
    presences: list[tuple[Cid, int]] = field(default_factory=list)  # (CID, HAVE or DONT_HAVE)

    def is_empty(self) -> bool:
        return not (self.wants or self.blocks or self.presences or self.full)


# -- encoding ---------------------------------------------------------------------------------


def _key(field_no: int, wire: int) -> bytes:
    return encode_varint((field_no << 3) | wire)


def _bytes_field(field_no: int, payload: bytes) -> list[bytes]:
    return [_key(field_no, 2), encode_varint(len(payload)), payload]


def _varint_field(field_no: int, value: int) -> bytes:
    if value < 0:  # int32 on the wire: negative values as 64-bit two's complement
        value += 1 << 64
    return _key(field_no, 0) + encode_varint(value)


def cid_prefix(cid: Cid) -> bytes:
    """The bitswap 1.1 block prefix: version, codec, hash function and digest length, as varints."""
    return encode_varint(cid.version) + encode_varint(cid.codec) + bytes((SHA2_256, SHA2_256_LEN))


def _entry(entry: WantEntry) -> bytes:
    parts = _bytes_field(1, entry.cid.to_bytes())
    if entry.priority:
        parts.append(_varint_field(2, entry.priority))
    if entry.cancel:
        parts.append(_varint_field(3, 1))
    if entry.want_type:
        parts.append(_varint_field(4, entry.want_type))
    if entry.send_dont_have:
        parts.append(_varint_field(5, 1))
    return b"".join(parts)


def encode_message(message: Message, protocol: str = BITSWAP_120) -> bytes:
    """Serialize `message` for a stream negotiated as `protocol` (without the length prefix).

    For 1.0.0 blocks travel as bare bytes (only CIDv0 can be named that way) and for 1.0.0 and
    1.1.0 block presences and want-have entries are dropped, as those versions lack them.
    """
    parts: list[bytes] = []
    wants = message.wants if protocol == BITSWAP_120 else [w for w in message.wants
                                                           if w.want_type == WANT_BLOCK]
    if wants or message.full:
        wantlist = b"".join(b"".join(_bytes_field(1, _entry(w))) for w in wants)
        if message.full:
            wantlist += _varint_field(2, 1)
        parts += _bytes_field(1, wantlist)
    for cid, data in message.blocks:
        if protocol == BITSWAP_100:
            parts += _bytes_field(2, data)
        else:
            parts += _bytes_field(3, b"".join(_bytes_field(1, cid_prefix(cid)) + _bytes_field(2, data)))
    if protocol == BITSWAP_120:
        for cid, kind in message.presences:
            presence = b"".join(_bytes_field(1, cid.to_bytes()))
            if kind:
                presence += _varint_field(2, kind)
            parts += _bytes_field(4, presence)
    return b"".join(parts)


def frame(body: bytes) -> bytes:
    """`body` preceded by its varint length, as written on a bitswap stream."""
    return encode_varint(len(body)) + body


# -- decoding ---------------------------------------------------------------------------------


def _fields(buf: bytes | memoryview, what: str) -> Any:
    try:
        yield from protobuf_fields(bytes(buf), what)
    except InvalidBlock as exc:
        raise MalformedMessage(str(exc)) from None


def _parse_cid(raw: bytes, what: str) -> Cid:
    try:
        return Cid.from_bytes(raw)
    except InvalidCid as exc:
        raise MalformedMessage(f"{what}: {exc}") from None


def _decode_entry(buf: memoryview) -> WantEntry | None:
    cid_bytes: bytes | None = None
    priority, cancel, want_type, send_dont_have = 1, False, WANT_BLOCK, False
    for no, wire, value in _fields(buf, "wantlist entry"):
        if no == 1 and wire == 2:
            cid_bytes = bytes(value)
        elif no == 2 and wire == 0:
            priority = value - (1 << 64) if value >= 1 << 63 else value
        elif no == 3 and wire == 0:
            cancel = bool(value)
        elif no == 4 and wire == 0:
            want_type = WANT_HAVE if value == WANT_HAVE else WANT_BLOCK
        elif no == 5 and wire == 0:
            send_dont_have = bool(value)
    if cid_bytes is None:
        raise MalformedMessage("wantlist entry without a CID")
    try:
        cid = Cid.from_bytes(cid_bytes)
    except InvalidCid:
        return None  # a CID this node cannot store (other hash or codec): it never has it
    return WantEntry(cid, want_type, send_dont_have, cancel, priority)


def _hash_with_prefix(prefix: bytes, data: bytes) -> bytes | None:
    """The multihash of `data` under the prefix's hash function, or None if it is not sha2-256."""
    try:
        version, pos = decode_varint(prefix, 0)
        codec, pos = decode_varint(prefix, pos)
        mh_type, pos = decode_varint(prefix, pos)
        mh_len, pos = decode_varint(prefix, pos)
    except ValueError as exc:
        raise MalformedMessage(f"block prefix {prefix.hex()} is malformed: {exc}") from None
    if version not in (0, 1) or (version == 0 and (codec != DAG_PB or mh_type != SHA2_256)):
        raise MalformedMessage(f"block prefix {prefix.hex()} names an impossible CID")
    if mh_type != SHA2_256 or mh_len != SHA2_256_LEN:
        return None
    return bytes((SHA2_256, SHA2_256_LEN)) + hashlib.sha256(data).digest()


def decode_message(buf: bytes) -> Message:
    """Decode a message body; every block is hashed here. Raises MalformedMessage."""
    message = Message()
    for no, wire, value in _fields(buf, "bitswap message"):
        if no == 1 and wire == 2:
            for wno, wwire, wvalue in _fields(value, "wantlist"):
                if wno == 1 and wwire == 2:
                    entry = _decode_entry(wvalue)
                    if entry is not None:
                        message.wants.append(entry)
                elif wno == 2 and wwire == 0:
                    message.full = bool(wvalue)
        elif no == 2 and wire == 2:
            data = bytes(value)
            message.received.append(ReceivedBlock(
                bytes((SHA2_256, SHA2_256_LEN)) + hashlib.sha256(data).digest(), data))
        elif no == 3 and wire == 2:
            prefix, data = b"", b""
            for bno, bwire, bvalue in _fields(value, "block payload"):
                if bno == 1 and bwire == 2:
                    prefix = bytes(bvalue)
                elif bno == 2 and bwire == 2:
                    data = bytes(bvalue)
            message.received.append(ReceivedBlock(_hash_with_prefix(prefix, data), data))
        elif no == 4 and wire == 2:
            cid_bytes, kind = b"", HAVE
            for pno, pwire, pvalue in _fields(value, "block presence"):
                if pno == 1 and pwire == 2:
                    cid_bytes = bytes(pvalue)
                elif pno == 2 and pwire == 0:
                    kind = DONT_HAVE if pvalue == DONT_HAVE else HAVE
            try:
                message.presences.append((Cid.from_bytes(cid_bytes), kind))
            except InvalidCid:
                pass  # a presence for a CID this node could never have asked for
    return message


class MessageReader:
    """Reads varint-length-prefixed messages from a stream, in large reads."""

    def __init__(self, stream: Any, max_size: int = MAX_MESSAGE, read_size: int = 1 << 20) -> None:
        self._stream = stream
        self._max = max_size
        self._read_size = read_size
        self._buffer = bytearray()
        self._pos = 0
        self._eof = False

    async def _more(self) -> bool:
        if self._eof:
            return False
        if self._pos:
            del self._buffer[:self._pos]
            self._pos = 0
        try:
            data = await self._stream.read(self._read_size)
        except EOFError:
            data = b""
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    async def read(self) -> bytes | None:
        """The next message body, or None at a clean end of stream. Raises MalformedMessage."""
        while True:
            try:
                size, start = decode_varint(self._buffer, self._pos)
                break
            except ValueError as exc:
                if len(self._buffer) - self._pos > 10:
                    raise MalformedMessage(f"bad length prefix: {exc}") from None
            if not await self._more():
                if len(self._buffer) == self._pos:
                    return None
                raise MalformedMessage("stream ended inside a length prefix")
        if size > self._max:
            raise MalformedMessage(f"peer announced a {size}-byte message, over the {self._max}-byte limit")
        needed = (start - self._pos) + size  # prefix + body, counted from _pos (which _more resets)
        while len(self._buffer) - self._pos < needed:
            if not await self._more():
                raise MalformedMessage(f"stream ended {needed - (len(self._buffer) - self._pos)} bytes "
                                       "short of a message")
        body_start = self._pos + needed - size
        body = bytes(self._buffer[body_start:body_start + size])
        self._pos = body_start + size
        return body
