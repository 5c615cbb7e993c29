"""Sync's pipeline (node/sync.py): seals verified ahead off the loop, one range request in flight.

The shortcut must never let a block in that the plain import would refuse: a pre-verified seal is
bound to the exact header (its hash covers seal and reveal), and a forged one is verified again.
"""
from dataclasses import replace

import pytest
import trio
import trio.testing

from node.chain import BlockError
from node.sync import check_range, checked_ranges, decode_range
from runtime.codec import CodecError, encode
from runtime.types import Block
from tests.helpers import ALICE, BOB, make_chain


def ts(chain, slot):
    return chain.spec.config["timestamp_ms"] + slot * 1000


@pytest.fixture()
def chains(tmp_path):
    a, b = make_chain(tmp_path / "a"), make_chain(tmp_path / "b")
    yield a, b
    a.store.close()
    b.store.close()


def sync_items(chain, count):
    blocks = [chain.build_block(ALICE, slot, ts(chain, slot), [])[0] for slot in range(1, count + 1)]
    return blocks, [encode([block.encode(), b""]) for block in blocks]


def forged(block: Block) -> Block:
    """The same block with its seal swapped for another key's signature of the same payload."""
    header = block.header
    return Block(replace(header, seal=BOB.sign(header.signing_payload())), block.extrinsics)


def test_verified_ranges_import_and_forged_seals_are_still_refused(chains):
    a, b = chains
    blocks, items = sync_items(a, 5)
    items[2] = encode([forged(blocks[2]).encode(), b""])
    checked = trio.run(check_range, items)
    assert [item.seals_ok for item in checked] == [True, True, False, True, True]
    b.verified_seals.update(item.block.hash for item in checked if item.seals_ok)
    b.import_block(checked[0].block)
    b.import_block(checked[1].block)
    with pytest.raises(BlockError, match="bad seal"):
        b.import_block(checked[2].block)
    assert b.best.hash == blocks[1].hash


def test_a_preverified_hash_skips_nothing_for_another_header(chains):
    """Marking the honest block as verified does not cover a forged twin (different hash)."""
    a, b = chains
    blocks, _ = sync_items(a, 1)
    b.verified_seals.add(blocks[0].hash)
    with pytest.raises(BlockError, match="bad seal"):
        b.import_block(forged(blocks[0]))
    b.import_block(blocks[0])
    assert b.best.hash == blocks[0].hash


@pytest.mark.parametrize("item", [encode([b"x"]), encode("text"), encode([b"", 5]), b"\xc1"])
def test_malformed_sync_items_raise_codec_errors(item):
    with pytest.raises(CodecError):
        decode_range([item])


def test_ranges_are_fetched_and_checked_ahead_in_order_and_errors_come_after_the_good_ones(chains):
    a, _ = chains
    _, items = sync_items(a, 9)
    asked: list[int] = []

    def peer(sizes: dict[int, int], fails_at: int = 0, bad_item: int = 0):
        """A peer that answers `sizes[first]` blocks (it may answer short, or nothing)."""
        async def fetch(first: int) -> list[bytes]:
            asked.append(first)
            if first == fails_at:
                raise ValueError("peer went away")
            answer = items[first - 1:first - 1 + sizes.get(first, 0)]
            return [b"\xc1" if first + i == bad_item else item for i, item in enumerate(answer)]
        return fetch

    async def collect(fetch, first: int, last: int) -> list:
        asked.clear()
        got: list = []
        async with checked_ranges(fetch, first, last) as ranges:
            async for checked in ranges:
                got.append(checked if isinstance(checked, Exception) else [i.block.header.number for i in checked])
                if len(got) == 1:
                    await trio.testing.wait_all_tasks_blocked()
                    assert asked[:3] == [4, 7, 8]  # while this range is imported: the next checked, the one after fetched
        return got

    sizes = {4: 3, 7: 1, 8: 3}  # the next range starts where the previous one ended, short or not
    assert trio.run(collect, peer(sizes), 4, 9) == [[4, 5, 6], [7], [8, 9]]
    assert asked == [4, 7, 8]  # nothing asked beyond `last`
    assert trio.run(collect, peer(sizes), 4, 20) == [[4, 5, 6], [7], [8, 9]]
    assert asked == [4, 7, 8, 10]  # an empty answer ends the stream
    got = trio.run(collect, peer({4: 3, 7: 1, 8: 1}, fails_at=9), 4, 20)
    assert got[:3] == [[4, 5, 6], [7], [8]] and isinstance(got[3], ValueError) and len(got) == 4
    got = trio.run(collect, peer(sizes, bad_item=8), 4, 20)
    assert got[:2] == [[4, 5, 6], [7]] and isinstance(got[2], CodecError) and len(got) == 3
