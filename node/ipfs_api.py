"""The Kubo RPC subset that ipfshttpclient 0.7.0 uses, served from a ContentStore.

`ipfs_routes(store)` returns Starlette routes for `/api/v0/{add,cat,get,pin/add,block/get,id,
version,repo/gc}` (all POST, as Kubo requires). Errors are Kubo-shaped
`{"Message": ..., "Code": c, "Type": "error"}` with Kubo's statuses: 400 (Code 1) for a bad request,
404 (Code 3) for content that is not here, 413 for a body over the limit, 500 (Code 0) for a
failure of the node itself (a full disk included); ipfshttpclient raises each as ErrorResponse.
Uploads are parsed as they arrive and streamed into the store from a worker thread, so a file
is never held whole in memory, and a truncated upload is never recorded as stored.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import tarfile
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.http_guard import RequestTooLarge, RequestTooSlow
from p2p.content.abc import ContentStore
from p2p.content.blockstore import StoreFull
from p2p.content.errors import ContentError, ContentNotFound, FetchTimeout, InvalidCid, UnsupportedOption
from p2p.content.unixfs import CHUNK_SIZE

log = logging.getLogger("arena.ipfs")
# python-multipart logs a warning for every malformed upload; the client already gets a Kubo error for it
logging.getLogger("python_multipart").setLevel(logging.ERROR)

API_VERSION = "0.7.0"  # the Kubo API level ipfshttpclient 0.7.0 accepts in connect()
DEFAULT_FETCH_TIMEOUT = 120.0
PIPE_DEPTH = 8  # upload chunks buffered between the HTTP reader and the import thread


class ApiError(Exception):
    """A request the API refuses; its message goes back to the client as Kubo's `Message`."""


class UploadTruncated(ContentError):
    """The request body ended (or the client left) before the multipart upload was complete."""


KUBO_CODES = {400: 1, 403: 5, 404: 3, 408: 1, 413: 1, 429: 6}  # go-ipfs-cmds ErrorType by HTTP status


def kubo_error(message: str, status: int = 500) -> JSONResponse:
    """A Kubo-style error reply (go-ipfs-cmds: ErrNormal 0 → 500, ErrClient 1 → 400, ErrNotFound 3 → 404)."""
    return JSONResponse({"Message": message, "Code": KUBO_CODES.get(status, 0), "Type": "error"}, status_code=status)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC from the OS, or LevelDB's (plyvel.IOError) 'No space left on device'."""
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


def error_reply(exc: Exception, what: str) -> Response:
    """The Kubo-shaped reply for an exception raised while serving `what`; at most one log line."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, RequestTooLarge):
        return kubo_error(message, 413)
    if isinstance(exc, RequestTooSlow):
        return kubo_error(message, 408)
    if isinstance(exc, ClientDisconnect):
        return kubo_error("the client disconnected", 400)
    if isinstance(exc, (StoreFull, FetchTimeout)):
        log.warning("ipfs %s: %s", what, message)
        return kubo_error(message, 500)
    if is_disk_full(exc):
        log.error("ipfs %s: no space left on device: %s", what, message)
        return kubo_error(f"no space left on device: {message}", 500)
    if isinstance(exc, ContentNotFound):
        return kubo_error(message, 404)
    if isinstance(exc, (ApiError, UnsupportedOption, InvalidCid, UploadTruncated, ValueError)):
        return kubo_error(message, 400)
    if isinstance(exc, ContentError):  # blocks that do not decode as what the request needs
        return kubo_error(message, 400)
    log.error("ipfs %s failed: %s: %s", what, type(exc).__name__, message)
    log.debug("ipfs %s traceback", what, exc_info=exc)
    return kubo_error(f"{what} failed: {type(exc).__name__}: {message}", 500)


def guarded_stream(body: Iterator[bytes], what: str) -> Iterator[bytes]:
    """A response body that ends (one log line) instead of raising into the server mid-stream."""
    try:
        yield from body
    except Exception as exc:  # noqa: BLE001 - the status is sent; all that is left is to stop
        log.warning("ipfs %s stopped mid-stream: %s: %s", what, type(exc).__name__, exc)


def query_bool(request: Request, name: str, default: bool) -> bool:
    """A boolean query option; ipfshttpclient sends `True`/`False`, Kubo's CLI `true`/`false`."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ApiError(f"option {name!r} must be true or false, got {value!r}")


