"""`NetworkService`: the node's libp2p host (TCP + Noise + yamux), gossip and request/response.

Everything runs inside `run()`'s nursery; cancelling it shuts the host, pubsub and every
helper task down. The identity key (ed25519) lives in its own file, separate from account keys.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from p2p.batcher import ExtrinsicBatcher
from p2p.config import NetworkConfig
from p2p.gossip import AsyncValidator, Gossip, Handler, Topic, Validator
from p2p.peers import PeerManager, Penalty
from p2p.reqresp import (
    BlocksHandler,
    ReqResp,
    RequestError,
    StatusHandler,
    close_quietly,
    is_unsupported_protocol,
)
from p2p.yamux import install as bulk_credit_yamux

logger = logging.getLogger("arena.p2p.host")


class NodeKeyError(Exception):
    """The node identity key file is unreadable or malformed."""


class NotRunning(Exception):
    """The network service has not been started (call `run()` in a nursery first)."""


def load_or_create_node_key(path: Path) -> KeyPair:
    """Load the ed25519 node key (32-byte seed) at `path`, creating it with mode 0600 if absent."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = Ed25519PrivateKey.new().to_bytes()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(seed)
        logger.info("node_key_created path=%s", path)
    seed = path.read_bytes()
    if len(seed) != 32:
        raise NodeKeyError(f"node key {path} holds {len(seed)} bytes, expected a 32-byte ed25519 seed; delete it to make a new identity")
    private = Ed25519PrivateKey.from_bytes(seed)
    return KeyPair(private, private.get_public_key())


class _NoAutoConnect(AutoConnector):
    """Replaces py-libp2p's auto-connector, which re-dials every known peer (banned ones too).

    Dialing is this layer's decision: bootnodes are maintained by `NetworkService`.
    """

    async def run_background_task(self, nursery: trio.Nursery) -> None:
        return None

    async def maybe_connect(self) -> None:
        return None


class _ConnectionWatch(INotifee):
    """Drops connections from banned peers and wakes the bootnode keepers on disconnect."""

    def __init__(self, service: NetworkService) -> None:
        self._service = service

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id.to_base58()
        if self._service.peer_manager.is_banned(peer):
            logger.info("banned_peer_refused peer=%s", peer)
            self._service._schedule_disconnect(peer)
        elif len(network.connections) > self._service.config.limits.max_peers:
            logger.info("peer_refused_full peer=%s max_peers=%d", peer, self._service.config.limits.max_peers)
            self._service._schedule_disconnect(peer)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._service._peer_changed.set()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


async def _wait_connection_closed(muxed_conn: Any) -> None:
    """Return once a muxed connection has closed or started shutting down."""
    shutting_down = getattr(muxed_conn, "event_shutting_down", None)
    while not getattr(muxed_conn, "is_closed", True) and not (shutting_down is not None and shutting_down.is_set()):
        await trio.sleep(0.5)


def _release_inbound_slot_on_close(swarm: Swarm) -> None:
    """Replace py-libp2p 0.8.1's inbound handler, which keeps every inbound connection's slot forever.

    The library's handler holds one of `max_connections` inbound slots and then awaits
    `manager.wait_finished()` — the end of the whole swarm — so after `max_connections`
    inbound connections over the node's lifetime (peers that came and went, banned ones
    included) every new inbound connection was refused before its handshake, and every handler
    task leaked. Here the handler (and its slot) lives exactly as long as its connection.
    Only TCP is configured, so the pre-multiplexed (QUIC) branch of the original is not needed.
    """

    async def handle_inbound(read_write_closer: Any, maddr: multiaddr.Multiaddr, failure_event: Any) -> None:
        remote = swarm._build_remote_multiaddr(read_write_closer)
        raw_conn: RawConnection | None = None
        try:
            if remote is not None and not await swarm.connection_gate.is_allowed(remote):
                logger.debug("inbound_refused_by_gate remote=%s", remote)
                await read_write_closer.close()
                return
            raw_conn = RawConnection(read_write_closer, False)
            muxed_conn = await swarm.upgrade_inbound_raw_conn(raw_conn, maddr)
            # Until the connection closes, or the swarm stops (as the library's handler did).
            async with trio.open_nursery() as race:

                async def until(wait: Any) -> None:
                    await wait()
                    race.cancel_scope.cancel()

                race.start_soon(until, lambda: _wait_connection_closed(muxed_conn))
                race.start_soon(until, swarm.manager.wait_finished)
        except Exception as exc:  # noqa: BLE001 - a failed inbound upgrade only closes that connection
            logger.debug("inbound_connection_failed remote=%s error=%s", remote, exc)
            try:
                await (raw_conn if raw_conn is not None else read_write_closer).close()
            except Exception:  # noqa: BLE001 - already closed
                logger.debug("inbound_close_failed remote=%s", remote)

    swarm._do_handle_inbound_connection = handle_inbound  # type: ignore[method-assign]


