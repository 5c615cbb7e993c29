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
    # How long the batcher collects submitted extrinsics before publishing one message: at 20 ms
    # a batch carried ~5 extrinsics under load and per-message costs dominated (issue 17).
    extrinsic_batch_window_s: float = 0.1
    # A local extrinsic batch is published only while every peer's outbound queue holds at most
    # this many RPCs (blocks and votes use the same queues and are never held back).
    extrinsics_queue_high_water: int = 16
    max_extrinsic_size: int = 128 * 1024
    # py-libp2p knobs (see docs/networking.md): per-peer outbound RPC queue, local delivery buffer.
    outbound_queue_size: int = 8192
    subscription_buffer: int = 8192
    # Gossip delivery and replays: bytes waiting for local handlers, the share of the buffer one
    # forwarding peer may hold, and how many accepted payload digests are remembered.
    max_pending_delivery_bytes: int = 64 * 1024 * 1024
    max_pending_per_peer: int = 2048
    seen_cache_size: int = 65536
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
    # Status rounds (`ReqResp.status_of_peers`): per-request timeout, requests in flight, and
    # how long a peer that timed out is skipped at most (the skip doubles from 1 s per timeout).
    status_timeout_s: float = 2.0
    status_concurrency: int = 16
    silent_peer_backoff_max_s: float = 60.0
    # A peer that does not speak Arena's protocols (an IPFS node) is not asked again for this long.
    foreign_peer_memory_s: float = 600.0
    # Keepalive: every connected peer is pinged (/ipfs/ping/1.0.0) each `ping_interval_s`; after
    # `ping_failures_to_drop` unanswered pings in a row its connection is dropped (no penalty),
    # and a bootnode is then redialed. Detects connections whose far end went away silently.
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    ping_failures_to_drop: int = 2
    # Bootnode redial backoff.
    redial_initial_s: float = 0.25
    redial_max_s: float = 4.0    # a healed partition is noticed within a few seconds
    dial_timeout_s: float = 5.0


@dataclass(frozen=True)
class NetworkConfig:
    """Everything `NetworkService` needs. `bootnodes` are full `/ip4|ip6|dns4|dns6/A/tcp/P/p2p/ID` strings.

    `listen_addrs` (multiaddrs `/ip4/A/tcp/P`) replace `listen_host`/`listen_port` when given;
    `public_addrs` are what peers are told to dial (behind NAT or on a wildcard listen address).
    """

    key_path: Path
    genesis_hash: bytes
    listen_port: int = 0
    listen_host: str = "127.0.0.1"
    bootnodes: tuple[str, ...] = ()
    # CIDRs libp2p may dial or accept; anything else is refused by the connection gate.
    allowed_cidrs: tuple[str, ...] = ("127.0.0.1/32",)
    limits: NetworkLimits = field(default_factory=NetworkLimits)
    listen_addrs: tuple[str, ...] = ()
    public_addrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_path", Path(self.key_path))
        object.__setattr__(self, "bootnodes", tuple(self.bootnodes))
        object.__setattr__(self, "allowed_cidrs", tuple(self.allowed_cidrs))
        object.__setattr__(self, "listen_addrs", tuple(self.listen_addrs))
        object.__setattr__(self, "public_addrs", tuple(self.public_addrs))
        try:
            networks = [ipaddress.ip_network(c, strict=False) for c in self.allowed_cidrs]
        except ValueError as exc:
            raise NetworkConfigError(f"allowed CIDR: {exc} (write e.g. 10.0.0.0/24 or 127.0.0.1/32)") from exc
        if len(self.genesis_hash) < 4:
            raise NetworkConfigError(
                f"genesis_hash must be the chain's genesis hash (>= 4 bytes), got {len(self.genesis_hash)}"
            )
        if not 0 <= self.listen_port <= 65535:
            raise NetworkConfigError(f"listen_port {self.listen_port} is outside 0..65535")
        if not self.listen_addrs and not any(ipaddress.ip_address(self.listen_host) in n for n in networks):
            raise NetworkConfigError(
                f"listen_host {self.listen_host} is not inside allowed_cidrs {list(self.allowed_cidrs)}"
            )
        for addr in self.listen_addrs:
            check_listen_addr(addr, networks)
        for addr in self.public_addrs:
            check_listen_addr(addr, None)
        for addr in self.bootnodes:
            check_bootnode(addr, networks)

    def listen_multiaddrs(self) -> list[str]:
        """The TCP multiaddrs to listen on."""
        return list(self.listen_addrs) or [f"/ip4/{self.listen_host}/tcp/{self.listen_port}"]

    @property
    def chain_tag(self) -> str:
        """First 8 hex chars of the genesis hash: namespaces topics and protocol ids."""
        return self.genesis_hash.hex()[:8]


Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]
_HOST_PROTOCOLS = ("ip4", "ip6", "dns4", "dns6", "dns")


def _host_of(maddr: multiaddr.Multiaddr) -> tuple[str, str] | None:
    """(protocol, value) of the first host part of a multiaddr, or None."""
    for protocol, value in maddr.items():
        if protocol.name in _HOST_PROTOCOLS and value:
            return protocol.name, str(value)
    return None


def _ip_allowed(ip: str, networks: Networks) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_unspecified or any(address in n for n in networks)


def check_listen_addr(addr: str, networks: Networks | None) -> None:
    """Raise `NetworkConfigError` unless `addr` is `/ip4|ip6/A/tcp/P` (A in `networks` when given)."""
    try:
        maddr = multiaddr.Multiaddr(addr)
        host = _host_of(maddr)
        port = maddr.value_for_protocol("tcp")
    except Exception as exc:
        raise NetworkConfigError(f"address {addr!r} is not a multiaddr like /ip4/10.0.0.5/tcp/30333: {exc}") from exc
    if host is None or not port:
        raise NetworkConfigError(f"address {addr!r} needs /ip4/…/tcp/… (or /ip6/…, /dns4/…) parts")
    if networks is not None:
        if host[0] not in ("ip4", "ip6"):
            raise NetworkConfigError(f"listen address {addr!r} must be an IP address, not a DNS name")
        if not _ip_allowed(host[1], networks):
            raise NetworkConfigError(
                f"listen address {addr!r}: {host[1]} is outside the allowed CIDRs; add it with --allow-cidr"
            )


def check_bootnode(addr: str, networks: Networks) -> None:
    """Raise `NetworkConfigError` unless `addr` is `/ip4|ip6|dns…/A/tcp/P/p2p/ID` with an IP A in `networks`."""
    try:
        maddr = multiaddr.Multiaddr(addr)
        host = _host_of(maddr)
        port = maddr.value_for_protocol("tcp")
        peer = maddr.value_for_protocol("p2p")
    except Exception as exc:
        raise NetworkConfigError(
            f"bootnode {addr!r} is not a multiaddr like /ip4/127.0.0.1/tcp/30333/p2p/<peer id>: {exc}"
        ) from exc
    if host is None or not port or not peer:
        raise NetworkConfigError(f"bootnode {addr!r} needs /ip4/…/tcp/…/p2p/… parts")
    # DNS names are resolved, and gated, by the connection gate at dial time.
    if host[0] in ("ip4", "ip6") and not any(ipaddress.ip_address(host[1]) in n for n in networks):
        raise NetworkConfigError(
            f"bootnode {addr!r}: address {host[1]} is outside allowed_cidrs; add it with --allow-cidr"
        )