def query_int(request: Request, name: str, default: int | None) -> int | None:
    """An integer query option."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(f"option {name!r} must be an integer, got {value!r}") from None


def query_arg(request: Request) -> str:
    """The single required `arg` (a CID or /ipfs/ path)."""
    args = request.query_params.getlist("arg")
    if not args:
        raise ApiError("argument \"ipfs-path\" is required")
    return args[0]


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def fetch_timeout(request: Request) -> float:
    """Kubo's global `timeout` option ('30s', '2m', '500ms'), or the default."""
    value = request.query_params.get("timeout")
    if not value:
        return DEFAULT_FETCH_TIMEOUT
    match = _DURATION.match(value)
    if not match:
        raise ApiError(f"timeout {value!r} is not a duration like 30s, 2m or 500ms")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


# -- add ---------------------------------------------------------------------------------


def add_options(request: Request) -> dict[str, bool]:
    """Validate `add` options; anything but Kubo's defaults is refused with the reason."""
    cid_version = query_int(request, "cid-version", 0)
    if cid_version != 0:
        raise UnsupportedOption(f"cid-version={cid_version} is not supported: this node makes CIDv0 "
                                "only (Kubo's default); omit cid-version")
    if query_bool(request, "raw-leaves", False):
        raise UnsupportedOption("raw-leaves=true is not supported: leaves are dag-pb UnixFS nodes "
                                "(Kubo's default for CIDv0); omit raw-leaves")
    chunker = request.query_params.get("chunker") or "size-262144"
    if chunker not in ("size-262144", "default"):
        raise UnsupportedOption(f"chunker {chunker!r} is not supported: only size-{CHUNK_SIZE} "
                                "(Kubo's default) is implemented")
    for flag in ("trickle", "wrap-with-directory", "nocopy", "inline", "fscache"):
        if query_bool(request, flag, False):
            raise UnsupportedOption(f"{flag}=true is not supported by this node's content store")
    hash_name = request.query_params.get("hash") or "sha2-256"
    if hash_name != "sha2-256":
        raise UnsupportedOption(f"hash {hash_name!r} is not supported: only sha2-256")
    return {"pin": query_bool(request, "pin", True), "only_hash": query_bool(request, "only-hash", False)}


class UploadPipe:
    """A blocking binary file object for the import thread, fed chunk by chunk from the event loop."""

    def __init__(self) -> None:
        self.send_stream, self._receive = anyio.create_memory_object_stream[Any](PIPE_DEPTH)
        self._buffer = memoryview(b"")
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        """Called in the import thread: the next bytes of the part, b"" at its end."""
        while not self._buffer and not self._eof:
            item = anyio.from_thread.run(self._receive.receive)
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._buffer = memoryview(item)
        if size is None or size < 0 or size >= len(self._buffer):
            out, self._buffer = bytes(self._buffer), memoryview(b"")
        else:
            out, self._buffer = bytes(self._buffer[:size]), self._buffer[size:]
        return out

    def close_reader(self) -> None:
        """Stop accepting chunks (the import ended or failed): senders get BrokenResourceError."""
        self._receive.close()


class MultipartEvents:
    """python-multipart callbacks turned into a list of ("part", headers) / ("data", b) / ("end",)."""

    def __init__(self, boundary: bytes) -> None:
        self.finished = False
        self._events: list[tuple[str, Any]] = []
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self._events.append(("part", self._headers)),
            "on_part_data": self._data,
            "on_part_end": lambda: self._events.append(("end", None)),
            "on_end": self._end,
        })

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field.clear()
        self._value.clear()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            if self._events and self._events[-1][0] == "data":
                self._events[-1][1].extend(data[start:end])
            else:
                self._events.append(("data", bytearray(data[start:end])))

    def _end(self) -> None:
        self.finished = True

    def feed(self, chunk: bytes) -> list[tuple[str, Any]]:
        """Parse one body chunk; return the events it completed."""
        self._parser.write(chunk)
        events, self._events = self._events, []
        return events


def part_filename(headers: dict[str, str]) -> str:
    """The file name of a part (ipfshttpclient URL-quotes it); directories are refused."""
    ctype, _ = parse_options_header(headers.get("content-type", ""))
    if ctype == b"application/x-directory":
        raise UnsupportedOption("adding directories is not supported: add files one by one")
    _, params = parse_options_header(headers.get("content-disposition", ""))
    raw = params.get(b"filename", b"").decode("latin-1")
    return urllib.parse.unquote(raw).rsplit("/", 1)[-1]