def _build_host(key_pair: KeyPair, config: NetworkConfig) -> IHost:
    bulk_credit_yamux()  # window credit in half-window steps (p2p/yamux.py)
    limits = config.limits
    connection_config = ConnectionConfig(
        max_connections=limits.max_peers + 8,
        min_connections=0,
        low_watermark=0,
        high_watermark=limits.max_peers,
        dial_timeout=limits.dial_timeout_s,
        allow_list=list(config.allowed_cidrs),  # with an allow list, every other IP is refused
    )
    host = new_host(
        key_pair=key_pair,
        # Noise only: the default also offers TLS, secio and *plaintext*.
        sec_opt={
            TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[multiaddr.Multiaddr(a) for a in config.listen_multiaddrs()],
        enable_mDNS=False,
        enable_upnp=False,
        bootstrap=None,
        connection_config=connection_config,
        disable_identify_address_discovery=True,
    )
    swarm = host.get_network()
    if isinstance(swarm, Swarm):
        swarm.auto_connector = _NoAutoConnect(swarm)
        _release_inbound_slot_on_close(swarm)
    return host


class NetworkService:
    """The p2p layer of one node: identity, connections, gossip, request/response, peer scores."""

    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self._key_pair = load_or_create_node_key(config.key_path)
        self.host: IHost = _build_host(self._key_pair, config)
        self.peer_manager = PeerManager(config.limits, on_ban=self._schedule_disconnect)
        self.gossip = Gossip(self.host, config.chain_tag, config.limits, self.peer_manager)
        self.reqresp = ReqResp(self.host, config.chain_tag, config.limits, self.peer_manager)
        self.batcher = ExtrinsicBatcher(
            lambda batch: self.gossip.publish(Topic.EXTRINSICS, batch),
            max_bytes=min(256 * 1024, config.limits.max_extrinsics_message),
            max_items=config.limits.max_batch_items,
            max_delay_s=config.limits.extrinsic_batch_window_s,
        )
        self._nursery: trio.Nursery | None = None
        self._peer_changed = trio.Event()
        self._listen_multiaddr: str | None = None
        self._ping_misses: dict[ID, int] = {}
        self.keepalive_drops = 0  # connections dropped because pings went unanswered
        self.host.get_network().register_notifee(_ConnectionWatch(self))

    # ---- identity and peers ---------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        """This node's libp2p peer id (base58)."""
        return self.host.get_id().to_base58()

    @property
    def listen_multiaddr(self) -> str:
        """Full dialable address `/ip4/127.0.0.1/tcp/P/p2p/ID` (available once `run` has started)."""
        if self._listen_multiaddr is None:
            raise NotRunning("listen_multiaddr is known only after NetworkService.run() has started")
        return self._listen_multiaddr

    def peers(self) -> list[str]:
        """Currently connected peer ids."""
        return [peer.to_base58() for peer in self.host.get_connected_peers()]

    def penalize(self, peer_id: str | ID, reason: Penalty | str, amount: float | None = None) -> float:
        """Lower a peer's score (`Penalty` or free text); bans and disconnects it below the threshold."""
        return self.peer_manager.penalize(peer_id, reason, amount)

    async def connect(self, address: str) -> str:
        """Dial a full multiaddr (`/ip4/…/tcp/…/p2p/ID`); return the peer id. Raises on failure."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        peer = info.peer_id.to_base58()
        if self.peer_manager.is_banned(peer):
            raise ConnectionRefusedError(f"peer {peer} is banned")
        # py-libp2p refuses every dial to a peer for 60 s after one failed (its negative cache);
        # when to dial again is our backoff's decision (`redial_initial_s`..`redial_max_s`).
        swarm = self.host.get_network()
        if isinstance(swarm, Swarm):
            swarm.unblock_peer(info.peer_id)
        with trio.fail_after(self.config.limits.dial_timeout_s):
            await self.host.connect(info)
        return peer

    # ---- gossip and request/response (delegates, so the node needs one object) -----------

    def set_validator(self, topic: Topic, fn: Validator | AsyncValidator) -> None:
        """See `Gossip.set_validator`: `fn(peer_id, payload) -> Verdict` (or an async one) runs before forwarding."""
        self.gossip.set_validator(topic, fn)

    def subscribe(self, topic: Topic, handler: Handler) -> None:
        """See `Gossip.subscribe`: async `handler(origin_peer_id, payload)` for accepted messages."""
        self.gossip.subscribe(topic, handler)

    async def publish(self, topic: Topic, data: bytes) -> None:
        """Publish on a topic (EXTRINSICS takes an encoded batch; prefer `submit_extrinsic`)."""
        await self.gossip.publish(topic, data)

    async def submit_extrinsic(self, extrinsic: bytes) -> None:
        """Queue one extrinsic for batched gossip (flushed within `extrinsic_batch_window_s`)."""
        await self.batcher.submit(extrinsic)

    def set_status_handler(self, fn: StatusHandler) -> None:
        """Register `on_status() -> bytes`."""
        self.reqresp.set_status_handler(fn)

    def set_blocks_by_range_handler(self, fn: BlocksHandler) -> None:
        """Register `on_blocks_by_range(start, count) -> list[bytes]`."""
        self.reqresp.set_blocks_by_range_handler(fn)

    async def request_status(self, peer_id: str, timeout_s: float | None = None) -> bytes:
        """Ask a peer for its status (bounded by `timeout_s`, default the request timeout)."""
        return await self.reqresp.request_status(peer_id, timeout_s)

    async def request_blocks(self, peer_id: str, start: int, count: int, timeout_s: float | None = None) -> list[bytes]:
        """Ask a peer for blocks `start..start+count-1` (it may return fewer)."""
        return await self.reqresp.request_blocks(peer_id, start, count, timeout_s)

    async def status_of_peers(
        self, peers: list[str] | None = None, timeout_s: float | None = None, max_concurrent: int | None = None,
    ) -> dict[str, bytes | RequestError]:
        """Status of many peers at once (default: every connected one); see `ReqResp.status_of_peers`."""
        return await self.reqresp.status_of_peers(self.peers() if peers is None else peers, timeout_s, max_concurrent)

    def is_foreign(self, peer_id: str | ID) -> bool:
        """True if the peer was found not to speak Arena's protocols (e.g. an IPFS node)."""
        return self.reqresp.is_foreign(peer_id)

    def arena_peers(self) -> list[str]:
        """Connected peers not known to be foreign: the ones worth asking for status and blocks."""
        return [peer for peer in self.peers() if not self.reqresp.is_foreign(peer)]

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined]  # stale trio-typing stubs
    ) -> None:
        """Run host, pubsub, batcher and bootnode keepers until cancelled."""
        listen = [multiaddr.Multiaddr(a) for a in self.config.listen_multiaddrs()]
        async with (
            self.host.run(listen),
            background_trio_service(self.gossip.pubsub),
            background_trio_service(self.gossip.router),
        ):
            await self.gossip.pubsub.wait_until_ready()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self.gossip.start(nursery)
                await nursery.start(self.batcher.run)
                for address in self.config.bootnodes:
                    nursery.start_soon(self._keep_bootnode, address)
                nursery.start_soon(self._expire_bans)
                nursery.start_soon(self._keepalive)
                self._listen_multiaddr = self._resolve_listen_multiaddr()
                logger.info("network_started peer=%s listen=%s", self.peer_id, self._listen_multiaddr)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    self._nursery = None
                    logger.info("network_stopping peer=%s", self.peer_id)

    def _resolve_listen_multiaddr(self) -> str:
        """The address peers are told: the first public address, else the first bound listen address."""
        if self.config.public_addrs:
            first = self.config.public_addrs[0]
            return first if "/p2p/" in first else f"{first}/p2p/{self.peer_id}"
        wanted = self.config.listen_multiaddrs()[0].rsplit("/tcp/", 1)[0] + "/tcp/"
        for addr in self.host.get_addrs():
            text = str(addr)
            if text.startswith(wanted):
                return text if "/p2p/" in text else f"{text}/p2p/{self.peer_id}"
        raise NotRunning(f"host is not listening on {wanted}: {self.host.get_addrs()}")

    async def _keep_bootnode(self, address: str) -> None:
        """Stay connected to one bootnode: dial with exponential backoff, re-dial when it drops."""
        limits = self.config.limits
        peer = info_from_p2p_addr(multiaddr.Multiaddr(address)).peer_id
        delay = limits.redial_initial_s
        while True:
            if self.host.get_network().connections.get(peer):
                delay = limits.redial_initial_s
                self._peer_changed = trio.Event() if self._peer_changed.is_set() else self._peer_changed
                with trio.move_on_after(1.0):
                    await self._peer_changed.wait()
                continue
            if not self.peer_manager.is_banned(peer.to_base58()):
                try:
                    await self.connect(address)
                    logger.info("bootnode_connected peer=%s", peer)
                    continue
                except Exception as exc:  # noqa: BLE001 - any dial failure means: retry later
                    logger.debug("bootnode_dial_failed peer=%s retry_in=%.2fs error=%s", peer, delay, exc)
            await trio.sleep(delay * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, limits.redial_max_s)

    async def _keepalive(self) -> None:
        """Ping every connected peer each `ping_interval_s`; drop connections that stopped answering.

        A far end that vanished without closing (power loss, a frozen process, a dropped route)
        leaves a TCP connection that looks open for a long time; without this the node would keep
        it, count the peer as connected, and never redial its bootnode.
        """
        limits = self.config.limits
        while True:
            await trio.sleep(limits.ping_interval_s)
            peers = list(self.host.get_connected_peers())
            for gone in set(self._ping_misses) - set(peers):
                del self._ping_misses[gone]
            async with trio.open_nursery() as nursery:
                for peer in peers:
                    nursery.start_soon(self._ping_once, peer)

    async def _ping_once(self, peer: ID) -> None:
        limits = self.config.limits
        answered = False
        stream: INetStream | None = None
        with trio.move_on_after(limits.ping_timeout_s):
            try:
                stream = await self.host.new_stream(peer, [PING_PROTOCOL])
                await perform_ping_roundtrip(stream)
                answered = True
            except Exception as exc:  # noqa: BLE001 - any failure is a missed ping
                if is_unsupported_protocol(exc):
                    answered = True  # it answered, it just has no ping service: alive
                logger.debug("ping_failed peer=%s error=%s", peer, exc)
        if stream is not None:
            await close_quietly(stream)
        if not answered and self.gossip.heard_within(peer.to_base58(), limits.ping_interval_s + limits.ping_timeout_s):
            # Its gossip keeps arriving: the connection is alive, the pong is only queued behind
            # that traffic (a loaded peer). Dropping it would lose every queued block and vote.
            logger.debug("ping_late_but_peer_active peer=%s", peer)
            answered = True
        if answered:
            self._ping_misses.pop(peer, None)
            return
        misses = self._ping_misses.get(peer, 0) + 1
        self._ping_misses[peer] = misses
        if misses < limits.ping_failures_to_drop:
            return
        self._ping_misses.pop(peer, None)
        self.keepalive_drops += 1
        logger.info("peer_unresponsive peer=%s missed_pings=%d (connection dropped, no penalty)", peer, misses)
        with trio.move_on_after(5):
            try:
                await self.host.disconnect(peer)
            except Exception as exc:  # noqa: BLE001 - already gone is fine
                logger.debug("peer_disconnect_failed peer=%s error=%s", peer, exc)
        self._peer_changed.set()

    async def _expire_bans(self) -> None:
        while True:
            await trio.sleep(1.0)
            self.peer_manager.expire_bans()
            self._lift_expired_blacklist()
            self._prune_phantom_connections()

    def _lift_expired_blacklist(self) -> None:
        """Let peers whose ban has expired back into pubsub.

        `PeerManager.is_banned` forgets an expired ban as it reads it, so `expire_bans()` does not
        list every peer to lift; the pubsub blacklist is compared with the bans instead.
        """
        pubsub = self.gossip.pubsub
        for peer in list(pubsub.blacklisted_peers):
            if not self.peer_manager.is_banned(peer):
                pubsub.remove_from_blacklist(peer)

    def _prune_phantom_connections(self) -> None:
        """Free connection-limit slots that py-libp2p's tracker kept for connections already gone.

        Connections torn down while they were being registered (a ban racing a handshake) can
        leave their slot counted; the library prunes such phantoms only when the next connection
        arrives and only after 30 s, long enough for a churning peer to hold a peer's (or the
        node's) limit. Entries younger than 5 s may still be registering and are left alone.
        """
        swarm = self.host.get_network()
        lifecycle = getattr(getattr(swarm, "_resource_manager", None), "connection_lifecycle", None)
        if lifecycle is None or not isinstance(swarm, Swarm):
            return
        live = {str(id(conn.muxed_conn)) for conns in swarm.connections.values() for conn in conns}
        try:
            pruned = lifecycle.reconcile_live_connections(live, min_age_seconds=5.0)
        except Exception as exc:  # noqa: BLE001 - bookkeeping only; never fatal
            logger.debug("connection_reconcile_failed error=%s", exc)
            return
        if pruned:
            logger.info("phantom_connections_pruned count=%d", pruned)

    def _schedule_disconnect(self, peer_id: str) -> None:
        if self._nursery is None:
            return
        self._nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id: str) -> None:
        """Drop a banned peer: pubsub first (synchronously, so no message of it is taken any more),
        then the connection. Nothing here may raise: a ban must never take the node down."""
        peer = ID.from_base58(peer_id)
        try:
            # ArenaPubsub's teardown task is idempotent against the disconnect below (see pubsub.py).
            self.gossip.pubsub.add_to_blacklist(peer)
        except Exception as exc:  # noqa: BLE001 - pubsub stopping; the disconnect below still applies
            logger.debug("blacklist_failed peer=%s error=%s", peer_id, exc)
        with trio.move_on_after(5):
            try:
                await self.host.disconnect(peer)
                logger.info("peer_disconnected peer=%s", peer_id)
            except Exception as exc:  # noqa: BLE001 - the peer may already be gone
                logger.info("peer_disconnect_failed peer=%s error=%s", peer_id, exc)
