"""Hostile HTTP and WebSocket clients against the real RpcServer behind http_guard.serve (issue 11: 3–7)."""
from __future__ import annotations

import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from node.http_guard import HttpLimits, origin_allowed, parse_cors
from node.rpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from tests.rpc_harness import call, demo_server, post, raw_http, read_response, running

pytestmark = pytest.mark.timeout(90)

LIMITS = HttpLimits(max_request_bytes=64 * 1024, max_ws_connections=3, max_subscriptions=4,
                    header_timeout=60, read_timeout=60, body_timeout=60)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running(demo_server(LIMITS)) as bound:
        yield bound


# -- 3: the body limit holds while the body streams in ------------------------------------------


def test_oversize_body_is_refused_while_streaming(port: int) -> None:
    """A chunked 64 MiB body: the server answers 413 long before the client could send it all."""
    total = 64 * 1024 * 1024
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
        answered = False
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answered = True
                break
            try:
                sock.sendall(piece)
            except OSError:  # the server closed the connection: it is answering or has answered
                answered = True
                break
            sent += 0x10000
        assert answered, "the server read the whole 64 MiB body"
        status, _, body = read_response(sock)
    assert status == 413 and json.loads(body)["error"]["code"] == INVALID_REQUEST
    assert sent < total // 4  # what the socket buffers absorbed, not the body


