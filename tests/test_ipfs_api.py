"""The Kubo RPC subset, exercised with a real ipfshttpclient against hypercorn on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipfshttpclient.client
import ipfshttpclient.exceptions
import pytest
from starlette.applications import Starlette

from node.ipfs_api import ipfs_routes
from p2p.content.blockstore import BlockStore
from p2p.content.cid import parse_cid
from p2p.content.kubo import KuboContentStore
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE
from tests.content_helpers import pattern_bytes, pattern_chunks, serve_app, temp_leveldb

pytestmark = pytest.mark.timeout(60)

HELLO_CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
MIB_CID = "QmR5VGcZLMeVtirdVZRbRT3gFSmLkNTdRvGmAomqiFsFoR"  # Kubo: 1048576 pattern bytes
TEN_MIB_CID = "QmRiQWW3BiKJFDHgKMJ3o1STuuc3erfRo8Qn2Ecgwi9fFB"


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[EmbeddedContentStore, int]]:
    with temp_leveldb() as db:
        store = EmbeddedContentStore(BlockStore(db.prefixed_db(b"c")))
        with serve_app(Starlette(routes=ipfs_routes(store))) as port:
            yield store, port


@pytest.fixture
def client(node: tuple[EmbeddedContentStore, int]) -> Iterator[Any]:
    with ipfshttpclient.client.Client(f"/ip4/127.0.0.1/tcp/{node[1]}/http", timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def mib_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ipfs") / "pattern.bin"
    path.write_bytes(pattern_bytes(0, 1048576))
    return path


def test_add_bytes_hello_world(client: Any, node: Any) -> None:
    assert client.add_bytes(b"hello world\n") == HELLO_CID
    assert node[0].has(HELLO_CID) and node[0].blocks.is_pinned(parse_cid(HELLO_CID))


def test_add_multi_chunk_file_matches_kubo(client: Any, mib_file: Path) -> None:
    reply = client.add(str(mib_file))
    assert reply["Hash"] == MIB_CID
    assert reply["Name"] == "pattern.bin"
    assert reply["Size"] == "1048832"


def test_add_streams_a_large_file(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "ten.bin"
    with path.open("wb") as out:
        for chunk in pattern_chunks(10485760):
            out.write(chunk)
    with path.open("rb") as fileobj:
        assert client.add(fileobj)["Hash"] == TEN_MIB_CID


def test_only_hash_stores_nothing(client: Any, node: Any) -> None:
    reply = client.add_bytes(b"only hashed\n", opts={"only-hash": True, "pin": False})
    assert not node[0].blocks.has_block(parse_cid(reply))


def test_cat_whole_and_ranges(client: Any, mib_file: Path) -> None:
    client.add(str(mib_file))
    client.add_bytes(b"hello world\n")
    assert client.cat(HELLO_CID) == b"hello world\n"
    whole = client.cat(MIB_CID)
    assert hashlib.sha256(whole).digest() == hashlib.sha256(pattern_bytes(0, 1048576)).digest()
    assert client.cat(MIB_CID, offset=CHUNK_SIZE - 3, length=10) == pattern_bytes(CHUNK_SIZE - 3, 10)
    assert client.cat(MIB_CID, offset=1048570) == pattern_bytes(1048570, 6)
    assert client.cat(MIB_CID, offset=5, length=0) == b""


def test_get_writes_the_file_from_a_tar_stream(client: Any, mib_file: Path, tmp_path: Path) -> None:
    client.add(str(mib_file))
    client.get(MIB_CID, target=str(tmp_path))
    assert (tmp_path / MIB_CID).read_bytes() == mib_file.read_bytes()
    client.get(MIB_CID, target=str(tmp_path / "gz"), compress=True)
    assert (tmp_path / "gz" / MIB_CID).read_bytes() == mib_file.read_bytes()


def test_pin_add_and_block_get(client: Any, node: Any) -> None:
    cid = client.add_bytes(b"pin me\n", opts={"pin": False})
    assert not node[0].blocks.is_pinned(parse_cid(cid))
    assert client.pin.add(cid)["Pins"] == [cid]
    assert node[0].blocks.is_pinned(parse_cid(cid))
    block = client.block.get(cid)
    assert parse_cid(cid).verify(block)


def test_id_and_version(client: Any) -> None:
    assert "arena" in client.id()["AgentVersion"]
    assert client.version()["Version"] == "0.7.0"


@pytest.mark.parametrize(
    ("opts", "message"),
    [({"cid-version": 2}, "cid-version=2"), ({"hash": "blake3"}, "blake3"),
     ({"chunker": "rabin"}, "chunker 'rabin'"), ({"trickle": True}, "trickle")],
)
def test_unsupported_add_options_are_refused(client: Any, opts: dict[str, Any], message: str) -> None:
    with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match=message):
        client.add_bytes(b"x", opts=opts)


def test_unknown_content_and_bad_cid_are_kubo_errors(client: Any) -> None:
    with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match="not stored"):
        client.cat("QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh51")
    with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match="is not a CID"):
        client.cat("not-a-cid")


def _raw_post(port: int, body: bytes, declared_length: int) -> bytes:
    boundary = "arenaboundary"
    head = (f"POST /api/v0/add HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {declared_length}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        if declared_length > len(body):
            return b""  # close mid-upload
        reply = b""
        while chunk := sock.recv(65536):  # headers and body may come in separate segments
            reply += chunk
        return reply


def _part(payload: bytes) -> bytes:
    return (b"--arenaboundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + payload)


def test_truncated_uploads_store_nothing_claimed(node: Any) -> None:
    store, port = node
    payload = pattern_bytes(3, 3 * CHUNK_SIZE + 11)
    full_root = store.add_file(_Bytes(payload), only_hash=True)[0]
    pins_before = store.blocks.pins()
    # 1) the client disconnects half way through the body
    body = _part(payload)
    _raw_post(port, body[: len(body) // 2], declared_length=len(body) + 100)
    # 2) the body is complete as HTTP but the closing multipart boundary never comes
    reply = _raw_post(port, body, declared_length=len(body))
    assert b"400" in reply.split(b"\r\n", 1)[0] and b"closing multipart boundary" in reply
    time.sleep(0.3)
    assert not store.has(full_root)
    assert store.blocks.pins() == pins_before
    store.blocks.gc()
    assert not any(store.blocks.has_block(p) for p in [parse_cid(full_root)])


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out


def test_kubo_adapter_speaks_the_same_api(node: Any, mib_file: Path) -> None:
    """KuboContentStore against this API: the adapter and the routes agree on the protocol."""
    kubo = KuboContentStore(f"/ip4/127.0.0.1/tcp/{node[1]}/http", timeout=30)
    with mib_file.open("rb") as fileobj:
        assert kubo.add_file(fileobj) == (MIB_CID, 1048832)
    assert b"".join(kubo.cat(MIB_CID, 10, 5)) == pattern_bytes(10, 5)
    assert kubo.file_size(MIB_CID) == 1048576
    assert kubo.has(MIB_CID)
    kubo.pin(MIB_CID)
    assert parse_cid(MIB_CID).verify(kubo.get_block(MIB_CID))
    assert "AgentVersion" in kubo.node_info()


def test_cli_add_cat_get_pin(node: Any, mib_file: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from node.cli import ipfs as cli_ipfs

    parser = argparse.ArgumentParser(prog="arena")
    cli_ipfs.register(parser.add_subparsers(dest="command"))
    api = ["--api", f"/ip4/127.0.0.1/tcp/{node[1]}/http"]

    def arena(*argv: str) -> int:
        args = parser.parse_args(["ipfs", argv[0], *api, *argv[1:]])
        return args.func(args)

    assert arena("add", str(mib_file)) == 0
    assert capsys.readouterr().out.split("\t")[0] == MIB_CID
    assert arena("get", MIB_CID, "-o", str(tmp_path / "out.bin")) == 0
    assert (tmp_path / "out.bin").read_bytes() == mib_file.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert arena("pin", MIB_CID) == 0
    assert arena("cat", MIB_CID, "--offset", "7", "--length", "3") == 0
    assert arena("cat", "not-a-cid") == 1
    assert "is not a CID" in capsys.readouterr().err
    assert cli_ipfs.run(parser.parse_args(["ipfs", "pin", "--api", "/ip4/127.0.0.1/tcp/1/http",
                                           "--timeout", "2", MIB_CID])) == 1
