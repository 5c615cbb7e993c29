"""Hypothesis fuzz of JSON-RPC (HTTP and WebSocket) and the IPFS API at a modest size (`make fuzz` runs long).

Every input must get an answer in the surface's dialect — never a 5xx, never a dropped connection.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from bench.fuzz import METHODS, rpc_answer_ok
from node.http_guard import HttpLimits
from node.ipfs_api import ipfs_routes
from p2p.content.blockstore import BlockStore
from p2p.content.store import EmbeddedContentStore
from tests.content_helpers import temp_leveldb
from tests.rpc_harness import demo_server, post, running

pytestmark = pytest.mark.timeout(300)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20)
    | st.sampled_from(["0x", "0x00", "0x" + "ab" * 32, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
methods = st.sampled_from([*METHODS, "test_echo", "test_blockHash", "test_fail", "test_subscribe",
                           "test_unsubscribe"])
requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": methods | json_values, "id": st.integers(0, 99)},
    optional={"params": json_values},
)
raw_bodies = (st.binary(max_size=200)
              | requests.map(lambda r: json.dumps(r).encode()).flatmap(
                  lambda b: st.integers(0, len(b)).map(lambda n: b[:n]))
              | st.integers(1, 3000).map(lambda depth: b"[" * depth))


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with temp_leveldb() as db:
        store = EmbeddedContentStore(BlockStore(db.prefixed_db(b"c")))
        with running(demo_server(HttpLimits(), ipfs_routes(store))) as bound:
            yield bound


@FUZZ
@given(body=requests.map(lambda r: json.dumps(r).encode()) | raw_bodies)
def test_http_json_rpc_answers_every_input(port: int, body: bytes) -> None:
    status, _, reply = post(port, body)
    assert status < 500
    assert status == 204 or rpc_answer_ok(reply), reply


@FUZZ
@given(frames=st.lists(requests.map(json.dumps) | raw_bodies, min_size=1, max_size=5))
def test_websocket_answers_every_frame_and_stays_open(port: int, frames: list[Any]) -> None:
    async def session() -> list[Any]:
        answers = []
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            for frame in frames:
                if isinstance(frame, str):
                    frame = json.loads(frame)
                    frame["id"] = frame.get("id", 0)  # a notification would get no answer by design
                    frame = json.dumps(frame)
                await ws.send_message(frame)
                with trio.fail_after(20):
                    answers.append(json.loads(await ws.get_message()))
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": "last", "method": "test_echo", "params": [1]}))
            with trio.fail_after(20):
                while (last := json.loads(await ws.get_message())).get("id") != "last":
                    pass
            answers.append(last)
        return answers

    answers = trio.run(session)
    assert all(rpc_answer_ok(a) for a in answers), answers
    assert answers[-1]["result"] == 1


ipfs_paths = st.sampled_from(["add", "cat", "get", "pin/add", "block/get", "files/stat", "id", "version",
                              "repo/gc", "ls", "pin/ls", "block/stat", "nope", "cat/x"])
queries = st.lists(st.tuples(st.sampled_from(["arg", "offset", "length", "timeout", "pin", "cid-version",
                                              "chunker", "recursive", "compress", "quiet"]),
                             st.text(max_size=50) | st.sampled_from(["QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
                                                                     "true", "-1", "1ms", "9" * 40])),
                   max_size=4)


@FUZZ
@given(path=ipfs_paths, query=queries, body=st.binary(max_size=300),
       ctype=st.sampled_from(["multipart/form-data; boundary=b", "multipart/form-data", "text/plain"]))
def test_ipfs_api_answers_kubo_errors_not_5xx(port: int, path: str, query: list, body: bytes, ctype: str) -> None:
    import urllib.parse

    status, _, reply = post(port, body, f"/api/v0/{path}?{urllib.parse.urlencode(query)}",
                            headers={"Content-Type": ctype})
    assert status < 500, reply
    if status >= 400:
        assert isinstance(reply, dict) and reply["Type"] == "error", reply


# -- keep-alive honesty: the server says when it will close; the campaign counts every close -------


def _raw_answer(sock: Any) -> bytes:
    """The head and body of one HTTP answer read from a raw socket (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head.lower()


def test_an_answer_before_the_body_is_read_says_connection_close(port: int) -> None:
    """`/api/v0/version` ignores its body. Answering before the body is in, hypercorn has to drop the
    connection afterwards; without `connection: close` the client's next request died on it (the 24
    broken pipes of the first long `make fuzz`)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /api/v0/version HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)  # 1 % of the body, the rest never comes
        head = _raw_answer(sock)
    assert head.startswith(b"http/1.1 200") and b"\r\nconnection: close" in head, head


def test_answers_after_the_whole_body_keep_the_connection(port: int) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        for path, body in (("/", b'{"jsonrpc":"2.0","id":1,"method":"test_echo","params":[1]}'),
                           ("/api/v0/version", b""), ("/", b'{"jsonrpc":"2.0","id":2,"method":"test_echo"}')):
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and not response.will_close, (path, response.getheaders())
            if path != "/":
                continue
            if body.endswith(b"[1]}"):
                first = conn.sock
            else:
                assert conn.sock is first  # one connection served all three
    finally:
        conn.close()


def _raw_server(mode: str) -> tuple[Any, int]:
    """A loopback HTTP server with one bad habit: 'drop' closes every connection unanswered, 'early'
    answers 413 after the headers and closes under the body, 'once' answers one request per
    connection without saying it will close."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                if mode == "drop":
                    continue
                data = b""
                while b"\r\n\r\n" not in data and (chunk := client.recv(65536)):
                    data += chunk
                if mode == "early":
                    client.sendall(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                else:
                    client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    client.recv(1)  # the client's next request (or its close)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.mark.parametrize("mode, body, expected", [
    ("drop", b"{}", {"dropped": 3}),
    ("early", b"x" * (8 << 20), {"early_answers": 3}),
    ("once", b"{}", {"reconnects": 2}),
])
def test_the_campaign_counts_every_close_by_its_kind(mode: str, body: bytes, expected: dict) -> None:
    """bench/fuzz.py once retried any failed request silently (and before that called each a crash)."""
    import http.client

    from bench.fuzz import Tally, http_exchange

    listener, server_port = _raw_server(mode)
    try:
        def fresh() -> http.client.HTTPConnection:
            return http.client.HTTPConnection("127.0.0.1", server_port, timeout=20)

        tally, conn = Tally(), fresh()
        for _ in range(3):
            response, _, conn = http_exchange(conn, fresh, tally, "/", {}, body)
            if response is not None and response.will_close:
                conn.close()
                conn = fresh()
        conn.close()
    finally:
        listener.close()
    counts = {kind: getattr(tally, kind) for kind in ("dropped", "reconnects", "early_answers", "crashes", "malformed")}
    assert counts == {**dict.fromkeys(counts, 0), **expected}, (counts, tally.examples)


