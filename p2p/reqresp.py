"""Request/response protocols `status` and `blocks_by_range` over libp2p streams.

Framing (both directions): 4-byte big-endian length, then the frame body; first body byte is
the kind. A request is one REQUEST frame (msgpack list). A reply is a sequence of PART/ITEM
frames (an item is its PART pieces plus the closing ITEM piece, so no write exceeds
`response_chunk_size`), then END, or a single ERROR frame (msgpack [code, message]).
Every handler catches everything and answers with an ERROR frame; every client call has a
timeout (py-libp2p drops handler exceptions silently and the client would otherwise hang).

Only provably invalid data costs a peer score: a malformed frame, an over-limit reply, a wrong
item count. A timeout, a reset or a stream that just ends is what a slow or restarting honest
peer does too, so it costs nothing (`status_of_peers` backs off from silent peers instead).
A peer that does not speak these protocols at all (an IPFS node) is asked once, remembered
for `foreign_peer_memory_s`, logged in one line, and not asked again (`UnsupportedProtocol`).
"""

from __future__ import annotations

import inspect
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgpack
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.protocol_muxer.exceptions import MultiselectClientError

from p2p.config import NetworkLimits
from p2p.peers import PeerManager, Penalty

logger = logging.getLogger("arena.p2p.reqresp")

KIND_REQUEST = 0x10
KIND_PART = 0x01
KIND_ITEM = 0x02
KIND_END = 0x03
KIND_ERROR = 0x04
_HEADER = struct.Struct(">I")

ERR_BAD_REQUEST = 1
ERR_UNAVAILABLE = 2
ERR_INTERNAL = 3
ERR_BANNED = 4

StatusHandler = Callable[[], bytes | Awaitable[bytes]]
BlocksHandler = Callable[[int, int], list[bytes] | Awaitable[list[bytes]]]


class RequestError(Exception):
    """A request to a peer failed; the message names the peer and the cause."""


class RequestTimeout(RequestError):
    """The peer did not answer within the request timeout."""


class RemoteError(RequestError):
    """The peer answered with an error frame."""

    def __init__(self, peer_id: str, code: int, message: str) -> None:
        super().__init__(f"peer {peer_id} answered error {code}: {message}")
        self.code = code
        self.remote_message = message


class BadResponse(RequestError):
    """The peer's reply broke the framing or a limit; the peer has been penalised."""


class UnsupportedProtocol(RequestError):
    """The peer does not speak this protocol (not an Arena node of this chain); it is not asked again."""


class FrameError(Exception):
    """A frame is malformed or over its size limit."""


class StreamEnded(FrameError):
    """The stream ended (closed or reset) before a whole frame arrived: not proof of misbehaviour."""


class _UnsupportedProtocolLogFilter(logging.Filter):
    """Drops py-libp2p's 7-line ERROR for a protocol the remote does not support.

    That is the normal answer of a foreign peer (an IPFS node); `ReqResp` logs one line per
    peer instead (`peer_not_arena`). Other stream failures are still logged by the library.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Failed to open stream to peer") and "not supported" in message)


_LIBP2P_HOST_LOGGER = logging.getLogger("libp2p.host.basic_host")
if not any(isinstance(f, _UnsupportedProtocolLogFilter) for f in _LIBP2P_HOST_LOGGER.filters):
    _LIBP2P_HOST_LOGGER.addFilter(_UnsupportedProtocolLogFilter())


def is_unsupported_protocol(exc: BaseException) -> bool:
    """True if `exc` (or its cause chain) is a multistream "protocol not supported" answer."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, MultiselectClientError) and "not supported" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def read_exactly(stream: INetStream, size: int) -> bytes:
    """Read exactly `size` bytes; raise `FrameError` if the stream ends first."""
    chunks, remaining = [], size
    while remaining:
        try:
            chunk = await stream.read(remaining)
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise StreamEnded(f"stream ended with {remaining} of {size} bytes missing")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def read_frame(stream: INetStream, max_size: int) -> tuple[int, bytes]:
    """Read one frame; return (kind, body)."""
    (length,) = _HEADER.unpack(await read_exactly(stream, _HEADER.size))
    if length == 0 or length > max_size + 1:
        raise FrameError(f"frame of {length} bytes (limit {max_size + 1})")
    body = await read_exactly(stream, length)
    return body[0], body[1:]


