"""Kubo's HTTP conventions for the `/api/v0` routes: errors, query options and response streams.

Shared by node/ipfs_api.py (files on any content store) and node/ipfs_api_unixfs.py (the embedded
store's directories, pins and blocks). Errors are Kubo-shaped `{"Message": ..., "Code": c, "Type":
"error"}` with Kubo's statuses: 400 (Code 1) for a bad request, 404 (Code 3) for content that is not
here, 413 for a body over the limit, 500 (Code 0) for a failure of the node itself (a full disk
included); ipfshttpclient raises each as ErrorResponse.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Iterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from node.http_guard import RequestTooLarge, RequestTooSlow
from p2p.content.blockstore import StoreFull
from p2p.content.errors import ContentError, ContentNotFound, FetchTimeout, InvalidCid, UnsupportedOption

log = logging.getLogger("arena.ipfs")

DEFAULT_FETCH_TIMEOUT = 120.0
KUBO_CODES = {400: 1, 403: 5, 404: 3, 408: 1, 413: 1, 429: 6}  # go-ipfs-cmds ErrorType by HTTP status

Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """A request the API refuses; its message goes back to the client as Kubo's `Message`."""


class UploadTruncated(ContentError):
    """The request body ended (or the client left) before the multipart upload was complete."""


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


def kubo_errors(handler: Handler) -> Handler:
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


def add_reply(rows: list[tuple[str, str, int]]) -> Response:
    """`add`'s answer: one JSON line (Name, Hash, Size) per added entry, as Kubo streams it."""
    lines = [json.dumps({"Name": name, "Hash": cid, "Size": str(size)}) for name, cid, size in rows]
    return Response("\n".join(lines) + "\n", media_type="application/json", headers={"X-Chunked-Output": "1"})


def guarded_stream(body: Iterator[bytes], what: str) -> Iterator[bytes]:
    """A response body that ends (one log line) instead of raising into the server mid-stream."""
    try:
        yield from body
    except Exception as exc:  # noqa: BLE001 - the status is sent; all that is left is to stop
        log.warning("ipfs %s stopped mid-stream: %s: %s", what, type(exc).__name__, exc)


def gzip_stream(parts: Iterator[bytes], level: int) -> Iterator[bytes]:
    """Gzip a byte stream incrementally."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for part in parts:
        out = compressor.compress(part)
        if out:
            yield out
    yield compressor.flush()


def compression_level(request: Request) -> int | None:
    """The gzip level `get` asks for with `compress=true` (-1..9, else the default -1); None: no gzip."""
    if not query_bool(request, "compress", False):
        return None
    level = query_int(request, "compression-level", -1)
    return -1 if level is None or not -1 <= level <= 9 else level


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
