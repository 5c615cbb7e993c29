"""Sync's pipeline: the next range of blocks is fetched while this one is checked and imported.

Without it a fresh node alternates between waiting for a peer to read, encode and send a range
and importing that range: the peer's core and ours take turns. With one request in flight
(`Prefetch`) and the ed25519 checks of a range's seals done in a worker thread (`check_range`,
pynacl releases the GIL), the peer serves, our second core verifies and the event loop imports at
the same time. Nothing here touches the chain: the caller imports on the node's trio thread.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
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


class Prefetch:
    """At most one range request in flight, started now and collected later.

    `start(n)` asks for the range from block n in the background; `result()` waits for it and
    returns its items or raises the error the request raised. Cancelling the nursery drops it.
    """

    def __init__(self, nursery: trio.Nursery, fetch: Callable[[int], Awaitable[list[bytes]]]) -> None:
        self._nursery = nursery
        self._fetch = fetch
        self._done: trio.Event | None = None
        self._items: list[bytes] = []
        self._error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return self._done is not None

    def start(self, first: int) -> None:
        if self._done is not None:
            raise RuntimeError("a range request is already in flight")
        done = self._done = trio.Event()
        self._items, self._error = [], None

        async def run() -> None:
            try:
                self._items = await self._fetch(first)
            except Exception as exc:  # noqa: BLE001 - handed to the caller of result()
                self._error = exc
            finally:
                done.set()

        self._nursery.start_soon(run)

    async def result(self) -> list[bytes]:
        if self._done is None:
            raise RuntimeError("no range request was started")
        await self._done.wait()
        self._done = None
        if self._error is not None:
            raise self._error
        return self._items
