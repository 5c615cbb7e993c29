"""JSON-RPC 2.0 over HTTP (POST /) and WebSocket (/) with Substrate method names.

Errors are JSON-RPC error objects whose `message` says what went wrong in words a user can act
on; pool rejections carry the runtime's code (1001–1014) and kind in `data`.
"""
from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger("arena.rpc")

MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_BATCH = 100


class RpcError(Exception):
    """An error returned to the caller as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

Handler = Callable[..., Any]


class RpcServer:
    """A method table plus HTTP and WebSocket transports for it."""

    def __init__(self) -> None:
        self.methods: dict[str, Handler] = {}
        self.subscriptions: dict[str, tuple[str, Callable[[Notifier], Callable[[], None]]]] = {}
        self.extra_routes: list[BaseRoute] = []

    def method(self, name: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.methods[name] = fn
            return fn
        return register

    def subscription(
        self, subscribe: str, unsubscribe: str, notification: str,
        attach: Callable[[Notifier], Callable[[], None]],
    ) -> None:
        """`attach(channel)` starts sending notification payloads to `channel`, returns a detach function."""
        self.subscriptions[subscribe] = (notification, attach)
        self.subscriptions[unsubscribe] = ("", attach)

    async def dispatch(self, request: Any) -> dict | None:
        """Handle one decoded JSON-RPC request object; None for notifications."""
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
            return _error(None, RpcError(INVALID_REQUEST, "expected a JSON-RPC 2.0 request object with a method"))
        req_id = request.get("id")
        name = request["method"]
        params = request.get("params", [])
        fn = self.methods.get(name)
        if fn is None:
            return _error(req_id, RpcError(METHOD_NOT_FOUND, f"method {name!r} not found; see docs/rpc.md"))
        try:
            if isinstance(params, list):
                bound = inspect.signature(fn).bind(*params)
            elif isinstance(params, dict):
                bound = inspect.signature(fn).bind(**params)
            else:
                raise RpcError(INVALID_PARAMS, "params must be a list or an object")
        except TypeError as exc:
            return _error(req_id, RpcError(INVALID_PARAMS, f"{name}: {exc}"))
        try:
            result = fn(*bound.args, **bound.kwargs)
            if inspect.isawaitable(result):
                result = await result
        except RpcError as exc:
            return _error(req_id, exc)
        except ValueError as exc:
            return _error(req_id, RpcError(INVALID_PARAMS, f"{name}: {exc}"))
        except Exception as exc:
            log.exception("rpc method %s failed", name)
            return _error(req_id, RpcError(INTERNAL_ERROR, f"{name} failed: {type(exc).__name__}: {exc}"))
        if "id" not in request:
            return None
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    async def _handle_payload(self, payload: Any) -> Any:
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                return _error(None, RpcError(INVALID_REQUEST, f"a batch must hold 1 to {MAX_BATCH} requests"))
            replies = [await self.dispatch(r) for r in payload]
            return [r for r in replies if r is not None]
        return await self.dispatch(payload)

    async def http_endpoint(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            return JSONResponse(_error(None, RpcError(INVALID_REQUEST, f"request is {len(body)} bytes, limit {MAX_REQUEST_BYTES}")))
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse(_error(None, RpcError(PARSE_ERROR, f"request is not JSON: {exc}")))
        reply = await self._handle_payload(payload)
        if reply is None or reply == []:
            return Response(status_code=204)
        return JSONResponse(reply)

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        send, receive = trio.open_memory_channel[tuple[str, str, Any]](256)
        active: dict[str, Callable[[], None]] = {}
        counter = 0
        try:
            async with trio.open_nursery() as nursery:
                async def pump() -> None:
                    async for sub_id, method, payload in receive:
                        await websocket.send_text(json.dumps(
                            {"jsonrpc": "2.0", "method": method, "params": {"subscription": sub_id, "result": payload}}
                        ))
                nursery.start_soon(pump)
                while True:
                    text = await websocket.receive_text()
                    try:
                        request = json.loads(text)
                    except json.JSONDecodeError as exc:
                        await websocket.send_text(json.dumps(_error(None, RpcError(PARSE_ERROR, f"not JSON: {exc}"))))
                        continue
                    name = request.get("method") if isinstance(request, dict) else None
                    if name in self.subscriptions:
                        notification, attach = self.subscriptions[name]
                        if notification:
                            counter += 1
                            sub_id = f"0x{counter:x}"
                            active[sub_id] = attach(_Tagged(send, sub_id, notification))
                            reply: Any = {"jsonrpc": "2.0", "id": request.get("id"), "result": sub_id}
                        else:
                            params = request.get("params") or [None]
                            detach = active.pop(params[0], None)
                            if detach:
                                detach()
                            reply = {"jsonrpc": "2.0", "id": request.get("id"), "result": detach is not None}
                    else:
                        reply = await self._handle_payload(request)
                    if reply is not None:
                        await websocket.send_text(json.dumps(reply))
        except WebSocketDisconnect:
            pass
        finally:
            for detach in active.values():
                detach()

    def app(self) -> Starlette:
        routes: list[BaseRoute] = [
            Route("/", self.http_endpoint, methods=["POST"]),
            WebSocketRoute("/", self.websocket_endpoint),
            *self.extra_routes,
        ]
        return Starlette(routes=routes)


class Notifier(Protocol):
    """What a subscription source pushes payloads into."""

    def send_nowait(self, payload: Any) -> None: ...


class _Tagged:
    """A send channel wrapper that tags each payload with its subscription id and method."""

    def __init__(self, channel: trio.MemorySendChannel, sub_id: str, method: str) -> None:
        self.channel = channel
        self.sub_id = sub_id
        self.method = method

    def send_nowait(self, payload: Any) -> None:
        try:
            self.channel.send_nowait((self.sub_id, self.method, payload))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # a slow subscriber misses notifications rather than stalling the node


def _error(req_id: Any, err: RpcError) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": err.to_json()}


async def serve(app: Starlette, host: str, port: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve an ASGI app with hypercorn on trio until cancelled."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("arena.http")
    config.keep_alive_timeout = 30
    await hypercorn_serve(app, config, task_status=task_status, mode="asgi")  # type: ignore[arg-type]


__all__ = ["Awaitable", "RpcError", "RpcServer", "serve"]
