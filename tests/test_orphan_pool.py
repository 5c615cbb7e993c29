"""The orphan pool under a flood (issue 11, finding 10): blocks whose parent a node lacks are kept
for later, but never more than `MAX_ORPHANS` blocks nor `MAX_ORPHAN_BYTES` bytes, whoever sends them.

The blocks are real: headers sealed by their author, near-gossip-size bodies, fed to a real node's
gossip validator (`ConsensusService.validate_block`, what every gossiped block goes through) —
from a key that is no authority, and from a genesis authority whose parents nobody has seen.
Python's own allocation tracer shows what the node keeps after the flood.
"""
from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
import trio

from consensus.slots import current_slot
from consensus.validity import randao_message
from node import consensus_service
from node.consensus_service import MAX_ORPHAN_BYTES, MAX_ORPHANS
from node.service import ArenaNode, NodeConfig
from p2p import Verdict
from runtime.crypto import Keypair
from runtime.types import Block, Header, extrinsics_root

BODY = 300_000          # bytes per fake extrinsic; three make a ~900 kB block, under the 1,000,000 B gossip cap
FLOOD = 120             # large orphans: ~108 MB offered, 6-7x the byte bound


@pytest.fixture
def node(tmp_path: Path):
    arena = ArenaNode(NodeConfig(tmp_path / "node"))   # the default chain, networked (not --dev), no key
    assert arena.consensus is not None
    yield arena
    arena.store.close()


def _orphan(key: Keypair, slot_ms: int, i: int, blobs: int) -> bytes:
    """A sealed block at height 1000 + i whose parent (a made-up hash) nobody has."""
    extrinsics = [bytes([i % 256, k]) * (BODY // 2) for k in range(blobs)]
    slot = current_slot(slot_ms)
    unsealed = Header(i.to_bytes(4, "big") * 8, 1000 + i, slot, slot * slot_ms, key.public_key,
                      key.sign(randao_message(slot)), bytes(32), extrinsics_root(extrinsics))
    block = Block(unsealed.with_seal(key.sign(unsealed.signing_payload())), extrinsics)
    return block.encode()


def _flood(node: ArenaNode, key: Keypair, count: int, blobs: int, salt: int = 0) -> tuple[int, bytes]:
    """Offer `count` orphans; (bytes offered, hash of the last one)."""
    service = node.consensus
    assert service is not None
    offered = 0
    last = b""
    for i in range(count):
        data = _orphan(key, service.slot_ms, salt + i, blobs)
        offered += len(data)
        last = Block.decode(data).hash
        assert trio.run(service.validate_block, "12D3KooWflood", data) is Verdict.IGNORE  # unknown parent: no penalty
        assert len(service.orphans) <= MAX_ORPHANS
        assert service.orphan_bytes <= MAX_ORPHAN_BYTES
    return offered, last


def _pool_bytes(node: ArenaNode) -> int:
    service = node.consensus
    assert service is not None
    return sum(len(b.encode()) for b in service.orphans.values())


@pytest.mark.parametrize("author", ["stranger", "alice"])
def test_large_orphans_are_bounded_by_bytes_and_memory(node: ArenaNode, author: str) -> None:
    key = Keypair(b"\x07" * 32) if author == "stranger" else Keypair.from_dev_name("alice")
    service = node.consensus
    assert service is not None
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        offered, newest = _flood(node, key, FLOOD, blobs=3)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert offered > 6 * MAX_ORPHAN_BYTES
    # the byte bound, not the count bound, is what holds ~900 kB blocks: 16 MiB is about 18 of them
    assert MAX_ORPHAN_BYTES - 2 * 1_000_000 < service.orphan_bytes <= MAX_ORPHAN_BYTES
    assert len(service.orphans) < MAX_ORPHANS
    # the accounting matches what is really held, and the newest blocks are the ones kept
    assert abs(_pool_bytes(node) - service.orphan_bytes) <= 64 * len(service.orphans)
    assert newest in service.orphans
    # what the process still holds after ~108 MB went through: the pool plus a little
    assert after - before < MAX_ORPHAN_BYTES + 4 * 2**20, f"{(after - before) / 2**20:.1f} MiB retained"


def test_many_small_orphans_are_bounded_by_count(node: ArenaNode) -> None:
    service = node.consensus
    assert service is not None
    _flood(node, Keypair(b"\x09" * 32), 4 * MAX_ORPHANS, blobs=0)
    assert len(service.orphans) == MAX_ORPHANS
    assert service.orphan_bytes == sum(len(b.encode()) for b in service.orphans.values())
    # a large flood afterwards evicts the small ones oldest-first and stays inside both bounds
    _flood(node, Keypair(b"\x0a" * 32), 40, blobs=3, salt=10_000)
    assert service.orphan_bytes <= MAX_ORPHAN_BYTES and len(service.orphans) <= MAX_ORPHANS


def test_an_orphan_over_a_quarter_of_the_byte_bound_is_not_kept(node: ArenaNode, monkeypatch: pytest.MonkeyPatch) -> None:
    # gossip caps a block at 1,000,000 B, so shrink the bound to make one block "too large" for it
    monkeypatch.setattr(consensus_service, "MAX_ORPHAN_BYTES", 2_000_000)
    service = node.consensus
    assert service is not None
    data = _orphan(Keypair(b"\x0b" * 32), service.slot_ms, 1, 3)
    assert trio.run(service.validate_block, "12D3KooWflood", data) is Verdict.IGNORE
    assert not service.orphans and service.orphan_bytes == 0
