"""The embedded content store: UnixFS over the LevelDB BlockStore, fetched by bitswap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from p2p.content.abc import ContentStore
from p2p.content.blockstore import BlockStore
from p2p.content.cid import Cid, parse_cid, parse_path
from p2p.content.errors import ContentNotFound
from p2p.content.tree import resolve
from p2p.content.unixfs import FileImporter, file_size, iter_file

if TYPE_CHECKING:
    from p2p.content.bitswap import Exchange

AGENT_VERSION = "arena/0.1.0 (embedded content store)"
READ_SIZE = 1 << 20


class EmbeddedContentStore(ContentStore):
    """UnixFS files in the node's LevelDB, with blocks exchanged over the node's libp2p host."""

    def __init__(self, blocks: BlockStore, exchange: Exchange | None = None) -> None:
        """`blocks` wraps the node's DB (`BlockStore(db.prefixed_db(b"c"))`); `exchange` is optional."""
        self.blocks = blocks
        self.exchange = exchange

    def attach_exchange(self, exchange: Exchange) -> None:
        """Let `fetch` pull missing content from peers (set once the libp2p host exists)."""
        self.exchange = exchange

    def add_file(self, fileobj: BinaryIO, pin: bool = True, only_hash: bool = False) -> tuple[str, int]:
        """Import `fileobj` as Kubo would; stored and claimed complete only if it reads to the end."""
        if only_hash:
            importer = FileImporter()
            _pump(fileobj, importer)
            result = importer.finish()
            return str(result.cid), result.size
        with self.blocks.writer() as writer:
            importer = FileImporter(lambda cid, block: writer.put(cid, block, verify=False))
            _pump(fileobj, importer)
            result = importer.finish()
            writer.commit(result.cid, pin=pin)
        return str(result.cid), result.size

    def cat(self, cid: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream a locally stored file (call `fetch` first for remote content)."""
        root = parse_path(cid)[0]
        if not self.blocks.is_complete(root) and not self.blocks.has_block(root):
            raise ContentNotFound(f"{cid} is not stored on this node; fetch it first")
        return iter_file(self.blocks.get, resolve(self.blocks, cid), offset, length)

    def file_size(self, cid: str) -> int:
        """The file length recorded in the root block (`cid` may be a path: CID/dir/file)."""
        return file_size(self.blocks.get, resolve(self.blocks, cid))

    def pin(self, cid: str) -> None:
        """Pin a complete local DAG (raises BlockNotFound if a block is missing)."""
        self.blocks.pin(parse_cid(cid))

    def has(self, cid: str) -> bool:
        """Whether the DAG is recorded as completely stored (for a path: its root's DAG)."""
        return self.blocks.is_complete(parse_path(cid)[0])

    def get_block(self, cid: str) -> bytes:
        """One stored block's bytes (raises BlockNotFound)."""
        return self.blocks.get(parse_cid(cid))

    async def fetch(self, cid: str, timeout: float) -> None:
        """Ensure the whole DAG is stored: local check first, then bitswap from peers.

        For a path (CID/dir/file) the DAG of its root CID is fetched."""
        root = parse_path(cid)[0]
        if self.blocks.is_complete(root):
            return
        if self.exchange is None:
            if self.blocks.has_block(root) and not self.blocks.missing_blocks(root):
                self.blocks.mark_complete(root)
                return
            raise ContentNotFound(f"{cid} is not stored on this node and no block exchange is attached")
        await self.exchange.fetch(root, timeout)

    def gc(self) -> list[str]:
        """Remove every block that no pin (nor a running import or fetch) holds; their CIDv0s."""
        return [str(Cid.v0(key)) for key in self.blocks.gc().removed]

    def node_info(self) -> dict[str, Any]:
        """Kubo-style identity: the libp2p peer id and listen addresses when a host is attached."""
        info: dict[str, Any] = {"ID": "", "PublicKey": "", "Addresses": [],
                                "AgentVersion": AGENT_VERSION, "ProtocolVersion": "ipfs/0.1.0",
                                "Protocols": []}
        if self.exchange is not None:
            host = self.exchange.host
            peer_id = str(host.get_id())
            info["ID"] = peer_id
            info["Addresses"] = [f"{addr}/p2p/{peer_id}" if "/p2p/" not in str(addr) else str(addr)
                                 for addr in host.get_addrs()]
            info["Protocols"] = [self.exchange.protocol_id]
        return info


def _pump(fileobj: BinaryIO, importer: FileImporter) -> None:
    while True:
        data = fileobj.read(READ_SIZE)
        if not data:
            return
        importer.write(data)
