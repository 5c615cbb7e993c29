"""An Arena node process and a real Helia node exchange a model directory and a file over bitswap."""

from __future__ import annotations

import hashlib
from pathlib import Path

import ipfshttpclient
import pytest

from node.offchain.context import rpc_to_ipfs_multiaddr
from p2p.content.unixfs import CHUNK_SIZE
from tests.content_helpers import pattern_bytes
from tests.helia_peer import HeliaPeer, require_helia
from tests.netutil import Net

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_helia_fetches_a_model_folder_from_a_node_and_the_node_fetches_from_helia(tmp_path: Path) -> None:
    require_helia()
    model = tmp_path / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden": 8}\n')
    weights = pattern_bytes(0, 3 * CHUNK_SIZE + 17)
    (model / "model.safetensors").write_bytes(weights)
    (model / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    net = Net(tmp_path, count=1)
    try:
        net.up()
        arena = ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(net.slots[0].rpc_url), timeout=60)
        root = arena.add(str(model), recursive=True)[-1]["Hash"]
        addr = next(a for a in arena.id()["Addresses"] if a.startswith("/ip4/127.0.0.1/"))
        with HeliaPeer() as helia:
            # Helia builds the same directory CID with Kubo's settings
            assert helia.call("add", path=str(model))["cid"] == root
        with HeliaPeer() as helia:
            helia.call("dial", addr=addr)
            listing = helia.call("ls", cid=root)["entries"]
            assert [(e["name"], e["type"]) for e in listing] == [
                ("config.json", "file"), ("model.safetensors", "file"), ("tokenizer", "directory")]
            got = helia.call("cat", cid=root, path="model.safetensors", out=str(tmp_path / "w"), timeout=60)
            assert got == {"size": len(weights), "sha256": hashlib.sha256(weights).hexdigest()}
            got = helia.call("cat", cid=root, path="tokenizer/vocab.txt", out=str(tmp_path / "v"))
            assert (tmp_path / "v").read_text() == "a\nb\n"

            # and the other way: a file only Helia has, read through the node's Kubo API
            data = pattern_bytes(7, 2 * CHUNK_SIZE + 5)
            (tmp_path / "only-helia.bin").write_bytes(data)
            cid = helia.call("add", path=str(tmp_path / "only-helia.bin"))["cid"]
            assert arena.cat(cid) == data
    finally:
        net.down()
