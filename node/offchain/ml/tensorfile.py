"""Defensive reading and writing of safetensors files (models and data splits).

Untrusted bytes are checked by hand before the (Rust, non-executing) safetensors parser sees
them: size limit first, then the JSON header, the exact tensor table, and the data layout.
Pickle and zip (torch.save) files are recognised only to give a clear reason: they are
never unpickled.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import safetensors
import safetensors.torch
import torch

from node.offchain.ml.errors import MLError

MAX_HEADER_BYTES = 1 << 20
DTYPE_SIZES = {"F64": 8, "F32": 4, "I64": 8, "I32": 4, "U8": 1, "BF16": 2, "F16": 2}  # 16-bit: HF weights


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header."""

    dtype: str
    shape: tuple[int, ...]


def _sniff(data: bytes) -> str:
    if data[:1] == b"\x80" or data[:2] in (b"(d", b"(l", b"}q", b"]q", b"cc"):
        return " (it looks like a Python pickle; pickles are never loaded)"
    if data[:4] == b"PK\x03\x04":
        return " (it looks like a zip archive such as torch.save output; only safetensors is accepted)"
    return ""


def parse_header(
    data: bytes, *, max_bytes: int, what: str, error: type[MLError]
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Validate the safetensors layout of `data` and return its tensor table and metadata.

    Raises `error` (a `ModelRejected` or `DataRejected`) with the reason.
    """
    if len(data) > max_bytes:
        raise error(f"{what} is {len(data)} bytes, over the limit of {max_bytes} bytes")
    if len(data) < 8:
        raise error(f"{what} is truncated: {len(data)} bytes, not even a safetensors header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(data):
        raise error(
            f"{what} is not a valid safetensors file: header length {header_len} does not fit "
            f"in {len(data)} bytes{_sniff(data)}"
        )
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} has an unreadable safetensors header: {exc}{_sniff(data)}") from None
    if not isinstance(header, dict):
        raise error(f"{what} safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise error(f"{what} safetensors metadata must map strings to strings")
    table: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise error(f"{what}: tensor {name!r} has a malformed header entry")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise error(f"{what}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d for d in shape):
            raise error(f"{what}: tensor {name!r} has a malformed shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise error(f"{what}: tensor {name!r} has malformed data offsets")
        begin, end = offsets
        if end - begin != math.prod(shape) * DTYPE_SIZES[dtype] or begin < 0:
            raise error(f"{what}: tensor {name!r} byte range does not match its shape and dtype")
        table[name] = TensorInfo(dtype, tuple(shape))
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise error(f"{what}: tensor {name!r} data overlaps or leaves a gap (offset {begin})")
        position = end
    if 8 + header_len + position != len(data):
        raise error(
            f"{what} is truncated or padded: the header describes {8 + header_len + position} bytes, "
            f"the file has {len(data)}"
        )
    return table, metadata


def load_tensors(data: bytes, *, what: str, error: type[MLError]) -> dict[str, torch.Tensor]:
    """Parse an already validated safetensors buffer into CPU tensors."""
    try:
        return safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as exc:
        raise error(f"{what} could not be parsed as safetensors: {exc}") from None


_TORCH_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
}


def dump_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialize CPU tensors to safetensors bytes, byte-for-byte deterministic.

    Written here rather than with `safetensors.torch.save`, whose header key order varies
    between runs: the header is compact JSON with sorted keys, space-padded to 8 bytes,
    tensors laid out in name order, little-endian.
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs: list[bytes] = []
    offset = 0
    for name, tensor in sorted(tensors.items()):
        tensor = tensor.detach().to("cpu").contiguous()
        blob = tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _TORCH_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs)
