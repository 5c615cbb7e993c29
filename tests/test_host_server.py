"""The host's paid-query server on a real socket (uvicorn + httptools, node/offchain/host_server.py): it answers
paid queries, and every guard of node/http_guard.py holds: body limits with nothing recorded, header size,
slow clients (headers, body, idle), the connection cap, `Connection: close` over an unread body, Host/Origin."""
import json
import socket
import threading
import time
from dataclasses import replace

import httpx
import pytest

from node.http_guard import HttpLimits, effective_connection_cap
from node.offchain.host_http import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, build_app
from node.offchain.host_ledger import VoucherLedger
from node.offchain.host_models import ServedModel
from node.offchain.host_server import MAX_HEADER_BYTES, bind_loopback, serve_in_thread
from node.offchain.host_service import HostService
from node.offchain.ml import get_kind
from node.offchain.vouchers import sign_voucher
from tests.test_marketplace_host import GENESIS, HOST, PRICE, ROW, USER, FakeChain

LIMITS = replace(HttpLimits(), header_timeout=1.0, read_timeout=0.5, body_timeout=1.5)
GIVE_UP_S = 15.0  # far beyond every limit above: a connection still open then was not dropped


@pytest.fixture(scope="module")
def digits():
    kind = get_kind("digits_classifier")
    spec = kind.prepare(None, 7).spec
    return ServedModel("QmDigits", 0, "digits_classifier", spec, kind.build_model(spec).eval(), PRICE)


def start(tmp_path, digits, limits=LIMITS):
    ledger = VoucherLedger(str(tmp_path / "vouchers.sqlite"))
    service = HostService(HOST.public_key, GENESIS, ledger, FakeChain())
    service.models["QmDigits"] = digits
    stop = threading.Event()
    sock = bind_loopback(0)
    port = sock.getsockname()[1]
    sock.close()
    thread = serve_in_thread(build_app(service), port, stop, limits)
    return service, port, stop, thread


@pytest.fixture()
def host(tmp_path, digits):
    service, port, stop, thread = start(tmp_path, digits)
    yield service, port
    stop.set()
    thread.join(10)
    service.ledger.close()


def voucher(n: int) -> str:
    return sign_voucher(USER, GENESIS, HOST.public_key, "QmDigits", n, n * PRICE, n).to_hex()


