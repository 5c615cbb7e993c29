"""Model folders on IPFS (a base model, a LoRA adapter): read with per-file caps checked from `ls` first.

Used by workers (through `Content.fetch_folder`, with retries) and by the audit (a bare
ipfshttpclient client).  A folder must be flat; every file name must be one the caller allows,
and every size is checked against its cap from the directory listing before any byte is read.
"""
from __future__ import annotations

from typing import Any

from node.offchain.ml.llm import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MAX_ADAPTER_CONFIG_BYTES
from node.offchain.ml.llm_base import BASE_FILES

__all__ = ["BASE_FILES", "FolderRejected", "adapter_limits", "base_limits", "read_folder"]


class FolderRejected(Exception):
    """A folder holds an unexpected entry, or a file over its cap (nothing of it was downloaded)."""


def base_limits(spec: dict) -> tuple[dict[str, int], int]:
    """Per-file caps and the total cap of the spec's base model folder."""
    total = int(spec["limits"]["max_base_bytes"])
    return {name: (cap if cap is not None else total) for name, cap in BASE_FILES.items()}, total


def adapter_limits(spec: dict) -> tuple[dict[str, int], int]:
    """Per-file caps and the total cap of an adapter folder for `spec`."""
    weights = int(spec["limits"]["max_adapter_bytes"])
    return {ADAPTER_CONFIG: MAX_ADAPTER_CONFIG_BYTES, ADAPTER_WEIGHTS: weights}, weights + MAX_ADAPTER_CONFIG_BYTES


def read_folder(client: Any, cid: str, limits: dict[str, int], max_total: int, what: str) -> dict[str, bytes]:
    """The files of folder `cid` (module docstring); `FolderRejected` before downloading a bad one."""
    listing = client.ls(cid)
    objects = listing.get("Objects") or [{}]
    links = objects[0].get("Links") or []
    if not links:
        raise FolderRejected(f"{what} {cid} is not a folder (or is empty)")
    total = 0
    for link in links:
        name, size = link.get("Name"), int(link.get("Size", 0))
        if link.get("Type") not in (2, "file") or name not in limits:
            raise FolderRejected(f"{what} {cid}: unexpected entry {name!r:.80} (allowed: {sorted(limits)})")
        if size > limits[name]:
            raise FolderRejected(f"{what} {cid}: {name} is {size} bytes, over the limit of {limits[name]}")
        total += size
    if total > max_total:
        raise FolderRejected(f"{what} {cid} holds {total} bytes, over the limit of {max_total}")
    files = {}
    for link in links:
        name = link["Name"]
        data = bytes(client.cat(f"{cid}/{name}", length=limits[name] + 1))
        if len(data) > limits[name]:
            raise FolderRejected(f"{what} {cid}: {name} is over the limit of {limits[name]} bytes")
        files[name] = data
    return files
