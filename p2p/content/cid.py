"""Content identifiers: CIDv0 (base58btc sha2-256 multihash) and CIDv1 (base32) for dag-pb and raw.

Blocks are stored and exchanged by their multihash, so a CIDv0 and a CIDv1 naming the same
bytes resolve to the same stored block.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import base58

from p2p.content.errors import InvalidCid

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
SHA2_256_LEN = 32
CODEC_NAMES = {DAG_PB: "dag-pb", RAW: "raw"}


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 varint, as used by multiformats and protobuf."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """Decode a varint at `pos`; return (value, position after it). Raises ValueError if truncated."""
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def sha256_multihash(data: bytes) -> bytes:
    """The sha2-256 multihash (0x12 0x20 + digest) of `data`."""
    return bytes((SHA2_256, SHA2_256_LEN)) + hashlib.sha256(data).digest()


def _check_multihash(mh: bytes, context: str) -> None:
    if len(mh) != 2 + SHA2_256_LEN or mh[0] != SHA2_256 or mh[1] != SHA2_256_LEN:
        raise InvalidCid(f"{context}: only sha2-256 multihashes (0x12 0x20 + 32 bytes) are supported")


@dataclass(frozen=True)
class Cid:
    """A parsed CID. `multihash` is the key blocks are stored under."""

    version: int
    codec: int
    multihash: bytes

    @classmethod
    def v0(cls, multihash: bytes) -> Cid:
        """CIDv0 for a dag-pb block with the given sha2-256 multihash."""
        _check_multihash(multihash, "CIDv0")
        return cls(0, DAG_PB, multihash)

    @classmethod
    def for_dag_pb_block(cls, block: bytes) -> Cid:
        """CIDv0 of a serialized dag-pb block."""
        return cls(0, DAG_PB, sha256_multihash(block))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Cid:
        """Parse a binary CID (as found in dag-pb links)."""
        if len(raw) == 34 and raw[0] == SHA2_256 and raw[1] == SHA2_256_LEN:
            return cls(0, DAG_PB, bytes(raw))
        try:
            version, pos = decode_varint(raw, 0)
            codec, pos = decode_varint(raw, pos)
        except ValueError as exc:
            raise InvalidCid(f"binary CID {raw.hex()[:80]} is malformed: {exc}") from None
        if version != 1:
            raise InvalidCid(f"binary CID has version {version}; only 0 and 1 exist")
        if codec not in CODEC_NAMES:
            raise InvalidCid(f"CID codec 0x{codec:x} is not supported (only dag-pb 0x70 and raw 0x55)")
        mh = bytes(raw[pos:])
        _check_multihash(mh, "CIDv1")
        return cls(1, codec, mh)

    def to_bytes(self) -> bytes:
        """Binary form: the bare multihash for v0, version+codec+multihash for v1."""
        if self.version == 0:
            return self.multihash
        return encode_varint(1) + encode_varint(self.codec) + self.multihash

    def verify(self, block: bytes) -> bool:
        """True if `block` hashes to this CID's multihash."""
        return sha256_multihash(block) == self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return base58.b58encode(self.multihash).decode("ascii")
        return "b" + base64.b32encode(self.to_bytes()).decode("ascii").lower().rstrip("=")

    def __repr__(self) -> str:
        return f"Cid({self})"


def parse_cid(text: str | Cid) -> Cid:
    """Parse a CID string: CIDv0 ('Qm...', base58btc) or CIDv1 in base32 ('b...').

    A leading '/ipfs/' is accepted. Raises InvalidCid with the reason when it does not parse.
    """
    if isinstance(text, Cid):
        return text
    if not isinstance(text, str):
        raise InvalidCid(f"a CID must be a string, got {type(text).__name__}")
    s = text.strip()
    if s.startswith("/ipfs/"):
        s = s[len("/ipfs/"):].split("/", 1)[0]
    if not s:
        raise InvalidCid("empty CID string")
    if len(s) == 46 and s.startswith("Qm"):
        try:
            raw = base58.b58decode(s)
        except ValueError:
            raise InvalidCid(f"{text!r} is not valid base58btc") from None
        _check_multihash(raw, f"CIDv0 {text!r}")
        return Cid(0, DAG_PB, raw)
    if s[0] in "bB":
        body = s[1:].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError:
            raise InvalidCid(f"{text!r} is not valid base32 (multibase 'b')") from None
        return Cid.from_bytes(raw)
    raise InvalidCid(
        f"{text!r} is not a CID: expected CIDv0 ('Qm' + 44 base58 characters) or CIDv1 in base32 ('b...')"
    )


def parse_path(text: str | Cid) -> tuple[Cid, list[str]]:
    """Split an IPFS path ('CID', 'CID/a/b', '/ipfs/CID/a/b') into its root CID and names."""
    if isinstance(text, Cid):
        return text, []
    if not isinstance(text, str):
        raise InvalidCid(f"an IPFS path must be a string, got {type(text).__name__}")
    s = text.strip().removeprefix("/ipfs/")
    root, _, rest = s.partition("/")
    return parse_cid(root), [part for part in rest.split("/") if part]
