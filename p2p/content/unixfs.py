"""UnixFS files exactly as Kubo's `ipfs add` makes them by default.

Defaults reproduced: fixed-size chunker of 262144 bytes, dag-pb leaves (UnixFS File with the
chunk as Data and filesize set), balanced layout with at most 174 links per node, CIDv0.

The importer is push-based (`write` / `finish`) so it can be fed from a file object or an
HTTP upload; it keeps only the open levels of the tree (at most 174 links per level) plus one
chunk in memory, and hands every block to a sink as soon as it is final. Blocks reach the sink
children-first, so the root block is always the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from p2p.content.cid import DAG_PB, RAW, Cid
from p2p.content.dagpb import (
    UNIXFS_FILE,
    UNIXFS_RAW,
    UNIXFS_TYPE_NAMES,
    PBLink,
    UnixFSData,
    decode_pbnode,
    decode_unixfs,
    encode_pbnode,
    encode_unixfs,
)
from p2p.content.errors import InvalidBlock

CHUNK_SIZE = 262144
MAX_LINKS = 174

BlockSink = Callable[[Cid, bytes], None]
BlockGetter = Callable[[Cid], bytes]


@dataclass(frozen=True)
class ImportResult:
    """Outcome of an import: root CID, Kubo's "Size" (cumulative DAG bytes) and file length."""

    cid: Cid
    size: int
    filesize: int
    blocks: int


@dataclass(frozen=True)
class _Child:
    cid: Cid
    tsize: int
    filesize: int


