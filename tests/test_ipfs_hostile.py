"""Hostile clients and a filling disk against the IPFS API behind http_guard.serve (issue 11: 3, 4, 8, 9)."""
from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ipfshttpclient.client
import ipfshttpclient.exceptions
import pytest

from node.http_guard import HttpLimits
from node.ipfs_api import ipfs_routes
from p2p.content.blockstore import BlockStore
from p2p.content.cid import parse_cid
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE
from tests.content_helpers import pattern_bytes, temp_leveldb
from tests.rpc_harness import demo_server, post, raw_http, read_response, running

pytestmark = pytest.mark.timeout(90)

UPLOAD_LIMIT = 2 * 1024 * 1024
LIMITS = HttpLimits(max_upload_bytes=UPLOAD_LIMIT, header_timeout=60, read_timeout=60)


@contextmanager
def ipfs_node(**blockstore: Any) -> Iterator[tuple[EmbeddedContentStore, int]]:
    with temp_leveldb() as db:
        store = EmbeddedContentStore(BlockStore(db.prefixed_db(b"c"), **blockstore))
        with running(demo_server(LIMITS, ipfs_routes(store))) as port:
            yield store, port


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[EmbeddedContentStore, int]]:
    with ipfs_node(gc_after_garbage=2 * CHUNK_SIZE) as served:
        yield served


def client(port: int) -> Any:
    return ipfshttpclient.client.Client(f"/ip4/127.0.0.1/tcp/{port}/http", timeout=30)


def multipart(payload: bytes, closing: bool = True) -> bytes:
    body = (b"--arenaboundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + payload)
    return body + (b"\r\n--arenaboundary--\r\n" if closing else b"")


def add_request(body: bytes, chunked: bool = False, origin: str | None = None) -> bytes:
    head = "POST /api/v0/add HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=arenaboundary\r\n"
    head += f"Origin: {origin}\r\n" if origin else ""
    if chunked:
        return (head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + \
            f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return (head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def test_upload_over_the_limit_is_refused_while_streaming_and_stores_nothing_claimed(node: Any) -> None:
    store, port = node
    payload = pattern_bytes(1, UPLOAD_LIMIT + 3 * CHUNK_SIZE)
    status, _, body = raw_http(port, add_request(multipart(payload), chunked=True))
    reply = json.loads(body)
    assert status == 413 and reply["Type"] == "error" and "limit" in reply["Message"]
    assert not store.has(store.add_file(_Reader(payload), only_hash=True)[0])
    status, _, body = raw_http(port, add_request(multipart(payload)))  # declared: refused before reading
    assert status == 413 and json.loads(body)["Code"] == 1


def test_foreign_origin_cannot_add_or_pin(node: Any) -> None:
    store, port = node
    status, _, body = raw_http(port, add_request(multipart(b"evil\n"), origin="https://evil.example"))
    assert status == 403 and json.loads(body)["Type"] == "error"
    status, _, _ = post(port, b"", "/api/v0/pin/add?arg=QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
                        headers={"Origin": "https://evil.example"})
    assert status == 403
    assert not store.has(store.add_file(_Reader(b"evil\n"), only_hash=True)[0])


@pytest.mark.parametrize(("path", "status"), [
    ("/api/v0/cat?arg=not-a-cid", 400), ("/api/v0/cat", 400),
    ("/api/v0/cat?arg=QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh51", 404),
    ("/api/v0/cat?arg=QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh51&offset=x", 400),
    ("/api/v0/block/get?arg=bafkqaaa", 400), ("/api/v0/files/stat?arg=/mfs/x", 400),
    ("/api/v0/get?arg=QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh51&timeout=soon", 400),
    ("/api/v0/add?cid-version=1", 400), ("/api/v0/add", 400),
])
def test_bad_requests_get_kubo_errors_not_5xx(node: Any, path: str, status: int) -> None:
    got, _, reply = post(node[1], b"x", path)
    assert got == status and reply["Type"] == "error" and reply["Message"], reply


def test_truncated_uploads_are_collected_automatically(node: Any) -> None:
    store, port = node
    before = store.blocks.block_count()
    for seed in range(6):  # each leaves ~3 chunks; the store collects once 2 chunks of garbage pile up
        body = multipart(pattern_bytes(100 + seed, 3 * CHUNK_SIZE + 5), closing=False)
        status, _, _ = raw_http(port, add_request(body))
        assert status == 400
    assert store.blocks.block_count() - before <= 3


def test_repo_gc_over_the_api_and_cli(node: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from node.cli import ipfs as cli_ipfs

    store, port = node
    with client(port) as ipfs:
        kept = ipfs.add_bytes(b"pinned stays\n")
        dropped = ipfs.add_bytes(pattern_bytes(7, 2 * CHUNK_SIZE + 1), opts={"pin": False})
        removed = ipfs.repo.gc()
    assert {item["Key"]["/"] for item in removed} >= {dropped}
    assert store.has(kept) and not store.blocks.has_block(parse_cid(dropped))
    parser = argparse.ArgumentParser(prog="arena")
    cli_ipfs.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ipfs", "gc", "--api", f"/ip4/127.0.0.1/tcp/{port}/http"])
    assert args.func(args) == 0 and "removed" in capsys.readouterr().out


def test_quota_collects_garbage_first_then_refuses_with_a_kubo_error() -> None:
    with ipfs_node(quota_bytes=4 * CHUNK_SIZE + 4096) as (store, port), client(port) as ipfs:
        ipfs.add_bytes(pattern_bytes(1, 3 * CHUNK_SIZE), opts={"pin": False})
        ipfs.add_bytes(pattern_bytes(2, 3 * CHUNK_SIZE))  # fits once the unpinned file is collected
        with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match="quota"):
            ipfs.add_bytes(pattern_bytes(3, 3 * CHUNK_SIZE))
        assert store.blocks.stored_bytes <= 4 * CHUNK_SIZE + 4096


def test_disk_headroom_is_kept_and_reported_as_kubo_does(tmp_path: Any) -> None:
    free = shutil.disk_usage(tmp_path).free
    with ipfs_node(disk_path=tmp_path, min_free_bytes=free + 1) as (store, port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(add_request(multipart(b"no room\n")))
            status, head, body = read_response(sock)
        reply = json.loads(body)
        assert status == 500 and head["content-type"].startswith("application/json")
        assert reply["Type"] == "error" and "no space left on device" in reply["Message"]
        assert store.blocks.block_count() == 0


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out