class FrameReader:
    """The frames of one reply, read from the stream in pieces of up to `chunk` bytes.

    `read_frame` asks the stream for each 4-byte header and each body separately: two yamux reads,
    each with its window bookkeeping, per frame. A range reply of 256 blocks is 257 frames; read
    here it takes a read per ~64 KiB instead. The frames and their limits are the same.
    """

    def __init__(self, stream: INetStream, chunk: int = 1 << 16) -> None:
        self._stream = stream
        self._chunk = chunk
        self._buffer = b""
        self._offset = 0

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) - self._offset < size:
            try:
                more = await self._stream.read(max(self._chunk, size - (len(self._buffer) - self._offset)))
            except StreamEOF:
                more = b""
            if not more:
                missing = size - (len(self._buffer) - self._offset)
                raise StreamEnded(f"stream ended with {missing} of {size} bytes missing")
            self._buffer = self._buffer[self._offset:] + more
            self._offset = 0
        out = self._buffer[self._offset : self._offset + size]
        self._offset += size
        return out

    async def frame(self, max_size: int) -> tuple[int, bytes]:
        (length,) = _HEADER.unpack(await self._exactly(_HEADER.size))
        if length == 0 or length > max_size + 1:
            raise FrameError(f"frame of {length} bytes (limit {max_size + 1})")
        body = await self._exactly(length)
        return body[0], body[1:]


def encode_frame(kind: int, body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 1) + bytes([kind]) + body


async def close_quietly(stream: INetStream) -> None:
    """Close a stream, shielded and bounded to 1 s; a peer that already went away is not an error."""
    with trio.move_on_after(1, shield=True):  # type: ignore[call-arg]  # trio-typing stubs predate it
        try:
            await stream.close()
        except Exception:
            logger.debug("stream_close_failed", exc_info=True)


async def write_frame(stream: INetStream, kind: int, body: bytes) -> None:
    """Write one frame (header + kind + body) in a single write."""
    await stream.write(encode_frame(kind, body))


