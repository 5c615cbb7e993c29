"""Prometheus metrics on their own port (127.0.0.1), separate from RPC."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class NodeMetrics:
    """Gauges and counters a node updates as blocks arrive; served by prometheus_client."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.best = Gauge("arena_best_block", "Best block number", registry=self.registry)
        self.finalized = Gauge("arena_finalized_block", "Finalized block number", registry=self.registry)
        self.peers = Gauge("arena_peers", "Connected peers", registry=self.registry)
        self.pool = Gauge("arena_txpool_size", "Extrinsics in the pool", registry=self.registry)
        self.blocks = Counter("arena_blocks_imported", "Blocks imported", registry=self.registry)
        self.extrinsics = Counter("arena_extrinsics_imported", "Extrinsics in imported blocks", registry=self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
