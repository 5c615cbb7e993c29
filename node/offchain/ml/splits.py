"""Serialized data splits: safetensors files with a fixed tensor table per layout.

* ``xy`` layout (digits, tabular): ``x`` float32 ``[N, features]``, ``y`` int64 ``[N]``
  (class index) or float32 ``[N]`` (regression target).
* ``tokens`` layout (language models): ``tokens`` int64 ``[N]``; example *i* predicts
  ``tokens[i + context]`` from ``tokens[i : i + context]``.

Metadata: ``arena_data`` (format), ``kind``, ``split``.  Splits are checked as carefully
as models: the held-out split reaches validators from the planner, the training split
reaches trainers from IPFS.
"""

from __future__ import annotations

from typing import Any

import torch

from node.offchain.ml.errors import DataRejected
from node.offchain.ml.tensorfile import TensorInfo, dump_tensors, load_tensors, parse_header

DATA_FORMAT = "1"


def _metadata(kind: str, split: str) -> dict[str, str]:
    return {"arena_data": DATA_FORMAT, "kind": kind, "split": split}


def encode_xy(kind: str, split: str, x: torch.Tensor, y: torch.Tensor) -> bytes:
    """Serialize an ``xy`` split (x cast to float32; y int64 or float32)."""
    y = y.to(torch.int64) if not y.is_floating_point() else y.to(torch.float32)
    return dump_tensors({"x": x.to(torch.float32), "y": y}, _metadata(kind, split))


def encode_tokens(kind: str, split: str, tokens: torch.Tensor) -> bytes:
    """Serialize a ``tokens`` split."""
    return dump_tensors({"tokens": tokens.to(torch.int64)}, _metadata(kind, split))


def _read(
    spec: dict[str, Any], data: bytes, split: str, names: set[str]
) -> tuple[dict[str, TensorInfo], str]:
    what = f"{split} data"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataRejected(f"{what} must be bytes, got {type(data).__name__}")
    table, metadata = parse_header(
        bytes(data), max_bytes=spec["limits"]["max_data_bytes"], what=what, error=DataRejected
    )
    if set(table) != names:
        raise DataRejected(f"{what} must hold exactly the tensors {sorted(names)}, found {sorted(table)}")
    if metadata.get("kind", spec["kind"]) != spec["kind"]:
        raise DataRejected(f"{what} was prepared for kind {metadata.get('kind')!r}, not {spec['kind']!r}")
    return table, what


def decode_xy(
    spec: dict[str, Any], data: bytes, split: str, *, features: int, classes: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[N, features]`` and targets of an ``xy`` split; `classes=None` means regression."""
    table, what = _read(spec, data, split, {"x", "y"})
    rows = table["y"].shape[0] if len(table["y"].shape) == 1 else -1
    if table["x"].dtype != "F32" or table["x"].shape != (rows, features) or rows < 1:
        raise DataRejected(f"{what}: x must be F32 [N, {features}] with N >= 1 matching y, got {table['x']}")
    wanted = "I64" if classes is not None else "F32"
    if table["y"].dtype != wanted:
        raise DataRejected(f"{what}: y must be {wanted}, got {table['y'].dtype}")
    tensors = load_tensors(bytes(data), what=what, error=DataRejected)
    x, y = tensors["x"], tensors["y"]
    if not bool(torch.isfinite(x).all()) or (classes is None and not bool(torch.isfinite(y).all())):
        raise DataRejected(f"{what} contains NaN or infinite values")
    if classes is not None and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise DataRejected(
            f"{what}: labels must lie in [0, {classes}), found [{int(y.min())}, {int(y.max())}]"
        )
    return x, y


def decode_tokens(
    spec: dict[str, Any], data: bytes, split: str, *, vocab_size: int, context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Context windows ``[N - context, context]`` (a view) and next-token targets."""
    table, what = _read(spec, data, split, {"tokens"})
    info = table["tokens"]
    if info.dtype != "I64" or len(info.shape) != 1 or info.shape[0] <= context:
        raise DataRejected(f"{what}: tokens must be I64 [N] with N > context={context}, got {info}")
    tokens = load_tensors(bytes(data), what=what, error=DataRejected)["tokens"]
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size:
        raise DataRejected(f"{what}: token ids must lie in [0, {vocab_size})")
    windows = tokens[:-1].unfold(0, context, 1)
    return windows, tokens[context:]
