"""Length-prefixed msgpack frames over a libp2p stream.

Each frame is a 4-byte big-endian length followed by that many bytes of msgpack. Frames are
capped (`MAX_FRAME`) because py-libp2p breaks connections on very large single writes.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

MAX_FRAME = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A frame that is oversized, truncated or not valid msgpack: a protocol violation."""


class StreamClosedEarly(FrameError, EOFError):
    """The remote closed the stream before a complete frame arrived."""


def encode_frame(message: Any) -> bytes:
    """Serialize one message as a length-prefixed frame."""
    payload = msgpack.packb(message, use_bin_type=True)
    if len(payload) > MAX_FRAME:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Reads whole frames from a stream, keeping any bytes that arrive past a frame's end."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            try:
                data = await self._stream.read(max(size - len(self._buffer), 65536))
            except EOFError:
                data = b""
            if not data:
                raise StreamClosedEarly(
                    f"stream ended with {len(self._buffer)} of {size} expected bytes"
                )
            self._buffer += data

    async def read(self) -> Any:
        """The next message; raises FrameError on a malformed or oversized frame."""
        await self._fill(_HEADER.size)
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME:
            raise FrameError(f"peer announced a {size}-byte frame, over the {MAX_FRAME}-byte limit")
        await self._fill(_HEADER.size + size)
        payload = bytes(self._buffer[_HEADER.size:_HEADER.size + size])
        del self._buffer[:_HEADER.size + size]
        try:
            return msgpack.unpackb(payload, raw=False, strict_map_key=True,
                                   max_bin_len=MAX_FRAME, max_array_len=10_000)
        except (ValueError, TypeError) as exc:  # msgpack's errors derive from ValueError
            raise FrameError(f"frame is not valid msgpack: {exc}") from None
