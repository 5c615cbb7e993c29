"""Arena's bitswap provider and requester as a foreign peer sees them: older protocol versions,
want-have / DONT_HAVE answers, and penalties for malformed messages."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from p2p.content.bitswap import Exchange
from p2p.content.bitswap_wire import (
    BITSWAP_100,
    BITSWAP_110,
    BITSWAP_120,
    DONT_HAVE,
    HAVE,
    WANT_BLOCK,
    WANT_HAVE,
    Message,
    MessageReader,
    WantEntry,
    decode_message,
    encode_message,
    frame,
)
from p2p.content.blockstore import BlockStore
from p2p.content.cid import Cid, parse_cid
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE, iter_file
from tests.content_helpers import PatternFile, pattern_bytes, running_hosts, temp_leveldb

pytestmark = pytest.mark.timeout(60)


def _exchange(host: Any, store: BlockStore, penalties: list[tuple[Any, str]], **kw: Any) -> Exchange:
    return Exchange(host, store, lambda peer, reason: penalties.append((peer, reason)),
                    host.get_connected_peers, **kw)


@pytest.mark.parametrize("protocol", [BITSWAP_110, BITSWAP_100])
def test_fetch_from_a_peer_that_only_speaks_an_older_version(protocol: str) -> None:
    size = 2 * CHUNK_SIZE + 5

    async def main() -> None:
        with temp_leveldb() as db_a, temp_leveldb() as db_b:
            provider, receiver = BlockStore(db_a), BlockStore(db_b)
            root = parse_cid(EmbeddedContentStore(provider).add_file(PatternFile(size))[0])
            async with running_hosts(2) as (host_b, host_a):
                penalties: list[tuple[Any, str]] = []
                old = _exchange(host_a, provider, penalties, protocols=[protocol])
                fetcher = _exchange(host_b, receiver, penalties)
                await fetcher.fetch(root, timeout=20)
                assert b"".join(iter_file(receiver.get, root)) == pattern_bytes(0, size)
                assert old.blocks_served == 4 and penalties == []

    trio.run(main)


def test_provider_answers_want_have_and_dont_have() -> None:
    async def main() -> None:
        with temp_leveldb() as db:
            store = BlockStore(db)
            root = parse_cid(EmbeddedContentStore(store).add_file(PatternFile(100))[0])
            missing = Cid.for_dag_pb_block(b"not here")
            async with running_hosts(2) as (client, server):
                penalties: list[tuple[Any, str]] = []
                exchange = _exchange(server, store, penalties)
                replies: list[Message] = []
                got = trio.Event()

                async def collect(stream: Any) -> None:
                    reader = MessageReader(stream)
                    while (body := await reader.read()) is not None:
                        replies.append(decode_message(body))
                    got.set()

                client.set_stream_handler(BITSWAP_120, collect)
                stream = await client.new_stream(server.get_id(), [BITSWAP_120])
                wants = [WantEntry(root, WANT_HAVE), WantEntry(missing, WANT_BLOCK, send_dont_have=True),
                         WantEntry(missing, WANT_HAVE)]  # no sendDontHave: no answer
                await stream.write(frame(encode_message(Message(wants=wants))))
                await stream.close()
                with trio.fail_after(10):
                    await got.wait()
                assert [m.presences for m in replies] == [[(root, HAVE), (missing, DONT_HAVE)]]
                assert exchange.blocks_served == 0 and penalties == []

    trio.run(main)


def test_malformed_message_is_penalised() -> None:
    async def main() -> None:
        with temp_leveldb() as db:
            async with running_hosts(2) as (client, server):
                penalties: list[tuple[Any, str]] = []
                _exchange(server, BlockStore(db), penalties)
                stream = await client.new_stream(server.get_id(), [BITSWAP_120])
                await stream.write(frame(b"\x0a\x05abc"))
                with trio.fail_after(10):
                    while not penalties:
                        await trio.sleep(0.05)
                assert penalties[0][0] == client.get_id()
                assert "malformed bitswap message" in penalties[0][1]

    trio.run(main)


def test_unasked_block_is_penalised_and_dropped() -> None:
    async def main() -> None:
        with temp_leveldb() as db:
            store = BlockStore(db)
            async with running_hosts(2) as (client, server):
                penalties: list[tuple[Any, str]] = []
                _exchange(server, store, penalties)
                stranger = Cid.for_dag_pb_block(b"\x0a\x00")
                stream = await client.new_stream(server.get_id(), [BITSWAP_120])
                await stream.write(frame(encode_message(Message(blocks=[(stranger, b"\x0a\x00")]))))
                await stream.close()
                with trio.fail_after(10):
                    while not penalties:
                        await trio.sleep(0.05)
                assert "do not hash to any block asked of it" in penalties[0][1]
                assert not store.has_block(stranger)

    trio.run(main)
