"""Extrinsic batching: many small extrinsics travel as one gossip message (a msgpack list of bytes).

Gossip delivers a few hundred messages per second per subscriber, so one message per extrinsic
caps throughput; a batch of up to `max_items` extrinsics / `max_bytes` costs one message.
A batch is flushed when it is full or `max_delay_s` after its first item arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgpack
import trio

logger = logging.getLogger("arena.p2p.batcher")


class BatchDecodeError(ValueError):
    """A received batch is not a msgpack list of byte strings within limits."""


class ExtrinsicTooLarge(ValueError):
    """A single extrinsic does not fit in one batch message."""


_LIST_OVERHEAD = 5  # msgpack array32 header
_ITEM_OVERHEAD = 5  # msgpack bin32 header


def encode_batch(items: list[bytes]) -> bytes:
    """Encode extrinsics as one msgpack list of bin values."""
    return msgpack.packb(list(items), use_bin_type=True)


def decode_batch(data: bytes, max_items: int, max_item_size: int) -> list[bytes]:
    """Decode a batch, enforcing item count and per-item size; raise `BatchDecodeError` otherwise."""
    try:
        items = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_array_len=max_items,
            max_bin_len=max_item_size,
            max_str_len=0,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
        raise BatchDecodeError(f"not a msgpack list within limits ({max_items} items, {max_item_size} B each): {exc}") from exc
    if not isinstance(items, list) or not items:
        raise BatchDecodeError(f"expected a non-empty list of extrinsics, got {type(items).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, bytes):
            raise BatchDecodeError(f"item {index} is {type(item).__name__}, expected bytes")
    return items


class ExtrinsicBatcher:
    """Collects submitted extrinsics and publishes them in batches through `publish(batch_bytes)`."""

    def __init__(
        self,
        publish: Callable[[bytes], Awaitable[None]],
        max_items: int = 1024,
        max_bytes: int = 256 * 1024,
        max_delay_s: float = 0.02,
        queue_size: int = 65536,
    ) -> None:
        self._publish = publish
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        self._send, self._receive = trio.open_memory_channel[bytes](queue_size)
        self.batches_sent = 0

    async def submit(self, extrinsic: bytes) -> None:
        """Queue one extrinsic for gossip; waits if the queue is full (back-pressure)."""
        if len(extrinsic) + _ITEM_OVERHEAD + _LIST_OVERHEAD > self.max_bytes:
            raise ExtrinsicTooLarge(f"extrinsic is {len(extrinsic)} bytes; a batch holds at most {self.max_bytes}")
        await self._send.send(extrinsic)

    async def run(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined]  # stale trio-typing stubs
    ) -> None:
        """Batch and publish until cancelled."""
        task_status.started()
        carry: bytes | None = None
        while True:
            first = carry if carry is not None else await self._receive.receive()
            carry = None
            batch, size = [first], _LIST_OVERHEAD + len(first) + _ITEM_OVERHEAD
            deadline = trio.current_time() + self.max_delay_s
            while len(batch) < self.max_items:
                item = await self._next_item(deadline)
                if item is None:
                    break
                if size + len(item) + _ITEM_OVERHEAD > self.max_bytes:
                    carry = item
                    break
                batch.append(item)
                size += len(item) + _ITEM_OVERHEAD
            await self._publish(encode_batch(batch))
            self.batches_sent += 1

    async def _next_item(self, deadline: float) -> bytes | None:
        """Next queued extrinsic, or None once `deadline` passes with the queue empty."""
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            pass
        with trio.move_on_at(deadline):
            return await self._receive.receive()
        return None
