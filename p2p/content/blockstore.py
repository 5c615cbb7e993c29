"""Blocks, pins and completeness records in the node's LevelDB (plyvel).

Layout inside the DB handed to `BlockStore` (the node passes `db.prefixed_db(b"c")`):

    b"b" + multihash  -> block bytes (verified against the multihash on write)
    b"p" + multihash  -> binary CID of a recursively pinned root
    b"k" + multihash  -> binary CID of a root whose whole DAG is stored ("complete")

Blocks are keyed by multihash, so CIDv0 and CIDv1 names of one block share storage. A file is
claimed as present (`is_complete`) only by its completeness record, which is written in a
synced batch after every block of the DAG.

Space: the store keeps a running count of its block bytes. A write that would pass the quota, or
leave less than `min_free_bytes` free on the node's disk (LevelDB needs room to reopen and the
chain must keep growing), first collects garbage and is refused with `StoreFull` if that was not
enough. Imports that end without a commit leave unreferenced blocks; once they add up to
`gc_after_garbage` bytes (64 MiB by default) the store collects them by itself.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from p2p.content.cid import Cid, sha256_multihash
from p2p.content.dagpb import child_cids
from p2p.content.errors import ContentError, ContentNotFound, InvalidBlock

BLOCK = b"b"
PIN = b"p"
COMPLETE = b"k"
MAX_BLOCK_SIZE = 2 * 1024 * 1024
BATCH_BYTES = 8 * 1024 * 1024
MIN_FREE_BYTES = 512 * 1024 * 1024
GC_AFTER_GARBAGE = 64 * 1024 * 1024
GC_KEYS_REPORTED = 10_000


class BlockNotFound(ContentNotFound):
    """A block that is not in the local store."""


class StoreFull(ContentError):
    """Storing more would pass the content quota or eat the disk headroom the node needs."""


@dataclass(frozen=True)
class GcResult:
    """What a garbage collection removed."""

    blocks_removed: int
    bytes_freed: int
    removed: tuple[bytes, ...] = ()  # multihashes of the first GC_KEYS_REPORTED blocks removed


class BlockWriter:
    """Buffers block writes into LevelDB batches; `commit` makes a DAG visible as complete.

    Until `commit`, the blocks written are protected from `gc` but no root is claimed complete,
    so an interrupted import leaves only unreferenced blocks that a later `gc` removes.
    """

    def __init__(self, store: BlockStore) -> None:
        self._store = store
        self._batch: Any = None
        self._batch_bytes = 0
        self.written: set[bytes] = set()
        self.new_bytes = 0  # bytes this writer added to the store
        self.committed = False

    def put(self, cid: Cid, block: bytes, verify: bool = True) -> None:
        """Queue a block; `verify=False` only when `cid` was just computed from these bytes."""
        self._store.check_block(cid, block, verify)
        if cid.multihash in self.written:
            return
        if self._batch is None:
            self._batch = self._store.db.write_batch()
        with self._store.lock:  # a running gc finishes before this block is protected and queued
            if not self._store.has_block(cid):
                self._store.reserve(len(block))
                self.new_bytes += len(block)
            self.written.add(cid.multihash)
        self._batch.put(BLOCK + cid.multihash, block)
        self._batch_bytes += len(block)
        if self._batch_bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the queued blocks (unsynced; the synced commit that follows makes them durable)."""
        if self._batch is not None:
            self._batch.write()
        self._batch = None
        self._batch_bytes = 0

    def commit(self, root: Cid, pin: bool = False) -> None:
        """Write the remaining blocks, then the completeness (and pin) record, synced."""
        self.flush()
        # LevelDB's log is append-only: syncing this batch makes every earlier write durable too.
        with self._store.db.write_batch(sync=True) as batch:
            batch.put(COMPLETE + root.multihash, root.to_bytes())
            if pin:
                batch.put(PIN + root.multihash, root.to_bytes())
        self.committed = True


