"""Directories, CIDv1/raw leaves, pins and blocks through the Kubo RPC, with a real ipfshttpclient."""

from __future__ import annotations

import io
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
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE
from tests.content_helpers import pattern_bytes, serve_app, temp_leveldb

pytestmark = pytest.mark.timeout(60)

# Kubo 0.x `ipfs add --cid-version=1 --raw-leaves` (Kubo's default with CIDv1) of "hello\n"
HELLO_RAW_V1 = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"


@pytest.fixture
def node() -> Iterator[tuple[EmbeddedContentStore, Any]]:
    with temp_leveldb() as db:
        store = EmbeddedContentStore(BlockStore(db.prefixed_db(b"c")))
        with serve_app(Starlette(routes=ipfs_routes(store))) as port, \
                ipfshttpclient.client.Client(f"/ip4/127.0.0.1/tcp/{port}/http", timeout=30) as client:
            yield store, client


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden": 8}\n')
    (model / "model.safetensors").write_bytes(pattern_bytes(0, 2 * CHUNK_SIZE + 3))
    (model / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return model


def test_directory_add_ls_cat_get(node: Any, tmp_path: Path) -> None:
    _store, client = node
    added = client.add(str(_model(tmp_path)), recursive=True)
    names = [entry["Name"] for entry in added]
    assert set(names) == {"model/config.json", "model/model.safetensors", "model/tokenizer/vocab.txt",
                          "model/tokenizer", "model"}
    root = added[-1]
    assert root["Name"] == "model"
    assert [p["Name"] for p in client.ls(root["Hash"])["Objects"][0]["Links"]] == [
        "config.json", "model.safetensors", "tokenizer"]
    links = {p["Name"]: p for p in client.ls(root["Hash"])["Objects"][0]["Links"]}
    assert links["model.safetensors"]["Size"] == 2 * CHUNK_SIZE + 3 and links["tokenizer"]["Type"] == 1
    assert client.cat(f"{root['Hash']}/tokenizer/vocab.txt") == b"a\nb\n"
    assert client.cat(f"/ipfs/{root['Hash']}/model.safetensors", offset=CHUNK_SIZE, length=4) == \
        pattern_bytes(CHUNK_SIZE, 4)
    with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match="no link named 'nope'"):
        client.cat(f"{root['Hash']}/nope")
    # only the root is pinned, as Kubo does
    assert list(client.pin.ls(type="recursive")["Keys"]) == [root["Hash"]]

    out = tmp_path / "out"
    out.mkdir()
    client.get(root["Hash"], target=str(out))
    got = out / root["Hash"]
    assert (got / "config.json").read_text() == '{"hidden": 8}\n'
    assert (got / "model.safetensors").read_bytes() == pattern_bytes(0, 2 * CHUNK_SIZE + 3)
    assert (got / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"

    stat = client.files.stat(f"/ipfs/{root['Hash']}")
    assert stat["Type"] == "directory" and stat["Blocks"] == 3
    assert stat["CumulativeSize"] == int(root["Size"])


def test_wrap_with_directory_and_cid_v1_raw_leaves(node: Any, tmp_path: Path) -> None:
    _store, client = node
    (tmp_path / "hello.txt").write_bytes(b"hello\n")
    assert client.add(str(tmp_path / "hello.txt"), cid_version=1, raw_leaves=True)["Hash"] == HELLO_RAW_V1
    # ipfshttpclient sends raw-leaves=false unless told otherwise: dag-pb leaves, as Kubo then makes
    assert client.add(str(tmp_path / "hello.txt"), cid_version=1)["Hash"].startswith("bafybei")
    wrapped = client.add(str(tmp_path / "hello.txt"), wrap_with_directory=True)
    assert [w["Name"] for w in wrapped] == ["hello.txt", ""]
    assert client.cat(f"{wrapped[-1]['Hash']}/hello.txt") == b"hello\n"
    big = client.add_bytes(pattern_bytes(0, 3 * CHUNK_SIZE), opts={"cid-version": 1})
    assert big.startswith("bafy")
    assert client.cat(big) == pattern_bytes(0, 3 * CHUNK_SIZE)
    assert client.block.stat(HELLO_RAW_V1) == {"Key": HELLO_RAW_V1, "Size": 6}


def test_pin_rm_then_gc_frees_the_blocks(node: Any) -> None:
    store, client = node
    kept = client.add_bytes(b"kept\n")
    dropped = client.add_bytes(pattern_bytes(0, CHUNK_SIZE + 1))
    assert set(client.pin.ls()["Keys"]) == {kept, dropped}
    assert client.pin.rm(dropped) == {"Pins": [dropped]}
    with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match="not pinned"):
        client.pin.rm(dropped)
    store.blocks.gc()
    assert not store.blocks.has_block(parse_cid(dropped))
    assert client.cat(kept) == b"kept\n"


def test_block_put_and_stat(node: Any) -> None:
    _store, client = node
    reply = client.block.put(io.BytesIO(b"raw bytes"))
    assert reply["Key"].startswith("bafkrei") and reply["Size"] == 9
    assert client.block.get(reply["Key"]) == b"raw bytes"
    assert client.block.stat(reply["Key"])["Size"] == 9
    with pytest.raises(ipfshttpclient.exceptions.ErrorResponse, match="not supported"):
        client.block.put(io.BytesIO(b"x"), opts={"mhtype": "blake3"})


def test_get_of_a_file_is_a_one_member_tar(node: Any, tmp_path: Path) -> None:
    _, client = node
    cid = client.add_bytes(b"solo\n")
    out = tmp_path / "o"
    out.mkdir()
    client.get(cid, target=str(out))
    assert (out / cid).read_bytes() == b"solo\n"
