"""The one canonical codec: msgpack with binary types, strict decoding and size limits.

Consensus structures are fixed-order lists, never maps, so every value has exactly one encoding.
"""
from __future__ import annotations

import threading
from typing import Any

import msgpack

MAX_ENCODED_SIZE = 16 * 1024 * 1024  # no consensus object may exceed this

# One Packer per thread, reused: `msgpack.packb` builds a new Packer on every call, which costs
# four times the packing of a small value (a transfer encodes ~30 of them). Same options, so the
# same bytes; a Packer empties its buffer when packing raises, and per thread it is never shared.
_PACKER_OPTIONS: dict[str, Any] = {"use_bin_type": True, "strict_types": False}
_local = threading.local()


class CodecError(ValueError):
    """Bytes that are not a valid canonical encoding."""


def encode(value: Any) -> bytes:
    """Encode a value made of ints, bytes, str, bool, None and lists."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(**_PACKER_OPTIONS)
    try:
        return packer.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode value: {exc}") from exc


def decode(data: bytes, max_size: int = MAX_ENCODED_SIZE) -> Any:
    """Decode canonical bytes; maps, extension types and trailing bytes are rejected."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise CodecError(f"encoded value is {len(data)} bytes, limit is {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_map_len=0,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise CodecError("trailing bytes after encoded value") from exc
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError) as exc:
        raise CodecError(f"malformed encoding: {exc}") from exc
    if encode(value) != bytes(data):
        raise CodecError("non-canonical encoding")
    return value