class FileImporter:
    """Streams bytes into a balanced UnixFS DAG; call `write` repeatedly, then `finish` once."""

    def __init__(self, sink: BlockSink | None = None, chunk_size: int = CHUNK_SIZE,
                 max_links: int = MAX_LINKS, cid_version: int = 0, raw_leaves: bool = False) -> None:
        """`cid_version=1` names dag-pb nodes by CIDv1; `raw_leaves` stores chunks as raw blocks
        (CIDv1 raw, as Kubo's `--raw-leaves`, the default with `--cid-version=1`)."""
        if chunk_size <= 0 or max_links < 2:
            raise ValueError("chunk_size must be positive and max_links at least 2")
        if cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, got {cid_version}")
        self._cid_version = cid_version
        self._raw_leaves = raw_leaves
        self._sink = sink
        self._chunk_size = chunk_size
        self._max_links = max_links
        self._buffer = bytearray()
        self._levels: list[list[_Child]] = [[]]
        self._blocks = 0
        self._finished = False

    def write(self, data: bytes) -> None:
        """Append file bytes; full chunks become leaf blocks immediately."""
        if self._finished:
            raise RuntimeError("write() after finish()")
        if not self._buffer and len(data) >= self._chunk_size:
            view = memoryview(data)
            while len(view) >= self._chunk_size:
                self._add_leaf(bytes(view[:self._chunk_size]))
                view = view[self._chunk_size:]
            self._buffer += view
            return
        self._buffer += data
        while len(self._buffer) >= self._chunk_size:
            self._add_leaf(bytes(self._buffer[:self._chunk_size]))
            del self._buffer[:self._chunk_size]

    def finish(self) -> ImportResult:
        """Emit the last leaf and the remaining interior nodes; return the root."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        if self._buffer or self._total_children() == 0:
            self._add_leaf(bytes(self._buffer), empty_file=not self._buffer)
            self._buffer.clear()
        level = 0
        while True:
            entries = self._levels[level]
            is_top = level == len(self._levels) - 1
            if is_top and len(entries) == 1:
                root = entries[0]
                return ImportResult(root.cid, root.tsize, root.filesize, self._blocks)
            if entries:
                self._close_level(level)
            level += 1

    def _total_children(self) -> int:
        return sum(len(entries) for entries in self._levels)

    def _emit(self, block: bytes, codec: int = DAG_PB) -> Cid:
        cid = Cid.for_dag_pb_block(block)
        if codec != DAG_PB or self._cid_version == 1:
            cid = Cid(1, codec, cid.multihash)
        self._blocks += 1
        if self._sink is not None:
            self._sink(cid, block)
        return cid

    def _add_leaf(self, chunk: bytes, empty_file: bool = False) -> None:
        if self._raw_leaves:
            self._push(0, _Child(self._emit(chunk, RAW), len(chunk), len(chunk)))
            return
        meta = UnixFSData(UNIXFS_FILE, None if empty_file else chunk, len(chunk))
        block = encode_pbnode([], encode_unixfs(meta))
        self._push(0, _Child(self._emit(block), len(block), len(chunk)))

    def _push(self, level: int, child: _Child) -> None:
        entries = self._levels[level]
        entries.append(child)
        if len(entries) == self._max_links:
            self._close_level(level)

    def _close_level(self, level: int) -> None:
        """Turn the links gathered at `level` into one interior node, linked from `level + 1`."""
        entries = self._levels[level]
        self._levels[level] = []
        if level + 1 == len(self._levels):
            self._levels.append([])
        filesize = sum(e.filesize for e in entries)
        meta = UnixFSData(UNIXFS_FILE, None, filesize, [e.filesize for e in entries])
        block = encode_pbnode([PBLink(e.cid, "", e.tsize) for e in entries], encode_unixfs(meta))
        tsize = len(block) + sum(e.tsize for e in entries)
        self._push(level + 1, _Child(self._emit(block), tsize, filesize))


def import_file(fileobj: BinaryIO, sink: BlockSink | None = None,
                read_size: int = 4 * CHUNK_SIZE) -> ImportResult:
    """Import a binary file object chunk by chunk; `sink` receives every block (root last)."""
    importer = FileImporter(sink)
    while True:
        data = fileobj.read(read_size)
        if not data:
            break
        importer.write(data)
    return importer.finish()


def import_bytes(data: bytes, sink: BlockSink | None = None) -> ImportResult:
    """Import an in-memory byte string."""
    importer = FileImporter(sink)
    importer.write(data)
    return importer.finish()


@dataclass(frozen=True)
class FileNode:
    """What a block says about the file bytes below it."""

    filesize: int
    data: bytes
    children: list[tuple[Cid, int]]


def read_file_node(cid: Cid, block: bytes) -> FileNode:
    """Interpret a block as part of a UnixFS file: own data first, then children with their sizes."""
    if cid.codec == RAW:
        return FileNode(len(block), block, [])
    if cid.codec != DAG_PB:
        raise InvalidBlock(f"{cid}: codec 0x{cid.codec:x} is not a UnixFS file")
    node = decode_pbnode(block)
    if node.data is None:
        raise InvalidBlock(f"{cid}: dag-pb node without UnixFS data is not a file")
    meta = decode_unixfs(node.data)
    if meta.type not in (UNIXFS_FILE, UNIXFS_RAW):
        kind = UNIXFS_TYPE_NAMES.get(meta.type, f"type {meta.type}")
        raise InvalidBlock(f"{cid} is a UnixFS {kind}, not a file")
    own = meta.data or b""
    if node.links and len(meta.blocksizes) != len(node.links):
        raise InvalidBlock(
            f"{cid}: {len(node.links)} links but {len(meta.blocksizes)} blocksizes in UnixFS data"
        )
    children = [(link.cid, size) for link, size in zip(node.links, meta.blocksizes, strict=False)]
    filesize = meta.filesize if meta.filesize is not None else len(own) + sum(meta.blocksizes)
    return FileNode(filesize, own, children)


def file_size(get_block: BlockGetter, cid: Cid) -> int:
    """The length of the file rooted at `cid`, read from its root block."""
    return read_file_node(cid, get_block(cid)).filesize


def iter_file(get_block: BlockGetter, cid: Cid, offset: int = 0,
              length: int | None = None) -> Iterator[bytes]:
    """Stream the bytes of the file rooted at `cid`, from `offset`, at most `length` bytes.

    Subtrees that lie wholly before `offset` are skipped by their blocksizes and never read.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if length is not None and length < 0:
        length = None
    end = None if length is None else offset + length
    if end is not None and end <= offset:
        return
    yield from _iter_range(get_block, cid, offset, end)


def _iter_range(get_block: BlockGetter, cid: Cid, start: int, end: int | None) -> Iterator[bytes]:
    """Yield file bytes in [start, end) relative to the subtree at `cid`."""
    node = read_file_node(cid, get_block(cid))
    pos = 0
    if node.data:
        lo, hi = start, len(node.data) if end is None else min(end, len(node.data))
        if lo < hi:
            yield node.data[lo:hi] if (lo, hi) != (0, len(node.data)) else node.data
        pos = len(node.data)
    for child, size in node.children:
        if end is not None and pos >= end:
            return
        if pos + size > start and size > 0:
            child_start = max(0, start - pos)
            child_end = None if end is None or end >= pos + size else end - pos
            yield from _iter_range(get_block, child, child_start, child_end)
        pos += size