class ReqResp:
    """Serves and issues `status` and `blocks_by_range` requests."""

    def __init__(self, host: IHost, chain_tag: str, limits: NetworkLimits, peers: PeerManager) -> None:
        self._host = host
        self._limits = limits
        self._peers = peers
        self.status_protocol = TProtocol(f"/arena/{chain_tag}/status/1")
        self.sync_protocol = TProtocol(f"/arena/{chain_tag}/sync/1")
        self._on_status: StatusHandler | None = None
        self._on_blocks: BlocksHandler | None = None
        self._clock: Callable[[], float] = time.monotonic
        # peer -> when it was found not to speak our protocols (bounded, oldest forgotten first)
        self._foreign: OrderedDict[str, float] = OrderedDict()
        # peer -> (skip status requests until, consecutive timeouts) (bounded likewise)
        self._silent: OrderedDict[str, tuple[float, int]] = OrderedDict()
        host.set_stream_handler(self.status_protocol, self._serve_status)
        host.set_stream_handler(self.sync_protocol, self._serve_blocks)

    def set_status_handler(self, fn: StatusHandler) -> None:
        """`fn() -> bytes` (sync or async): this node's encoded status."""
        self._on_status = fn

    def set_blocks_by_range_handler(self, fn: BlocksHandler) -> None:
        """`fn(start, count) -> list[bytes]` (sync or async): encoded blocks start..start+count-1."""
        self._on_blocks = fn

    # ---- client -------------------------------------------------------------------------

    async def request_status(self, peer_id: str, timeout_s: float | None = None) -> bytes:
        """Ask `peer_id` for its status within `timeout_s` (default `request_timeout_s`).

        Raises `RequestError` subclasses on failure: `RequestTimeout`, `UnsupportedProtocol`
        (a foreign peer), `RemoteError`, `BadResponse`.
        """
        items = await self._request(peer_id, self.status_protocol, [], max_items=1, timeout_s=timeout_s)
        if len(items) != 1:
            self._peers.penalize(peer_id, Penalty.BAD_RESPONSE)
            raise BadResponse(f"peer {peer_id} sent {len(items)} status items, expected 1")
        return items[0]

    async def request_blocks(self, peer_id: str, start: int, count: int, timeout_s: float | None = None) -> list[bytes]:
        """Ask `peer_id` for up to `count` blocks from `start`; fewer may come back (size limit)."""
        if start < 0 or not 0 < count <= self._limits.max_blocks_per_request:
            raise ValueError(f"count must be 1..{self._limits.max_blocks_per_request} and start >= 0")
        return await self._request(peer_id, self.sync_protocol, [start, count], max_items=count, timeout_s=timeout_s)

    async def status_of_peers(
        self,
        peers: Iterable[str],
        timeout_s: float | None = None,
        max_concurrent: int | None = None,
    ) -> dict[str, bytes | RequestError]:
        """Ask many peers for their status at once; one silent peer delays nobody.

        Each request is bounded by `timeout_s` (default `limits.status_timeout_s`), at most
        `max_concurrent` (default `limits.status_concurrency`) run at a time, so a round takes
        about `timeout_s` however many peers stay silent. Foreign peers, and peers that timed
        out recently (backoff doubling from 1 s up to `silent_peer_backoff_max_s`), are skipped
        and absent from the result. Every asked peer maps to its status bytes or the
        `RequestError` it failed with; nothing is raised for a peer's failure.
        """
        timeout = self._limits.status_timeout_s if timeout_s is None else timeout_s
        limiter = trio.CapacityLimiter(max(1, self._limits.status_concurrency if max_concurrent is None else max_concurrent))
        results: dict[str, bytes | RequestError] = {}

        async def ask(peer: str) -> None:
            async with limiter:
                try:
                    results[peer] = await self.request_status(peer, timeout_s=timeout)
                except RequestError as exc:
                    results[peer] = exc

        async with trio.open_nursery() as nursery:
            for peer in dict.fromkeys(peers):
                if self.is_foreign(peer) or self._backing_off(peer):
                    continue
                nursery.start_soon(ask, peer)
        return results

    def is_foreign(self, peer_id: object) -> bool:
        """True if the peer was found not to speak Arena's protocols (remembered for a while)."""
        peer = peer_id.to_base58() if isinstance(peer_id, ID) else str(peer_id)
        since = self._foreign.get(peer)
        if since is None:
            return False
        if self._clock() - since >= self._limits.foreign_peer_memory_s:
            del self._foreign[peer]
            return False
        return True

    def _remember_foreign(self, peer_id: str, protocol: TProtocol) -> None:
        if peer_id not in self._foreign:
            logger.info("peer_not_arena peer=%s protocol=%s (not asked again for %.0fs)",
                        peer_id, protocol, self._limits.foreign_peer_memory_s)
        self._foreign[peer_id] = self._clock()
        self._foreign.move_to_end(peer_id)
        while len(self._foreign) > self._limits.max_tracked_peers:
            self._foreign.popitem(last=False)

    def _backing_off(self, peer_id: str) -> bool:
        entry = self._silent.get(peer_id)
        return entry is not None and self._clock() < entry[0]

    def _note_silent(self, peer_id: str) -> None:
        strikes = self._silent.get(peer_id, (0.0, 0))[1] + 1
        delay = min(2.0 ** (strikes - 1), self._limits.silent_peer_backoff_max_s)
        self._silent[peer_id] = (self._clock() + delay, strikes)
        self._silent.move_to_end(peer_id)
        while len(self._silent) > self._limits.max_tracked_peers:
            self._silent.popitem(last=False)

    async def _request(
        self, peer_id: str, protocol: TProtocol, args: list[Any], max_items: int, timeout_s: float | None = None,
    ) -> list[bytes]:
        if self.is_foreign(peer_id):
            raise UnsupportedProtocol(f"peer {peer_id} does not speak {protocol}")
        timeout = self._limits.request_timeout_s if timeout_s is None else timeout_s
        stream: INetStream | None = None
        try:
            with trio.fail_after(timeout):
                try:
                    stream = await self._host.new_stream(ID.from_base58(peer_id), [protocol])
                except Exception as exc:
                    if is_unsupported_protocol(exc):
                        self._remember_foreign(peer_id, protocol)
                        raise UnsupportedProtocol(f"peer {peer_id} does not speak {protocol}") from None
                    raise
                await write_frame(stream, KIND_REQUEST, msgpack.packb(args))
                items = await self._read_reply(peer_id, stream, max_items)
            self._silent.pop(peer_id, None)
            return items
        except trio.TooSlowError:
            # Slow is not invalid: no penalty, but status rounds skip this peer for a while.
            self._note_silent(peer_id)
            raise RequestTimeout(f"peer {peer_id} did not answer {protocol} within {timeout}s") from None
        except RequestError:
            raise
        except StreamEnded as exc:
            raise RequestError(f"peer {peer_id} closed the {protocol} stream early: {exc}") from exc
        except FrameError as exc:
            self._peers.penalize(peer_id, Penalty.BAD_RESPONSE)
            raise BadResponse(f"peer {peer_id} sent a malformed {protocol} reply: {exc}") from exc
        except Exception as exc:
            raise RequestError(f"{protocol} request to {peer_id} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if stream is not None:
                await close_quietly(stream)

    async def _read_reply(self, peer_id: str, stream: INetStream, max_items: int) -> list[bytes]:
        limits = self._limits
        items: list[bytes] = []
        parts: list[bytes] = []
        part_size = total = 0
        reader = FrameReader(stream)
        while True:
            kind, body = await reader.frame(limits.response_chunk_size)
            if kind == KIND_END:
                if parts:
                    raise FrameError("reply ended inside an item")
                return items
            if kind == KIND_ERROR:
                code, message = _decode_error(body)
                raise RemoteError(peer_id, code, message)
            if kind not in (KIND_PART, KIND_ITEM):
                raise FrameError(f"unexpected frame kind {kind:#x}")
            total += len(body)
            part_size += len(body)
            if total > limits.max_response_bytes or part_size > limits.max_response_item:
                raise FrameError(f"reply over limits ({limits.max_response_bytes} B total, {limits.max_response_item} B per item)")
            parts.append(body)
            if kind == KIND_ITEM:
                items.append(b"".join(parts))
                parts, part_size = [], 0
                if len(items) > max_items:
                    raise FrameError(f"more than {max_items} items")

    # ---- server -------------------------------------------------------------------------

    async def _serve_status(self, stream: INetStream) -> None:
        async def answer(args: list[Any]) -> list[bytes]:
            if args != []:
                raise _BadRequest(f"status takes no arguments, got {args!r}")
            if self._on_status is None:
                raise _Unavailable("status handler not registered")
            return [await _maybe_await(self._on_status())]

        await self._serve(stream, answer)

    async def _serve_blocks(self, stream: INetStream) -> None:
        async def answer(args: list[Any]) -> list[bytes]:
            if not (len(args) == 2 and all(type(a) is int for a in args)):
                raise _BadRequest(f"blocks_by_range takes [start, count], got {args!r}")
            start, count = args
            if start < 0 or not 0 < count <= self._limits.max_blocks_per_request:
                raise _BadRequest(f"count must be 1..{self._limits.max_blocks_per_request}, start >= 0")
            if self._on_blocks is None:
                raise _Unavailable("blocks_by_range handler not registered")
            blocks = await _maybe_await(self._on_blocks(start, count))
            return _fit(list(blocks)[:count], self._limits.max_response_bytes)

        await self._serve(stream, answer)

    async def _serve(self, stream: INetStream, answer: Callable[[list[Any]], Awaitable[list[bytes]]]) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        try:
            with trio.fail_after(self._limits.request_timeout_s):
                if self._peers.is_banned(peer):
                    await write_frame(stream, KIND_ERROR, msgpack.packb([ERR_BANNED, "you are banned"]))
                    return
                try:
                    kind, body = await read_frame(stream, self._limits.max_request_frame)
                    if kind != KIND_REQUEST:
                        raise _BadRequest(f"expected a request frame, got kind {kind:#x}")
                    args = _decode_args(body)
                    items = await answer(args)
                except StreamEnded as exc:
                    logger.debug("reqresp_request_abandoned peer=%s error=%s", peer, exc)  # not proof of anything
                    return
                except (FrameError, _BadRequest) as exc:
                    logger.info("reqresp_bad_request peer=%s error=%s", peer, exc)
                    self._peers.penalize(peer, Penalty.BAD_REQUEST)
                    await write_frame(stream, KIND_ERROR, msgpack.packb([ERR_BAD_REQUEST, str(exc)[:200]]))
                    return
                except _Unavailable as exc:
                    await write_frame(stream, KIND_ERROR, msgpack.packb([ERR_UNAVAILABLE, str(exc)]))
                    return
                except Exception as exc:
                    logger.exception("reqresp_handler_error peer=%s", peer)
                    await write_frame(stream, KIND_ERROR, msgpack.packb([ERR_INTERNAL, type(exc).__name__]))
                    return
                await self._write_items(stream, items)
        except Exception as exc:  # noqa: BLE001 - a handler must never raise into py-libp2p (it would vanish)
            logger.info("reqresp_serve_failed peer=%s error=%s: %s", peer, type(exc).__name__, exc)
        finally:
            await close_quietly(stream)

    async def _write_items(self, stream: INetStream, items: list[bytes]) -> None:
        """The reply's frames, written in batches of ~64 KiB (one stream write each, not one per frame)."""
        step = self._limits.response_chunk_size
        pending: list[bytes] = []
        size = 0
        for item in items:
            if len(item) > self._limits.max_response_item:
                raise FrameError(f"item of {len(item)} B exceeds max_response_item")
            pieces = [item[i : i + step] for i in range(0, len(item), step)] or [b""]
            for index, piece in enumerate(pieces):
                pending.append(encode_frame(KIND_ITEM if index == len(pieces) - 1 else KIND_PART, piece))
                size += len(pending[-1])
                if size >= 1 << 16:
                    await stream.write(b"".join(pending))
                    pending, size = [], 0
        pending.append(encode_frame(KIND_END, b""))
        await stream.write(b"".join(pending))


class _BadRequest(Exception):
    pass


class _Unavailable(Exception):
    pass


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _decode_args(body: bytes) -> list[Any]:
    try:
        args = msgpack.unpackb(body, max_array_len=8, max_map_len=0, max_bin_len=256, max_str_len=256)
    except Exception as exc:
        raise _BadRequest(f"undecodable request: {exc}") from exc
    if not isinstance(args, list):
        raise _BadRequest(f"request must be a msgpack list, got {type(args).__name__}")
    return args


def _decode_error(body: bytes) -> tuple[int, str]:
    try:
        code, message = msgpack.unpackb(body, max_array_len=2, max_str_len=1024)
        return int(code), str(message)
    except Exception as exc:
        raise FrameError(f"malformed error frame: {exc}") from exc


def _fit(items: list[bytes], max_total: int) -> list[bytes]:
    """Longest prefix of `items` whose total size stays within `max_total` (at least one item)."""
    total = 0
    for index, item in enumerate(items):
        total += len(item)
        if total > max_total and index > 0:
            return items[:index]
    return items
