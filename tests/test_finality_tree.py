"""ChainTree (node/finality.py) finds authority-set changes in stored blocks without decoding every
block's events: only a block whose encoded events name NewAuthorities is decoded."""
from __future__ import annotations

from pathlib import Path

from node.finality import ChainTree
from runtime.crypto import Keypair
from tests.helpers import ALICE, make_chain, sign

EVE = Keypair.from_dev_name("eve")
UNIT = 10**9


def test_set_changes_are_found_and_other_blocks_are_not_decoded(tmp_path: Path, monkeypatch) -> None:
    chain = make_chain(tmp_path / "db")

    def ts(slot: int) -> int:
        return chain.spec.config["timestamp_ms"] + slot * chain.spec.config["slot_duration_ms"]

    bond = sign(chain, EVE, "staking", "bond", ["authority", 2000 * UNIT], 0)
    transfers = [sign(chain, ALICE, "balances", "transfer", [EVE.public_key, 1 + n], n) for n in range(3)]
    hashes = []
    for slot in range(1, 46):
        block, _, rejected = chain.build_block(ALICE, slot, ts(slot), [bond, *transfers] if slot == 1 else [])
        assert not rejected
        hashes.append(block.hash)
    expected = {h for h in hashes
                if any(e.module == "session" and e.name == "NewAuthorities" for e in chain.store.events(h))}
    assert expected  # EVE's bond changes the set at an epoch start

    decoded: list[bytes] = []
    events = chain.store.events
    monkeypatch.setattr(chain.store, "events", lambda h: decoded.append(h) or events(h))
    tree = ChainTree(chain)
    found = {h for h in hashes if tree.set_change(h) is not None}
    assert found == expected
    assert set(decoded) == expected  # the other blocks' events were never decoded
    set_id, weights = tree.set_change(next(iter(expected)))
    assert EVE.public_key in weights and set_id >= 1
