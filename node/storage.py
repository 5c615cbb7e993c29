"""The node's LevelDB: blocks, the canonical chain, the best state and its Merkle tree.

Everything a block changes — state writes, their undo journal, tree nodes, the block, its events,
the canonical index and the head pointer — is written in one atomic `WriteBatch`, so a crash at
any moment leaves either the old head with its state or the new head with its state.

Sync imports a run of blocks with their writes *staged* (`commit_block(staged=True)`, then `flush`):
each block is checked and executed as usual and becomes best in memory at once, its writes are held
in one dict (a key written by several blocks is written once: the tree nodes near the root, the head
pointer), and `flush` writes the whole run in one atomic `WriteBatch`. Reads see the staged writes. Any other
write (finality, a fork block, a revert, node records) flushes first, so nothing ever lands on disk
ahead of the blocks it refers to; a failed flush puts the in-memory view back to the disk's.

One file because every write that must be atomic with a block (state, undo journal, tree, block,
events, indexes, head) goes through one class over one LevelDB.
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import plyvel

from runtime.codec import decode, encode
from runtime.crypto import blake2b_256
from runtime.executive import drain
from runtime.merkle import BUCKET_COUNT, BucketTree, ReadProof, bucket_hash, bucket_of
from runtime.types import Block, Event, Header

P_STATE = b"s"       # s + bucket(2) + key -> value (best state)
P_TREE = b"t"        # t + node index(2) -> hash
P_BLOCK = b"B"       # B + hash -> block
P_HEADER = b"H"      # H + hash -> header (read without decoding the body)
P_CANON = b"N"       # N + number(8) -> hash on the best chain
P_EVENTS = b"E"      # E + hash -> events
P_UNDO = b"U"        # U + hash -> [[key, old value or None], ...]
P_JUSTIFICATION = b"J"
P_XT = b"X"          # X + extrinsic hash -> [block hash, index]
P_META = b"M"
BUCKET_CACHE_SIZE = 1024
K_BEST = P_META + b"best"
K_FINALIZED = P_META + b"finalized"
K_GENESIS = P_META + b"genesis"
_ABSENT = object()
WRITE_STEP = 256  # keys, events or extrinsics put into a batch between two steps


class StorageError(RuntimeError):
    """The database is missing data it should have, or holds another chain."""


def _number_key(number: int) -> bytes:
    return P_CANON + struct.pack(">Q", number)


def _bucket_prefix(bucket: int) -> bytes:
    return P_STATE + bucket.to_bytes(2, "big")


def _state_key(key: bytes) -> bytes:
    return _bucket_prefix(bucket_of(key)) + key


class _Writes:
    """A block's writes gathered in a dict (None = delete) before they join the staged run."""

    def __init__(self) -> None:
        self.items: dict[bytes, bytes | None] = {}

    def put(self, key: bytes, value: bytes) -> None:
        self.items[key] = value

    def delete(self, key: bytes) -> None:
        self.items[key] = None


@dataclass(frozen=True)
class RootUpdate:
    """A state root computed for a set of changes, with the tree nodes to write."""

    root: bytes
    tree_changes: dict[int, bytes]


@dataclass(frozen=True)
class GatheredWrites:
    """A block's writes in a LevelDB batch not yet written, and the state version they were read on."""

    block: Block
    changes: dict[bytes, bytes | None]
    update: RootUpdate
    batch: Any  # a plyvel WriteBatch, written by `ChainStore.commit_gathered`
    version: int