def test_declared_oversize_body_is_refused_unread(port: int) -> None:
    status, _, reply = raw_http(port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500000000\r\n\r\n{")
    assert status == 413 and "limit" in json.loads(reply)["error"]["message"]


# -- 5: every bad request gets a JSON-RPC error object ------------------------------------------

BAD_BODIES = [
    (b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":"x"}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":5}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":true}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":[' + b"9" * 5000 + b"]}", PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":' + b"[" * 1000 + b"]" * 1000 + b"}", PARSE_ERROR),
    (b"[" * 50_000, PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":[NaN]}', PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_blockHash","params":[18446744073709551616]}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_blockHash","params":["1"]}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":{"nope":1}}', INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"test_echo"}', INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":"test_fail"}', INTERNAL_ERROR),
    (b"\xff\xfe{", PARSE_ERROR),
    (b"[]", INVALID_REQUEST),
    (b"[" + b",".join([b'{"jsonrpc":"2.0","id":1,"method":"test_echo"}'] * 101) + b"]", INVALID_REQUEST),
    (b'"just a string"', INVALID_REQUEST),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_request_gets_an_error_object_and_at_most_one_log_line(
        port: int, body: bytes, code: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    status, _, reply = post(port, body)
    assert status == 200, reply
    assert reply["jsonrpc"] == "2.0" and reply["error"]["code"] == code, reply
    time.sleep(0.05)  # let the server thread finish logging, if it logs
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(records) <= 1 and not any(r.exc_info for r in records), [r.getMessage() for r in records]


def test_null_params_mean_no_params(port: int) -> None:
    status, _, reply = post(port, b'{"jsonrpc":"2.0","id":7,"method":"test_echo","params":null}')
    assert status == 200 and reply == {"jsonrpc": "2.0", "id": 7, "result": None}


def test_client_leaving_mid_body_logs_nothing(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":")
    assert call(port, "test_echo", [1])[1]["result"] == 1  # also: every aborted request has been handled
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]


# -- 4: foreign origins and host names are refused ---------------------------------------------


def test_foreign_origin_is_refused_and_loopback_allowed(port: int) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": [3]}).encode()
    status, _, reply = post(port, body, headers={"Origin": "https://evil.example"})
    assert status == 403 and "--rpc-cors" in reply["error"]["message"]
    status, head, reply = post(port, body, headers={"Origin": "http://localhost:3000"})
    assert status == 200 and reply["result"] == 3
    assert head["access-control-allow-origin"] == "http://localhost:3000"


def test_dns_rebinding_host_is_refused(port: int) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": [3]}).encode()
    status, _, _ = post(port, body, headers={"Host": f"rebind.evil.example:{port}"})
    assert status == 403
    assert post(port, body, headers={"Host": f"localhost:{port}"})[0] == 200


def test_preflight_answers_allowed_origins_only(port: int) -> None:
    def preflight(origin: str) -> tuple[int, dict]:
        status, head, _ = raw_http(port, (f"OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n"
                                          "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n").encode())
        return status, head
    status, head = preflight("http://127.0.0.1:8080")
    assert status == 204 and head["access-control-allow-origin"] == "http://127.0.0.1:8080"
    assert preflight("https://evil.example")[0] == 403


def test_foreign_origin_cannot_open_a_websocket(port: int) -> None:
    async def attempt() -> None:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/", extra_headers=[(b"Origin", b"https://evil.example")]):
            pass

    with pytest.raises(ConnectionRejected):
        trio.run(attempt)


def test_cors_flag_parsing() -> None:
    allowed = parse_cors("https://app.example,http://localhost:*")
    assert origin_allowed("https://app.example", allowed) and origin_allowed("http://localhost:5173", allowed)
    assert not origin_allowed("https://evil.example", allowed) and not origin_allowed("http://localhost.evil", allowed)
    assert origin_allowed("https://evil.example", parse_cors("all"))
    assert not origin_allowed("http://localhost:1", parse_cors("none"))
    with pytest.raises(ValueError, match="not an origin"):
        parse_cors("evil.example")


# -- 6: WebSocket: bad frames get answers, subscriptions and connections are capped ------------


async def _ws_exchange(port: int, frames: list[Any]) -> list[dict]:
    """Send each frame (str as text, bytes as binary), collect one answer per frame."""
    answers = []
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        for frame in frames:
            await ws.send_message(frame)
            with trio.fail_after(10):
                answers.append(json.loads(await ws.get_message()))
    return answers


def test_bad_websocket_frames_get_errors_and_keep_the_connection(port: int) -> None:
    def req(method: str, params: Any, rid: int) -> str:
        return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    frames: list[Any] = [
        req("test_subscribe", [], 1),
        b"\x00\x01binary",
        req("test_unsubscribe", {"x": [1, 2]}, 2),
        req("test_unsubscribe", 7, 3),
        '{"jsonrpc":"2.0","id":4,"method":"test_echo","params":[' + "9" * 5000 + "]}",
        "[" * 5000,
        req("test_echo", ["still here"], 5),
    ]
    answers = trio.run(_ws_exchange, port, frames)
    assert answers[0]["result"].startswith("0x")
    assert [a["error"]["code"] for a in answers[1:6]] == [INVALID_REQUEST, INVALID_PARAMS, INVALID_PARAMS,
                                                          PARSE_ERROR, PARSE_ERROR]
    assert answers[6]["result"] == "still here"


def test_subscriptions_per_connection_are_capped(port: int) -> None:
    frames = [json.dumps({"jsonrpc": "2.0", "id": i, "method": "test_subscribe"}) for i in range(6)]
    answers = trio.run(_ws_exchange, port, frames)
    assert all("result" in a for a in answers[:4])
    assert all(a["error"]["code"] == INVALID_REQUEST and "limit" in a["error"]["message"] for a in answers[4:])


def test_websocket_connections_are_capped(port: int) -> None:
    async def scenario() -> tuple[int, bool]:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/"), open_websocket_url(f"ws://127.0.0.1:{port}/"), \
                open_websocket_url(f"ws://127.0.0.1:{port}/"):
            refused = 0
            try:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/"):
                    pass
            except ConnectionRejected:
                refused += 1
        await trio.sleep(0.2)  # the server sees the three closes
        answers = await _ws_exchange(port, [json.dumps({"jsonrpc": "2.0", "id": 1, "method": "test_echo",
                                                        "params": [1]})])
        return refused, answers[0]["result"] == 1

    assert trio.run(scenario) == (1, True)


# -- 7: connection cap and timeouts ------------------------------------------------------------


def test_connection_cap_keeps_the_server_alive() -> None:
    """300 held-open partial requests: all but `max_connections` are closed at once."""
    limits = HttpLimits(max_connections=20, header_timeout=60, read_timeout=60)
    with running(demo_server(limits)) as port:
        socks = []
        try:
            for _ in range(300):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                socks.append(sock)
            closed: set[socket.socket] = set()
            deadline = time.monotonic() + 30  # the server closes the excess at accept; wait for that
            while len(closed) < 300 - 20 and time.monotonic() < deadline:
                readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 1)
                for sock in readable:
                    try:
                        if sock.recv(1) == b"":
                            closed.add(sock)
                    except ConnectionResetError:
                        closed.add(sock)
            assert len(closed) == 300 - 20  # the 20 held are still open (header timeout 60 s)
        finally:
            for sock in socks:
                sock.close()
        deadline = time.monotonic() + 30  # the held slots free as their sockets close
        while True:
            try:
                assert call(port, "test_echo", [2])[1]["result"] == 2
                break
            except (ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def test_incomplete_headers_and_slow_bodies_time_out() -> None:
    limits = HttpLimits(header_timeout=1, read_timeout=30, body_timeout=1)
    with running(demo_server(limits)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            assert sock.recv(100) == b""  # closed by the server, long before our 20 s
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
            status, _, body = read_response(sock)
        assert status == 408 and "did not arrive" in json.loads(body)["error"]["message"]


# -- 8: a full disk ends the node with one operator line and its own exit code ------------------


def test_disk_full_is_one_clear_line(tmp_path: Any) -> None:
    import plyvel

    from node.cli.node import EXIT_DISK_FULL, disk_full_message

    leveldb = plyvel.IOError("IO error: /data/db/000123.log: No space left on device")
    group = BaseExceptionGroup("nursery", [ValueError("other"), ExceptionGroup("inner", [leveldb])])
    line = disk_full_message(group, tmp_path)
    assert line is not None and "disk full" in line and str(tmp_path) in line and "\n" not in line
    assert disk_full_message(OSError(28, "No space left on device"), tmp_path)
    assert disk_full_message(ValueError("bad"), tmp_path) is None
    assert EXIT_DISK_FULL == 28


# -- the same through a real node: its own handlers (chain_getBlockHash(2**64) was a struct error) --


@pytest.mark.integration
def test_a_real_node_answers_hostile_requests_with_error_objects(tmp_path: Any) -> None:
    from tests.helpers import NodeProcess

    node = NodeProcess(tmp_path / "alice", "--dev").start()
    try:
        status, reply = call(node.rpc_port, "chain_getBlockHash", [2**64])
        assert status == 200 and reply["error"]["code"] == INVALID_PARAMS and "2**64" in reply["error"]["message"]
        assert call(node.rpc_port, "chain_getBlockHash", [2**64 - 1])[1]["result"] is None
        for params in ("x", 5):
            assert call(node.rpc_port, "system_health", params)[1]["error"]["code"] == INVALID_PARAMS
        assert call(node.rpc_port, "system_health", Origin="https://evil.example")[0] == 403
        status, _, body = post(node.rpc_port, b'{"jsonrpc":"2.0","id":1,"method":"arena_task","params":[' +
                               b"9" * 5000 + b"]}")
        assert body["error"]["code"] == PARSE_ERROR
        assert call(node.rpc_port, "system_health")[1]["result"]["best"] >= 0
    finally:
        node.stop()
    assert "Traceback" not in node.log_path.read_text()


def test_an_idle_websocket_subscriber_is_not_cut_by_the_read_timeout() -> None:
    limits = HttpLimits(read_timeout=0.5, header_timeout=0.5)
    with running(demo_server(limits)) as port:
        async def scenario() -> Any:
            async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "test_subscribe"}))
                json.loads(await ws.get_message())
                await trio.sleep(2)  # four read timeouts of silence from the client
                await trio.to_thread.run_sync(call, port, "test_notify", ["ping"])
                with trio.fail_after(10):
                    return json.loads(await ws.get_message())

        notification = trio.run(scenario)
    assert notification["method"] == "test_event" and notification["params"]["result"] == "ping"
