"""What stands between the open internet and the node's HTTP port (JSON-RPC, WebSocket, IPFS API).

* `HttpLimits`: every limit in one place (docs/operations.md says how to change each).
* `HttpGuard`: an ASGI middleware that refuses foreign browser origins and unknown Host names
  (DNS rebinding), answers CORS preflights for allowed origins, and enforces the body limit
  while the body streams in, so a 500 MB POST is refused after `max_request_bytes`, not buffered.
* `serve`: hypercorn on trio with a connection cap (excess connections are closed at accept, so
  the process never runs out of file descriptors) and header/read timeouts.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import resource
import socket
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

import trio

log = logging.getLogger("arena.http")

LOOPBACK_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*",
                    "https://localhost:*", "https://127.0.0.1:*", "https://[::1]:*")
UPLOAD_PATHS = ("/api/v0/add",)


@dataclass(frozen=True)
class HttpLimits:
    """Limits of the node's HTTP port; the defaults are what `arena node` runs with."""

    max_request_bytes: int = 4 * 1024 * 1024          # a JSON-RPC request or WebSocket frame
    max_upload_bytes: int = 64 * 1024 * 1024 * 1024   # one /api/v0/add body
    max_connections: int = 512                         # open TCP connections, HTTP and WebSocket
    max_ws_connections: int = 128                      # of which WebSocket
    max_subscriptions: int = 64                        # per WebSocket connection
    max_json_depth: int = 32                           # nesting of arrays/objects in a request
    max_int_digits: int = 80                           # digits of one JSON integer
    header_timeout: float = 15.0                       # to send a request's headers (and keep-alive idle)
    read_timeout: float = 30.0                         # between two reads of one request body
    body_timeout: float = 60.0                         # to send a whole JSON-RPC body
    cors: tuple[str, ...] = LOOPBACK_ORIGINS            # browser origins allowed; ("all",) = any
    check_host: bool = True                            # refuse Host names that are not this node (loopback RPC)


def parse_cors(text: str | None) -> tuple[str, ...]:
    """`--rpc-cors`: 'all', 'none', or comma-separated origins ('http://localhost:*' ports wildcard)."""
    if text is None or text.strip() == "":
        return LOOPBACK_ORIGINS
    items = tuple(item.strip().rstrip("/") for item in text.split(",") if item.strip())
    if "none" in items:
        return ()
    for item in items:
        if item != "all" and item != "null" and not urlsplit(item).scheme:
            raise ValueError(f"--rpc-cors: {item!r} is not an origin like https://app.example or http://localhost:*")
    return items


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether a browser `Origin` header value matches the allow-list."""
    origin = origin.strip().rstrip("/")
    for pattern in allowed:
        if pattern == "all" or pattern == origin:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if origin == base or (origin.startswith(base + ":") and origin[len(base) + 1:].isdigit()):
                return True
    return False


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a `Host` header names this node: an IP literal, localhost, or an allowed origin's name.

    A DNS-rebinding page reaches 127.0.0.1 under its own domain name; that name is refused here.
    """
    if "all" in allowed or not host:
        return True
    name = urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return any(urlsplit(p.replace(":*", "")).hostname == name for p in allowed)


class RequestTooLarge(Exception):
    """The body grew past its limit while streaming in; the rest is never read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the {limit}-byte limit")
        self.limit = limit


class RequestTooSlow(Exception):
    """The body did not arrive within the body timeout."""


def error_body(path: str, status: int, message: str) -> bytes:
    """An error in the dialect of the path: Kubo's for /api/v0, a JSON-RPC error object otherwise."""
    if path.startswith("/api/v0/"):
        code = {400: 1, 403: 5, 404: 3, 413: 1, 408: 1, 429: 6}.get(status, 0)
        return json.dumps({"Message": message, "Code": code, "Type": "error"}).encode()
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}).encode()


