"""IPFS access for workers: add bytes, fetch bytes with a size limit checked before downloading.

The node serves the Kubo RPC subset on its RPC port (docs/content.md); workers use
`ipfshttpclient` against it (`WorkerContext.ipfs()`). Transport failures are retried with
backoff like RPC reads; a file over its limit raises `ContentTooLarge` without being read.
"""
from __future__ import annotations

import logging
from typing import Any

from node.offchain.chain_client import BACKOFF_MAX_S, BACKOFF_START_S, WorkerStopped
from node.offchain.context import WorkerContext

MAX_ATTEMPTS = 6


class ContentError(Exception):
    """Content could not be added or fetched."""


class ContentTooLarge(ContentError):
    """A file is larger than the caller accepts (checked with files/stat before downloading)."""


class Content:
    """Add and fetch files through the node's IPFS API."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._client: Any = None
        self.log = logging.getLogger(f"arena.worker.{ctx.role}.{ctx.key.address[:8]}")

    def _ipfs(self) -> Any:
        if self._client is None:
            self._client = self.ctx.ipfs()
        return self._client

    def _retry(self, what: str, action: Any) -> Any:
        import ipfshttpclient.exceptions as ipfs_errors

        delay = BACKOFF_START_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return action(self._ipfs())
            except (ipfs_errors.ConnectionError, ipfs_errors.TimeoutError, ipfs_errors.ProtocolError) as exc:
                self.log.warning("event=ipfs_unreachable what=%s attempt=%d retry_in=%.1fs error=%r",
                            what, attempt, delay, str(exc)[:120])
                self._client = None
            except ipfs_errors.ErrorResponse as exc:
                if attempt >= 3:
                    raise ContentError(f"{what}: the IPFS API refused: {exc}") from exc
                self.log.warning("event=ipfs_error what=%s attempt=%d error=%r", what, attempt, str(exc)[:160])
            if self.ctx.stop.wait(delay):
                raise WorkerStopped()
            delay = min(BACKOFF_MAX_S, delay * 2)
        raise ContentError(f"{what}: the IPFS API at {self.ctx.ipfs_api} did not answer after {MAX_ATTEMPTS} attempts")

    def add(self, data: bytes, what: str = "file") -> str:
        """Add `data`; returns its CID (CIDv0, as `ipfs add` gives)."""
        cid = self._retry(f"add {what}", lambda c: c.add_bytes(data))
        self.log.info("event=ipfs_added what=%s cid=%s bytes=%d", what, cid, len(data))
        return str(cid)

    def add_folder(self, files: dict[str, bytes], what: str = "folder") -> str:
        """Add a flat folder (file name → bytes) as a UnixFS directory; returns the directory's CID."""
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(dir=self.ctx.data_dir) as tmp:
            root = Path(tmp) / "folder"
            root.mkdir()
            for name, data in files.items():
                if "/" in name or name in ("", ".", ".."):
                    raise ContentError(f"{what}: bad file name {name!r}")
                (root / name).write_bytes(data)
            added = self._retry(f"add {what}", lambda c: c.add(str(root), recursive=True))
        entries = added if isinstance(added, list) else [added]
        cid = str(next(e["Hash"] for e in entries if e["Name"] == "folder"))
        self.log.info("event=ipfs_added what=%s cid=%s files=%d bytes=%d", what, cid, len(files),
                      sum(len(v) for v in files.values()))
        return cid

    def fetch_folder(self, cid: str, limits: dict[str, int], max_total: int, what: str = "folder") -> dict[str, bytes]:
        """The files of a flat folder (`node.offchain.folders.read_folder`: names and caps checked first).

        Raises `ContentTooLarge` for an unexpected entry or a file over its cap (never downloaded).
        """
        from node.offchain.folders import FolderRejected, read_folder

        try:
            return self._retry(f"get {what} {cid}", lambda c: read_folder(c, cid, limits, max_total, what))
        except FolderRejected as exc:
            raise ContentTooLarge(str(exc)) from None

    def size(self, cid: str) -> int:
        stat = self._retry(f"stat {cid}", lambda c: c.files.stat(f"/ipfs/{cid}"))
        return int(stat["Size"])

    def fetch(self, cid: str, max_bytes: int, what: str = "file") -> bytes:
        """The bytes of `cid`; `ContentTooLarge` when over `max_bytes` (never downloaded whole)."""
        size = self.size(cid)
        if size > max_bytes:
            raise ContentTooLarge(f"{what} {cid} is {size} bytes, over the limit of {max_bytes}")
        data = self._retry(f"cat {cid}", lambda c: c.cat(cid, length=max_bytes + 1))
        if len(data) > max_bytes:
            raise ContentTooLarge(f"{what} {cid} is over the limit of {max_bytes} bytes")
        return bytes(data)