class _Import:
    """One file part being imported by a worker thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pipe = UploadPipe()
        self.done = anyio.Event()
        self.result: tuple[str, int] | None = None
        self.error: BaseException | None = None

    async def run(self, store: ContentStore, options: dict[str, bool]) -> None:
        try:
            self.result = await anyio.to_thread.run_sync(
                lambda: store.add_file(cast(BinaryIO, self.pipe), pin=options["pin"], only_hash=options["only_hash"])
            )
        except Exception as exc:  # noqa: BLE001 - reported to the client by the request handler
            self.error = exc
        finally:
            self.pipe.close_reader()
            self.done.set()

    async def send(self, item: Any) -> None:
        try:
            await self.pipe.send_stream.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the import already ended; its error is reported below

    async def finish(self) -> tuple[str, int]:
        await self.send(None)
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    async def abort(self, reason: str) -> None:
        await self.send(UploadTruncated(reason))
        await self.done.wait()


async def receive_files(request: Request, store: ContentStore,
                        options: dict[str, bool]) -> list[tuple[str, str, int]]:
    """Stream every file part of the multipart body into the store; (name, cid, size) each."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError("add expects a multipart/form-data body with a 'file' field")
    events = MultipartEvents(params[b"boundary"])
    added: list[tuple[str, str, int]] = []
    current: _Import | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        try:
            async for chunk in request.stream():
                for kind, value in events.feed(chunk):
                    if kind == "part":
                        current = _Import(part_filename(value))
                        tasks.start_soon(current.run, store, options)
                    elif kind == "data" and current is not None:
                        await current.send(bytes(value))
                    elif kind == "end" and current is not None:
                        cid, size = await current.finish()
                        added.append((current.name or cid, cid, size))
                        current = None
            if not events.finished:
                raise UploadTruncated("the upload ended before its closing multipart boundary; "
                                      "the partial file was not stored")
        except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
            failure = exc
            if current is not None:
                await current.abort(f"upload interrupted: {exc or type(exc).__name__}")
    if isinstance(failure, ClientDisconnect):
        raise UploadTruncated("the client disconnected during the upload; nothing was stored")
    if isinstance(failure, MultipartParseError):
        raise ApiError(f"malformed multipart body: {failure}")
    if failure is not None:
        raise failure
    if not added:
        raise ApiError("no file part found in the multipart body (expected field 'file')")
    return added


# -- get (tar) ------------------------------------------------------------------------------


def tar_stream(name: str, size: int, body: Iterator[bytes]) -> Iterator[bytes]:
    """A one-file tar archive, as `ipfs get` returns for a file: header, data, padding, end."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    written = 0
    for piece in body:
        written += len(piece)
        yield piece
    if written != size:
        raise ContentError(f"{name}: produced {written} bytes but the root block says {size}")
    yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def gzip_stream(parts: Iterator[bytes], level: int) -> Iterator[bytes]:
    """Gzip a byte stream incrementally."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for part in parts:
        out = compressor.compress(part)
        if out:
            yield out
    yield compressor.flush()


# -- routes ---------------------------------------------------------------------------------


