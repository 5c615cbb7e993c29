"""Content across real node processes: a file added on one node is fetched by CID on another (bitswap)."""
import hashlib
import os

import ipfshttpclient
import pytest

from node.offchain.context import rpc_to_ipfs_multiaddr
from tests.netutil import Net

pytestmark = pytest.mark.integration


def test_multi_chunk_file_added_on_one_node_is_fetched_on_another(tmp_path):
    net = Net(tmp_path, count=2)
    try:
        net.up()
        data = os.urandom(3 * 262144 + 12345)  # four leaves: a multi-chunk DAG
        source = ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(net.slots[0].rpc_url))
        cid = source.add_bytes(data)
        other = ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(net.slots[1].rpc_url), timeout=60)
        net.wait(lambda: net.health(1) and net.health(1)["peers"] >= 1, 30, "peers connected")
        fetched = other.cat(cid)
        assert hashlib.sha256(fetched).digest() == hashlib.sha256(data).digest()
        # and it is now stored there: a second read needs no peer
        assert other.cat(cid, offset=262144, length=10) == data[262144:262154]
    finally:
        net.down()
