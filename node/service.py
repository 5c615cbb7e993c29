"""The node process and its composition root.

`ArenaNode` builds the parts — storage, chain, transaction pool, network, consensus, content store,
RPC — and hands each only the narrow handles it needs (node/views.py): the RPC namespaces a chain
view, a pool handle and a network view; consensus the chain, the network, the pool handle and a
finalized-block listener. No part calls back into the node. `run` owns one trio nursery with the
RPC server, the network, consensus (or the dev author) and the off-chain workers as children;
cancelling it shuts them all down.
"""
from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from consensus.slots import now_ms
from node import api_arena, api_dashboard, api_market, api_substrate
from node.api import register_core_api
from node.chain import Chain, Imported
from node.consensus_service import ConsensusService
from node.dashboard import ui_routes
from node.genesis import load_chain_spec
from node.http_guard import LOOPBACK_ORIGINS, HttpLimits
from node.ipfs_api import ipfs_routes
from node.jsonfmt import header_json
from node.metrics import NodeMetrics
from node.offchain.supervisor import supervise
from node.rpc import RpcServer, serve
from node.storage import ChainStore
from node.txpool import TxPool
from node.views import NetworkView, NoNetwork, PoolHandle
from p2p import NetworkConfig, NetworkService
from p2p.content.abc import ContentStore
from p2p.content.bitswap import Exchange
from p2p.content.blockstore import BlockStore
from p2p.content.kubo import KuboContentStore
from p2p.content.store import EmbeddedContentStore
from runtime.crypto import Keypair

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
    p2p_port: int = 0
    bootnodes: tuple[str, ...] = ()
    test_equivocate: bool = False
    ipfs_api: str | None = None  # multiaddr of an external Kubo; None = the embedded store
    prometheus_port: int = 0  # 0 = no metrics endpoint
    # off-chain worker roles run as supervised child processes (node/offchain/supervisor.py)
    offchain: tuple[str, ...] = ()
    offchain_key: str = ""  # the --key spec the workers sign with (a spec string, not a Keypair)
    # addresses beyond one machine (docs/deployment.md); the defaults keep everything on loopback
    listen_addrs: tuple[str, ...] = ()  # libp2p multiaddrs; empty = /ip4/127.0.0.1/tcp/{p2p_port}
    public_addrs: tuple[str, ...] = ()  # what peers are told to dial
    allowed_cidrs: tuple[str, ...] = ("127.0.0.1/32",)  # the connection gate
    prometheus_host: str = "127.0.0.1"
    rpc_refuse_unsafe: bool = False  # --rpc-external: refuse methods that sign with node keys
    rpc_cors: tuple[str, ...] = LOOPBACK_ORIGINS  # browser origins allowed on the RPC port (--rpc-cors)
    rpc_max_connections: int = HttpLimits.max_connections
    ipfs_quota: int | None = None  # bytes of content blocks (--ipfs-quota); None = bounded by free disk only


# Python's full (generation 2) collection scans every tracked object. On a node under load (a pool
# of 12,000 extrinsics, decode and state caches) it held the event loop 120-170 ms several times
# per 15 s, collecting next to nothing (reference counting frees almost everything): that was
# most of `system_health`'s p99 (issue 17). The node process runs them on a schedule instead.
FULL_COLLECTION_EVERY_S = 60.0


def schedule_full_collections() -> None:
    """For a node process: freeze what startup allocated (never scanned again) and stop automatic
    full collections; `collect_on_schedule` runs them. Young generations are collected as usual."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000)


async def collect_on_schedule(every_s: float = FULL_COLLECTION_EVERY_S) -> None:
    """A full collection every `every_s`: cyclic garbage stays bounded by a minute's worth."""
    while True:
        await trio.sleep(every_s)
        started = time.perf_counter()
        found = gc.collect()
        log.debug("full collection: %d objects in %.0f ms", found, (time.perf_counter() - started) * 1000)


