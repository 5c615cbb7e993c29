"""Serve the host's paid-query app: uvicorn with the httptools (C) parser on asyncio, in a thread of its own.

Why not the node's server (node.rpc.serve: hypercorn + h11 on trio)? That stack costs ~1 ms of CPU
for each HTTP request, so a host answering one paid query per request was bound to a few hundred
queries/s however cheap the query; httptools parses in C and asyncio's protocol callbacks cost a
fraction of that (figures in docs/operations.md). The node's JSON-RPC stays on hypercorn.

The hostile-input guarantees of node/http_guard.py, kept here with the same `HttpLimits`:

* bound to 127.0.0.1 only (the caller gives a port, never an address);
* a cap on open connections: the excess is closed at accept, so the process never runs out of
  file descriptors (`GuardedHttpProtocol.connection_made`);
* a header deadline: a connection must finish a request's headers within `header_timeout` of
  connecting or of its last answer, however it drips them in (slowloris), or it is closed; the
  same deadline is the keep-alive timeout;
* a header size cap (`MAX_HEADER_BYTES`, 431 and close), as hypercorn's h11 buffer limit was;
* a body deadline: the body must arrive within `body_timeout`, with no gap over `read_timeout`
  between two reads, or the request is answered 408 and the connection closed;
* `Connection: close` on an answer given before the request's body was read (a 413 on the
  declared length, a route that ignores its body), so the client never reuses a connection the
  server is about to drop and the server never reads the rest;
* `HostCheck`: Host names that are not this machine (DNS rebinding) and browser origins outside
  `HttpLimits.cors` are refused (403); allowed origins get CORS headers and preflight answers.

Body size limits (413) are the app's (node.offchain.host_http: per endpoint, streamed).
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import Server

from node.http_guard import HttpLimits, effective_connection_cap, host_allowed, origin_allowed

log = logging.getLogger("arena.host.http")

MAX_HEADER_BYTES = 16 * 1024  # request line and headers of one request (hypercorn's h11 limit before)
REFUSAL_LOG_INTERVAL_S = 60.0


def error_bytes(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error answer in the host's error format, closing the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\ncontent-length: ",
                     str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body])


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the connection cap, deadlines and header cap of the module docstring.

    `limits` and `connection_cap` are set on the subclass `guarded_protocol` makes for one server.
    """

    limits: HttpLimits = HttpLimits()
    connection_cap: int = HttpLimits.max_connections
    refused = 0  # connections closed at accept, per server class
    last_refusal_log = -1e9

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.over_cap = False
        self.awaiting_headers = True  # between two requests: the header deadline runs, header bytes count
        self.header_bytes = 0
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_deadline = 0.0
        self.last_read = 0.0
        self.keep_alive_asked = True
        self.completed_in_feed = False

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.connection_cap:
            self.over_cap, self.transport = True, transport  # type: ignore[assignment]
            transport.abort()  # type: ignore[attr-defined]  # an attacker's socket gets no more of our time
            cls = type(self)
            cls.refused += 1
            now = time.monotonic()
            if now - cls.last_refusal_log > REFUSAL_LOG_INTERVAL_S:
                cls.last_refusal_log = now
                log.warning("host http: %d connections open (the cap); refused %d so far", len(self.connections),
                            cls.refused)
            return
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.over_cap:
            return
        self._stop_body_timer()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        """uvicorn's keep-alive timer, armed from connecting too; unlike uvicorn's, a byte does not restart it."""
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(self.limits.header_timeout, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self.body_timer is not None:
            self.last_read = self.loop.time()
        self.completed_in_feed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket here: the request was handed to the app as a plain one
        if self.transport.is_closing():
            return
        if self.awaiting_headers:
            if not self.completed_in_feed:  # else where the next request began in `data` is unknown: count from the next read
                self.header_bytes += len(data)
            if self.header_bytes > MAX_HEADER_BYTES:
                self._refuse(431, "headers_too_large", f"request line and headers over {MAX_HEADER_BYTES} bytes")
        elif self.cycle is not None and self.cycle.more_body and self.body_timer is None:
            now = self.loop.time()
            self.body_deadline, self.last_read = now + self.limits.body_timeout, now
            self.body_timer = self.loop.call_later(min(self.limits.read_timeout, self.limits.body_timeout),
                                                   self._check_body_progress)

    # -- one request -----------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.awaiting_headers = False
        self._unset_keepalive_if_required()
        super().on_headers_complete()
        # Until the whole body is in, an answer closes the connection (uvicorn then says `Connection: close`);
        # a request without a body completes in the same feed, before the app can answer.
        self.keep_alive_asked, self.cycle.keep_alive = self.cycle.keep_alive, False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.keep_alive = self.keep_alive_asked
        self._stop_body_timer()
        self.awaiting_headers, self.header_bytes, self.completed_in_feed = True, 0, True

    # -- refusals --------------------------------------------------------------------------------

    def _check_body_progress(self) -> None:
        now = self.loop.time()
        self.body_timer = None
        if now >= self.body_deadline or now - self.last_read >= self.limits.read_timeout:
            self._refuse(408, "body_too_slow", f"the request body did not arrive in time (body "
                                               f"{self.limits.body_timeout:g} s, between reads "
                                               f"{self.limits.read_timeout:g} s)")
            return
        wake = min(self.body_deadline, self.last_read + self.limits.read_timeout)
        self.body_timer = self.loop.call_at(wake, self._check_body_progress)

    def _stop_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` (unless an answer has begun) and close; the app, if running, sees a disconnect."""
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(error_bytes(status, code, message))
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self._stop_body_timer()
        self.transport.close()


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpProtocol]:
    """The protocol class of one server, with its limits and connection cap."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {
        "limits": limits, "connection_cap": effective_connection_cap(limits.max_connections)})


class HostCheck:
    """ASGI middleware: refuse foreign Host names and browser origins (403); CORS for allowed origins."""

    def __init__(self, app: Any, limits: HttpLimits) -> None:
        self.app = app
        self.limits = limits
        self.known_hosts: set[bytes] = set()  # Host values already found allowed: one set lookup per request

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host, origin = b"", None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value.decode("latin-1")
        if self.limits.check_host and host not in self.known_hosts:
            text = host.decode("latin-1")
            if not host_allowed(text, self.limits.cors):
                await self._refuse(send, f"host {text!r} is not this machine")
                return
            if len(self.known_hosts) < 64:
                self.known_hosts.add(host)
        if origin is None:
            await self.app(scope, receive, send)
            return
        if not origin_allowed(origin, self.limits.cors):
            await self._refuse(send, f"origin {origin!r} is not allowed")
            return
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            requested = dict(scope["headers"]).get(b"access-control-request-headers", b"content-type")
            await send({"type": "http.response.start", "status": 204, "headers": [
                *cors, (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                (b"access-control-allow-headers", requested), (b"access-control-max-age", b"3600")]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _refuse(send: Any, message: str) -> None:
        body = json.dumps({"error": {"code": "forbidden", "message": message}}).encode()
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def host_config(app: Any, limits: HttpLimits) -> Config:
    """uvicorn's Config for the host: guarded httptools protocol, ASGI lifespan on, no WebSocket, no log setup."""
    return Config(HostCheck(app, limits), http=guarded_protocol(limits), ws="none", lifespan="on",
                  interface="asgi3", log_config=None, access_log=False, proxy_headers=False, server_header=False,
                  timeout_keep_alive=limits.header_timeout,  # type: ignore[arg-type]  # float is fine
                  timeout_graceful_shutdown=1)


def bind_loopback(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` (0: any free port); raises here when the port is taken."""
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    # it each answer (headers and body written apart) waits ~40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def serve_in_thread(app: Any, port: int, stop: threading.Event, limits: HttpLimits | None = None) -> threading.Thread:
    """Serve `app` (its lifespan included) on 127.0.0.1:`port` from a thread until `stop` is set.

    The port is bound before this returns, so a client may connect at once.
    """
    sock = bind_loopback(port)
    server = Server(host_config(app, limits or HttpLimits()))

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not stop.is_set() and not serving.done():
            await asyncio.sleep(0.2)
        server.should_exit = True
        await serving

    def run() -> None:
        try:
            asyncio.run(main())
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"host-http-{port}", daemon=True)
    thread.start()
    return thread
