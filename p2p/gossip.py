"""Gossip over GossipSub: three namespaced topics, validators before forwarding, no silent loss.

py-libp2p 0.8.1 drops messages silently in three places by default; each is configured here
(details and measurements in docs/networking.md):
  * GossipSub spam protection (10 msgs/s per topic, even our own) -> disabled; abuse is handled
    by validators + `PeerManager` scores instead.
  * the per-peer outbound RPC queue (32 entries) -> resized to `outbound_queue_size`, and local
    publishes wait while any peer queue is more than half full (back-pressure), for at most
    50 ms (blocks, votes) or 1 s (extrinsic batches): one stalled peer must not stall us.
  * the per-subscription channel (32 entries, drop when the reader lags) -> bypassed: delivery
    goes into our own per-topic buffer of `subscription_buffer` entries, and drops are counted.

Replays: GossipSub's own seen-cache keys a message by (origin, seqno), so anyone can wrap an old
vote or extrinsic batch in a fresh envelope and it would be validated and forwarded again. A
`SeenCache` of payload digests (blocks and votes: the payload; extrinsics: each extrinsic) stops
that: content already accepted is IGNOREd (not forwarded, not delivered, not penalised, since an
honest node may republish what a client sent it twice). The delivery buffer is bounded by bytes,
and one forwarding peer may hold only `max_pending_per_peer` of its slots.

Cost (issue 17; profiles of a saturated 4-node network): py-libp2p verified the sender's signed
peer record (ed25519) on *every* inbound pubsub RPC (14 % of a node's CPU) and signed/verified
every message (strict signing, ~5 %). Here:
  * `_consume_signed_record_cached` replaces the library's `maybe_consume_signed_record` in
    `libp2p.pubsub.pubsub` and `libp2p.pubsub.gossipsub` (which checked each RPC's record twice): the record last accepted from a peer (by its exact bytes, per host)
    is not verified again; any other record goes through the library's full check. Upstream:
    this belongs in `Pubsub.continuously_read_stream` (verify once per stream or per change).
  * strict signing is off: every payload on our topics (blocks, votes, extrinsics) carries its
    own ed25519 signature checked by the topic validator, and penalties go to the forwarding
    peer, which the Noise channel authenticates. So that an unsigned (origin, seqno) cannot be
    forged to shadow someone else's message in the seen-cache, the message id also binds the
    payload: `message_id` = origin + seqno + blake2b-128(data).
  * `_own_record_cached`: our own record is marshalled once every few seconds, not per RPC. Nodes with strict signing (older
    Arena versions) drop our unsigned messages: the whole network upgrades together.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import libp2p.pubsub.gossipsub as _library_gossipsub
import libp2p.pubsub.pubsub as _library_pubsub
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC as _library_env_to_send
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.pubsub.utils import maybe_consume_signed_record as _library_consume_signed_record

from p2p.batcher import BatchDecodeError, decode_batch
from p2p.config import NetworkLimits
from p2p.peers import PeerManager, Penalty

logger = logging.getLogger("arena.p2p.gossip")


class Topic(enum.Enum):
    """The gossip topics; wire names are `/arena/<gen8>/<value>/1`."""

    BLOCKS = "blocks"
    EXTRINSICS = "extrinsics"
    VOTES = "votes"


class Verdict(enum.Enum):
    """A validator's answer. Only ACCEPT is forwarded and delivered; REJECT penalises the sender."""

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


class GossipError(Exception):
    """Base class for gossip errors."""


class MessageTooLarge(GossipError):
    """A payload is above its topic's size limit."""


# fn(peer_id, payload) -> Verdict. payload is bytes, or list[bytes] (a decoded batch) on EXTRINSICS.
Validator = Callable[[str, Any], Verdict]
Handler = Callable[[str, Any], Awaitable[None]]


class SeenCache:
    """Digests of accepted gossip content: bounded by count, oldest forgotten first.

    An entry is a 16-byte digest plus `OrderedDict` overhead, about 100 bytes, so the default
    65,536 entries hold under 8 MB whatever the attacker sends.
    """

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._digests: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def digest(topic: Topic, data: bytes) -> bytes:
        """Content key of `data` on `topic` (blake2b-128: collisions are not a concern here)."""
        return hashlib.blake2b(data, digest_size=16, person=topic.value.encode()).digest()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._digests

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, digest: bytes) -> None:
        """Remember `digest` (refreshing it if known); forget the oldest beyond the bound."""
        self._digests[digest] = None
        self._digests.move_to_end(digest)
        while len(self._digests) > self._max_entries:
            self._digests.popitem(last=False)


