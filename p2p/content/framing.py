"""Length-prefixed frames over a libp2p stream.

Each frame is a 4-byte big-endian length followed by that many payload bytes. Frames are
capped (`MAX_FRAME`) because py-libp2p breaks connections on very large single writes.
"""

from __future__ import annotations

import struct
from typing import Any

MAX_FRAME = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A frame that is oversized, truncated or malformed: a protocol violation."""


class StreamClosedEarly(FrameError, EOFError):
    """The remote closed the stream before a complete frame arrived."""


def encode_frame(*parts: bytes) -> bytes:
    """One frame whose payload is the concatenation of `parts` (a single copy)."""
    size = sum(len(p) for p in parts)
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    return b"".join((_HEADER.pack(size), *parts))


class FrameReader:
    """Reads whole frames from a stream, reading large chunks and slicing frames out of them."""

    def __init__(self, stream: Any, read_size: int = 1024 * 1024) -> None:
        self._stream = stream
        self._read_size = read_size
        self._buffer = bytearray()
        self._pos = 0

    async def _fill(self, size: int) -> None:
        """Make at least `size` unread bytes available."""
        while len(self._buffer) - self._pos < size:
            if self._pos:
                del self._buffer[:self._pos]
                self._pos = 0
            try:
                data = await self._stream.read(max(self._read_size, size - len(self._buffer)))
            except EOFError:
                data = b""
            if not data:
                raise StreamClosedEarly(f"stream ended with {len(self._buffer)} of {size} expected bytes")
            self._buffer += data

    async def read(self) -> bytes:
        """The next frame's payload; raises FrameError if the peer announces an oversized frame."""
        await self._fill(_HEADER.size)
        (size,) = _HEADER.unpack_from(self._buffer, self._pos)
        if size > MAX_FRAME:
            raise FrameError(f"peer announced a {size}-byte frame, over the {MAX_FRAME}-byte limit")
        await self._fill(_HEADER.size + size)
        start = self._pos + _HEADER.size
        self._pos = start + size
        return bytes(self._buffer[start:self._pos])
