"""Extrinsic gossip under load (issue 17): a node forwards a batch only if it took something new.

Fed to a real node's gossip validator (`ConsensusService.validate_extrinsics`), as every gossiped
batch is. A batch the node refused whole — it is overloaded ("pool full, retry") or already held
every extrinsic — is ignored, not forwarded: a loaded node must not pass on the work it could not
take, ahead of its peers' blocks and votes. A batch of forgeries still costs its sender.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trio

from node.service import ArenaNode, NodeConfig
from p2p import Verdict
from runtime.crypto import Keypair
from runtime.types import Call, Era, sign_extrinsic

ALICE, BOB = Keypair.from_dev_name("alice"), Keypair.from_dev_name("bob")


@pytest.fixture
def node(tmp_path: Path):
    arena = ArenaNode(NodeConfig(tmp_path / "node"))  # the default chain, networked, not started
    assert arena.consensus is not None
    yield arena
    arena.store.close()


def transfer(node: ArenaNode, nonce: int, key: Keypair = ALICE) -> bytes:
    runtime = node.chain.runtime
    return sign_extrinsic(key, Call("balances", "transfer", [BOB.public_key, 1 + nonce]), nonce,
                          node.spec.genesis_hash, runtime.spec_version, Era(0, 0), 0, node.spec.genesis_hash)


def test_new_extrinsics_are_forwarded_known_ones_are_not(node: ArenaNode) -> None:
    service = node.consensus
    assert service is not None
    batch = [transfer(node, 0), transfer(node, 1)]
    assert trio.run(service.validate_extrinsics, "12D3KooWpeer", batch) is Verdict.ACCEPT
    assert trio.run(service.validate_extrinsics, "12D3KooWpeer", batch) is Verdict.IGNORE  # nothing new in it
    assert trio.run(service.validate_extrinsics, "12D3KooWpeer", batch + [transfer(node, 2)]) is Verdict.ACCEPT


def test_an_overloaded_node_does_not_forward_what_it_refused(node: ArenaNode) -> None:
    service = node.consensus
    assert service is not None
    assert trio.run(service.validate_extrinsics, "12D3KooWpeer", [transfer(node, 0)]) is Verdict.ACCEPT
    node.pool.pool.finality_lag = lambda: 1_000  # finality far behind the best block, with a backlog:
    node.pool.pool.limits = replace(node.pool.pool.limits, backlog=0)  # "pool full, retry"
    assert trio.run(service.validate_extrinsics, "12D3KooWpeer", [transfer(node, 1), transfer(node, 2)]) is Verdict.IGNORE
    assert len(node.pool.pool) == 1


def test_a_batch_of_forgeries_is_rejected(node: ArenaNode) -> None:
    service = node.consensus
    assert service is not None
    forged = bytearray(transfer(node, 0))
    forged[-1] ^= 1  # the signature is the last field
    assert trio.run(service.validate_extrinsics, "12D3KooWpeer", [bytes(forged)]) is Verdict.REJECT
