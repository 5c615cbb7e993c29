"""Sync's batched import (Chain.batched_import, ChainStore staged commits): many blocks, one write.

Every block of a run is still checked, executed and its state root compared; what changes is only
when its writes reach LevelDB. So the defences are about the disk: the valid prefix of a run that
meets a bad block is written and nothing after it; a kill mid-run leaves the last written block
with its exact state; finality never lands ahead of its block; a failed write puts the node's
in-memory view back to the disk's; listeners hear of a block only once it is written.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node import storage
from node.chain import IMPORT_BATCH_BLOCKS, BlockError
from node.storage import P_BLOCK, P_STATE, ChainStore
from runtime.modules import balances
from runtime.types import Block
from tests.helpers import ALICE, BOB, CHARLIE, make_chain, sign


def ts(chain, slot):
    return chain.spec.config["timestamp_ms"] + slot * 1000


def build(chain, count: int) -> list[Block]:
    """`count` blocks, a transfer in every other one (state changes beyond the inherents)."""
    blocks = []
    for slot in range(1, count + 1):
        xts = [sign(chain, CHARLIE, "balances", "transfer", [BOB.public_key, slot], slot // 2)] if slot % 2 else []
        block, _, rejected = chain.build_block(ALICE, slot, ts(chain, slot), xts)
        assert not rejected
        blocks.append(block)
    return blocks


def with_bad_state_root(block: Block) -> Block:
    header = block.header
    forged = header.__class__(header.parent_hash, header.number, header.slot, header.timestamp_ms, header.author,
                              header.randao_reveal, bytes(32), header.extrinsics_root)
    return Block(forged.with_seal(ALICE.sign(forged.signing_payload())), block.extrinsics)


def assert_consistent(path: Path, source, number: int) -> None:
    """Reopened from disk: best is block `number` of `source` with exactly its state, and every undo
    journal down to the finalized block is there (reverting lands on that block's state root)."""
    from node.genesis import state_root_of
    store = ChainStore(str(path))
    try:
        best = store.best_header()
        assert best.number == number
        assert best.hash == source.store.canonical_hash(number)
        assert store.canonical_hash(number + 1) is None
        stored = {key[3:]: value for key, value in store.db.iterator(prefix=P_STATE)}
        assert state_root_of(stored) == store.state_root == best.state_root
        finalized = store.finalized_header()
        while store.best_header().number > finalized.number:
            store.revert_best()  # each undo journal restores exactly its parent's state
            assert store.state_root == store.best_header().state_root
        stored = {key[3:]: value for key, value in store.db.iterator(prefix=P_STATE)}
        assert state_root_of(stored) == finalized.state_root
    finally:
        store.close()


@pytest.fixture()
def source(tmp_path):
    chain = make_chain(tmp_path / "source")
    yield chain
    chain.store.close()


def test_a_run_that_meets_a_bad_block_writes_the_valid_prefix_and_nothing_after(source, tmp_path):
    blocks = build(source, 10)
    sync = make_chain(tmp_path / "sync")
    run = blocks[:5] + [with_bad_state_root(blocks[5])] + blocks[6:]
    imported = []
    with sync.batched_import():
        for block in run:
            try:
                sync.import_block(block)
            except BlockError as exc:
                assert "state root" in str(exc)
                break
            imported.append(block.header.number)
        assert sync.store.staged_blocks == 5  # nothing written yet, the prefix is staged
    assert imported == [1, 2, 3, 4, 5]
    assert sync.best.hash == blocks[4].hash and sync.store.state_root == blocks[4].header.state_root
    sync.store.close()
    assert_consistent(tmp_path / "sync", source, 5)


def test_listeners_hear_of_each_block_in_order_once_it_is_on_disk(source, tmp_path):
    count = IMPORT_BATCH_BLOCKS + 6
    blocks = build(source, count)
    sync = make_chain(tmp_path / "sync")
    heard: list[tuple[int, bool]] = []
    sync.listeners.append(lambda imported: heard.append(
        (imported.block.header.number, sync.store.db.get(P_BLOCK + imported.block.hash) is not None)))
    with sync.batched_import():
        for block in blocks:
            sync.import_block(block)
        assert len(heard) == IMPORT_BATCH_BLOCKS  # a full run is written (and announced) at once
    assert heard == [(number, True) for number in range(1, count + 1)]
    sync.store.close()


def test_a_reorg_inside_a_run_writes_the_run_first_and_lands_on_the_longer_fork(source, tmp_path):
    """A range fetched from above our finalized block may switch forks: blocks we hold are skipped,
    fork blocks are stored, and the longer fork is enacted, all inside one batched run."""
    fork = make_chain(tmp_path / "fork")
    mine = build(source, 3)
    fork.import_block(mine[0])
    theirs = [fork.build_block(BOB, slot, ts(fork, slot), [])[0] for slot in (4, 5, 6, 7)]  # 1 → 4 → 5 → 6 → 7
    sync = make_chain(tmp_path / "sync")
    heard: list[tuple[int, bool]] = []
    retracted_seen: list[list[int]] = []
    sync.listeners.append(lambda imported: heard.append((imported.block.header.number, sync.store.canonical_hash(
        imported.block.header.number) == imported.block.hash)))
    sync.reorg_listeners.append(lambda retracted, enacted: retracted_seen.append([b.header.number for b in retracted]))
    with sync.batched_import():
        for block in mine + theirs:
            sync.import_block(block)
    assert sync.best.hash == theirs[-1].hash and sync.store.state_root == fork.store.state_root
    assert retracted_seen == [[3, 2]]
    # as without batching: each block heard of in order while it is on the best chain, before the reorg
    assert heard == [(1, True), (2, True), (3, True), (2, True), (3, True), (4, True), (5, True)]
    sync.store.close()
    assert_consistent(tmp_path / "sync", fork, 5)
    fork.store.close()


KILLED_IMPORT = textwrap.dedent("""
    import os, signal, sys
    from runtime.codec import decode
    from runtime.types import Block
    from tests.helpers import make_chain
    sync = make_chain(sys.argv[1])
    blocks = [Block.decode(raw) for raw in decode(open(sys.argv[2], "rb").read())]
    finalize_at = int(sys.argv[3])
    heard = []
    sync.listeners.append(lambda imported: heard.append(imported.block.header.number))
    with sync.batched_import():
        for block in blocks:
            sync.import_block(block)
            if block.header.number == finalize_at:
                assert sync.finalize(block.hash, b"justification")
                assert heard[-1] == finalize_at  # listeners hear of blocks before their finality
        assert sync.store.staged_blocks > 0
        os.kill(os.getpid(), signal.SIGKILL)  # mid-run, with blocks staged and not written
""")


def test_a_kill_mid_run_leaves_the_last_written_block_and_finality_not_ahead_of_it(source, tmp_path):
    from runtime.codec import encode
    count = IMPORT_BATCH_BLOCKS + 20
    finalize_at = IMPORT_BATCH_BLOCKS + 10
    blocks = build(source, count)
    (tmp_path / "blocks").write_bytes(encode([block.encode() for block in blocks]))
    root = Path(__file__).resolve().parent.parent
    child = subprocess.run([sys.executable, "-c", KILLED_IMPORT, str(tmp_path / "sync"), str(tmp_path / "blocks"),
                            str(finalize_at)], check=False, cwd=root, capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    # Written: the first full run, then everything up to the finalized block (finality writes its
    # blocks first). Lost: the 10 staged blocks after it, which sync fetches again.
    reopened = make_chain(tmp_path / "sync")
    assert reopened.finalized.hash == blocks[finalize_at - 1].hash
    assert reopened.store.justification(reopened.finalized.hash) == b"justification"
    reopened.store.close()
    assert_consistent(tmp_path / "sync", source, finalize_at)
    again = make_chain(tmp_path / "sync")
    with again.batched_import():
        for block in blocks[finalize_at:]:
            again.import_block(block)
    assert again.best.hash == blocks[-1].hash and again.store.state_root == source.store.state_root
    again.store.close()


def test_any_other_write_first_writes_the_staged_run(source, tmp_path):
    """Finality, node records and fork blocks written straight to the store (the dev node
    finalizes through `store.set_finalized`) never reach the disk ahead of staged blocks."""
    blocks = build(source, 6)
    sync = make_chain(tmp_path / "sync")
    writes = [lambda: sync.store.set_finalized(blocks[0].hash), lambda: sync.store.put_meta(b"voter", b"x"),
              lambda: sync.store.store_block(blocks[5])]
    with sync.batched_import():
        for block, write in zip(blocks[:3], writes, strict=True):
            sync.import_block(block)
            assert sync.store.db.get(P_BLOCK + block.hash) is None  # staged
            write()
            assert sync.store.db.get(P_BLOCK + block.hash) is not None and sync.store.staged_blocks == 0
    sync.store.close()
    assert_consistent(tmp_path / "sync", source, 3)


def test_buckets_with_staged_changes_stay_cached_however_small_the_cache(source, tmp_path, monkeypatch):
    """The disk lacks a staged bucket's changes: were it evicted mid-run, a later block that adds
    another key to that bucket would get its state root from stale entries (and be refused)."""
    from runtime.merkle import bucket_of
    first = bytes(31) + b"\x01"
    second = next(i.to_bytes(32, "big") for i in range(2, 1 << 20)
                  if bucket_of(balances.Account.key(i.to_bytes(32, "big"))) == bucket_of(balances.Account.key(first)))
    blocks = []
    for slot, xts in [(1, [sign(source, CHARLIE, "balances", "transfer", [first, 10**9], 0)]), (2, []),
                      (3, [sign(source, CHARLIE, "balances", "transfer", [second, 10**9], 1)])]:
        block, _, rejected = source.build_block(ALICE, slot, ts(source, slot), xts)
        assert not rejected
        blocks.append(block)
    monkeypatch.setattr(storage, "BUCKET_CACHE_SIZE", 1)
    sync = make_chain(tmp_path / "sync")
    with sync.batched_import():
        for block in blocks:
            sync.import_block(block)
    assert len(sync.store._bucket_cache) == 1  # trimmed once written
    assert sync.best.hash == blocks[-1].hash
    sync.store.close()
    assert_consistent(tmp_path / "sync", source, 3)


class RefusingWrites:
    """A LevelDB handle whose batched writes fail, as on a full disk; everything else passes through."""

    def __init__(self, db) -> None:
        self._db = db

    def write_batch(self, **kwargs):
        raise OSError("IO error: No space left on device")

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_failed_write_puts_the_in_memory_view_back_to_the_disks(source, tmp_path):
    blocks = build(source, 8)
    sync = make_chain(tmp_path / "sync")
    for block in blocks[:3]:
        sync.import_block(block)
    heard: list[int] = []
    sync.listeners.append(lambda imported: heard.append(imported.block.header.number))
    bob_before = balances.Account.get(sync.state(), BOB.public_key)
    db = sync.store.db
    sync.store.db = RefusingWrites(db)
    with pytest.raises(OSError, match="No space"), sync.batched_import():
        for block in blocks[3:]:
            sync.import_block(block)
        assert sync.best.hash == blocks[-1].hash  # best in memory, not yet on disk
    sync.store.db = db
    assert heard == []  # never announced: never written
    assert sync.best.hash == blocks[2].hash
    assert sync.store.state_root == blocks[2].header.state_root
    assert balances.Account.get(sync.state(), BOB.public_key) == bob_before
    with sync.batched_import():  # the same blocks import again once the disk takes writes
        for block in blocks[3:]:
            sync.import_block(block)
    assert heard == [4, 5, 6, 7, 8] and sync.store.state_root == source.store.state_root
    sync.store.close()
    assert_consistent(tmp_path / "sync", source, 8)


def test_state_reads_from_cached_buckets_equal_the_disk_after_runs_commits_and_reverts(source, tmp_path):
    """`ChainStore.get_state` answers from a cached bucket without reading LevelDB: a cached bucket
    must equal the disk after staged runs, single commits and reverts (a stale one would make the
    pool and the RPC read balances and nonces that are not the chain's)."""
    from node.storage import _state_key
    blocks = build(source, 8)
    sync = make_chain(tmp_path / "sync")
    with sync.batched_import():
        for block in blocks[:5]:
            sync.import_block(block)
    for block in blocks[5:]:
        sync.import_block(block)
    sync.store.revert_best()
    sync.store.revert_best()
    store = sync.store
    assert store._bucket_cache  # the reads below do go through cached buckets
    keys = {key[3:] for key, _ in store.db.iterator(prefix=P_STATE)}
    keys |= {key for bucket in store._bucket_cache.values() for key in bucket}
    keys.add(balances.Account.key(bytes(32)))  # never written
    for key in keys:
        assert store.get_state(key) == store.db.get(_state_key(key)), key
    sync.store.close()
