"""Block exchange between Arena nodes over their libp2p host (protocol `/arena/bitswap/1.0.0`).

One request per stream, every message one length-prefixed frame (`framing.py`) whose first
payload byte is its kind. The requester sends WANT (kind 1, then for each of at most `MAX_WANTS`
blocks a 1-byte length and the multihash); the provider answers, in order, one frame per entry,
BLOCK (kind 2, 1-byte multihash length, multihash, block bytes) or DONT_HAVE (kind 3,
multihash), then END (kind 4), and closes. A fetch walks the DAG from its root, spreads the wanted blocks over the
connected peers in batches, verifies every block against its multihash, and stores blocks as
they arrive, so an interrupted fetch resumes from what is already stored.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.exceptions import BaseLibp2pError

from p2p.content.blockstore import BlockStore, BlockWriter
from p2p.content.cid import Cid, parse_cid, sha256_multihash
from p2p.content.dagpb import child_cids
from p2p.content.errors import ContentNotFound, FetchTimeout, InvalidBlock
from p2p.content.framing import FrameError, FrameReader, StreamClosedEarly, encode_frame

log = logging.getLogger(__name__)

# What a failed request to a peer can raise: py-libp2p errors, socket errors, our timeouts.
NETWORK_ERRORS = (BaseLibp2pError, OSError, EOFError, trio.TooSlowError, trio.BrokenResourceError,
                  trio.ClosedResourceError)

PROTOCOL_ID = "/arena/bitswap/1.0.0"
WANT, BLOCK, DONT_HAVE, END = 1, 2, 3, 4
MAX_WANTS = 64
WRITE_SIZE = 1024 * 1024  # bytes per stream write (py-libp2p breaks on single writes over ~6.8 MB)
BATCH_SIZE = 16           # blocks asked for in one request (16 x 256 KiB = 4 MiB)
REQUESTS_PER_PEER = 2     # concurrent requests to one peer (more only adds scheduling cost)
REQUEST_TIMEOUT = 30.0    # one request/response, seconds
RETRY_INTERVAL = 0.5      # wait before asking again for blocks that no peer had

Penalize = Callable[[Any, str], None]
PeerList = Callable[[], Sequence[Any]]


class _PeerMisbehaved(Exception):
    """The remote broke the protocol; it is penalized and dropped from the fetch."""


class _FetchSession:
    """Bookkeeping of one fetch: which blocks are wanted, in flight, refused, and by whom."""

    def __init__(self, exchange: Exchange, root: Cid, writer: BlockWriter) -> None:
        self.exchange = exchange
        self.root = root
        self.writer = writer
        self.pending: deque[Cid] = deque()
        self.in_flight = 0
        self.seen: set[bytes] = set()
        self.refused: dict[bytes, set[Any]] = {}
        self.bad_peers: set[Any] = set()
        self.peers_with_workers: set[Any] = set()
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
        return not self.pending and self.in_flight == 0

    def want(self, cid: Cid) -> None:
        """Queue `cid` unless seen; a block already stored is walked instead of fetched."""
        stack = [cid]
        while stack:
            current = stack.pop()
            if current.multihash in self.seen:
                continue
            self.seen.add(current.multihash)
            if self.exchange.blocks.is_complete(current):
                continue
            block = self.exchange.blocks.get_or_none(current)
            if block is None:
                self.pending.append(current)
            else:
                stack.extend(child_cids(current, block))
        self.notify()

    def take(self, peer: Any, limit: int) -> list[Cid]:
        """Up to `limit` pending blocks that `peer` has not refused."""
        batch: list[Cid] = []
        skipped: list[Cid] = []
        while self.pending and len(batch) < limit:
            cid = self.pending.popleft()
            if peer in self.refused.get(cid.multihash, ()):
                skipped.append(cid)
            else:
                batch.append(cid)
        self.pending.extendleft(reversed(skipped))
        self.in_flight += len(batch)
        return batch

    def give_back(self, cids: Sequence[Cid], peer: Any) -> None:
        """Return unserved blocks to the queue, remembering that `peer` did not serve them."""
        for cid in cids:
            self.refused.setdefault(cid.multihash, set()).add(peer)
            self.pending.append(cid)
        self.in_flight -= len(cids)
        self.notify()

    def accept(self, cid: Cid, block: bytes) -> None:
        """Store a block already checked against its hash, and queue its children.

        Raises InvalidBlock (changing nothing) if the block is oversized or undecodable.
        """
        children = child_cids(cid, block)
        self.writer.put(cid, block, verify=False)
        self.received += 1
        self.ever_provided = True
        self.in_flight -= 1
        self.refused.pop(cid.multihash, None)
        for child in children:
            self.want(child)
        self.notify()

    def active_peers(self) -> list[Any]:
        return [p for p in self.peers_with_workers if p not in self.bad_peers]

    def stalled(self) -> bool:
        """Nothing in flight and every pending block refused by every usable peer."""
        if self.in_flight or not self.pending:
            return False
        peers = self.active_peers()
        return all(set(peers) <= self.refused.get(c.multihash, set()) for c in self.pending)


class Exchange:
    """Serves stored blocks to peers and fetches whole DAGs from them."""

    def __init__(self, host: Any, blocks: BlockStore, penalize: Penalize, peers: PeerList,
                 protocol_id: str = PROTOCOL_ID) -> None:
        """Register the provider side on `host` (an IHost); `peers()` lists connected peer ids."""
        self.host = host
        self.blocks = blocks
        self.penalize = penalize
        self.peers = peers
        self.protocol_id = protocol_id
        self.blocks_served = 0
        host.set_stream_handler(protocol_id, self._handle_stream)

    # -- provider side --------------------------------------------------------------------

    async def _handle_stream(self, stream: Any) -> None:
        """Answer one WANT request; every failure is logged and ends in a stream reset."""
        peer = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                request = await FrameReader(stream).read()
                # frames are coalesced into writes of about WRITE_SIZE: fewer, larger muxer writes
                pending: list[bytes] = []
                pending_bytes = 0
                for mh in _parse_want(request):
                    block = self.blocks.get_by_multihash(mh)
                    if block is None:
                        frame = encode_frame(_KIND[DONT_HAVE], mh)
                    else:
                        frame = encode_frame(_KIND[BLOCK], _KIND[len(mh)], mh, block)
                        self.blocks_served += 1
                    if pending and pending_bytes + len(frame) > WRITE_SIZE:
                        await stream.write(b"".join(pending))
                        pending, pending_bytes = [], 0
                    pending.append(frame)
                    pending_bytes += len(frame)
                pending.append(encode_frame(_KIND[END]))
                await stream.write(b"".join(pending))
                await stream.close()
        except (FrameError, _PeerMisbehaved) as exc:
            self.penalize(peer, f"malformed bitswap request: {exc}")
            await _reset(stream)
        except Exception as exc:  # noqa: BLE001 - py-libp2p drops handler errors silently
            log.debug("bitswap request from %s failed: %r", peer, exc)
            await _reset(stream)

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
            with trio.move_on_after(timeout) as scope:
                if not session.done:
                    await self._run_session(session)
            if scope.cancelled_caught:
                self._raise_timeout(session, timeout)
            writer.commit(root)

    def _raise_timeout(self, session: _FetchSession, timeout: float) -> None:
        missing = len(session.pending) + session.in_flight
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
        async with trio.open_nursery() as nursery:
            while not session.done:
                for peer in self.peers():
                    if (peer not in session.peers_with_workers and peer not in session.unreachable
                            and peer not in session.bad_peers and peer != self.host.get_id()):
                        session.peers_with_workers.add(peer)
                        session.asked.add(peer)
                        for _ in range(REQUESTS_PER_PEER):
                            nursery.start_soon(self._worker, session, peer)
                if session.stalled() or not session.active_peers():
                    await trio.sleep(RETRY_INTERVAL)
                    session.refused.clear()  # peers may have the blocks by now
                    session.unreachable.clear()
                    session.notify()
                else:
                    with trio.move_on_after(RETRY_INTERVAL):
                        await session.changed.wait()
            nursery.cancel_scope.cancel()

    async def _worker(self, session: _FetchSession, peer: Any) -> None:
        while not session.done and peer not in session.bad_peers and peer not in session.unreachable:
            batch = session.take(peer, BATCH_SIZE)
            if not batch:
                if peer not in session.peers_with_workers:
                    return
                await session.changed.wait()
                continue
            try:
                with trio.fail_after(REQUEST_TIMEOUT):
                    await self._request(session, peer, batch)
            except _PeerMisbehaved as exc:
                self.penalize(peer, str(exc))
                session.bad_peers.add(peer)
                session.give_back(batch, peer)
                return
            except NETWORK_ERRORS as exc:  # unreachable peer, reset stream, timeout
                log.debug("bitswap request to %s failed: %r", peer, exc)
                session.give_back(batch, peer)
                session.unreachable.add(peer)
                session.peers_with_workers.discard(peer)
                return

    async def _request(self, session: _FetchSession, peer: Any, batch: list[Cid]) -> None:
        """Ask `peer` for `batch`; accepted blocks leave `batch`, the rest is given back."""
        stream = await self.host.new_stream(peer, [self.protocol_id])
        try:
            wants = [part for c in batch for part in (_KIND[len(c.multihash)], c.multihash)]
            await stream.write(encode_frame(_KIND[WANT], *wants))
            reader = FrameReader(stream)
            by_mh = {c.multihash: c for c in batch}
            refused: list[Cid] = []
            while True:
                try:
                    message = await reader.read()
                except StreamClosedEarly:
                    raise  # the peer went away: a network failure, not misbehaviour
                except FrameError as exc:
                    raise _PeerMisbehaved(f"bitswap response broke framing: {exc}") from None
                kind, mh, block = _parse_reply(message)
                if kind == END:
                    break
                cid = by_mh.pop(mh, None)
                if cid is None:
                    raise _PeerMisbehaved("bitswap response names a block that was not asked for")
                batch.remove(cid)
                if kind == DONT_HAVE:
                    refused.append(cid)
                elif sha256_multihash(block) != cid.multihash:
                    session.give_back([cid], peer)
                    raise _PeerMisbehaved(f"sent bytes for {cid} that do not hash to it")
                else:
                    try:
                        session.accept(cid, block)
                    except InvalidBlock as exc:
                        session.give_back([cid], peer)
                        raise _PeerMisbehaved(f"sent an unusable block {cid}: {exc}") from None
            session.give_back(refused + batch, peer)
            batch.clear()
        finally:
            await _reset_or_close(stream)


_KIND = [bytes((i,)) for i in range(256)]


def _parse_want(payload: bytes) -> list[bytes]:
    if not payload or payload[0] != WANT:
        raise _PeerMisbehaved("expected a WANT frame")
    wants: list[bytes] = []
    pos = 1
    while pos < len(payload):
        size = payload[pos]
        mh = payload[pos + 1:pos + 1 + size]
        if len(mh) != size or len(wants) == MAX_WANTS:
            raise _PeerMisbehaved(f"WANT frame is truncated or lists more than {MAX_WANTS} blocks")
        wants.append(mh)
        pos += 1 + size
    return wants


def _parse_reply(payload: bytes) -> tuple[int, bytes, bytes]:
    kind = payload[0] if payload else 0
    if kind == END and len(payload) == 1:
        return END, b"", b""
    if kind == DONT_HAVE:
        return DONT_HAVE, payload[1:], b""
    if kind == BLOCK and len(payload) > 2 and len(payload) >= 2 + payload[1]:
        end = 2 + payload[1]
        return BLOCK, payload[2:end], payload[end:]
    raise _PeerMisbehaved("bitswap response frame is not BLOCK, DONT_HAVE or END")


async def _reset(stream: Any) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except NETWORK_ERRORS as exc:
            log.debug("stream reset failed (already gone): %r", exc)


async def _reset_or_close(stream: Any) -> None:
    with trio.move_on_after(2) as scope:
        try:
            await stream.close()
        except NETWORK_ERRORS:
            await _reset(stream)
    if scope.cancelled_caught:
        await _reset(stream)

