"""Authoring waits a moment for the previous slot's block (issue 17): under load a peer's block
can finish importing after the next slot began, and an author that builds on the block before it
forks the chain (two blocks at one height, GRANDPA rounds split between the branches).

The decision (`ConsensusService._awaits_previous_block`) is checked on a real node's consensus
service and chain: wait only while the best block is older than the previous slot *and* that
slot's author has authored lately; a silent author is never waited for.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from consensus.validity import expected_author
from node.consensus_service import LIVE_AUTHOR_SLOTS
from node.service import ArenaNode, NodeConfig
from runtime.crypto import Keypair

SLOT = 10


@pytest.fixture
def node(tmp_path: Path):
    arena = ArenaNode(NodeConfig(tmp_path / "node"))   # the default chain, networked, no key, not started
    assert arena.consensus is not None
    yield arena
    arena.store.close()


def test_waits_only_for_a_live_author_whose_block_is_missing(node: ArenaNode) -> None:
    service = node.consensus
    assert service is not None
    previous_author = expected_author(node.chain.state(), SLOT - 1)
    assert node.chain.best.slot < SLOT - 1
    assert not service._awaits_previous_block(SLOT)        # never seen authoring: not waited for
    service.last_authored_slot[previous_author] = SLOT - 3
    assert service._awaits_previous_block(SLOT)            # authors lately; its block is on its way
    service.last_authored_slot[previous_author] = SLOT - 2 - LIVE_AUTHOR_SLOTS
    assert not service._awaits_previous_block(SLOT)        # went silent: build at once


def test_no_wait_once_the_previous_slot_has_its_block(node: ArenaNode) -> None:
    service = node.consensus
    assert service is not None
    previous_author = expected_author(node.chain.state(), SLOT - 1)
    service.last_authored_slot[previous_author] = SLOT - 2
    author = Keypair.from_dev_name("alice")
    slot_ms = node.spec.slot_duration_ms
    node.chain.build_block(author, SLOT - 1, (SLOT - 1) * slot_ms, [])
    assert node.chain.best.slot == SLOT - 1
    assert not service._awaits_previous_block(SLOT)
