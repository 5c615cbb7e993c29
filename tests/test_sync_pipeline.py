"""Sync's pipeline (node/sync.py): seals verified ahead off the loop, one range request in flight.

The shortcut must never let a block in that the plain import would refuse: a pre-verified seal is
bound to the exact header (its hash covers seal and reveal), and a forged one is verified again.
"""
from dataclasses import replace

import pytest
import trio
import trio.testing

from node.chain import BlockError
from node.sync import Prefetch, check_range, decode_range
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


def test_prefetch_runs_one_request_ahead_and_hands_back_errors():
    started: list[int] = []

    async def fetch(first: int) -> list[bytes]:
        started.append(first)
        await trio.sleep(0.01)
        if first == 99:
            raise ValueError("peer went away")
        return [bytes([first])]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            ahead = Prefetch(nursery, fetch)
            ahead.start(3)
            with pytest.raises(RuntimeError):
                ahead.start(4)  # one in flight at a time
            await trio.testing.wait_all_tasks_blocked()
            assert started == [3]  # already asked before anyone waits for it
            assert await ahead.result() == [b"\x03"]
            assert not ahead.pending
            ahead.start(99)
            with pytest.raises(ValueError, match="went away"):
                await ahead.result()

    trio.run(main)
