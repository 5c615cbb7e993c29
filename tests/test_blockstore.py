"""BlockStore on plyvel: verified puts, pins, completeness records and garbage collection."""

from __future__ import annotations

import pytest

from p2p.content.blockstore import BlockNotFound, BlockStore
from p2p.content.cid import DAG_PB, Cid, sha256_multihash
from p2p.content.dagpb import decode_pbnode
from p2p.content.errors import InvalidBlock
from p2p.content.unixfs import CHUNK_SIZE, FileImporter, iter_file
from tests.content_helpers import pattern_bytes, temp_leveldb


def _import(store: BlockStore, data: bytes, pin: bool = True) -> Cid:
    with store.writer() as writer:
        importer = FileImporter(lambda cid, block: writer.put(cid, block, verify=False))
        importer.write(data)
        root = importer.finish().cid
        writer.commit(root, pin=pin)
    return root


def test_put_verifies_hash_and_shares_prefixed_db() -> None:
    with temp_leveldb() as db:
        store = BlockStore(db.prefixed_db(b"c"))
        block = b"\x0a\x02\x08\x02"
        cid = Cid.for_dag_pb_block(block)
        store.put(cid, block)
        assert store.get(cid) == block
        assert store.get(Cid(1, DAG_PB, cid.multihash)) == block  # v0 and v1 share storage
        with pytest.raises(InvalidBlock, match="do not hash"):
            store.put(cid, block + b"x")
        db.put(b"other-module", b"untouched")
        assert all(key.startswith(b"c") for key, _ in db.iterator() if key != b"other-module")
        with pytest.raises(BlockNotFound):
            store.get(Cid.for_dag_pb_block(b"missing"))


def test_oversized_block_rejected() -> None:
    with temp_leveldb() as db:
        store = BlockStore(db, max_block_size=10)
        block = b"x" * 11
        with pytest.raises(InvalidBlock, match="limit"):
            store.put(Cid(0, DAG_PB, sha256_multihash(block)), block)


def test_import_commit_marks_complete_and_pins() -> None:
    with temp_leveldb() as db:
        store = BlockStore(db)
        data = pattern_bytes(0, 3 * CHUNK_SIZE + 1)
        root = _import(store, data)
        assert store.is_complete(root) and store.is_pinned(root)
        assert store.pins() == [root]
        assert b"".join(iter_file(store.get, root)) == data


def test_interrupted_import_is_not_claimed_and_gc_removes_it() -> None:
    with temp_leveldb() as db:
        store = BlockStore(db)
        kept = _import(store, b"kept")
        with pytest.raises(RuntimeError), store.writer() as writer:
            importer = FileImporter(lambda cid, block: writer.put(cid, block, verify=False))
            importer.write(pattern_bytes(0, 2 * CHUNK_SIZE))
            raise RuntimeError("upload truncated")
        assert store.block_count() == 3  # two orphan leaves reached the DB, no root, no claim
        result = store.gc()
        assert result.blocks_removed == 2 and result.bytes_freed > 2 * CHUNK_SIZE
        assert store.block_count() == 1 and store.is_complete(kept)


def test_gc_keeps_pinned_and_drops_unpinned() -> None:
    with temp_leveldb() as db:
        store = BlockStore(db)
        pinned = _import(store, pattern_bytes(0, 2 * CHUNK_SIZE + 5))
        loose = _import(store, pattern_bytes(7, CHUNK_SIZE + 9), pin=False)
        assert store.gc().blocks_removed == 3
        assert not store.is_complete(loose) and not store.has_block(loose)
        assert store.is_complete(pinned)
        store.unpin(pinned)
        assert store.gc().blocks_removed == 4
        assert store.block_count() == 0


def test_gc_spares_blocks_of_an_open_writer() -> None:
    with temp_leveldb() as db:
        store = BlockStore(db)
        block = b"\x0a\x02\x08\x02"
        cid = Cid.for_dag_pb_block(block)
        with store.writer() as writer:
            writer.put(cid, block)
            writer.flush()
            assert store.gc().blocks_removed == 0
        assert store.gc().blocks_removed == 1


def test_pin_requires_the_whole_dag() -> None:
    with temp_leveldb() as db:
        store = BlockStore(db)
        root = _import(store, pattern_bytes(0, 2 * CHUNK_SIZE + 1), pin=False)
        store.db.delete(b"k" + root.multihash)
        assert store.missing_blocks(root) == []
        first_child = decode_pbnode(store.get(root)).links[0].cid
        store.delete_block(first_child)
        with pytest.raises(BlockNotFound, match="not stored"):
            store.pin(root)
        assert not store.is_pinned(root)
