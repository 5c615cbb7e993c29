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

The library's `Pubsub` as Arena runs it (larger queues, our own delivery, cached peer records,
one writer per stream, no crash on garbage) is `p2p/pubsub.py`.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2

from p2p.batcher import BatchDecodeError, decode_batch
from p2p.config import NetworkLimits
from p2p.peers import PeerManager, Penalty
from p2p.pubsub import ArenaPubsub, message_id  # noqa: F401 - message_id re-exported (the ids gossip uses)

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
AsyncValidator = Callable[[str, Any], Awaitable[Verdict]]
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


class ArenaGossipSub(GossipSub):
    """GossipSub that announces IDONTWANT (v1.2) only for large messages, as go-libp2p does
    (`IDontWantMessageThreshold`).

    The library sends one IDONTWANT control RPC to every mesh peer for every message it accepts,
    whatever its size: for an extrinsic batch or a vote, that costs each peer as much as the
    duplicate it may spare (a frame built, encrypted, sent, read, decrypted, parsed and
    handled), and on a 4-node network it doubled the frames per gossip message. Blocks under
    load (hundreds of KiB) keep it."""

    IDONTWANT_MIN_BYTES = 64 * 1024

    _publishing_size = 0

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        # the library computes the id and awaits `_emit_idontwant_for_message` with no await
        # before it, so this size is still the message's when that runs
        self._publishing_size = len(pubsub_msg.data)
        await super().publish(msg_forwarder, pubsub_msg)

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
        if self._publishing_size >= self.IDONTWANT_MIN_BYTES:
            await super()._emit_idontwant_for_message(msg_id, topic_ids)


class Gossip:
    """Topic naming, validation, subscription dispatch and publishing for one node."""

    def __init__(self, host: IHost, chain_tag: str, limits: NetworkLimits, peers: PeerManager) -> None:
        self._host = host
        self._limits = limits
        self._peers = peers
        self._my_id = host.get_id()
        self.router = ArenaGossipSub(
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
        self._validators: dict[Topic, Any] = {}  # Validator, or AsyncValidator where registered async
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

    def set_validator(self, topic: Topic, fn: Validator | AsyncValidator) -> None:
        """Register the one validator of `topic`; it runs before a message is delivered or forwarded.

        An `async def` validator may await (block import gives the event loop turns); the library
        gives it `validation_timeout` seconds, and a peer's later messages wait for it."""
        topic = Topic(topic)
        self._validators[topic] = fn
        if inspect.iscoroutinefunction(fn):
            self.pubsub.set_topic_validator(self._names[topic], self._make_async_validator(topic), True)
        else:
            self.pubsub.set_topic_validator(self._names[topic], self._make_validator(topic), False)

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
            admitted = self._admit(topic, forwarder, msg)
            if admitted is None:
                return False
            peer, payload, digests = admitted
            fn = self._validators.get(topic)
            verdict = Verdict.ACCEPT
            if fn is not None:
                try:
                    verdict = fn(peer, payload)
                except Exception:
                    # A bug in our own validator must not be blamed on the peer.
                    logger.exception("gossip_validator_error topic=%s peer=%s", topic.value, peer)
                    return False
            return self._conclude(peer, msg, digests, verdict)

        return validate

    def _make_async_validator(self, topic: Topic) -> Callable[[ID, rpc_pb2.Message], Awaitable[bool]]:
        """The same checks around an async validator (one that awaits, e.g. work done in turns)."""
        async def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            if forwarder == self._my_id:
                return True  # our own publish: size checked in publish(), content by the caller
            admitted = self._admit(topic, forwarder, msg)
            if admitted is None:
                return False
            peer, payload, digests = admitted
            fn = self._validators[topic]
            try:
                verdict = await fn(peer, payload)
            except Exception:
                logger.exception("gossip_validator_error topic=%s peer=%s", topic.value, peer)
                return False
            return self._conclude(peer, msg, digests, verdict)

        return validate

    def _admit(self, topic: Topic, forwarder: ID, msg: rpc_pb2.Message) -> tuple[str, Any, list[bytes]] | None:
        """The checks before a topic's validator: None to drop the message, else (forwarding peer,
        payload, digests) for the validator."""
        peer = forwarder.to_base58()
        self.last_message_from[peer] = time.monotonic()  # alive (see NetworkService._ping_once)
        if len(self.last_message_from) > self._limits.max_tracked_peers:
            self.last_message_from.pop(next(iter(self.last_message_from)))
        if self._peers.is_banned(peer):
            return None
        data = msg.data
        if len(data) > self._max_size[topic]:
            self._peers.penalize(peer, Penalty.OVERSIZE)
            return None
        payload: Any = data
        if topic is Topic.EXTRINSICS:
            try:
                payload = decode_batch(data, self._limits.max_batch_items, self._limits.max_extrinsic_size)
            except BatchDecodeError as exc:
                logger.info("gossip_garbage peer=%s topic=%s error=%s", peer, topic.value, exc)
                self._peers.penalize(peer, Penalty.GARBAGE)
                return None
            digests = [SeenCache.digest(topic, item) for item in payload]
        else:
            digests = [SeenCache.digest(topic, data)]
        if all(digest in self.seen for digest in digests):
            self.replays_ignored += 1  # content already accepted under another envelope
            return None
        if not self._has_delivery_room(peer, len(data)):
            return None
        return peer, payload, digests

    def _conclude(self, peer: str, msg: rpc_pb2.Message, digests: list[bytes], verdict: Verdict) -> bool:
        """Act on a validator's verdict: penalise a REJECT, remember an ACCEPT as seen."""
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