class BlockStore:
    """Content-addressed block storage with recursive pins and garbage collection."""

    def __init__(self, db: Any, max_block_size: int = MAX_BLOCK_SIZE, quota_bytes: int | None = None,
                 disk_path: Any = None, min_free_bytes: int = MIN_FREE_BYTES,
                 gc_after_garbage: int = GC_AFTER_GARBAGE) -> None:
        """`db` is a `plyvel.DB` or a prefixed view of one (`db.prefixed_db(b"c")`).

        `quota_bytes` caps the block bytes stored (None: no cap); when `disk_path` is given, writes
        are refused while they would leave less than `min_free_bytes` free on its file system.
        """
        self.db = db
        self.max_block_size = max_block_size
        self.quota_bytes = quota_bytes
        self.disk_path = disk_path
        self.min_free_bytes = min_free_bytes
        self.gc_after_garbage = gc_after_garbage
        self.lock = threading.RLock()
        self._writers: list[BlockWriter] = []
        self._garbage = 0  # bytes left behind by writers that never committed
        self.stored_bytes = self._measure()

    def _measure(self) -> int:
        """Block bytes stored: LevelDB's estimate for a large store, an exact count for a small one."""
        raw, prefix = getattr(self.db, "db", self.db), getattr(self.db, "prefix", b"")
        approximate = getattr(raw, "approximate_size", None)
        if approximate is not None:
            estimate = approximate(prefix + BLOCK, prefix + bytes([BLOCK[0] + 1]))
            if estimate > 64 * 1024 * 1024:
                return int(estimate)
        return sum(len(v) for _, v in self.db.iterator(prefix=BLOCK))

    # -- space ----------------------------------------------------------------------------

    def reserve(self, size: int) -> None:
        """Account for `size` new block bytes, collecting garbage or raising StoreFull if they do not fit."""
        with self.lock:
            if self._over(size):
                self._collect()
                problem = self._over(size)
                if problem:
                    raise StoreFull(problem)
            self.stored_bytes += size

    def _over(self, size: int) -> str | None:
        if self.quota_bytes is not None and self.stored_bytes + size > self.quota_bytes:
            return (f"the content store is full: {self.stored_bytes} of its {self.quota_bytes}-byte quota used "
                    "after collecting garbage; unpin content or raise --ipfs-quota")
        if self.disk_path is not None:
            free = shutil.disk_usage(self.disk_path).free
            if free - size < self.min_free_bytes:
                return (f"no space left on device for content: {free} bytes free at {self.disk_path}, "
                        f"{self.min_free_bytes} kept for the chain database; free disk space")
        return None

    # -- blocks ---------------------------------------------------------------------------

    def check_block(self, cid: Cid, block: bytes, verify: bool = True) -> None:
        """Raise InvalidBlock if `block` is too large or (when verifying) does not hash to `cid`."""
        if len(block) > self.max_block_size:
            raise InvalidBlock(f"block {cid} is {len(block)} bytes, over the {self.max_block_size} limit")
        if verify and sha256_multihash(block) != cid.multihash:
            raise InvalidBlock(f"block bytes do not hash to {cid}")

    def put(self, cid: Cid, block: bytes) -> None:
        """Store one block after checking that its bytes hash to `cid`."""
        self.check_block(cid, block)
        with self.lock:
            if not self.has_block(cid):
                self.reserve(len(block))
            self.db.put(BLOCK + cid.multihash, block)

    def get(self, cid: Cid) -> bytes:
        """The bytes of a stored block; raises BlockNotFound."""
        block = self.db.get(BLOCK + cid.multihash)
        if block is None:
            raise BlockNotFound(f"block {cid} is not stored on this node")
        return block

    def get_or_none(self, cid: Cid) -> bytes | None:
        """The bytes of a stored block, or None."""
        return self.db.get(BLOCK + cid.multihash)

    def get_by_multihash(self, multihash: bytes) -> bytes | None:
        """The bytes of the block stored under `multihash`, or None."""
        return self.db.get(BLOCK + multihash)

    def has_block(self, cid: Cid) -> bool:
        """Whether this one block is stored (says nothing about its children)."""
        return self.db.get(BLOCK + cid.multihash) is not None

    def delete_block(self, cid: Cid) -> None:
        """Remove a block (and any completeness record naming it)."""
        with self.lock:
            self.stored_bytes -= len(self.get_or_none(cid) or b"")
        with self.db.write_batch() as batch:
            batch.delete(BLOCK + cid.multihash)
            batch.delete(COMPLETE + cid.multihash)

    def block_count(self) -> int:
        """Number of stored blocks (walks the key range)."""
        return sum(1 for _ in self.db.iterator(prefix=BLOCK, include_value=False))

    @contextmanager
    def writer(self) -> Iterator[BlockWriter]:
        """A batched writer whose blocks `gc` leaves alone while it is open."""
        writer = BlockWriter(self)
        with self.lock:
            self._writers.append(writer)
        try:
            yield writer
        finally:
            writer.flush()  # blocks are content-addressed: keeping a partial DAG is harmless
            with self.lock:
                self._writers.remove(writer)
                if not writer.committed:
                    self._garbage += writer.new_bytes
                if self._garbage >= self.gc_after_garbage:
                    self._collect()

    # -- DAG completeness -----------------------------------------------------------------

    def is_complete(self, cid: Cid) -> bool:
        """Whether the whole DAG under `cid` is recorded as stored here."""
        return self.db.get(COMPLETE + cid.multihash) is not None

    def missing_blocks(self, root: Cid, limit: int = 1) -> list[Cid]:
        """Up to `limit` blocks of the DAG under `root` that are not stored (walks stored blocks)."""
        missing: list[Cid] = []
        stack = [root]
        seen: set[bytes] = set()
        while stack and len(missing) < limit:
            cid = stack.pop()
            if cid.multihash in seen:
                continue
            seen.add(cid.multihash)
            block = self.get_or_none(cid)
            if block is None:
                missing.append(cid)
                continue
            if cid == root or not self.is_complete(cid):  # a complete sub-DAG needs no walk
                stack.extend(reversed(child_cids(cid, block)))
        return missing

    def mark_complete(self, root: Cid) -> None:
        """Record that the DAG under `root` is stored, after checking that it is."""
        missing = self.missing_blocks(root)
        if missing:
            raise BlockNotFound(f"cannot mark {root} complete: block {missing[0]} is not stored")
        self.db.put(COMPLETE + root.multihash, root.to_bytes(), sync=True)

    # -- pins and garbage collection ------------------------------------------------------

    def pin(self, root: Cid) -> None:
        """Pin the DAG under `root` recursively; it must be stored completely."""
        with self.lock:
            if not self.is_complete(root):
                self.mark_complete(root)
            self.db.put(PIN + root.multihash, root.to_bytes(), sync=True)

    def unpin(self, root: Cid) -> None:
        """Remove a pin (the blocks stay until the next `gc`)."""
        self.db.delete(PIN + root.multihash, sync=True)

    def is_pinned(self, root: Cid) -> bool:
        """Whether `root` carries a recursive pin."""
        return self.db.get(PIN + root.multihash) is not None

    def pins(self) -> list[Cid]:
        """All pinned roots."""
        return [Cid.from_bytes(value) for _, value in self.db.iterator(prefix=PIN)]

    def gc(self) -> GcResult:
        """Delete every block not reachable from a pinned root nor held by an open writer."""
        with self.lock:
            return self._collect()

    def _collect(self) -> GcResult:
        live: set[bytes] = set()
        for root in self.pins():
            stack = [root]
            while stack:
                cid = stack.pop()
                if cid.multihash in live:
                    continue
                live.add(cid.multihash)
                block = self.get_or_none(cid)
                if block is not None:
                    stack.extend(child_cids(cid, block))
        for writer in self._writers:
            live |= writer.written
        removed = freed = 0
        keys: list[bytes] = []
        with self.db.write_batch() as batch:
            for key in self.db.iterator(prefix=BLOCK, include_value=False):
                if key[1:] not in live:
                    batch.delete(key)
                    removed += 1
                    freed += len(self.db.get(key) or b"")
                    if len(keys) < GC_KEYS_REPORTED:
                        keys.append(key[1:])
            for key in self.db.iterator(prefix=COMPLETE, include_value=False):
                if key[1:] not in live:
                    batch.delete(key)
        self.stored_bytes = max(0, self.stored_bytes - freed)
        self._garbage = 0
        return GcResult(removed, freed, tuple(keys))
