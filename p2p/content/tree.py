"""Files and directories over the BlockStore: import a tree, resolve `CID/path`, list, walk.

`TreeImport` is what `ipfs add -r` / `--wrap-with-directory` does: files are imported one by
one (each streamed, never whole in memory) into one open writer, so a garbage collection cannot
take them before the directory that holds them is written; `finish` writes the directory nodes
and records (and pins) only the root as complete, as Kubo pins only the root.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import BinaryIO

from p2p.content.blockstore import BlockStore, BlockWriter
from p2p.content.cid import Cid, parse_path
from p2p.content.directory import DirectoryBuilder, Entry, list_directory, resolve_path
from p2p.content.unixfs import FileImporter, ImportResult

READ_SIZE = 1 << 20


class TreeImport:
    """One `add` of several files and directories under a common root."""

    def __init__(self, blocks: BlockStore, cid_version: int = 0, raw_leaves: bool | None = None,
                 only_hash: bool = False) -> None:
        """`raw_leaves` defaults to Kubo's: True with CIDv1, False with CIDv0."""
        self.blocks = blocks
        self.cid_version = cid_version
        self.raw_leaves = cid_version == 1 if raw_leaves is None else raw_leaves
        self.only_hash = only_hash
        self.builder = DirectoryBuilder(cid_version)
        self.files: list[tuple[str, ImportResult]] = []
        self._exit = ExitStack()
        self._writer: BlockWriter | None = None
        if not only_hash:
            self._writer = self._exit.enter_context(blocks.writer())

    def _sink(self, cid: Cid, block: bytes) -> None:
        if self._writer is not None:
            self._writer.put(cid, block, verify=False)

    def add_file(self, path: str, fileobj: BinaryIO) -> ImportResult:
        """Import one file read from `fileobj` and place it at `path` ('' for a lone file)."""
        importer = FileImporter(self._sink, cid_version=self.cid_version, raw_leaves=self.raw_leaves)
        while True:
            data = fileobj.read(READ_SIZE)
            if not data:
                break
            importer.write(data)
        result = importer.finish()
        if path:
            self.builder.add_file(path, result)
        self.files.append((path, result))
        return result

    def add_directory(self, path: str) -> None:
        """Declare a directory at `path` (so that an empty one is kept)."""
        self.builder.add_directory(path)

    def finish(self, wrap: bool, pin: bool) -> list[tuple[str, ImportResult]]:
        """Write the directories; (path, result) for each directory, the root last.

        With `wrap` the root is a directory over everything added ('' path); without it, a lone
        file is its own root, and added directories must share one top-level directory.
        """
        dirs = self.builder.finish(self._sink)
        if wrap:
            root = dirs[-1][1]
        else:
            dirs = dirs[:-1]  # the unnamed wrapper is not part of the result
            tops = {path.split("/", 1)[0] for path, _ in self.files if path} | {
                path for path, _ in dirs if "/" not in path}
            if not dirs and len(self.files) == 1:
                root = self.files[0][1]
            elif len(tops) == 1 and dirs:
                root = dirs[-1][1]
            else:
                raise ValueError("several files or directories without a common root: "
                                 "add them with wrap-with-directory=true")
        if self._writer is not None:
            self._writer.commit(root.cid, pin=pin)
        return dirs

    def close(self) -> None:
        """Release the writer (blocks of an unfinished import become garbage)."""
        self._exit.close()


def resolve(blocks: BlockStore, path: str | Cid) -> Cid:
    """The CID that an IPFS path ('CID', 'CID/a/b', '/ipfs/CID/a') names, from local blocks."""
    root, parts = parse_path(path)
    return resolve_path(blocks.get, root, parts) if parts else root


def ls(blocks: BlockStore, path: str | Cid) -> list[Entry]:
    """The entries of the directory at `path`, from local blocks."""
    return list_directory(blocks.get, resolve(blocks, path))
