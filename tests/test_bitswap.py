"""Bitswap exchange between in-process libp2p hosts on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from p2p.content.bitswap import Exchange
from p2p.content.blockstore import BlockStore
from p2p.content.cid import Cid, parse_cid
from p2p.content.dagpb import child_cids
from p2p.content.errors import ContentNotFound
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE, iter_file
from tests.content_helpers import PatternFile, pattern_bytes, running_hosts, temp_leveldb

pytestmark = pytest.mark.timeout(60)


class LyingBlockStore(BlockStore):
    """Serves every block with one byte flipped."""

    def get_by_multihash(self, multihash: bytes) -> bytes | None:
        block = super().get_by_multihash(multihash)
        return None if block is None else bytes([block[0] ^ 1]) + block[1:]


def _add(store: BlockStore, size: int) -> Cid:
    cid, _ = EmbeddedContentStore(store).add_file(PatternFile(size))
    return parse_cid(cid)


def _exchange(host: Any, store: BlockStore, penalties: list[tuple[Any, str]],
              peers: Any = None) -> Exchange:
    return Exchange(host, store, lambda peer, reason: penalties.append((peer, reason)),
                    peers or host.get_connected_peers)


def test_multi_chunk_round_trip_and_resume() -> None:
    size = 175 * CHUNK_SIZE + 1000  # depth-2 tree: root, two interior nodes, 176 leaves

    async def main() -> None:
        with temp_leveldb() as db_a, temp_leveldb() as db_b:
            provider, receiver = BlockStore(db_a), BlockStore(db_b)
            root = _add(provider, size)
            async with running_hosts(2) as (host_b, host_a):
                penalties: list[tuple[Any, str]] = []
                served = _exchange(host_a, provider, penalties)
                fetcher = _exchange(host_b, receiver, penalties)
                # resumability: half the leaves are already here and must not be asked for again
                leaves = [c for c in _walk(provider, root) if c != root][:90]
                for leaf in leaves:
                    receiver.put(leaf, provider.get(leaf))
                await fetcher.fetch(root, timeout=30)
                assert receiver.is_complete(root)
                assert served.blocks_served == 179 - len(leaves)
                assert penalties == []
                got = b"".join(iter_file(receiver.get, root, 100 * CHUNK_SIZE - 5, 10))
                assert got == pattern_bytes(100 * CHUNK_SIZE - 5, 10)
                await fetcher.fetch(root, timeout=1)  # already complete: no traffic
                assert served.blocks_served == 179 - len(leaves)

    trio.run(main)


def _walk(store: BlockStore, root: Cid) -> list[Cid]:
    out, stack = [], [root]
    while stack:
        cid = stack.pop()
        out.append(cid)
        stack.extend(child_cids(cid, store.get(cid)))
    return out


def test_lying_peer_is_penalized_and_block_fetched_elsewhere() -> None:
    async def main() -> None:
        with temp_leveldb() as db_l, temp_leveldb() as db_h, temp_leveldb() as db_r:
            liar_store, honest_store, receiver = LyingBlockStore(db_l), BlockStore(db_h), BlockStore(db_r)
            root = _add(liar_store, 3 * CHUNK_SIZE + 7)
            assert _add(honest_store, 3 * CHUNK_SIZE + 7) == root
            async with running_hosts(3) as (host_r, host_l, host_h):
                penalties: list[tuple[Any, str]] = []
                liar_id, honest_id = host_l.get_id(), host_h.get_id()
                _exchange(host_l, liar_store, [])
                _exchange(host_h, honest_store, [])
                # the honest peer only becomes visible once the liar has been caught
                fetcher = _exchange(host_r, receiver, penalties,
                                    peers=lambda: [liar_id] + ([honest_id] if penalties else []))
                await fetcher.fetch(root, timeout=20)
                assert [peer for peer, _ in penalties] == [liar_id]
                assert "do not hash" in penalties[0][1]
                assert receiver.is_complete(root)
                assert b"".join(iter_file(receiver.get, root)) == pattern_bytes(0, 3 * CHUNK_SIZE + 7)

    trio.run(main)


def test_fetch_of_content_nobody_has_ends_cleanly() -> None:
    async def main() -> None:
        with temp_leveldb() as db_a, temp_leveldb() as db_b:
            async with running_hosts(3) as (host_r, host_a, host_silent):
                # host_silent speaks no bitswap at all: its failures must not hang the fetch
                _exchange(host_a, BlockStore(db_a), [])
                penalties: list[tuple[Any, str]] = []
                fetcher = _exchange(host_r, BlockStore(db_b), penalties)
                missing = Cid.for_dag_pb_block(b"nobody stores this")
                started = time.monotonic()
                with pytest.raises(ContentNotFound, match="none of the 2 connected peers"):
                    await fetcher.fetch(missing, timeout=1.5)
                assert time.monotonic() - started < 5
                assert penalties == []
                assert host_silent.get_id() in host_r.get_connected_peers()

    trio.run(main)


def test_store_fetch_then_cat_over_exchange() -> None:
    async def main() -> None:
        with temp_leveldb() as db_a, temp_leveldb() as db_b:
            provider = EmbeddedContentStore(BlockStore(db_a))
            cid, _ = provider.add_file(PatternFile(CHUNK_SIZE + 1))
            async with running_hosts(2) as (host_b, host_a):
                provider.attach_exchange(_exchange(host_a, provider.blocks, []))
                receiver = EmbeddedContentStore(BlockStore(db_b))
                receiver.attach_exchange(_exchange(host_b, receiver.blocks, []))
                assert not receiver.has(cid)
                await receiver.fetch(cid, timeout=10)
                receiver.pin(cid)
                assert receiver.has(cid) and receiver.blocks.is_pinned(parse_cid(cid))
                assert b"".join(receiver.cat(cid, CHUNK_SIZE - 1)) == pattern_bytes(CHUNK_SIZE - 1, 2)
                assert receiver.node_info()["ID"] == str(host_b.get_id())

    trio.run(main)