async def send_error(send: Any, path: str, status: int, message: str, extra: list | None = None) -> None:
    """Answer a plain HTTP request with a JSON error and close it."""
    body = error_body(path, status, message)
    try:
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), *(extra or [])]})
        await send({"type": "http.response.body", "body": body})
    except (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the connection is closing under an unread body, or the client left: nothing more to say


class HttpGuard:
    """ASGI middleware: origin and host checks, CORS, streamed body limit and body timeout."""

    def __init__(self, app: Any, limits: HttpLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        path = scope.get("path", "/")
        refusal = None
        if self.limits.check_host and not host_allowed(headers.get("host", ""), self.limits.cors):
            refusal = f"host {headers.get('host')!r} is not this node; start it with --rpc-cors to allow a name"
        elif origin is not None and not origin_allowed(origin, self.limits.cors):
            refusal = f"origin {origin!r} is not allowed; start the node with --rpc-cors {origin} to allow it"
        if scope["type"] == "websocket":
            if refusal is not None:
                await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
                return
            await self.app(scope, receive, send)
            return
        if refusal is not None:
            await send_error(send, path, 403, refusal)
            return
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")] if origin else []
        if scope["method"] == "OPTIONS":
            requested = headers.get("access-control-request-headers", "content-type")
            await send({"type": "http.response.start", "status": 204, "headers": [
                *cors, (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", requested.encode("latin-1")),
                (b"access-control-max-age", b"3600")]})
            await send({"type": "http.response.body", "body": b""})
            return
        limit = self.limits.max_upload_bytes if path in UPLOAD_PATHS else self.limits.max_request_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await send_error(send, path, 413, f"request body of {declared} bytes exceeds the {limit}-byte limit", cors)
            return
        deadline = float("inf") if path in UPLOAD_PATHS else trio.current_time() + self.limits.body_timeout
        received = 0
        body_done = declared in ("", "0") and "transfer-encoding" not in headers  # no body to read

        async def limited_receive() -> dict:
            nonlocal received, body_done
            if body_done:  # after the body, the app only listens for the disconnect: no timeout
                return await receive()
            with trio.move_on_at(min(deadline, trio.current_time() + self.limits.read_timeout)) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise RequestTooSlow(f"the request body did not arrive in time (body {self.limits.body_timeout:g} s, "
                                     f"between reads {self.limits.read_timeout:g} s)")
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge(limit)
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = list(cors)
                if not body_done and not any(k.lower() == b"connection" for k, _ in message.get("headers", [])):
                    # an answer before the whole body was read (a handler that ignores it, a refusal): the server
                    # cannot reuse this connection, so say so rather than let the client's next request die on it
                    extra.append((b"connection", b"close"))
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, limited_receive, send_with_cors)


# -- serving -------------------------------------------------------------------------------------


class _CountedStream:
    """A trio SocketStream that gives its slot back to the listener when closed."""

    def __init__(self, inner: trio.SocketStream, listener: CappedListener) -> None:
        self._inner = inner
        self._listener = listener
        self._released = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # not SSL: do_handshake raises AttributeError, as hypercorn expects

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._listener.active -= 1
        await self._inner.aclose()


class CappedListener(trio.abc.Listener[Any]):
    """Accepts at most `cap` open connections; the excess is closed at once (the client may retry)."""

    def __init__(self, inner: trio.SocketListener, cap: int) -> None:
        self.inner = inner
        self.cap = cap
        self.active = 0
        self.refused = 0
        self._last_warning = -1e9

    async def accept(self) -> Any:
        while True:
            stream = await self.inner.accept()
            if self.active < self.cap:
                self.active += 1
                return _CountedStream(stream, self)
            self.refused += 1
            stream.socket.close()  # no await: an attacker's socket gets no more of our time
            now = trio.current_time()
            if now - self._last_warning > 60:
                self._last_warning = now
                log.warning("rpc: %d connections open (the cap); refused %d so far", self.active, self.refused)

    async def aclose(self) -> None:
        await self.inner.aclose()


def effective_connection_cap(wanted: int) -> int:
    """The connection cap, kept under half the process's file-descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft // 2))


def hypercorn_config(limits: HttpLimits) -> Any:
    """The hypercorn Config for `limits`."""
    from hypercorn.config import Config

    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("arena.http")
    config.keep_alive_timeout = limits.header_timeout  # idle includes a request whose headers are incomplete
    config.read_timeout = None  # per connection it would also cut idle WebSocket subscribers; HttpGuard times bodies
    config.h11_max_incomplete_size = 16 * 1024
    config.websocket_max_message_size = limits.max_request_bytes
    config.graceful_timeout = 1
    return config


async def serve(app: Any, host: str, port: int, limits: HttpLimits = HttpLimits(),
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve an ASGI app with hypercorn on trio until cancelled; `task_status.started(port)`."""
    from hypercorn.trio.tcp_server import TCPServer
    from hypercorn.trio.worker_context import WorkerContext
    from hypercorn.typing import ConnectionState
    from hypercorn.utils import wrap_app

    config = hypercorn_config(limits)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await sock.bind((host, port))
    sock.listen(config.backlog)
    listener = CappedListener(trio.SocketListener(sock), effective_connection_cap(limits.max_connections))
    context = WorkerContext(None)
    handler = partial(TCPServer, wrap_app(cast(Any, HttpGuard(app, limits)), config.wsgi_max_body_size, "asgi"),
                      config, context, ConnectionState({}))
    async with trio.open_nursery() as nursery:
        task_status.started(sock.getsockname()[1])
        await trio.serve_listeners(handler, [listener], handler_nursery=nursery)
