"""py-libp2p's Pubsub as Arena runs it: no silent drops, no per-RPC record checks, no crash on garbage.

`ArenaPubsub` enlarges the per-peer outbound queues, hands validated messages to `Gossip`'s own
buffers instead of the library's 32-slot channels, lets one writer at a time use a stream, and
ends only the stream (not the node) on an RPC that does not parse. `p2p/gossip.py` builds on it.

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

import hashlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import libp2p.pubsub.gossipsub as _library_gossipsub
import libp2p.pubsub.pubsub as _library_pubsub
import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC as _library_env_to_send
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.pubsub.utils import maybe_consume_signed_record as _library_consume_signed_record

logger = logging.getLogger("arena.p2p.pubsub")


def message_id(msg: rpc_pb2.Message) -> bytes:
    """GossipSub message id: origin + seqno (as the library's) + a digest of the payload."""
    return msg.from_id + msg.seqno + hashlib.blake2b(msg.data, digest_size=16).digest()


class _RecordCache:
    """Per host: the digest of the signed peer record last accepted from each peer (bounded)."""

    max_peers = 4096

    def __init__(self) -> None:
        # Keyed by the host object itself, not id(host): a host made after another was collected
        # can get its id, and would then trust records its own peerstore never took in.
        self.by_host: weakref.WeakKeyDictionary[IHost, OrderedDict[bytes, bytes]] = weakref.WeakKeyDictionary()
        self.verifications = 0  # records that went through the library's full check

    def accepted(self, host: IHost) -> OrderedDict[bytes, bytes]:
        cache = self.by_host.get(host)
        if cache is None:
            cache = self.by_host[host] = OrderedDict()
        return cache


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
# By host object (see _RecordCache): keyed by id(host), a new host could send a collected
# host's record, another peer's, and have its RPCs ignored (a lost subscription, seen in CI).
_own_records: weakref.WeakKeyDictionary[IHost, tuple[float, tuple[bytes, bool]]] = weakref.WeakKeyDictionary()


def _own_record_cached(host: IHost) -> tuple[bytes, bool]:
    """Our signed peer record for outgoing RPCs: the library rebuilds its address set and
    re-marshals the envelope for every RPC (5 % of a node's CPU under load); here it is reused
    for `_OWN_RECORD_TTL_S` (a changed listen address shows up within that)."""
    now = time.monotonic()
    cached = _own_records.get(host)
    if cached is None or now - cached[0] > _OWN_RECORD_TTL_S:
        cached = (now, _library_env_to_send(host))
        _own_records[host] = cached
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
