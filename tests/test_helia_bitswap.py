"""Bitswap against a real Helia node (npm, tests/helia): blocks move both ways over /ipfs/bitswap/1.2.0.

The Arena side is the node's own `Exchange` on an in-process py-libp2p host; the Helia side is a
separate Node.js process on 127.0.0.1 with no routing but the connection it is told to dial.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import trio

from p2p.content.bitswap import Exchange
from p2p.content.blockstore import BlockStore
from p2p.content.cid import Cid
from p2p.content.errors import ContentNotFound
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE
from tests.content_helpers import PatternFile, p2p_addr, pattern_bytes, running_hosts, temp_leveldb
from tests.helia_peer import HeliaPeer, require_helia

pytestmark = pytest.mark.timeout(90)


def _arena(host: Any, db: Any, penalties: list[tuple[Any, str]]) -> EmbeddedContentStore:
    store = EmbeddedContentStore(BlockStore(db))
    store.attach_exchange(Exchange(host, store.blocks, lambda peer, why: penalties.append((peer, why)),
                                   host.get_connected_peers))
    return store


def test_helia_and_arena_exchange_multi_chunk_files_both_ways(tmp_path: Path) -> None:
    require_helia()
    size = 5 * CHUNK_SIZE + 99  # six leaves under one root

    async def main() -> None:
        with temp_leveldb() as db, HeliaPeer() as helia:
            async with running_hosts(1) as (host,):
                penalties: list[tuple[Any, str]] = []
                arena = _arena(host, db, penalties)
                cid, _ = arena.add_file(PatternFile(size))
                await trio.to_thread.run_sync(lambda: helia.call("dial", addr=str(p2p_addr(host))))

                # Helia pulls a file that only Arena has
                out = tmp_path / "from-arena"
                got = await trio.to_thread.run_sync(lambda: helia.call("cat", cid=cid, out=str(out), timeout=30))
                assert got == {"size": size, "sha256": hashlib.sha256(pattern_bytes(0, size)).hexdigest()}
                assert arena.exchange is not None and arena.exchange.blocks_served == 7

                # Arena pulls a file that only Helia has; Helia made the CID Arena would make
                data = bytes(range(256)) * (3 * CHUNK_SIZE // 256) + b"tail"
                (tmp_path / "helia.bin").write_bytes(data)
                helia_cid = (await trio.to_thread.run_sync(
                    lambda: helia.call("add", path=str(tmp_path / "helia.bin"))))["cid"]
                assert not arena.has(helia_cid)
                await arena.fetch(helia_cid, timeout=30)
                assert b"".join(arena.cat(helia_cid)) == data
                from io import BytesIO
                assert arena.add_file(BytesIO(data), only_hash=True)[0] == helia_cid
                assert penalties == []

    trio.run(main)


def test_arena_fetch_of_what_helia_lacks_ends_on_dont_have() -> None:
    require_helia()

    async def main() -> None:
        with temp_leveldb() as db, HeliaPeer() as helia:
            async with running_hosts(1) as (host,):
                penalties: list[tuple[Any, str]] = []
                arena = _arena(host, db, penalties)
                await trio.to_thread.run_sync(lambda: helia.call("dial", addr=str(p2p_addr(host))))
                missing = str(Cid.for_dag_pb_block(b"neither side stores this"))
                with pytest.raises(ContentNotFound, match="none of the 1 connected peers"):
                    await arena.fetch(missing, timeout=2)
                assert penalties == []

    trio.run(main)
