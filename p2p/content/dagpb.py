"""Hand-written protobuf codec for dag-pb (PBNode/PBLink) and UnixFS `Data`.

Encoding follows go-codec-dagpb as Kubo uses it: links first (field 2), then Data (field 1);
every link carries Hash, Name (even when empty) and Tsize. UnixFS Data writes Type, then Data
(only when present), filesize, and blocksizes (one unpacked varint field per child).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2p.content.cid import DAG_PB, RAW, Cid, decode_varint, encode_varint
from p2p.content.errors import InvalidBlock, InvalidCid

UNIXFS_RAW = 0
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2
UNIXFS_TYPE_NAMES = {0: "raw", 1: "directory", 2: "file", 3: "metadata", 4: "symlink", 5: "hamt-shard"}

_WIRE_VARINT = 0
_WIRE_I64 = 1
_WIRE_LEN = 2
_WIRE_I32 = 5


@dataclass(frozen=True)
class PBLink:
    """One dag-pb link: child CID, name and cumulative size of the child's DAG."""

    cid: Cid
    name: str = ""
    tsize: int = 0


@dataclass(frozen=True)
class PBNode:
    """A decoded dag-pb node."""

    links: list[PBLink] = field(default_factory=list)
    data: bytes | None = None


@dataclass(frozen=True)
class UnixFSData:
    """The UnixFS `Data` message carried in a dag-pb node's Data field."""

    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)


def _key(field_no: int, wire: int) -> bytes:
    return encode_varint((field_no << 3) | wire)


def _len_field(field_no: int, payload: bytes) -> bytes:
    return _key(field_no, _WIRE_LEN) + encode_varint(len(payload)) + payload


def _varint_field(field_no: int, value: int) -> bytes:
    return _key(field_no, _WIRE_VARINT) + encode_varint(value)


def encode_pblink(link: PBLink) -> bytes:
    """Serialize a PBLink (Hash, Name, Tsize)."""
    return (
        _len_field(1, link.cid.to_bytes())
        + _len_field(2, link.name.encode("utf-8"))
        + _varint_field(3, link.tsize)
    )


def encode_pbnode(links: list[PBLink], data: bytes | None) -> bytes:
    """Serialize a PBNode: links first, then Data, as dag-pb requires."""
    parts = [_len_field(2, encode_pblink(link)) for link in links]
    if data is not None:
        parts.append(_len_field(1, data))
    return b"".join(parts)


def encode_unixfs(meta: UnixFSData) -> bytes:
    """Serialize a UnixFS Data message."""
    out = bytearray(_varint_field(1, meta.type))
    if meta.data is not None:
        out += _len_field(2, meta.data)
    if meta.filesize is not None:
        out += _varint_field(3, meta.filesize)
    for size in meta.blocksizes:
        out += _varint_field(4, size)
    return bytes(out)


def _fields(buf: bytes, what: str):
    """Yield (field number, wire type, value) for each field; value is int or a bytes slice."""
    pos = 0
    view = memoryview(buf)
    end = len(buf)
    try:
        while pos < end:
            key, pos = decode_varint(buf, pos)
            field_no, wire = key >> 3, key & 7
            if wire == _WIRE_VARINT:
                value, pos = decode_varint(buf, pos)
                yield field_no, wire, value
            elif wire == _WIRE_LEN:
                size, pos = decode_varint(buf, pos)
                if pos + size > end:
                    raise ValueError("length-delimited field runs past the end")
                yield field_no, wire, view[pos:pos + size]
                pos += size
            elif wire == _WIRE_I64:
                pos += 8
            elif wire == _WIRE_I32:
                pos += 4
            else:
                raise ValueError(f"unsupported wire type {wire}")
        if pos != end:
            raise ValueError("fixed-width field runs past the end")
    except ValueError as exc:
        raise InvalidBlock(f"malformed {what} protobuf: {exc}") from None


protobuf_fields = _fields  # the same field walker, for other protobuf messages (bitswap)


def decode_pbnode(block: bytes) -> PBNode:
    """Decode a dag-pb block. Raises InvalidBlock if it is not valid protobuf."""
    links: list[PBLink] = []
    data: bytes | None = None
    for field_no, wire, value in _fields(block, "dag-pb node"):
        if field_no == 2 and wire == _WIRE_LEN:
            links.append(_decode_pblink(bytes(value)))
        elif field_no == 1 and wire == _WIRE_LEN:
            data = bytes(value)
    return PBNode(links, data)


def _decode_pblink(buf: bytes) -> PBLink:
    cid: Cid | None = None
    name = ""
    tsize = 0
    for field_no, wire, value in _fields(buf, "dag-pb link"):
        if field_no == 1 and wire == _WIRE_LEN:
            try:
                cid = Cid.from_bytes(bytes(value))
            except InvalidCid as exc:
                raise InvalidBlock(f"dag-pb link has an unusable CID: {exc}") from None
        elif field_no == 2 and wire == _WIRE_LEN:
            name = bytes(value).decode("utf-8", errors="replace")
        elif field_no == 3 and wire == _WIRE_VARINT:
            tsize = value
    if cid is None:
        raise InvalidBlock("dag-pb link without a Hash")
    return PBLink(cid, name, tsize)


def decode_unixfs(buf: bytes) -> UnixFSData:
    """Decode a UnixFS Data message (blocksizes packed or not)."""
    ftype: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for field_no, wire, value in _fields(buf, "UnixFS Data"):
        if field_no == 1 and wire == _WIRE_VARINT:
            ftype = value
        elif field_no == 2 and wire == _WIRE_LEN:
            data = bytes(value)
        elif field_no == 3 and wire == _WIRE_VARINT:
            filesize = value
        elif field_no == 4 and wire == _WIRE_VARINT:
            blocksizes.append(value)
        elif field_no == 4 and wire == _WIRE_LEN:
            packed = bytes(value)
            pos = 0
            while pos < len(packed):
                size, pos = decode_varint(packed, pos)
                blocksizes.append(size)
    if ftype is None:
        raise InvalidBlock("UnixFS Data without a Type")
    return UnixFSData(ftype, data, filesize, blocksizes)


def child_cids(cid: Cid, block: bytes) -> list[Cid]:
    """CIDs linked from a block (none for raw blocks)."""
    if cid.codec == RAW:
        return []
    if cid.codec != DAG_PB:
        raise InvalidBlock(f"{cid}: codec 0x{cid.codec:x} cannot be traversed")
    return [link.cid for link in decode_pbnode(block).links]
