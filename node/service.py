"""The node process: one trio nursery owning RPC, block authoring and (later) network and workers."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from node.api import register_core_api
from node.chain import Chain, Imported
from node.genesis import load_chain_spec
from node.jsonfmt import header_json
from node.rpc import RpcServer, serve
from node.storage import ChainStore
from node.txpool import TxPool
from runtime.crypto import Keypair
from runtime.executive import CheckedExtrinsic

log = logging.getLogger("arena.node")


@dataclass
class NodeConfig:
    base_path: Path
    rpc_port: int = 9933
    rpc_host: str = "127.0.0.1"
    genesis_path: Path | None = None
    dev: bool = False
    author_key: Keypair | None = None
    name: str = "arena-node"
    extra: dict = field(default_factory=dict)


def _api_plugins() -> list:
    """RPC method groups defined next to the features they serve (arena_*, marketplace)."""
    found = []
    for module_name in ("node.api_arena", "node.api_market"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        found.append(module.register)
    return found


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ArenaNode:
    """Storage, chain, pool and RPC of one node."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.base_path.mkdir(parents=True, exist_ok=True)
        self.spec = load_chain_spec(config.genesis_path)
        self.store = ChainStore(str(config.base_path / "db"))
        self.chain = Chain(self.spec, self.store)
        self.pool = TxPool(self.chain.check_for_pool)
        self.rpc = RpcServer()
        register_core_api(self.rpc, self)
        for register in _api_plugins():
            register(self.rpc, self)
        self._head_channels: set = set()
        self._final_channels: set = set()
        self.rpc.subscription("chain_subscribeNewHeads", "chain_unsubscribeNewHeads", "chain_newHead",
                              self._attach(self._head_channels))
        self.rpc.subscription("chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads",
                              "chain_finalizedHead", self._attach(self._final_channels))
        self.chain.listeners.append(self._on_import)

    def _attach(self, registry: set):
        def attach(channel) -> callable:
            registry.add(channel)
            return lambda: registry.discard(channel)
        return attach

    # ------------------------------------------------------------ hooks used by RPC

    def submit_extrinsic(self, encoded: bytes) -> CheckedExtrinsic:
        return self.pool.submit(encoded)

    def peer_count(self) -> int:
        return 0

    def peer_info(self) -> list:
        return []

    def is_syncing(self) -> bool:
        return False

    def should_have_peers(self) -> bool:
        return not self.config.dev

    # ------------------------------------------------------------ events

    def _on_import(self, imported: Imported) -> None:
        header = imported.block.header
        log.info("imported #%d 0x%s xts=%d", header.number, header.hash.hex()[:16], len(imported.block.extrinsics))
        payload = header_json(header)
        for channel in list(self._head_channels):
            channel.send_nowait(payload)

    def notify_finalized(self, block_hash: bytes) -> None:
        header = self.store.get_header(block_hash)
        if header is not None:
            payload = header_json(header)
            for channel in list(self._final_channels):
                channel.send_nowait(payload)

    # ------------------------------------------------------------ tasks

    async def dev_author(self) -> None:
        """Dev mode: author one block per slot with the dev key, and finalize it immediately."""
        key = self.config.author_key or Keypair.from_dev_name("alice")
        slot_ms = self.spec.slot_duration_ms
        last_slot = self.chain.best.slot
        while True:
            slot = now_ms() // slot_ms
            if slot <= last_slot:
                await trio.sleep(((slot + 1) * slot_ms - now_ms()) / 1000)
                continue
            last_slot = slot
            block, _, rejected = self.chain.build_block(key, slot, slot * slot_ms, self.pool.ready())
            for encoded, exc in rejected:
                if exc.kind != "Future":
                    log.info("dropping extrinsic from pool: %s", exc)
            self.pool.revalidate()
            self.store.set_finalized(block.hash)
            self.notify_finalized(block.hash)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; everything started here is owned by this nursery."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, self.rpc.app(), self.config.rpc_host, self.config.rpc_port)
                log.info("rpc listening on http://%s:%d", self.config.rpc_host, self.config.rpc_port)
                if self.config.dev:
                    nursery.start_soon(self.dev_author)
                task_status.started()
        finally:
            self.store.close()