def test_a_websocket_client_silent_after_a_notification_is_not_cut() -> None:
    """The 7 abnormal closes (1006) of the first long `make fuzz`: the fuzzer sent a frame that was a
    JSON-RPC notification (no answer by design) and waited; hypercorn's per-connection read timeout
    then closed the TCP connection under the WebSocket without a close frame. Bad frames, then
    silence well past every timeout, and the connection must still answer."""
    limits = HttpLimits(read_timeout=0.5, header_timeout=0.5, body_timeout=0.5)
    frames: list[str | bytes] = [json.dumps({"jsonrpc": "2.0", "method": "test_echo", "params": [1]}),  # no id
                                 b"\x00binary", "[" * 5000, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x" * 99})]

    async def session(port: int) -> list[Any]:
        answers = []
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            for frame in frames:
                await ws.send_message(frame)
            await trio.sleep(2.5)  # five read timeouts without a byte from the client
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": "last", "method": "test_echo", "params": [2]}))
            with trio.fail_after(20):
                while not answers or answers[-1].get("id") != "last":
                    answers.append(json.loads(await ws.get_message()))
        return answers

    with running(demo_server(limits)) as port:
        answers = trio.run(session, port)
    assert [a.get("error", {}).get("code") for a in answers[:-1]] == [-32600, -32700, -32601]
    assert answers[-1]["result"] == 2
