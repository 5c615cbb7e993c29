"""ContentStore backed by a Kubo daemon through ipfshttpclient (`arena node --ipfs-api MULTIADDR`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import ipfshttpclient.client
import ipfshttpclient.exceptions
import trio

from p2p.content.abc import ContentStore
from p2p.content.errors import ContentError, ContentNotFound, FetchTimeout

DEFAULT_TIMEOUT = 120.0


class KuboError(ContentError):
    """The Kubo daemon answered with an error or could not be reached."""


class KuboContentStore(ContentStore):
    """Forward every call to a Kubo RPC endpoint (any version; no version check is done)."""

    def __init__(self, api_multiaddr: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """`api_multiaddr` like `/ip4/127.0.0.1/tcp/5001/http`; it must be a loopback address here."""
        # Client() directly: ipfshttpclient.connect() refuses Kubo versions after 0.7.
        self.client = ipfshttpclient.client.Client(api_multiaddr, timeout=timeout)
        self.api = api_multiaddr

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ipfshttpclient.exceptions.ErrorResponse as exc:
            raise KuboError(f"Kubo at {self.api} refused {what}: {exc}") from None
        except ipfshttpclient.exceptions.Error as exc:
            raise KuboError(f"Kubo at {self.api} failed during {what}: {exc}") from None

    def add_file(self, fileobj: BinaryIO, pin: bool = True, only_hash: bool = False) -> tuple[str, int]:
        """`ipfs add` with Kubo's defaults (CIDv0, 256 KiB chunks, balanced layout)."""
        reply = self._call("add", self.client.add, fileobj, pin=pin, only_hash=only_hash)
        return reply["Hash"], int(reply["Size"])

    def cat(self, cid: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream `ipfs cat` output chunk by chunk."""
        return iter(self._call("cat", self.client.cat, cid, offset=offset, length=length, stream=True))

    def file_size(self, cid: str) -> int:
        """The file size that `ipfs files stat /ipfs/CID` reports."""
        return int(self._call("files stat", self.client.files.stat, f"/ipfs/{cid}")["Size"])

    def pin(self, cid: str) -> None:
        """`ipfs pin add` (recursive)."""
        self._call("pin add", self.client.pin.add, cid)

    def has(self, cid: str) -> bool:
        """Whether Kubo holds the whole DAG locally (`files stat --with-local`, offline)."""
        stat = self._call("files stat", self.client.files.stat, f"/ipfs/{cid}",
                          opts={"with-local": "true"}, offline=True)
        return bool(stat.get("Local"))

    def get_block(self, cid: str) -> bytes:
        """`ipfs block get`."""
        return self._call("block get", self.client.block.get, cid)

    async def fetch(self, cid: str, timeout: float) -> None:
        """Have Kubo pull the whole DAG; done by pinning it, Kubo's way of fetching a full DAG."""
        with trio.move_on_after(timeout) as scope:
            try:
                await trio.to_thread.run_sync(
                    lambda: self.client.pin.add(cid, timeout=timeout),
                    abandon_on_cancel=True,  # type: ignore[call-arg]  # trio-typing stubs predate it
                )
            except ipfshttpclient.exceptions.TimeoutError:
                raise FetchTimeout(f"Kubo at {self.api} did not fetch {cid} within {timeout:g}s") from None
            except ipfshttpclient.exceptions.ErrorResponse as exc:
                raise ContentNotFound(f"Kubo at {self.api} could not fetch {cid}: {exc}") from None
        if scope.cancelled_caught:
            raise FetchTimeout(f"Kubo at {self.api} did not fetch {cid} within {timeout:g}s")

    def gc(self) -> list[str]:
        """Kubo's own `ipfs repo gc`."""
        removed = self._call("repo gc", self.client.repo.gc)
        return [item["Key"]["/"] for item in removed if isinstance(item, dict) and "Key" in item]

    def node_info(self) -> dict[str, Any]:
        """Kubo's own `ipfs id`."""
        return dict(self._call("id", self.client.id))
