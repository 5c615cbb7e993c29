"""IPFS bitswap on the node's libp2p host: `/ipfs/bitswap/1.2.0` (and 1.1.0, 1.0.0).

Wire format in `bitswap_wire.py`. As in boxo and Helia, a peer *sends* messages on streams it
opens and *reads* messages on streams the other side opens: a wantlist goes out on our stream,
the blocks come back on one the provider opens to us.

Provider side: every wantlist entry is answered at once, want-block with the block, want-have
with a HAVE presence, and a block this node lacks with DONT_HAVE when the entry asks for it
(`sendDontHave`). Wants are not remembered: a peer that wants a block later asks again (Kubo and
Helia rebroadcast their wantlists).

Requester side: a fetch walks the DAG from its root and keeps a window of want-block entries
(with sendDontHave) outstanding at each connected peer, one peer per block; DONT_HAVE or
silence moves a block to another peer. Every received block is hashed and must be one this node
asked that peer for; a peer that sends anything else is penalised and dropped from the fetch.
Blocks are stored as they arrive, so an interrupted fetch resumes from what is stored.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.exceptions import BaseLibp2pError

from p2p.content.bitswap_wire import (
    BITSWAP_120,
    DONT_HAVE,
    HAVE,
    PROTOCOLS,
    WANT_BLOCK,
    MalformedMessage,
    Message,
    MessageReader,
    WantEntry,
    decode_message,
    encode_message,
    frame,
)
from p2p.content.blockstore import BlockStore, BlockWriter
from p2p.content.cid import Cid, parse_cid
from p2p.content.dagpb import child_cids
from p2p.content.errors import ContentNotFound, FetchTimeout, InvalidBlock

log = logging.getLogger(__name__)

# What a failed send to a peer can raise: py-libp2p errors, socket errors, our timeouts.
NETWORK_ERRORS = (BaseLibp2pError, OSError, EOFError, trio.TooSlowError, trio.BrokenResourceError,
                  trio.ClosedResourceError)

PROTOCOL_ID = BITSWAP_120
WINDOW = 32                  # want-block entries outstanding at one peer (32 x 256 KiB = 8 MiB)
REPLY_BYTES = 1024 * 1024    # block bytes per reply message (one stream write each)
MAX_SERVED_WANTS = 1024      # wantlist entries answered from one message; the rest are ignored
WANT_TIMEOUT = 15.0          # a want unanswered this long goes to another peer
SEND_TIMEOUT = 30.0          # opening a stream and writing one batch of messages
IDLE_TIMEOUT = 300.0         # an incoming stream silent this long is closed
RETRY_INTERVAL = 0.5         # wait before asking again for blocks that every peer refused
ASKED_MEMORY = 65536         # multihashes remembered per peer as asked of it (late blocks are fine)

Penalize = Callable[[Any, str], None]
PeerList = Callable[[], Sequence[Any]]


class _FetchSession:
    """Bookkeeping of one fetch: which blocks are wanted, outstanding where, refused by whom."""

    def __init__(self, exchange: Exchange, root: Cid, writer: BlockWriter) -> None:
        self.exchange = exchange
        self.root = root
        self.writer = writer
        self.pending: deque[Cid] = deque()
        self.outstanding: dict[bytes, tuple[Any, Cid, float]] = {}  # multihash -> (peer, cid, sent at)
        self.per_peer: dict[Any, int] = {}
        self.seen: set[bytes] = set()
        self.refused: dict[bytes, set[Any]] = {}
        self.bad_peers: set[Any] = set()
        self.unreachable: set[Any] = set()
        self.asked: set[Any] = set()
        self.ever_provided = False
        self.received = 0
        self.changed = trio.Event()

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    @property
    def done(self) -> bool:
        return not self.pending and not self.outstanding

    def want(self, cid: Cid) -> None:
        """Queue `cid` unless seen; a block already stored is walked instead of fetched."""
        stack = [cid]
        blocks = self.exchange.blocks
        while stack:
            current = stack.pop()
            if current.multihash in self.seen:
                continue
            self.seen.add(current.multihash)
            if blocks.is_complete(current):
                continue
            block = blocks.get_or_none(current)
            if block is None:
                self.pending.append(current)
            else:
                stack.extend(child_cids(current, block))
        self.notify()

    def take(self, peer: Any, limit: int) -> list[Cid]:
        """Up to `limit` pending blocks that `peer` has not refused, now outstanding at `peer`."""
        batch: list[Cid] = []
        skipped: list[Cid] = []
        now = time.monotonic()
        while self.pending and len(batch) < limit:
            cid = self.pending.popleft()
            if peer in self.refused.get(cid.multihash, ()):
                skipped.append(cid)
            else:
                batch.append(cid)
                self.outstanding[cid.multihash] = (peer, cid, now)
        self.pending.extendleft(reversed(skipped))
        self.per_peer[peer] = self.per_peer.get(peer, 0) + len(batch)
        return batch

    def _release(self, multihash: bytes) -> tuple[Any, Cid] | None:
        entry = self.outstanding.pop(multihash, None)
        if entry is None:
            return None
        peer, cid, _ = entry
        self.per_peer[peer] -= 1
        return peer, cid

    def refuse(self, peer: Any, multihash: bytes) -> None:
        """`peer` does not have the block (or did not answer): queue it for another peer."""
        entry = self.outstanding.get(multihash)
        if entry is None or entry[0] != peer:
            return
        self._release(multihash)
        self.refused.setdefault(multihash, set()).add(peer)
        self.pending.append(entry[1])
        self.notify()

    def drop_peer(self, peer: Any) -> None:
        """Queue again everything outstanding at `peer` (unreachable or misbehaving)."""
        for mh in [mh for mh, (p, _, _) in self.outstanding.items() if p == peer]:
            self.refuse(peer, mh)
        self.notify()

    def accept(self, multihash: bytes, block: bytes) -> bool:
        """Store a wanted block (already hashed to `multihash`) and queue its children.

        Returns False if this session did not want it; raises InvalidBlock (storing nothing)
        if the block is oversized or undecodable.
        """
        released = self._release(multihash)
        if released is None:
            return False
        _, cid = released
        try:
            children = child_cids(cid, block)
            self.writer.put(cid, block, verify=False)
        except InvalidBlock:
            self.pending.append(cid)
            raise
        self.received += 1
        self.ever_provided = True
        self.refused.pop(multihash, None)
        for child in children:
            self.want(child)
        self.notify()
        return True

    def expired(self, now: float) -> list[tuple[Any, bytes]]:
        return [(peer, mh) for mh, (peer, _, sent) in self.outstanding.items() if now - sent > WANT_TIMEOUT]

    def usable(self, peer: Any) -> bool:
        return peer not in self.bad_peers and peer not in self.unreachable

    def stalled(self, peers: Sequence[Any]) -> bool:
        """Nothing outstanding and every pending block refused by every usable peer."""
        if self.outstanding or not self.pending:
            return False
        usable = {p for p in peers if self.usable(p)}
        return all(usable <= self.refused.get(c.multihash, set()) for c in self.pending)


class Exchange:
    """Serves stored blocks to bitswap peers and fetches whole DAGs from them."""

    def __init__(self, host: Any, blocks: BlockStore, penalize: Penalize, peers: PeerList,
                 protocols: Sequence[str] = PROTOCOLS) -> None:
        """Register the handlers on `host` (an IHost); `peers()` lists connected peer ids."""
        self.host = host
        self.blocks = blocks
        self.penalize = penalize
        self.peers = peers
        self.protocols = list(protocols)
        self.protocol_id = self.protocols[0]
        self.sessions: list[_FetchSession] = []
        self._asked: dict[Any, OrderedDict[bytes, None]] = {}
        self.blocks_served = 0
        self.blocks_received = 0
        self.duplicate_blocks = 0
        for protocol in self.protocols:
            host.set_stream_handler(protocol, self._handle_stream)

    # -- incoming messages ----------------------------------------------------------------

    async def _handle_stream(self, stream: Any) -> None:
        """Read messages until the peer closes; a malformed one gets the peer penalised."""
        peer = stream.muxed_conn.peer_id
        reader = MessageReader(stream)
        try:
            while True:
                with trio.fail_after(IDLE_TIMEOUT):
                    body = await reader.read()
                if body is None:
                    break
                await self._on_message(peer, body)
            await _close(stream)
        except MalformedMessage as exc:
            self.penalize(peer, f"malformed bitswap message: {exc}")
            await _reset(stream)
        except Exception as exc:  # noqa: BLE001 - py-libp2p drops handler errors silently
            log.debug("bitswap stream from %s failed: %r", peer, exc)
            await _reset(stream)

    async def _on_message(self, peer: Any, body: bytes) -> None:
        message = decode_message(body)
        for received in message.received:
            self._on_block(peer, received.multihash, received.data)
        for cid, kind in message.presences:
            if kind == DONT_HAVE:
                for session in self.sessions:
                    session.refuse(peer, cid.multihash)
        if message.wants:
            replies = self._answer(message.wants)
            if replies:
                await self._send(peer, replies)

    def _on_block(self, peer: Any, multihash: bytes | None, data: bytes) -> None:
        """A verified-by-hash block: hand it to the fetch that wants it, or judge the sender."""
        if multihash is not None:
            for session in self.sessions:
                if peer in session.bad_peers:
                    continue
                try:
                    if session.accept(multihash, data):
                        self.blocks_received += 1
                        return
                except InvalidBlock as exc:
                    self._misbehaved(peer, f"sent an unusable block: {exc}")
                    return
        asked = self._asked.get(peer)
        if multihash is not None and asked is not None and multihash in asked:
            self.duplicate_blocks += 1  # asked of it once; it arrived late or twice
            return
        self._misbehaved(peer, "sent block bytes that do not hash to any block asked of it")

    def _misbehaved(self, peer: Any, reason: str) -> None:
        self.penalize(peer, reason)
        for session in self.sessions:
            session.bad_peers.add(peer)
            session.drop_peer(peer)

    # -- provider side --------------------------------------------------------------------

    def _answer(self, wants: list[WantEntry]) -> list[Message]:
        """The reply messages for a wantlist: blocks, HAVE and DONT_HAVE presences."""
        replies: list[Message] = []
        current = Message()
        size = 0
        for entry in wants[:MAX_SERVED_WANTS]:
            if entry.cancel:
                continue
            if entry.want_type == WANT_BLOCK:
                block = self.blocks.get_by_multihash(entry.cid.multihash)
                if block is not None:
                    if current.blocks and size + len(block) > REPLY_BYTES:
                        replies.append(current)
                        current, size = Message(), 0
                    current.blocks.append((entry.cid, block))
                    size += len(block)
                    self.blocks_served += 1
                    continue
            elif self.blocks.get_by_multihash(entry.cid.multihash) is not None:
                current.presences.append((entry.cid, HAVE))
                continue
            if entry.send_dont_have:
                current.presences.append((entry.cid, DONT_HAVE))
        if not current.is_empty():
            replies.append(current)
        return replies

    async def _send(self, peer: Any, messages: list[Message]) -> None:
        """Open a bitswap stream to `peer` and write `messages` on it, about 1 MiB per write."""
        with trio.fail_after(SEND_TIMEOUT):
            stream = await self.host.new_stream(peer, self.protocols)
            try:
                protocol = str(stream.get_protocol() or BITSWAP_120)
                pending: list[bytes] = []
                pending_bytes = 0
                for message in messages:
                    data = frame(encode_message(message, protocol))
                    if pending and pending_bytes + len(data) > REPLY_BYTES:
                        await stream.write(b"".join(pending))
                        pending, pending_bytes = [], 0
                    pending.append(data)
                    pending_bytes += len(data)
                if pending:
                    await stream.write(b"".join(pending))
            except BaseException:
                await _reset(stream)
                raise
            await _close(stream)

    # -- requester side -------------------------------------------------------------------

    async def fetch(self, cid: str | Cid, timeout: float = 60.0) -> None:
        """Fetch the whole DAG under `cid` from connected peers and record it as complete.

        Raises ContentNotFound if no peer provided it before `timeout` seconds, FetchTimeout if
        the transfer was under way but did not finish in time. Blocks received before a failure
        stay stored, so calling again resumes.
        """
        root = parse_cid(cid)
        if self.blocks.is_complete(root):
            return
        with self.blocks.writer() as writer:
            session = _FetchSession(self, root, writer)
            session.want(root)
            self.sessions.append(session)
            try:
                with trio.move_on_after(timeout) as scope:
                    if not session.done:
                        await self._run_session(session)
            finally:
                self.sessions.remove(session)
                with trio.CancelScope(shield=True):
                    await self._cancel_outstanding(session)
            if scope.cancelled_caught:
                self._raise_timeout(session, timeout)
            writer.commit(root)

    def _raise_timeout(self, session: _FetchSession, timeout: float) -> None:
        missing = len(session.pending) + len(session.outstanding)
        if not session.ever_provided:
            raise ContentNotFound(
                f"{session.root}: none of the {len(session.asked)} connected peers provided it "
                f"within {timeout:g}s"
            )
        raise FetchTimeout(
            f"{session.root}: {session.received} blocks received, {missing} still missing after "
            f"{timeout:g}s; call fetch again to resume"
        )

    async def _run_session(self, session: _FetchSession) -> None:
        me = self.host.get_id()
        async with trio.open_nursery() as nursery:
            while not session.done:
                peers = [p for p in self.peers() if p != me]
                for peer, mh in session.expired(time.monotonic()):
                    session.refuse(peer, mh)
                for peer in peers:
                    if not session.usable(peer):
                        continue
                    in_flight = session.per_peer.get(peer, 0)
                    if in_flight <= WINDOW // 2 and session.pending:
                        batch = session.take(peer, WINDOW - in_flight)
                        if batch:
                            session.asked.add(peer)
                            nursery.start_soon(self._send_wants, session, peer, batch)
                if session.stalled(peers) or not any(session.usable(p) for p in peers):
                    await trio.sleep(RETRY_INTERVAL)
                    session.refused.clear()  # peers may have the blocks by now
                    session.unreachable.clear()
                else:
                    with trio.move_on_after(RETRY_INTERVAL):
                        await session.changed.wait()
            nursery.cancel_scope.cancel()

    async def _send_wants(self, session: _FetchSession, peer: Any, batch: list[Cid]) -> None:
        asked = self._asked.setdefault(peer, OrderedDict())
        for cid in batch:
            asked[cid.multihash] = None
            asked.move_to_end(cid.multihash)
        while len(asked) > ASKED_MEMORY:
            asked.popitem(last=False)
        wants = [WantEntry(cid, WANT_BLOCK, send_dont_have=True) for cid in batch]
        try:
            await self._send(peer, [Message(wants=wants)])
        except NETWORK_ERRORS as exc:  # unreachable peer, no bitswap there, reset stream
            log.debug("bitswap wantlist to %s failed: %r", peer, exc)
            session.unreachable.add(peer)
            session.drop_peer(peer)

    async def _cancel_outstanding(self, session: _FetchSession) -> None:
        """Tell peers to forget wants this fetch no longer needs (best effort, bounded)."""
        by_peer: dict[Any, list[WantEntry]] = {}
        for peer, cid, _ in session.outstanding.values():
            by_peer.setdefault(peer, []).append(WantEntry(cid, WANT_BLOCK, cancel=True))
        with trio.move_on_after(2):
            for peer, entries in by_peer.items():
                try:
                    await self._send(peer, [Message(wants=entries)])
                except NETWORK_ERRORS:
                    pass


async def _reset(stream: Any) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except NETWORK_ERRORS as exc:
            log.debug("stream reset failed (already gone): %r", exc)


async def _close(stream: Any) -> None:
    with trio.move_on_after(2) as scope:
        try:
            await stream.close()
        except NETWORK_ERRORS:
            await _reset(stream)
    if scope.cancelled_caught:
        await _reset(stream)
