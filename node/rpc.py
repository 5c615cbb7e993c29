"""JSON-RPC 2.0 over HTTP (POST /) and WebSocket (/) with Substrate method names.

Errors are JSON-RPC error objects whose `message` says what went wrong in words a user can act
on; pool rejections carry the runtime's code (1001–1014) and kind in `data`.
"""
from __future__ import annotations

import inspect
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from node import http_guard
from node.http_guard import HttpLimits, RequestTooLarge, RequestTooSlow

log = logging.getLogger("arena.rpc")

MAX_REQUEST_BYTES = HttpLimits.max_request_bytes
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
UNSAFE_METHOD = -32090

Handler = Callable[..., Any]


class RpcServer:
    """A method table plus HTTP and WebSocket transports for it."""

    def __init__(self, limits: HttpLimits | None = None) -> None:
        self.limits = limits or HttpLimits()
        self.ws_open = 0
        self._ws_full_logged = False
        self.methods: dict[str, Handler] = {}
        self._signatures: dict[Handler, inspect.Signature] = {}  # each handler's, computed once
        self.subscriptions: dict[str, tuple[str, Callable[[Notifier], Callable[[], None]]]] = {}
        self.param_subscriptions: set[str] = set()
        self.extra_routes: list[BaseRoute] = []
        # Methods that sign with the node's own keys (Substrate's "unsafe" set); refused when
        # `refuse_unsafe` is set, which `arena node --rpc-external` does.
        self.unsafe_methods: set[str] = set()
        self.refuse_unsafe = False

    def method(self, name: str, unsafe: bool = False) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.methods[name] = fn
            if unsafe:
                self.unsafe_methods.add(name)
            return fn
        return register

    def subscription(
        self, subscribe: str, unsubscribe: str, notification: str,
        attach: Callable[[Notifier], Callable[[], None]],
    ) -> None:
        """`attach(channel)` starts sending notification payloads to `channel`, returns a detach function."""
        self.subscriptions[subscribe] = (notification, attach)
        self.subscriptions[unsubscribe] = ("", attach)

    def subscription_with_params(
        self, subscribe: str, unsubscribe: str, notification: str,
        attach: Callable[[Notifier, Any], Callable[[], None]],
    ) -> None:
        """Like `subscription`, but `attach(channel, params)` also gets the request's params (a list)."""
        self.subscription(subscribe, unsubscribe, notification, attach)  # type: ignore[arg-type]
        self.param_subscriptions.add(subscribe)

    async def dispatch(self, request: Any) -> dict | None:
        """Handle one decoded JSON-RPC request object; None for notifications. Never raises."""
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
            return _error(None, RpcError(INVALID_REQUEST, "expected a JSON-RPC 2.0 request object with a method"))
        req_id = request.get("id")
        if not isinstance(req_id, (str, int, type(None))) or isinstance(req_id, bool):
            return _error(None, RpcError(INVALID_REQUEST, "id must be a string, an integer or null"))
        name = request["method"]
        params = request.get("params")
        fn = self.methods.get(name)
        if fn is None:
            return _error(req_id, RpcError(METHOD_NOT_FOUND, f"method {name[:64]!r} not found; see docs/rpc.md"))
        if self.refuse_unsafe and name in self.unsafe_methods:
            return _error(req_id, RpcError(UNSAFE_METHOD, f"{name} signs with this node's keys and is refused on an "
                                                          "external RPC address; run it on loopback or --rpc-methods unsafe"))
        if params is None:
            params = []
        if not isinstance(params, (list, dict)):
            return _error(req_id, RpcError(INVALID_PARAMS, f"{name}: params must be a list or an object, "
                                                           f"got {type(params).__name__}"))
        try:
            signature = self._signatures.get(fn)
            if signature is None:
                # inspect.signature per call was 2-3 % of an RPC node's profile at 1,500 submissions/s
                signature = self._signatures[fn] = inspect.signature(fn)
            if isinstance(params, list):
                bound = signature.bind(*params)
            else:
                bound = signature.bind(**params)
        except TypeError as exc:
            return _error(req_id, RpcError(INVALID_PARAMS, f"{name}: {exc}"))
        try:
            result = fn(*bound.args, **bound.kwargs)
            if inspect.isawaitable(result):
                result = await result
        except RpcError as exc:
            return _error(req_id, exc)
        except (ValueError, TypeError, OverflowError, struct.error) as exc:
            # a handler choking on a value of the wrong type or range: the caller's mistake
            return _error(req_id, RpcError(INVALID_PARAMS, f"{name}: bad params: {exc}"))
        except Exception as exc:
            log.error("rpc method %s failed: %s: %s", name, type(exc).__name__, exc)
            log.debug("rpc method %s traceback", name, exc_info=True)
            return _error(req_id, RpcError(INTERNAL_ERROR, f"{name} failed: {type(exc).__name__}: {exc}"))
        if "id" not in request:
            return None
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    async def _handle_payload(self, payload: Any) -> Any:
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                return _error(None, RpcError(INVALID_REQUEST, f"a batch must hold 1 to {MAX_BATCH} requests"))
            replies = []
            for index, request in enumerate(payload):
                if index and index % 16 == 0:
                    await trio.lowlevel.checkpoint()  # other requests get the loop within a big batch
                replies.append(await self.dispatch(request))
            return [r for r in replies if r is not None]
        return await self.dispatch(payload)

    def parse(self, data: bytes | str) -> Any:
        """Decode a request; RpcError (parse error) for anything but bounded, plain JSON."""
        return parse_json(data, self.limits.max_int_digits, self.limits.max_json_depth)

    async def http_endpoint(self, request: Request) -> Response:
        try:
            chunks = []
            size = 0
            async for chunk in request.stream():  # HttpGuard stops the stream at the body limit
                size += len(chunk)
                if size > self.limits.max_request_bytes:
                    raise RequestTooLarge(self.limits.max_request_bytes)
                chunks.append(chunk)
            payload = self.parse(b"".join(chunks))
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it; no log line
        except RequestTooLarge as exc:
            return JSONResponse(_error(None, RpcError(INVALID_REQUEST, str(exc))), status_code=413,
                                headers={"connection": "close"})
        except RequestTooSlow as exc:
            return JSONResponse(_error(None, RpcError(INVALID_REQUEST, str(exc))), status_code=408,
                                headers={"connection": "close"})
        except RpcError as exc:
            return JSONResponse(_error(None, exc))
        reply = await self._handle_payload(payload)
        if reply is None or reply == []:
            return Response(status_code=204)
        return _json_response(reply)

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        if self.ws_open >= self.limits.max_ws_connections:
            await websocket.close(code=1013)  # before accept: the client gets HTTP 403
            if not self._ws_full_logged:
                self._ws_full_logged = True
                log.warning("rpc: %d WebSocket connections open (the cap); refusing more", self.ws_open)
            return
        self.ws_open += 1
        try:
            await websocket.accept()
            await self._serve_websocket(websocket)
        except* (WebSocketDisconnect, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client left
        finally:
            self.ws_open -= 1

    async def _serve_websocket(self, websocket: WebSocket) -> None:
        send, receive = trio.open_memory_channel[tuple[str, str, Any]](256)
        sending = trio.Lock()  # answers and notifications come from two tasks; frames must not interleave
        active: dict[str, Callable[[], None]] = {}
        counter = 0

        def subscribe(request: dict) -> Any:
            nonlocal counter
            notification, attach = self.subscriptions[request["method"]]
            if notification:
                if len(active) >= self.limits.max_subscriptions:
                    raise RpcError(INVALID_REQUEST, f"this connection already holds {len(active)} subscriptions, "
                                                    f"the limit; unsubscribe first")
                counter += 1
                sub_id = f"0x{counter:x}"
                channel = _Tagged(send, sub_id, notification)
                if request["method"] in self.param_subscriptions:
                    params = request.get("params")
                    params = list(params.values()) if isinstance(params, dict) else params
                    active[sub_id] = attach(channel, params if isinstance(params, list) else [])  # type: ignore[call-arg]
                else:
                    active[sub_id] = attach(channel)
                return sub_id
            params = request.get("params")
            if isinstance(params, dict):
                params = list(params.values())
            if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], str):
                raise RpcError(INVALID_PARAMS, f"{request['method']}: params must be [subscription id]")
            detach = active.pop(params[0], None)
            if detach:
                detach()
            return detach is not None

        async def answer(text: str | bytes | None) -> Any:
            if text is None:
                return _error(None, RpcError(INVALID_REQUEST, "binary frames are not accepted; send JSON as text"))
            try:
                request = self.parse(text)
            except RpcError as exc:
                return _error(None, exc)
            method = request.get("method") if isinstance(request, dict) else None
            if isinstance(method, str) and method in self.subscriptions:
                req_id = request.get("id")
                if not isinstance(req_id, (str, int, type(None))) or isinstance(req_id, bool):
                    return _error(None, RpcError(INVALID_REQUEST, "id must be a string, an integer or null"))
                try:
                    return {"jsonrpc": "2.0", "id": req_id, "result": subscribe(request)}
                except RpcError as exc:
                    return _error(req_id, exc)
            return await self._handle_payload(request)

        try:
            async with trio.open_nursery() as nursery:
                async def pump() -> None:
                    async for sub_id, method, payload in receive:
                        async with sending:
                            await websocket.send_text(json.dumps({"jsonrpc": "2.0", "method": method,
                                                                  "params": {"subscription": sub_id, "result": payload}}))
                nursery.start_soon(pump)
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        nursery.cancel_scope.cancel()
                        return
                    try:
                        reply = await answer(message.get("text"))
                    except Exception as exc:  # noqa: BLE001 - one bad frame must not end the connection
                        log.error("rpc websocket frame failed: %s: %s", type(exc).__name__, exc)
                        reply = _error(None, RpcError(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
                    if reply is not None and reply != []:
                        async with sending:
                            await websocket.send_text(_dumps(reply))
        finally:
            for detach in active.values():
                detach()

    def app(self) -> Starlette:
        """The Starlette app (serve it through http_guard.serve, which adds the origin and size checks)."""
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


def parse_json(data: bytes | str, max_int_digits: int, max_depth: int) -> Any:
    """Plain JSON with bounded integers and nesting; RpcError(PARSE_ERROR) naming the problem otherwise."""
    def bounded_int(text: str) -> int:
        if len(text.lstrip("-")) > max_int_digits:
            raise _Refused(f"an integer has {len(text)} digits, over the {max_int_digits}-digit limit")
        return int(text)

    def no_constant(name: str) -> Any:
        raise _Refused(f"{name} is not JSON")

    try:
        value = json.loads(data, parse_int=bounded_int, parse_constant=no_constant)
    except _Refused as exc:
        raise RpcError(PARSE_ERROR, f"request refused: {exc}") from None
    except RecursionError:
        raise RpcError(PARSE_ERROR, f"request nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RpcError(PARSE_ERROR, f"request is not JSON: {exc}") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > max_depth:
                raise RpcError(PARSE_ERROR, f"request nests deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


class _Refused(Exception):
    pass


def _dumps(reply: Any) -> str:
    try:
        return json.dumps(reply)
    except (TypeError, ValueError) as exc:  # a handler returned something JSON cannot hold
        log.error("rpc reply not serialisable: %s", exc)
        return json.dumps(_error(None, RpcError(INTERNAL_ERROR, f"reply not serialisable: {exc}")))


def _json_response(reply: Any) -> Response:
    return Response(_dumps(reply), media_type="application/json")


async def serve(app: Starlette, host: str, port: int, limits: HttpLimits | None = None,
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve an ASGI app (with the HttpGuard checks and connection cap) until cancelled."""
    await http_guard.serve(app, host, port, limits or HttpLimits(), task_status=task_status)


__all__ = ["Awaitable", "HttpLimits", "RpcError", "RpcServer", "parse_json", "serve"]
