"""The one small interface that both the embedded store and a Kubo daemon adapter implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, BinaryIO


class ContentStore(ABC):
    """Files in, CIDs out, bytes back: what workers and the node need from IPFS.

    CIDs are passed and returned as strings (CIDv0 'Qm...' for what this node adds).
    """

    @abstractmethod
    def add_file(self, fileobj: BinaryIO, pin: bool = True, only_hash: bool = False) -> tuple[str, int]:
        """Import a binary file object as a UnixFS file; return (CID, cumulative DAG size)."""

    @abstractmethod
    def cat(self, cid: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream a stored file's bytes from `offset`, at most `length` bytes (all when None)."""

    @abstractmethod
    def file_size(self, cid: str) -> int:
        """The byte length of the file `cid`."""

    @abstractmethod
    def pin(self, cid: str) -> None:
        """Pin the file's whole DAG so garbage collection keeps it."""

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Whether the file's whole DAG is available without fetching."""

    @abstractmethod
    def get_block(self, cid: str) -> bytes:
        """The raw bytes of one block."""

    @abstractmethod
    async def fetch(self, cid: str, timeout: float) -> None:
        """Make the whole DAG of `cid` available locally, within `timeout` seconds (trio)."""

    def gc(self) -> list[str]:
        """Remove every block no pin holds; the CIDs removed (Kubo's `repo gc`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot collect garbage")

    @abstractmethod
    def node_info(self) -> dict[str, Any]:
        """Identity of the serving node in Kubo's `id` shape (ID, Addresses, AgentVersion...)."""