class ChainStore:
    """Blocks and the best chain's state in one LevelDB."""

    def __init__(self, path: str) -> None:
        self.db = plyvel.DB(path, create_if_missing=True)
        self.tree = BucketTree(self._stored_tree_nodes())
        self._best_header: Header | None = None
        self._best_hash = b""  # the hash of `_best_header` when that is set
        self._finalized_header: Header | None = None
        self._bucket_cache: OrderedDict[int, dict[bytes, bytes]] = OrderedDict()
        # writes of blocks committed in memory but not yet on disk (None = delete), tree nodes apart
        self._staged: dict[bytes, bytes | None] = {}
        self._staged_tree: dict[int, bytes] = {}
        self._staged_count = 0
        # Counts changes of the best state (commit, revert, reload): a block executed in turns of
        # the event loop (Chain.import_block_in_turns) is kept only if the version did not move.
        self.state_version = 0

    def _stored_tree_nodes(self) -> list[bytes]:
        nodes = [bytes(32)] * (2 * BUCKET_COUNT)
        for key, value in self.db.iterator(prefix=P_TREE):
            nodes[int.from_bytes(key[1:], "big")] = value
        return nodes

    def _get(self, key: bytes) -> bytes | None:
        """A value as the node sees it: staged writes first, then the database."""
        if self._staged:
            value = self._staged.get(key, _ABSENT)
            if value is not _ABSENT:
                return value  # type: ignore[return-value]
        return self.db.get(key)

    # ------------------------------------------------------------ staged blocks (sync's batched import)

    @property
    def staged_blocks(self) -> int:
        """How many committed blocks are staged, not yet written."""
        return self._staged_count

    def flush(self) -> None:
        """Write the staged blocks in one atomic WriteBatch.

        If the write fails the staged blocks are dropped and the in-memory view (tree, caches,
        best block) is reloaded from the database, which still holds the state before them."""
        staged, tree = self._staged, self._staged_tree
        if not staged:
            return
        self._staged, self._staged_tree, self._staged_count = {}, {}, 0
        try:
            with self.db.write_batch(transaction=True) as batch:
                for key, value in staged.items():
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
                for index, digest in tree.items():
                    batch.put(P_TREE + index.to_bytes(2, "big"), digest)
        except BaseException:
            self._reload_view()
            raise
        self._trim_bucket_cache()

    def _reload_view(self) -> None:
        """Forget everything held in memory about the chain and read it again from disk."""
        self.tree = BucketTree(self._stored_tree_nodes())
        self._bucket_cache.clear()
        self._best_header = None
        self._finalized_header = None
        self.state_version += 1

    def _flush_before_write(self) -> None:
        """Any write but a staged commit: the staged blocks go first, so nothing on disk refers ahead."""
        if self._staged:
            self.flush()

    def close(self) -> None:
        self.db.close()

    def content_db(self) -> plyvel.DB:
        """The prefixed database the content store keeps its blocks in."""
        return self.db.prefixed_db(b"c")

    # ------------------------------------------------------------ state

    def get_state(self, key: bytes) -> bytes | None:
        bucket = bucket_of(key)
        cached = self._bucket_cache.get(bucket)  # when cached, equal to the node's state: no LevelDB read
        if cached is not None:
            return cached.get(key)
        return self._get(_bucket_prefix(bucket) + key)

    @property
    def state_root(self) -> bytes:
        return self.tree.root

    def _stored_bucket(self, bucket: int) -> dict[bytes, bytes]:
        """A bucket's entries in the node's state, from a write-through LRU cache (hot buckets are hit
        every block); a bucket with staged changes is always cached (see `_update_bucket_cache`)."""
        cached = self._bucket_cache.get(bucket)
        if cached is not None:
            self._bucket_cache.move_to_end(bucket)
            return cached
        prefix = _bucket_prefix(bucket)
        entries = {key[3:]: value for key, value in self.db.iterator(prefix=prefix)}
        self._bucket_cache[bucket] = entries
        if not self._staged:
            self._trim_bucket_cache()
        return entries

    def _trim_bucket_cache(self) -> None:
        # Never with blocks staged: a bucket with staged changes must stay cached (the disk lacks them).
        while len(self._bucket_cache) > BUCKET_CACHE_SIZE:
            self._bucket_cache.popitem(last=False)

    def _bucket_entries(self, bucket: int, changes: dict[bytes, bytes | None]) -> list[tuple[bytes, bytes]]:
        """A bucket's entries after `changes` (which hold only keys of this bucket), sorted by key."""
        entries = dict(self._stored_bucket(bucket))
        for key, value in changes.items():
            if value is None:
                entries.pop(key, None)
            else:
                entries[key] = value
        return sorted(entries.items())

    def _update_bucket_cache(self, changes: dict[bytes, bytes | None], staged: bool = False) -> None:
        """Keep cached buckets equal to the node's state after a commit.

        `staged`: the disk lacks these changes, so every bucket they touch is cached (loaded first
        if it was dropped since the root was computed) and stays cached until written (`flush`)."""
        for key, value in changes.items():
            bucket = bucket_of(key)
            cached = self._bucket_cache.get(bucket)
            if cached is None:
                if not staged:
                    continue
                cached = self._stored_bucket(bucket)  # uncached, so no staged changes: the disk's is current
            if value is None:
                cached.pop(key, None)
            else:
                cached[key] = value

    def compute_root(self, changes: dict[bytes, bytes | None]) -> RootUpdate:
        """The state root the best state would have after `changes`."""
        return drain(self.compute_root_in_steps(changes))

    def compute_root_in_steps(self, changes: dict[bytes, bytes | None]) -> Generator[None, None, RootUpdate]:
        """`compute_root`, one changed bucket per step (only reads; node/turns.py runs it)."""
        by_bucket: dict[int, dict[bytes, bytes | None]] = {}
        for key, value in changes.items():
            by_bucket.setdefault(bucket_of(key), {})[key] = value
        hashes = {}
        for bucket, part in by_bucket.items():
            hashes[bucket] = bucket_hash(self._bucket_entries(bucket, part))
            yield
        root, tree_changes = self.tree.updated(hashes)
        return RootUpdate(root, tree_changes)

    def read_proof(self, keys: list[bytes]) -> list[ReadProof]:
        """One proof per distinct bucket of `keys`, against the best state root."""
        proofs = []
        for bucket in sorted({bucket_of(k) for k in keys}):
            proofs.append(ReadProof(bucket, self._bucket_entries(bucket, {}), self.tree.siblings(bucket)))
        return proofs

    # ------------------------------------------------------------ blocks

    def _state_writes(
        self, batch, changes: dict[bytes, bytes | None], update: RootUpdate, tree: bool = True,
    ) -> Generator[None, None, list]:
        """Put `changes` (and `update`'s tree nodes) into `batch`, a step every WRITE_STEP keys;
        returns their undo journal, read from the store as it is now."""
        undo = []
        for count, (key, value) in enumerate(changes.items(), 1):
            skey = _state_key(key)
            cached = self._bucket_cache.get(bucket_of(key))  # when cached, equal to the node's state
            undo.append([key, cached.get(key) if cached is not None else self._get(skey)])
            if value is None:
                batch.delete(skey)
            else:
                batch.put(skey, value)
            if not count % WRITE_STEP:
                yield
        if tree:
            for index, digest in update.tree_changes.items():
                batch.put(P_TREE + index.to_bytes(2, "big"), digest)
        return undo

    def _write_state(self, batch, changes: dict[bytes, bytes | None], update: RootUpdate, tree: bool = True) -> list:
        return drain(self._state_writes(batch, changes, update, tree))

    @staticmethod
    def _put_block(batch, block: Block) -> None:
        batch.put(P_BLOCK + block.hash, block.encode())  # Header.hash is computed once per header
        batch.put(P_HEADER + block.hash, block.header.encode())

    def commit_block(
        self, block: Block, changes: dict[bytes, bytes | None], update: RootUpdate, events: list[Event],
        staged: bool = False,
    ) -> None:
        """Make `block` the best block with its state changes, atomically.

        `staged`: the writes join the staged run (written by `flush`); else they are written now,
        after whatever is staged."""
        if not staged:  # the root is checked as the writes are gathered
            self.commit_gathered(drain(self.gather_block_writes(block, changes, update, events)))
            return
        if update.root != block.header.state_root:
            raise StorageError("state root mismatch at commit")
        writes = _Writes()  # gathered apart: a block joins the staged run whole or not at all
        drain(self._block_writes(writes, block, changes, update, events, tree=False))
        self._staged.update(writes.items)
        self._staged_tree.update(update.tree_changes)  # the run's last value of each node is written
        self._staged_count += 1
        self._made_best(block, changes, update, staged=True)

    def gather_block_writes(
        self, block: Block, changes: dict[bytes, bytes | None], update: RootUpdate, events: list[Event],
    ) -> Generator[None, None, GatheredWrites]:
        """`commit_block`'s writes for `block`, gathered a step at a time into a batch not yet written
        (issue 17: gathering those of 2,500 transfers held the event loop ~15 ms). They hold the undo
        journal of the state they were gathered on, so `commit_gathered` takes them only if the
        best state did not change since gathering began."""
        if update.root != block.header.state_root:
            raise StorageError("state root mismatch at commit")
        version = self.state_version
        batch = self.db.write_batch(transaction=True)
        yield from self._block_writes(batch, block, changes, update, events)
        return GatheredWrites(block, changes, update, batch, version)

    def commit_gathered(self, gathered: GatheredWrites) -> None:
        """`commit_block` with writes from `gather_block_writes`: one write, no gathering."""
        if gathered.version != self.state_version:
            raise StorageError(f"writes for block #{gathered.block.header.number} were gathered on another best state")
        self._flush_before_write()
        gathered.batch.write()
        self._made_best(gathered.block, gathered.changes, gathered.update, staged=False)

    def _made_best(self, block: Block, changes: dict[bytes, bytes | None], update: RootUpdate, staged: bool) -> None:
        """The in-memory view after `block` was committed: tree, bucket cache, best block, version."""
        self.tree.apply(update.tree_changes)
        self._update_bucket_cache(changes, staged)
        self._best_header, self._best_hash = block.header, block.hash
        self.state_version += 1

    def _block_writes(
        self, batch, block: Block, changes: dict[bytes, bytes | None], update: RootUpdate,
        events: list[Event], tree: bool = True,
    ) -> Generator[None, None, None]:
        block_hash = block.hash
        undo = yield from self._state_writes(batch, changes, update, tree)
        batch.put(P_UNDO + block_hash, encode(undo))
        self._put_block(batch, block)
        listed = []
        for count, event in enumerate(events, 1):
            listed.append(event.to_list())
            if not count % WRITE_STEP:
                yield
        batch.put(P_EVENTS + block_hash, encode(listed))
        batch.put(_number_key(block.header.number), block_hash)
        for index, xt in enumerate(block.extrinsics):
            batch.put(P_XT + blake2b_256(xt), encode([block_hash, index]))
            if index % WRITE_STEP == WRITE_STEP - 1:
                yield
        batch.put(K_BEST, block_hash)

    def store_block(self, block: Block) -> None:
        """Keep a block that is not (yet) on the best chain."""
        self._flush_before_write()
        with self.db.write_batch(transaction=True) as batch:
            self._put_block(batch, block)

    def revert_best(self) -> Block:
        """Undo the best block's state changes and make its parent best; returns the reverted block."""
        self._flush_before_write()
        best = self.best_block()
        if best.header.number == 0:
            raise StorageError("cannot revert genesis")
        raw_undo = self.db.get(P_UNDO + best.hash)
        if raw_undo is None:
            raise StorageError(f"no undo journal for block {best.header.number}")
        changes = {bytes(k): (bytes(v) if v is not None else None) for k, v in decode(raw_undo)}
        update = self.compute_root(changes)
        with self.db.write_batch(transaction=True) as batch:
            self._write_state(batch, changes, update)
            batch.delete(P_UNDO + best.hash)
            batch.delete(_number_key(best.header.number))
            for xt in best.extrinsics:
                batch.delete(P_XT + blake2b_256(xt))
            batch.put(K_BEST, best.header.parent_hash)
        self.tree.apply(update.tree_changes)
        self._update_bucket_cache(changes)
        self._best_header = None
        self.state_version += 1
        return best

    def init_genesis(self, block: Block, changes: dict[bytes, bytes | None]) -> None:
        """Write the genesis block and state, or check that the database holds this chain."""
        self._flush_before_write()
        existing = self.db.get(K_GENESIS)
        if existing is not None:
            if existing != block.hash:
                raise StorageError(
                    f"database holds chain with genesis 0x{existing.hex()}, genesis file gives 0x{block.hash.hex()}; "
                    "use another --base-path or the matching genesis.json"
                )
            return
        update = self.compute_root(changes)
        with self.db.write_batch(transaction=True) as batch:
            self._write_state(batch, changes, update)
            self._put_block(batch, block)
            batch.put(P_EVENTS + block.hash, encode([]))
            batch.put(_number_key(0), block.hash)
            batch.put(K_BEST, block.hash)
            batch.put(K_FINALIZED, block.hash)
            batch.put(K_GENESIS, block.hash)
        self.tree.apply(update.tree_changes)
        self._update_bucket_cache(changes)

    # ------------------------------------------------------------ reads

    def get_block_bytes(self, block_hash: bytes) -> bytes | None:
        """A block's encoding as stored (served to syncing peers without a decode/encode round trip)."""
        return self._get(P_BLOCK + block_hash)

    def get_block(self, block_hash: bytes) -> Block | None:
        raw = self.get_block_bytes(block_hash)
        return Block.decode(raw) if raw is not None else None

    def get_header(self, block_hash: bytes) -> Header | None:
        raw = self._get(P_HEADER + block_hash)
        if raw is not None:
            return Header.decode(raw)
        block = self.get_block(block_hash)
        return block.header if block else None

    def best_header(self) -> Header:
        """The best block's header (cached; every change of best goes through this store)."""
        if self._best_header is None:
            block_hash = self.best_hash()
            header = self.get_header(block_hash)
            if header is None:
                raise StorageError("best block is missing from the database")
            self._best_header, self._best_hash = header, block_hash
        return self._best_header

    def has_block(self, block_hash: bytes) -> bool:
        return self.get_block_bytes(block_hash) is not None

    def canonical_hash(self, number: int) -> bytes | None:
        return self._get(_number_key(number))

    def best_hash(self) -> bytes:
        if self._best_header is not None:
            return self._best_hash
        value = self._get(K_BEST)
        if value is None:
            raise StorageError("database has no best block; genesis not initialised")
        return value

    def best_block(self) -> Block:
        block = self.get_block(self.best_hash())
        if block is None:
            raise StorageError("best block is missing from the database")
        return block

    def genesis_hash(self) -> bytes:
        value = self._get(K_GENESIS)
        if value is None:
            raise StorageError("genesis not initialised")
        return value

    def finalized_hash(self) -> bytes:
        if self._finalized_header is not None:
            return self._finalized_header.hash
        return self._get(K_FINALIZED) or self.genesis_hash()

    def finalized_header(self) -> Header:
        """The finalized block's header (cached; every change of finality goes through this store)."""
        if self._finalized_header is None:
            header = self.get_header(self.finalized_hash())
            if header is None:
                raise StorageError("finalized block is missing from the database")
            self._finalized_header = header
        return self._finalized_header

    def set_finalized(self, block_hash: bytes, justification: bytes | None = None) -> None:
        """Record a new finalized block; undo journals at or below it are no longer needed.

        Staged blocks are written first: finality never lands on disk ahead of its block."""
        self._flush_before_write()
        old = self.get_header(self.finalized_hash())
        new = self.get_header(block_hash)
        self._finalized_header = None
        with self.db.write_batch(transaction=True) as batch:
            batch.put(K_FINALIZED, block_hash)
            if justification is not None:
                batch.put(P_JUSTIFICATION + block_hash, justification)
            if old is not None and new is not None:
                for number in range(old.number + 1, new.number + 1):
                    canonical = self.canonical_hash(number)
                    if canonical is not None:
                        batch.delete(P_UNDO + canonical)

    def justification(self, block_hash: bytes) -> bytes | None:
        return self._get(P_JUSTIFICATION + block_hash)

    def get_meta(self, name: bytes) -> bytes | None:
        """A small node-side record (e.g. the finality voter's state), not part of the chain state."""
        return self._get(P_META + b"x/" + name)

    def put_meta(self, name: bytes, value: bytes) -> None:
        """Write a node-side record durably (synced): it must survive a crash right after."""
        self._flush_before_write()
        self.db.put(P_META + b"x/" + name, value, sync=True)

    def events(self, block_hash: bytes) -> list[Event]:
        raw = self._get(P_EVENTS + block_hash)
        return [Event.from_list(e) for e in decode(raw)] if raw is not None else []

    def events_mention(self, block_hash: bytes, name: str) -> bool:
        """Whether the block's encoded events hold `name` anywhere (False: no event of that name;
        True: maybe, decode `events` to know); a block of transfers holds thousands of events."""
        raw = self._get(P_EVENTS + block_hash)
        return raw is not None and name.encode() in raw

    def extrinsic_location(self, xt_hash: bytes) -> tuple[bytes, int] | None:
        raw = self._get(P_XT + xt_hash)
        if raw is None:
            return None
        block_hash, index = decode(raw)
        return block_hash, index
