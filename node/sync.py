"""Sync's pipeline: while one range of blocks is imported, the next is checked and the one after fetched.

Without it a fresh node alternates between waiting for a peer to read, encode and send a range,
verifying its seals and importing it: the peer's core and ours take turns. `checked_ranges` runs
three stages at once, each one range ahead of the next: a task fetches ranges one after another,
a task checks each (`check_range`: the ed25519 checks of its seals in a worker thread, pynacl
releases the GIL), and the caller imports on the node's trio thread. Nothing here touches the chain.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from consensus.validity import seals_verify
from runtime.codec import CodecError, decode
from runtime.types import Block


@dataclass(frozen=True)
class RangeItem:
    """One block of a sync answer, decoded, with its justification bytes (b"" when none)."""

    block: Block
    justification: bytes
    seals_ok: bool  # seal and randao reveal verified (a False block is still imported: it fails there)


def decode_range(items: list[bytes]) -> list[tuple[Block, bytes]]:
    """The blocks and justifications of a `blocks_by_range` answer; CodecError when malformed."""
    out = []
    for item in items:
        fields = decode(item)
        if not isinstance(fields, list) or len(fields) != 2 or not all(isinstance(f, bytes) for f in fields):
            raise CodecError("a sync item must be [block bytes, justification bytes]")
        out.append((Block.decode(fields[0]), fields[1]))
    return out


def verify_seals(blocks: list[tuple[Block, bytes]]) -> list[RangeItem]:
    """Check every header's seal and reveal; runs in a worker thread (pure, no shared state)."""
    return [RangeItem(block, justification, seals_verify(block.header)) for block, justification in blocks]


async def check_range(items: list[bytes]) -> list[RangeItem]:
    """Decode a range on the loop, then verify its seals in a worker thread."""
    blocks = decode_range(items)
    return await trio.to_thread.run_sync(verify_seals, blocks)


RangeResult = list[RangeItem] | Exception  # a checked range, or the error that ended the stream


@asynccontextmanager
async def checked_ranges(
    fetch: Callable[[int], Awaitable[list[bytes]]], first: int, last: int,
) -> AsyncIterator[trio.MemoryReceiveChannel[RangeResult]]:
    """The checked ranges from block `first` up to `last`, in order, as a channel.

    One task fetches range after range (each starts where the previous one ended; an empty range
    ends the stream), one task checks them; each holds at most one range the next stage has not
    taken yet. A fetch or check error arrives in the channel as the exception, after the ranges
    before it, and ends the stream. Leaving the block stops both tasks.
    """
    fetched_send, fetched_receive = trio.open_memory_channel[list[bytes] | Exception](0)
    checked_send, checked_receive = trio.open_memory_channel[RangeResult](0)

    async def fetch_stage() -> None:
        async with fetched_send:
            start = first
            while start <= last:
                try:
                    items = await fetch(start)
                except Exception as exc:  # noqa: BLE001 - handed to the consumer, in order
                    await fetched_send.send(exc)
                    return
                if not items:
                    return
                await fetched_send.send(items)
                start += len(items)

    async def check_stage() -> None:
        async with checked_send, fetched_receive:
            async for fetched in fetched_receive:
                if isinstance(fetched, Exception):
                    await checked_send.send(fetched)
                    return
                try:
                    checked: RangeResult = await check_range(fetched)
                except CodecError as exc:
                    checked = exc
                await checked_send.send(checked)
                if isinstance(checked, Exception):
                    return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch_stage)
        nursery.start_soon(check_stage)
        try:
            yield checked_receive
        finally:
            nursery.cancel_scope.cancel()