def message_id(msg: rpc_pb2.Message) -> bytes:
    """GossipSub message id: origin + seqno (as the library's) + a digest of the payload."""
    return msg.from_id + msg.seqno + hashlib.blake2b(msg.data, digest_size=16).digest()


class _RecordCache:
    """Per host: the digest of the signed peer record last accepted from each peer (bounded)."""

    max_peers = 4096

    def __init__(self) -> None:
        self.by_host: dict[int, OrderedDict[bytes, bytes]] = {}
        self.verifications = 0  # records that went through the library's full check

    def accepted(self, host: IHost) -> OrderedDict[bytes, bytes]:
        return self.by_host.setdefault(id(host), OrderedDict())


RECORDS = _RecordCache()


def _consume_signed_record_cached(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    """The library's check of an RPC's sender record, skipped for the record last accepted from
    that peer (same bytes: the same verdict; a different one, older or newer, is checked)."""
    if not msg.HasField("senderRecord"):
        return True
    cache = RECORDS.accepted(host)
    peer = peer_id.to_bytes()
    digest = hashlib.blake2b(msg.senderRecord, digest_size=16).digest()
    if cache.get(peer) == digest:
        return True
    RECORDS.verifications += 1
    if not _library_consume_signed_record(msg, host, peer_id):
        return False
    cache[peer] = digest
    cache.move_to_end(peer)
    while len(cache) > RECORDS.max_peers:
        cache.popitem(last=False)
    return True


_OWN_RECORD_TTL_S = 5.0
_own_records: dict[int, tuple[float, tuple[bytes, bool]]] = {}


def _own_record_cached(host: IHost) -> tuple[bytes, bool]:
    """Our signed peer record for outgoing RPCs: the library rebuilds its address set and
    re-marshals the envelope for every RPC (5 % of a node's CPU under load); here it is reused
    for `_OWN_RECORD_TTL_S` (a changed listen address shows up within that)."""
    now = time.monotonic()
    cached = _own_records.get(id(host))
    if cached is None or now - cached[0] > _OWN_RECORD_TTL_S:
        cached = (now, _library_env_to_send(host))
        _own_records[id(host)] = cached
    return cached[1]


# The library's read loop (pubsub) and control handler (gossipsub: a second check of the same
# RPC's record) call this name from their module namespaces (see the module docstring).
_library_pubsub.maybe_consume_signed_record = _consume_signed_record_cached  # type: ignore[attr-defined]
_library_gossipsub.maybe_consume_signed_record = _consume_signed_record_cached  # type: ignore[attr-defined]
_library_pubsub.env_to_send_in_RPC = _own_record_cached  # type: ignore[attr-defined]
_library_gossipsub.env_to_send_in_RPC = _own_record_cached  # type: ignore[attr-defined]


class _ResizingQueues(dict[ID, RpcQueue]):
    """Pubsub.peer_queues replacement that enlarges each new per-peer queue as it is stored.

    Pubsub creates `RpcQueue()` with a fixed capacity of 32 and no knob; storing it here is the
    first moment we can resize it, before anything is pushed to it.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size

    def __setitem__(self, peer_id: ID, queue: RpcQueue) -> None:
        queue._queue.max_size = self._size
        super().__setitem__(peer_id, queue)


class ArenaPubsub(Pubsub):
    """Pubsub with larger outbound queues and delivery through `deliver` instead of 32-slot channels."""

    def __init__(
        self,
        host: IHost,
        router: GossipSub,
        outbound_queue_size: int,
        deliver: Callable[[rpc_pb2.Message], None],
    ) -> None:
        super().__init__(host, router, cache_size=4096, seen_ttl=120, strict_signing=False,
                         msg_id_constructor=message_id)
        self.peer_queues = _ResizingQueues(outbound_queue_size)
        self._deliver = deliver
        self._write_locks: weakref.WeakKeyDictionary[Any, trio.Lock] = weakref.WeakKeyDictionary()
        self.broken_streams = 0

    async def write_msg(self, stream: Any, rpc_msg: rpc_pb2.RPC) -> bool:
        """One writer per stream at a time.

        py-libp2p 0.8.1 writes to a peer's pubsub stream from its sending loop and, directly,
        from GossipSub (flushing pending messages, replaying recent ones to a new peer); a
        yamux write of a large RPC goes out in several frames, so two concurrent writers
        interleave them and the peer reads garbage (under load this took every node of a
        4-node network down at once, see `continuously_read_stream`).
        """
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        async with lock:
            return await super().write_msg(stream, rpc_msg)

    async def continuously_read_stream(self, stream: Any) -> None:
        """The library's read loop, but an RPC that does not parse ends only that stream.

        py-libp2p 0.8.1 lets protobuf's `DecodeError` escape the read loop, and with it the
        whole node (its host's nursery). Garbage may be our own writers' fault (see
        `write_msg`), so the peer is not penalised: the stream is reset, the peer forgotten by
        pubsub and its connection dropped; the bootnode keeper redials it.
        """
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().continuously_read_stream(stream)
        except DecodeError as exc:
            self.broken_streams += 1
            logger.warning("pubsub_stream_garbage peer=%s error=%s (stream reset, connection dropped)", peer_id, exc)
            try:
                await stream.reset()
            except Exception as reset_exc:  # noqa: BLE001 - already gone
                logger.debug("pubsub_stream_reset_failed peer=%s error=%s", peer_id, reset_exc)
            self._handle_dead_peer(peer_id)
            with trio.move_on_after(5):
                try:
                    await self.host.disconnect(peer_id)
                except Exception as disc_exc:  # noqa: BLE001 - already gone
                    logger.debug("pubsub_disconnect_failed peer=%s error=%s", peer_id, disc_exc)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        """Hand a validated message to our dispatcher (never to the library's bounded channels)."""
        self._deliver(publish_message)

    async def _teardown_if_connected(self, peer_id: ID) -> None:
        """Replaces py-libp2p 0.8.1's task that `add_to_blacklist` schedules, which crashed the node.

        The library awaits `stream.reset()` and then does `del self.peers[peer_id]`; the reset (or
        the disconnect that goes with a ban) wakes the read loop, whose dead-peer handling removes
        the peer first, and the `KeyError` escaping a pubsub task brought the whole service down.
        Here the removal goes through the same idempotent dead-peer path, which also closes the
        peer's outbound queue and removes it from the router (the library forgot both).
        """
        stream = self.peers.get(peer_id)
        if stream is not None:
            try:
                await stream.reset()
            except Exception as exc:  # noqa: BLE001 - the peer may already be gone
                logger.debug("blacklist_reset_failed peer=%s error=%s", peer_id, exc)
        try:
            self._handle_dead_peer(peer_id)
        except Exception:
            logger.exception("blacklist_teardown_failed peer=%s", peer_id)


class Gossip:
    """Topic naming, validation, subscription dispatch and publishing for one node."""

    def __init__(self, host: IHost, chain_tag: str, limits: NetworkLimits, peers: PeerManager) -> None:
        self._host = host
        self._limits = limits
        self._peers = peers
        self._my_id = host.get_id()
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=1,
            spam_protection_enabled=False,
            max_pending_messages_per_peer=limits.outbound_queue_size,
        )
        self.pubsub = ArenaPubsub(host, self.router, limits.outbound_queue_size, self._deliver)
        self._names = {topic: f"/arena/{chain_tag}/{topic.value}/1" for topic in Topic}
        self._by_name = {name: topic for topic, name in self._names.items()}
        self._max_size = {
            Topic.BLOCKS: limits.max_block_message,
            Topic.EXTRINSICS: limits.max_extrinsics_message,
            Topic.VOTES: limits.max_vote_message,
        }
        self._validators: dict[Topic, Validator] = {}
        self._handlers: dict[Topic, list[Handler]] = {topic: [] for topic in Topic}
        channels = {
            topic: trio.open_memory_channel[tuple[str, bytes, str]](limits.subscription_buffer) for topic in Topic
        }
        self._send = {topic: pair[0] for topic, pair in channels.items()}
        self._receive = {topic: pair[1] for topic, pair in channels.items()}
        self.dropped_deliveries = 0
        self.replays_ignored = 0
        # When each forwarding peer last sent us a gossip message (monotonic seconds).
        self.last_message_from: dict[str, float] = {}
        self.seen = SeenCache(limits.seen_cache_size)
        # Delivery accounting: bytes waiting in the buffers, and slots held per forwarding peer.
        self.pending_bytes = 0
        self._pending_by_peer: dict[str, int] = {}
        # (origin, seqno) -> forwarder of an accepted message, until `_deliver` picks it up.
        self._forwarder_of: OrderedDict[tuple[bytes, bytes], str] = OrderedDict()
        for topic in Topic:
            self.pubsub.set_topic_validator(self._names[topic], self._make_validator(topic), False)

    def topic_name(self, topic: Topic) -> str:
        """Wire name of a topic on this chain."""
        return self._names[topic]

    def max_message_size(self, topic: Topic) -> int:
        """Largest payload accepted on `topic`."""
        return self._max_size[topic]

    def set_validator(self, topic: Topic, fn: Validator) -> None:
        """Register the one validator of `topic`; it runs before a message is delivered or forwarded."""
        self._validators[Topic(topic)] = fn

    def subscribe(self, topic: Topic, handler: Handler) -> None:
        """Add an async handler `(origin_peer_id, payload)` for accepted messages of `topic`."""
        self._handlers[Topic(topic)].append(handler)

    async def start(self, nursery: trio.Nursery) -> None:
        """Join every topic (so this node relays all of them) and start one dispatcher per topic."""
        for topic in Topic:
            await self.pubsub.subscribe(self._names[topic])
            nursery.start_soon(self._dispatch, topic)

    async def publish(self, topic: Topic, data: bytes) -> None:
        """Publish `data` on `topic`; waits while a peer's outbound queue is over half full."""
        topic = Topic(topic)
        limit = self._max_size[topic]
        if len(data) > limit:
            raise MessageTooLarge(
                f"{topic.value} message is {len(data)} bytes, limit is {limit}; "
                "split it (extrinsics: use the batcher) or raise NetworkLimits"
            )
        high_water = self._limits.outbound_queue_size // 2
        if topic is Topic.EXTRINSICS:
            # Blocks and votes share each peer's FIFO queue: extrinsic batches wait here instead
            # (the batcher meanwhile makes the next batch bigger), so a block never sits behind
            # seconds of extrinsic gossip.
            high_water = min(high_water, self._limits.extrinsics_queue_high_water)
        # Back-pressure is bounded: a peer that stopped reading (partitioned, frozen) keeps its
        # queue full, and waiting on it without bound stalled every block and vote of this node
        # (seen in make chaos: a 3|1 split after a 2|2 partition finalized nothing). Blocks and
        # votes wait at most 50 ms, extrinsic batches 1 s; then the slow peer's queue overflows
        # (the library drops for that peer alone) and sync repairs what it missed.
        deadline = trio.current_time() + (1.0 if topic is Topic.EXTRINSICS else 0.05)
        while (any(len(queue) > high_water for queue in list(self.pubsub.peer_queues.values()))
               and trio.current_time() < deadline):
            await trio.sleep(0.002)
        # What we publish is "seen": a peer that replays it to us in a new envelope is not relayed.
        if topic is Topic.EXTRINSICS:
            try:
                items = decode_batch(data, self._limits.max_batch_items, self._limits.max_extrinsic_size)
            except BatchDecodeError:
                items = []
            for item in items:
                self.seen.add(SeenCache.digest(topic, item))
        else:
            self.seen.add(SeenCache.digest(topic, data))
        await self.pubsub.publish(self._names[topic], data)

    def topic_peers(self, topic: Topic) -> list[str]:
        """Peers known to be subscribed to `topic`."""
        return [p.to_base58() for p in self.pubsub.peer_topics.get(self._names[Topic(topic)], ())]

    def _make_validator(self, topic: Topic) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            if forwarder == self._my_id:
                return True  # our own publish: size checked in publish(), content by the caller
            peer = forwarder.to_base58()
            self.last_message_from[peer] = time.monotonic()  # alive (see NetworkService._ping_once)
            if len(self.last_message_from) > self._limits.max_tracked_peers:
                self.last_message_from.pop(next(iter(self.last_message_from)))
            if self._peers.is_banned(peer):
                return False
            data = msg.data
            if len(data) > self._max_size[topic]:
                self._peers.penalize(peer, Penalty.OVERSIZE)
                return False
            payload: Any = data
            if topic is Topic.EXTRINSICS:
                try:
                    payload = decode_batch(data, self._limits.max_batch_items, self._limits.max_extrinsic_size)
                except BatchDecodeError as exc:
                    logger.info("gossip_garbage peer=%s topic=%s error=%s", peer, topic.value, exc)
                    self._peers.penalize(peer, Penalty.GARBAGE)
                    return False
                digests = [SeenCache.digest(topic, item) for item in payload]
            else:
                digests = [SeenCache.digest(topic, data)]
            if all(digest in self.seen for digest in digests):
                self.replays_ignored += 1  # content already accepted under another envelope
                return False
            if not self._has_delivery_room(peer, len(data)):
                return False
            fn = self._validators.get(topic)
            verdict = Verdict.ACCEPT
            if fn is not None:
                try:
                    verdict = fn(peer, payload)
                except Exception:
                    # A bug in our own validator must not be blamed on the peer.
                    logger.exception("gossip_validator_error topic=%s peer=%s", topic.value, peer)
                    return False
            if verdict is Verdict.REJECT:
                self._peers.penalize(peer, Penalty.INVALID_MESSAGE)
            if verdict is not Verdict.ACCEPT:
                return False
            for digest in digests:
                self.seen.add(digest)
            self._forwarder_of[(msg.from_id, msg.seqno)] = peer
            while len(self._forwarder_of) > self._limits.subscription_buffer:
                self._forwarder_of.popitem(last=False)
            return True

        return validate

    def heard_within(self, peer: str, seconds: float) -> bool:
        """Whether `peer` sent us a gossip message in the last `seconds`."""
        last = self.last_message_from.get(peer)
        return last is not None and time.monotonic() - last <= seconds

    def _has_delivery_room(self, peer: str, size: int) -> bool:
        """Whether one more message of `size` bytes from `peer` fits the delivery bounds."""
        limits = self._limits
        if self.pending_bytes + size > limits.max_pending_delivery_bytes:
            reason = f"buffers hold {self.pending_bytes} B, limit {limits.max_pending_delivery_bytes}"
        elif self._pending_by_peer.get(peer, 0) >= limits.max_pending_per_peer:
            reason = f"peer holds {limits.max_pending_per_peer} undelivered messages"
        else:
            return True
        self.dropped_deliveries += 1
        logger.debug("gossip_delivery_full peer=%s (%s)", peer, reason)
        return False

    def _deliver(self, msg: rpc_pb2.Message) -> None:
        if msg.from_id == self._my_id.to_bytes():
            return  # GossipSub hands a publisher its own messages; nobody here wants them
        origin = ID(msg.from_id).to_base58()
        forwarder = self._forwarder_of.pop((msg.from_id, msg.seqno), origin)
        for name in msg.topicIDs:
            topic = self._by_name.get(name)
            if topic is None:
                continue
            try:
                self._send[topic].send_nowait((origin, msg.data, forwarder))
                self.pending_bytes += len(msg.data)
                self._pending_by_peer[forwarder] = self._pending_by_peer.get(forwarder, 0) + 1
            except trio.WouldBlock:
                self.dropped_deliveries += 1
                logger.error(
                    "gossip_delivery_dropped topic=%s buffer=%d (handlers too slow; raise subscription_buffer)",
                    topic.value,
                    self._limits.subscription_buffer,
                )

    async def _dispatch(self, topic: Topic) -> None:
        async for origin, data, forwarder in self._receive[topic]:
            self.pending_bytes -= len(data)
            held = self._pending_by_peer.get(forwarder, 0) - 1
            if held > 0:
                self._pending_by_peer[forwarder] = held
            else:
                self._pending_by_peer.pop(forwarder, None)
            payload: Any = data
            if topic is Topic.EXTRINSICS:
                payload = decode_batch(data, self._limits.max_batch_items, self._limits.max_extrinsic_size)
            for handler in self._handlers[topic]:
                try:
                    await handler(origin, payload)
                except Exception:
                    logger.exception("gossip_handler_error topic=%s origin=%s", topic.value, origin)
