"""Network configuration: one frozen dataclass for the node's p2p layer and its limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import multiaddr


class NetworkConfigError(ValueError):
    """A network setting is invalid; the message says which one and how to fix it."""


@dataclass(frozen=True)
class NetworkLimits:
    """Every bound the networking layer enforces. Defaults suit a local network."""

    # Gossip payload limits per topic (bytes). A pubsub RPC is capped at 1 MiB by py-libp2p,
    # and the RPC also carries the signature, key, topic and a signed peer record.
    max_block_message: int = 1_000_000
    max_extrinsics_message: int = 512 * 1024
    max_vote_message: int = 64 * 1024
    # Extrinsic batches: decoded limits on the receiving side.
    max_batch_items: int = 4096
    max_extrinsic_size: int = 128 * 1024
    # py-libp2p knobs (see docs/networking.md): per-peer outbound RPC queue, local delivery buffer.
    outbound_queue_size: int = 8192
    subscription_buffer: int = 8192
    # Peers and scoring.
    max_peers: int = 64
    max_tracked_peers: int = 4096
    max_banned_peers: int = 4096
    ban_threshold: float = -90.0  # four REJECTs in quick succession (scores decay, so not -100)
    ban_seconds: float = 600.0
    score_half_life_s: float = 300.0
    # Request/response.
    request_timeout_s: float = 10.0
    max_request_frame: int = 1024
    response_chunk_size: int = 1024 * 1024
    max_response_bytes: int = 64 * 1024 * 1024
    max_response_item: int = 16 * 1024 * 1024
    max_blocks_per_request: int = 1024
    # Bootnode redial backoff.
    redial_initial_s: float = 0.25
    redial_max_s: float = 10.0
    dial_timeout_s: float = 5.0


@dataclass(frozen=True)
class NetworkConfig:
    """Everything `NetworkService` needs. `bootnodes` are full `/ip4/A/tcp/P/p2p/ID` strings."""

    key_path: Path
    genesis_hash: bytes
    listen_port: int = 0
    listen_host: str = "127.0.0.1"
    bootnodes: tuple[str, ...] = ()
    # CIDRs libp2p may dial or accept; anything else is refused by the connection gate.
    allowed_cidrs: tuple[str, ...] = ("127.0.0.1/32",)
    limits: NetworkLimits = field(default_factory=NetworkLimits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_path", Path(self.key_path))
        object.__setattr__(self, "bootnodes", tuple(self.bootnodes))
        object.__setattr__(self, "allowed_cidrs", tuple(self.allowed_cidrs))
        if len(self.genesis_hash) < 4:
            raise NetworkConfigError(
                f"genesis_hash must be the chain's genesis hash (>= 4 bytes), got {len(self.genesis_hash)}"
            )
        if not 0 <= self.listen_port <= 65535:
            raise NetworkConfigError(f"listen_port {self.listen_port} is outside 0..65535")
        networks = [ipaddress.ip_network(c) for c in self.allowed_cidrs]
        if not any(ipaddress.ip_address(self.listen_host) in n for n in networks):
            raise NetworkConfigError(
                f"listen_host {self.listen_host} is not inside allowed_cidrs {list(self.allowed_cidrs)}"
            )
        for addr in self.bootnodes:
            check_bootnode(addr, networks)

    @property
    def chain_tag(self) -> str:
        """First 8 hex chars of the genesis hash: namespaces topics and protocol ids."""
        return self.genesis_hash.hex()[:8]


def check_bootnode(addr: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
    """Raise `NetworkConfigError` unless `addr` is `/ip4/A/tcp/P/p2p/ID` with A in `networks`."""
    try:
        maddr = multiaddr.Multiaddr(addr)
        ip = maddr.value_for_protocol("ip4")
        port = maddr.value_for_protocol("tcp")
        peer = maddr.value_for_protocol("p2p")
    except Exception as exc:
        raise NetworkConfigError(
            f"bootnode {addr!r} is not a multiaddr like /ip4/127.0.0.1/tcp/30333/p2p/<peer id>: {exc}"
        ) from exc
    if not ip or not port or not peer:
        raise NetworkConfigError(f"bootnode {addr!r} needs /ip4/…/tcp/…/p2p/… parts")
    if not any(ipaddress.ip_address(ip) in n for n in networks):
        raise NetworkConfigError(f"bootnode {addr!r}: address {ip} is outside allowed_cidrs")