class ArenaNode:
    """The composition root: storage, chain, pool, network, consensus and RPC of one node, wired once."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.base_path.mkdir(parents=True, exist_ok=True)
        self.spec = load_chain_spec(config.genesis_path)
        self.store = ChainStore(str(config.base_path / "db"))
        self.chain = Chain(self.spec, self.store)
        self.metrics = NodeMetrics()
        self.network = None if config.dev else self._make_network()
        self._gossip_send, self._gossip_receive = trio.open_memory_channel[bytes](20_000)
        self.txpool = TxPool(self.chain.check_for_pool)
        self.pool = PoolHandle(self.txpool, self.chain, gossip=None if self.network is None else self._queue_gossip)
        self.consensus = None if self.network is None else ConsensusService(
            self.chain, self.network, self.pool, self.notify_finalized,
            key=config.author_key, equivocate=config.test_equivocate)
        self.peers: NetworkView = NoNetwork() if self.consensus is None else self.consensus
        if self.network is not None:
            # admission control (node/txpool.py): the unfinalized backlog, in blocks' worth of what
            # peers import in time (a dev node authors alone: no bound but the pool's own)
            self.txpool.unfinalized = self.pool.unfinalized_extrinsics
            self.txpool.block_capacity = self.chain.block_capacity
        self.content: ContentStore = self._make_content_store()
        self._head_channels: set = set()
        self._final_channels: set = set()
        self.rpc = self._make_rpc()
        self.chain.listeners.append(self.pool.on_import)
        self.chain.listeners.append(self._on_import)

    def _make_network(self) -> NetworkService:
        bootnodes = tuple(self.config.bootnodes) or tuple(self.spec.config.get("bootnodes", []))
        return NetworkService(NetworkConfig(
            key_path=self.config.base_path / "node.key", genesis_hash=self.spec.genesis_hash,
            listen_port=self.config.p2p_port, bootnodes=bootnodes, allowed_cidrs=self.config.allowed_cidrs,
            listen_addrs=self.config.listen_addrs, public_addrs=self.config.public_addrs,
        ))

    def _make_content_store(self):
        """The embedded IPFS store (bitswap on the node's libp2p host) or a Kubo daemon's API."""
        if self.config.ipfs_api:
            return KuboContentStore(self.config.ipfs_api)
        blocks = BlockStore(self.store.content_db(), quota_bytes=self.config.ipfs_quota, disk_path=self.config.base_path)
        content = EmbeddedContentStore(blocks)
        if self.network is not None:
            network = self.network
            content.attach_exchange(Exchange(network.host, blocks, penalize=network.penalize,
                                             peers=network.host.get_connected_peers))
        return content

    def _make_rpc(self) -> RpcServer:
        """The RPC server with every namespace, each given only the handles it reads."""
        config = self.config
        rpc = RpcServer(HttpLimits(cors=config.rpc_cors, max_connections=config.rpc_max_connections,
                                   check_host=config.rpc_host in ("127.0.0.1", "::1", "localhost")))
        rpc.refuse_unsafe = config.rpc_refuse_unsafe
        register_core_api(rpc, self.chain, self.pool, self.peers)
        # RPC method groups defined next to the features they serve
        api_arena.register(rpc, self.chain)
        api_market.register(rpc, self.chain)
        api_dashboard.register(rpc, self)  # a NodeView: chain, content store, settings
        api_substrate.register(rpc, self.chain, self.pool)
        rpc.subscription("chain_subscribeNewHeads", "chain_unsubscribeNewHeads", "chain_newHead",
                         self._attach(self._head_channels))
        rpc.subscription("chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads",
                         "chain_finalizedHead", self._attach(self._final_channels))
        rpc.extra_routes.extend(ipfs_routes(self.content))
        rpc.extra_routes.extend(ui_routes())  # the web dashboard under /ui
        return rpc

    def _attach(self, registry: set):
        def attach(channel) -> Callable[[], None]:
            registry.add(channel)
            return lambda: registry.discard(channel)
        return attach

    # ------------------------------------------------------------ gossip of local extrinsics

    def _queue_gossip(self, encoded: bytes) -> None:
        """Queue a locally submitted extrinsic for gossip (batched by the network)."""
        try:
            self._gossip_send.send_nowait(encoded)
        except trio.WouldBlock:
            log.warning("gossip queue full; extrinsic stays in the local pool only")

    async def _forward_gossip(self, network: NetworkService) -> None:
        async for encoded in self._gossip_receive:
            try:
                await network.submit_extrinsic(encoded)
            except Exception as exc:  # noqa: BLE001 - gossip is best effort; the pool still holds it
                log.debug("extrinsic gossip failed: %s", exc)

    # ------------------------------------------------------------ events

    def _on_import(self, imported: Imported) -> None:
        header = imported.block.header
        self.metrics.blocks.inc()
        self.metrics.extrinsics.inc(len(imported.block.extrinsics))
        self.metrics.best.set(header.number)
        self.metrics.pool.set(len(self.pool))
        self.metrics.peers.set(self.peers.peer_count())
        # a block slots old is a catch-up import: sync logs its ranges, one line each
        level = logging.INFO if now_ms() - header.timestamp_ms < 4 * self.spec.slot_duration_ms else logging.DEBUG
        log.log(level, "imported #%d 0x%s xts=%d", header.number, header.hash.hex()[:16], len(imported.block.extrinsics))
        if self._head_channels:
            payload = header_json(header)
            for channel in list(self._head_channels):
                channel.send_nowait(payload)

    def notify_finalized(self, block_hash: bytes) -> None:
        """The finalized-block listener: metrics and the finalized-heads subscription."""
        header = self.store.get_header(block_hash)
        if header is not None:
            self.metrics.finalized.set(header.number)
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

    async def _supervise_offchain(self) -> None:
        """Attached off-chain workers: child processes that use this node's public RPC only."""
        host = self.config.rpc_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
        rpc_url = f"http://{host}:{self.config.rpc_port}"
        await supervise(self.config.offchain, self.config.offchain_key, rpc_url, self.config.base_path / "offchain")

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; everything started here is owned by this nursery."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve, self.rpc.app(), self.config.rpc_host, self.config.rpc_port, self.rpc.limits)
                log.info("rpc listening on http://%s:%d", self.config.rpc_host, self.config.rpc_port)
                if self.config.prometheus_port:
                    self.metrics.serve(self.config.prometheus_port, self.config.prometheus_host)
                    log.info("metrics on http://%s:%d/metrics", self.config.prometheus_host, self.config.prometheus_port)
                if self.network is None or self.consensus is None:
                    nursery.start_soon(self.dev_author)
                else:
                    await nursery.start(self.network.run)
                    await nursery.start(self.consensus.run)
                    # admission control (node/txpool.py): event-loop lag and finality lag
                    nursery.start_soon(self.txpool.watch_loop_lag,
                                       lambda: self.chain.best.number - self.chain.finalized.number)
                    nursery.start_soon(self._forward_gossip, self.network)
                    log.info("p2p listening on %s", self.network.listen_multiaddr)
                if self.config.offchain:
                    nursery.start_soon(self._supervise_offchain)
                task_status.started()
        finally:
            self.store.close()
