"""A real RpcServer (JSON-RPC, WebSocket, IPFS API) behind http_guard.serve on 127.0.0.1, in a thread."""
from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

from node.http_guard import HttpLimits, serve
from node.rpc import RpcServer


def demo_server(limits: HttpLimits, extra_routes: list | None = None) -> RpcServer:
    """An RpcServer with a few methods shaped like the node's, and one subscription."""
    rpc = RpcServer(limits)
    listeners: set = set()

    @rpc.method("test_echo")
    def echo(value: Any = None) -> Any:
        return value

    @rpc.method("test_blockHash")
    def block_hash(number: int) -> str:
        return "0x" + struct.pack(">Q", number).hex()  # struct.error for 2**64, as ChainStore did

    @rpc.method("test_fail")
    def fail() -> None:
        raise RuntimeError("an internal bug")

    @rpc.method("test_notify")
    def notify(payload: Any) -> int:
        for channel in list(listeners):
            channel.send_nowait(payload)
        return len(listeners)

    def attach(channel: Any) -> Any:
        listeners.add(channel)
        return lambda: listeners.discard(channel)

    rpc.subscription("test_subscribe", "test_unsubscribe", "test_event", attach)
    rpc.extra_routes.extend(extra_routes or [])
    return rpc


@contextmanager
def running(rpc: RpcServer) -> Iterator[int]:
    """Serve `rpc.app()` with its limits; yields the port."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        state["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            state["cancel"] = nursery.cancel_scope
            state["port"] = await nursery.start(serve, rpc.app(), "127.0.0.1", 0, rpc.limits)
            ready.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="rpc-test-server", daemon=True)
    thread.start()
    if not ready.wait(15) or "error" in state:
        raise RuntimeError(f"test server did not start: {state.get('error')!r}")
    try:
        yield state["port"]
    finally:
        trio.from_thread.run_sync(state["cancel"].cancel, trio_token=state["token"])
        thread.join(10)


def raw_http(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one response until the server closes or Content-Length is satisfied."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while length >= 0 and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def post(port: int, body: bytes, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, dict, Any]:
    """POST a body; (status, headers, decoded JSON or raw bytes)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    if "Host" not in (headers or {}):
        extra = "Host: 127.0.0.1\r\n" + extra
    request = (f"POST {path} HTTP/1.1\r\n{extra}Content-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    status, head, raw = raw_http(port, request)
    try:
        return status, head, json.loads(raw) if raw else None
    except ValueError:
        return status, head, raw


def call(port: int, method: str, params: Any = None, **headers: str) -> tuple[int, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    status, _, reply = post(port, json.dumps(body).encode(), headers=headers or None)
    return status, reply
