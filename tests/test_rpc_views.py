"""The RPC namespaces run on the narrow handles alone (node/views.py), with no node around them:
a chain, a pool handle and no network. Also pins what those handles promise: a local submission is
gossiped, nonces count the pool, and both places that describe the token agree."""
from __future__ import annotations

import json

from node import api_substrate
from node.api import register_core_api
from node.genesis import DEFAULT_GENESIS
from node.rpc import RpcServer
from node.txpool import TxPool
from node.views import NoNetwork, PoolHandle
from runtime.modules import balances
from tests.helpers import ALICE, BOB, make_chain, sign


def test_core_and_substrate_namespaces_on_the_narrow_handles(tmp_path):
    spec = json.loads(DEFAULT_GENESIS.read_text())
    spec.pop("token", None)  # a chain spec that names no token
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(spec))
    chain = make_chain(tmp_path / "db", genesis)
    try:
        gossiped: list[bytes] = []
        pool = PoolHandle(TxPool(chain.check_for_pool), chain, gossip=gossiped.append)
        rpc = RpcServer()
        register_core_api(rpc, chain, pool, NoNetwork())
        api_substrate.register(rpc, chain, pool)
        call = rpc.methods

        # one description of the token, in base units the balances module counts in
        properties = call["system_properties"]()
        assert properties["tokenDecimals"] == balances.DECIMALS
        metadata_properties = call["state_getMetadata"]()["properties"]
        assert metadata_properties == {k: properties[k] for k in metadata_properties}
        assert call["system_health"]()["shouldHavePeers"] is False and call["system_peers"]() == []

        # a local submission lands in the pool, counts towards the next nonce, and is gossiped
        encoded = sign(chain, ALICE, "balances", "transfer", [BOB.public_key, 1], 0)
        xt_hash = call["author_submitExtrinsic"]("0x" + encoded.hex())
        assert gossiped == [encoded]
        assert call["author_pendingExtrinsics"]() == ["0x" + encoded.hex()]
        assert call["arena_extrinsic"](xt_hash) == {"status": "pending"}
        assert call["system_accountNextIndex"](ALICE.address) == 1
        # what arrives from the network is admitted without being gossiped back
        pool.admit(sign(chain, ALICE, "balances", "transfer", [BOB.public_key, 2], 1))
        assert len(gossiped) == 1 and call["system_accountNextIndex"](ALICE.address) == 2
    finally:
        chain.store.close()