def dial(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S)


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (socket.timeout if it never does)."""
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def closed_by_server(conn: socket.socket, drip: bytes = b"") -> bool:
    """Whether the server closes `conn` before GIVE_UP_S while the client sends `drip` one byte each 0.1 s."""
    conn.settimeout(0.1)
    deadline = time.monotonic() + GIVE_UP_S
    sent = 0
    while time.monotonic() < deadline:
        try:
            if sent < len(drip):
                conn.send(drip[sent:sent + 1])
                sent += 1
            if conn.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def test_paid_queries_one_and_batched_over_one_kept_alive_connection(host):
    service, port = host
    assert bind_loopback(0).getsockname()[0] == "127.0.0.1"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        reply = client.post("/v1/predict", json={"input": ROW}, headers={"X-Arena-Voucher": voucher(1)})
        assert reply.status_code == 200, reply.text
        assert reply.json()["arena"]["cumulativeAmount"] == PRICE
        reply = client.post("/v1/batch", json={"queries": [{"voucher": voucher(n), "input": ROW} for n in (2, 3)]})
        assert [r["status"] for r in reply.json()["results"]] == [200, 200]
        assert "connection" not in reply.headers
    assert service.stats["answered"] == 3
    assert service.ledger.newest(USER.public_key, "QmDigits").nonce == 3


@pytest.mark.parametrize("path, limit", [("/v1/predict", MAX_BODY_BYTES), ("/v1/batch", MAX_BATCH_BODY_BYTES)])
def test_an_oversized_body_is_refused_unread_and_nothing_is_recorded(host, path, limit):
    service, port = host
    # declared too large: 413 at once, the rest is never read, and the connection closes (its body is unread)
    conn = dial(port)
    conn.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Arena-Voucher: {voucher(1)}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n".encode() + b"{" * 1000)
    answer = read_until_closed(conn)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
    assert b"input_too_large" in answer
    # streamed without a length: refused once it passes the limit
    query = {"voucher": voucher(1), "input": ROW, "pad": "x" * (limit + 10)}
    body = json.dumps(query if path == "/v1/predict" else {"queries": [query]}).encode()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        reply = client.post(path, content=iter([body[i:i + 4096] for i in range(0, len(body), 4096)]),
                            headers={"X-Arena-Voucher": voucher(1)})
    assert reply.status_code == 413
    assert service.stats == {"answered": 0, "rejected": 0, "batches": 0}
    assert service.ledger.newest(USER.public_key, "QmDigits") is None


def test_an_answer_before_the_body_was_read_closes_the_connection(host):
    _service, port = host
    conn = dial(port)  # a GET whose body is never read: without `Connection: close` the server would read it all
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1000)
    answer = read_until_closed(conn)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()


def test_headers_over_the_cap_are_refused(host):
    _service, port = host
    conn = dial(port)
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * (MAX_HEADER_BYTES + 100))
    answer = read_until_closed(conn)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_client_dripping_its_headers_is_dropped(host):
    _service, port = host
    with dial(port) as conn:  # slowloris: each byte would have restarted uvicorn's own keep-alive timer
        assert closed_by_server(conn, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000)


def test_an_idle_connection_is_dropped_before_and_after_a_request(host):
    _service, port = host
    with dial(port) as conn:
        assert closed_by_server(conn)  # never sends a byte
    with dial(port) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_by_server(conn)  # keep-alive timeout


def test_a_client_dripping_its_body_is_answered_408_and_nothing_is_recorded(host):
    service, port = host
    body = json.dumps({"input": ROW}).encode()
    with dial(port) as conn:
        conn.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Arena-Voucher: {voucher(1)}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        conn.settimeout(GIVE_UP_S)
        answer = b""
        for i in range(len(body) - 1):  # one byte each 0.1 s: each gap is short, the whole body too slow
            try:
                conn.send(body[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            conn.setblocking(False)
            try:
                answer += conn.recv(65536)
            except BlockingIOError:
                pass
            conn.settimeout(GIVE_UP_S)
            if answer:
                break
        answer += read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 408") and b"body_too_slow" in answer
    assert service.stats["answered"] == 0 and service.ledger.newest(USER.public_key, "QmDigits") is None


def test_connections_over_the_cap_are_closed_at_accept(tmp_path, digits):
    limits = replace(LIMITS, max_connections=8, header_timeout=GIVE_UP_S * 2)
    cap = effective_connection_cap(limits.max_connections)
    service, port, stop, thread = start(tmp_path, digits, limits)
    held = [dial(port) for _ in range(cap)]
    try:
        held[0].sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # the server has accepted them all
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200")
        with dial(port) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_until_closed(extra) == b""  # closed unanswered
        held.pop().close()
        for _ in range(100):  # the freed slot is taken again once the server saw the close
            with dial(port) as again:
                again.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if read_until_closed(again).startswith(b"HTTP/1.1 200"):
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("a slot freed by a closed connection was never given to a new one")
    finally:
        for conn in held:
            conn.close()
        stop.set()
        thread.join(10)
        service.ledger.close()


def test_foreign_host_names_and_origins_are_refused(host):
    _service, port = host
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/health", headers={"Host": "rebound.example"}).status_code == 403
        assert client.get("/health", headers={"Origin": "https://evil.example"}).status_code == 403
        reply = client.get("/health", headers={"Origin": "http://localhost:5173"})
        assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_deeply_nested_json_is_a_clear_400_not_a_crash(host):
    service, port = host
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # json.loads recurses once per level
        reply = client.post("/v1/predict", content=b"[" * 60000, headers={"X-Arena-Voucher": voucher(1)})
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_json"
        reply = client.post("/v1/batch", content=b'{"queries": ' + b"[" * 60000)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_json"
    assert service.stats["answered"] == 0
