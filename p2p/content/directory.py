"""UnixFS directories as Kubo builds them (basic, unsharded), and paths inside them.

A directory is a dag-pb node whose Data is UnixFS `{Type: Directory}` and whose links name its
entries, sorted by name (bytewise), each with the entry's cumulative DAG size as Tsize. A model
folder (`config.json`, `model.safetensors`, tokenizer files) is one such node over its files.
Kubo switches to HAMT-sharded directories past 256 KiB of links (thousands of entries); this
store builds basic directories only and refuses to build one that large.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from p2p.content.cid import DAG_PB, RAW, Cid
from p2p.content.dagpb import (
    UNIXFS_DIRECTORY,
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
from p2p.content.errors import ContentNotFound, InvalidBlock
from p2p.content.unixfs import BlockGetter, BlockSink, ImportResult, read_file_node

MAX_DIRECTORY_BLOCK = 256 * 1024  # Kubo's HAMTShardingSize: past it Kubo would shard

TYPE_DIRECTORY = 1  # Kubo's `ls` Type numbers
TYPE_FILE = 2


class NotADirectory(ContentNotFound):
    """A path step through something that is not a directory, or a name it does not hold."""


@dataclass(frozen=True)
class Entry:
    """One directory entry: name, CID, cumulative DAG size (Tsize) and kind (TYPE_*)."""

    name: str
    cid: Cid
    tsize: int
    kind: int


@dataclass
class _Dir:
    entries: dict[str, _Dir | ImportResult] = field(default_factory=dict)


def _check_name(name: str, path: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"{path!r}: {name!r} is not a valid file name in a directory")


class DirectoryBuilder:
    """Collects imported files by path, then writes the directory nodes bottom-up."""

    def __init__(self, cid_version: int = 0) -> None:
        self._root = _Dir()
        self._cid_version = cid_version

    def _parent(self, parts: list[str], path: str) -> _Dir:
        node = self._root
        for part in parts:
            _check_name(part, path)
            child = node.entries.setdefault(part, _Dir())
            if not isinstance(child, _Dir):
                raise ValueError(f"{path!r}: {part!r} is a file, not a directory")  # noqa: TRY004 - bad input
            node = child
        return node

    def add_directory(self, path: str) -> None:
        """Declare a (possibly empty) directory at `path` ('a/b')."""
        parts = [p for p in path.strip("/").split("/") if p]
        self._parent(parts, path)

    def add_file(self, path: str, result: ImportResult) -> None:
        """Place an imported file at `path` ('a/b/c.txt')."""
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts:
            raise ValueError("a file in a directory needs a name")
        parent = self._parent(parts[:-1], path)
        _check_name(parts[-1], path)
        if isinstance(parent.entries.get(parts[-1]), _Dir):
            raise ValueError(f"{path!r} is both a directory and a file")  # noqa: TRY004 - bad input
        parent.entries[parts[-1]] = result

    def finish(self, sink: BlockSink | None) -> list[tuple[str, ImportResult]]:
        """Write every directory node through `sink`; (path, result) per directory, the root ('') last."""
        out: list[tuple[str, ImportResult]] = []
        self._emit(self._root, "", sink, out)
        return out

    def _emit(self, node: _Dir, path: str, sink: BlockSink | None,
              out: list[tuple[str, ImportResult]]) -> ImportResult:
        links: list[PBLink] = []
        blocks = 0
        for name in sorted(node.entries, key=lambda n: n.encode("utf-8")):
            child = node.entries[name]
            if isinstance(child, _Dir):
                child = self._emit(child, f"{path}/{name}" if path else name, sink, out)
            links.append(PBLink(child.cid, name, child.size))
            blocks += child.blocks
        block = encode_pbnode(links, encode_unixfs(UnixFSData(UNIXFS_DIRECTORY)))
        if len(block) > MAX_DIRECTORY_BLOCK:
            raise ValueError(f"directory {path or '/'!r} has {len(links)} entries: its node would be "
                             f"{len(block)} bytes, over the {MAX_DIRECTORY_BLOCK}-byte limit (Kubo would "
                             "shard it as a HAMT, which this store does not build)")
        cid = Cid.for_dag_pb_block(block)
        if self._cid_version == 1:
            cid = Cid(1, DAG_PB, cid.multihash)
        if sink is not None:
            sink(cid, block)
        result = ImportResult(cid, len(block) + sum(link.tsize for link in links), 0, blocks + 1)
        out.append((path, result))
        return result


def entry_kind(cid: Cid, block: bytes) -> int:
    """TYPE_DIRECTORY or TYPE_FILE for a UnixFS node (raw blocks are files)."""
    if cid.codec == RAW:
        return TYPE_FILE
    node = decode_pbnode(block)
    if node.data is None:
        raise InvalidBlock(f"{cid}: dag-pb node without UnixFS data")
    meta = decode_unixfs(node.data)
    if meta.type == UNIXFS_DIRECTORY:
        return TYPE_DIRECTORY
    if meta.type in (UNIXFS_FILE, UNIXFS_RAW):
        return TYPE_FILE
    kind = UNIXFS_TYPE_NAMES.get(meta.type, f"type {meta.type}")
    raise InvalidBlock(f"{cid} is a UnixFS {kind}, which this store does not read")


def is_directory(get_block: BlockGetter, cid: Cid) -> bool:
    """Whether `cid` is a UnixFS directory."""
    return entry_kind(cid, get_block(cid)) == TYPE_DIRECTORY


def list_directory(get_block: BlockGetter, cid: Cid) -> list[Entry]:
    """The entries of the directory `cid`, in link order; each child's root block must be local."""
    block = get_block(cid)
    if entry_kind(cid, block) != TYPE_DIRECTORY:
        raise NotADirectory(f"{cid} is a file, not a directory")
    return [Entry(link.name, link.cid, link.tsize, entry_kind(link.cid, get_block(link.cid)))
            for link in decode_pbnode(block).links]


def resolve_path(get_block: BlockGetter, root: Cid, parts: list[str]) -> Cid:
    """The CID reached from `root` by following the names in `parts`."""
    current = root
    for depth, name in enumerate(parts):
        block = get_block(current)
        here = "/".join([str(root), *parts[:depth]])
        if entry_kind(current, block) != TYPE_DIRECTORY:
            raise NotADirectory(f"{here} is a file: no link named {name!r}")
        for link in decode_pbnode(block).links:
            if link.name == name:
                current = link.cid
                break
        else:
            raise NotADirectory(f"no link named {name!r} under {here}")
    return current


def walk(get_block: BlockGetter, root: Cid, name: str) -> Iterator[tuple[str, Cid, int, int]]:
    """(path, cid, kind, file size) for `root` (called `name`) and everything under it, parents first."""
    block = get_block(root)
    kind = entry_kind(root, block)
    if kind == TYPE_FILE:
        yield name, root, kind, read_file_node(root, block).filesize
        return
    yield name, root, kind, 0
    for link in decode_pbnode(block).links:
        yield from walk(get_block, link.cid, f"{name}/{link.name}")