def ipfs_routes(store: ContentStore) -> list[Route]:
    """Kubo RPC routes (`/api/v0/...`, POST) serving `store`; mount them into the RPC app."""

    async def add(request: Request) -> Response:
        options = add_options(request)
        added = await receive_files(request, store, options)
        lines = [json.dumps({"Name": name, "Hash": cid, "Size": str(size)}) for name, cid, size in added]
        return Response("\n".join(lines) + "\n", media_type="application/json",
                        headers={"X-Chunked-Output": "1"})

    async def cat(request: Request) -> Response:
        cid = query_arg(request)
        offset = query_int(request, "offset", 0) or 0
        length = query_int(request, "length", None)
        if offset < 0:
            raise ApiError(f"cannot specify negative offset, got {offset}")
        await store.fetch(cid, fetch_timeout(request))
        size = await anyio.to_thread.run_sync(store.file_size, cid)
        body = await anyio.to_thread.run_sync(store.cat, cid, offset, length)
        remaining = max(0, size - offset) if length is None or length < 0 else max(0, min(length, size - offset))
        return StreamingResponse(guarded_stream(body, "cat"), media_type="text/plain",
                                 headers={"X-Content-Length": str(remaining), "X-Stream-Output": "1"})

    async def get(request: Request) -> Response:
        cid = query_arg(request)
        await store.fetch(cid, fetch_timeout(request))
        size = await anyio.to_thread.run_sync(store.file_size, cid)
        name = cid.rstrip("/").rsplit("/", 1)[-1]
        parts = tar_stream(name, size, await anyio.to_thread.run_sync(store.cat, cid))
        if query_bool(request, "compress", False):
            level = query_int(request, "compression-level", -1)
            level = -1 if level is None or not -1 <= level <= 9 else level
            parts = gzip_stream(parts, level)
        return StreamingResponse(guarded_stream(parts, "get"), media_type="application/x-tar",
                                 headers={"X-Stream-Output": "1"})

    async def pin_add(request: Request) -> Response:
        if not query_bool(request, "recursive", True):
            raise ApiError("only recursive pins are supported; omit recursive=false")
        cids = request.query_params.getlist("arg")
        if not cids:
            raise ApiError("argument \"ipfs-path\" is required")
        timeout = fetch_timeout(request)
        for cid in cids:
            await store.fetch(cid, timeout)
            await anyio.to_thread.run_sync(store.pin, cid)
        return JSONResponse({"Pins": cids})

    async def block_get(request: Request) -> Response:
        cid = query_arg(request)
        try:
            block = await anyio.to_thread.run_sync(store.get_block, cid)
        except ContentNotFound:
            await store.fetch(cid, fetch_timeout(request))  # pulls the DAG rooted at this block
            block = await anyio.to_thread.run_sync(store.get_block, cid)
        return Response(block, media_type="application/octet-stream")

    async def files_stat(request: Request) -> Response:
        path = query_arg(request)
        if not path.startswith("/ipfs/"):
            raise ApiError(f"only /ipfs/CID paths can be stat'ed here (there is no MFS), got {path!r}")
        cid = path[len("/ipfs/"):].rstrip("/")
        local = await anyio.to_thread.run_sync(store.has, cid)
        if not local:
            await store.fetch(cid, fetch_timeout(request))
        size = await anyio.to_thread.run_sync(store.file_size, cid)
        reply: dict[str, Any] = {"Hash": cid, "Size": size, "Type": "file"}
        if query_bool(request, "with-local", False):
            reply.update({"WithLocality": True, "Local": local})
        return JSONResponse(reply)

    async def repo_gc(request: Request) -> Response:
        removed = await anyio.to_thread.run_sync(store.gc)
        if query_bool(request, "quiet", False):
            return Response(b"", media_type="application/json", headers={"X-Chunked-Output": "1"})
        lines = "".join(json.dumps({"Key": {"/": cid}}) + "\n" for cid in removed)
        return Response(lines, media_type="application/json", headers={"X-Chunked-Output": "1"})

    async def node_id(request: Request) -> Response:
        return JSONResponse(await anyio.to_thread.run_sync(store.node_info))

    async def version(request: Request) -> Response:
        return JSONResponse({"Version": API_VERSION, "Commit": "arena", "Repo": "10",
                             "System": "arena-embedded", "Golang": "none"})

    handlers = {
        "add": add, "cat": cat, "get": get, "pin/add": pin_add, "block/get": block_get,
        "files/stat": files_stat, "id": node_id, "version": version, "repo/gc": repo_gc,
    }
    routes = [Route(f"/api/v0/{path}", _kubo_errors(handler), methods=["POST"])
              for path, handler in handlers.items()]
    from p2p.content.store import EmbeddedContentStore

    if isinstance(store, EmbeddedContentStore):  # directories, pins, blocks: node/ipfs_api_unixfs.py
        from node.ipfs_api_unixfs import unixfs_routes

        routes = unixfs_routes(store) + routes
    known = {route.path for route in routes}

    async def unknown(request: Request) -> Response:
        command = request.path_params["command"]
        if f"/api/v0/{command}" in known:
            return kubo_error(f"{request.method} is not allowed for /api/v0/{command}: use POST", 405)
        return kubo_error(f"unknown command /api/v0/{command[:100]}", 404)

    every_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return [*routes, Route("/api/v0/{command:path}", unknown, methods=every_method)]  # Kubo-shaped errors for the rest


def _kubo_errors(handler: Any) -> Any:
    """Turn every error into a Kubo error reply instead of Starlette's plain-text 500 and a traceback."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except NotImplementedError as exc:
            return kubo_error(str(exc), 501)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a Kubo-shaped answer
            return error_reply(exc, handler.__name__)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint

