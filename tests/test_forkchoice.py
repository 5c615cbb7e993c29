"""Fork choice in-process: longest chain wins, state reverts exactly, retracted extrinsics come back,
finality is never crossed; and the authority set rotates at epoch boundaries from staking."""
import pytest

from node.chain import BlockError
from runtime.modules import balances, session, system
from tests.helpers import ALICE, BOB, CHARLIE, Keypair, make_chain, sign

EVE = Keypair.from_dev_name("eve")


@pytest.fixture()
def chains(tmp_path):
    a, b = make_chain(tmp_path / "a"), make_chain(tmp_path / "b")
    yield a, b
    a.store.close()
    b.store.close()


def full_root(chain) -> bytes:
    """The state root recomputed from every stored key (no tree, no caches)."""
    from node.genesis import state_root_of
    from node.storage import P_STATE
    return state_root_of({key[3:]: value for key, value in chain.store.db.iterator(prefix=P_STATE)})


def ts(chain, slot):
    return chain.spec.config["timestamp_ms"] + slot * 1000


def test_longer_fork_reorgs_and_returns_retracted_extrinsics(chains):
    a, b = chains
    xt_a = sign(a, CHARLIE, "balances", "transfer", [BOB.public_key, 111], 0)
    common, _, _ = a.build_block(ALICE, 1, ts(a, 1), [])
    b.import_block(common)
    a.build_block(ALICE, 2, ts(a, 2), [xt_a])          # A: 1 → 2 (with Charlie's transfer)
    root_before = a.store.state_root
    fork = []
    for slot in (3, 4, 5):                               # B: 1 → 3 → 4 → 5 without it
        block, _, _ = b.build_block(BOB, slot, ts(b, slot), [])
        fork.append(block)
    retracted_seen: list = []
    a.reorg_listeners.append(lambda retracted, enacted: retracted_seen.append((retracted, enacted)))
    assert a.import_block(fork[0]) is None               # shorter or equal: kept as a fork
    assert a.store.state_root == root_before
    a.import_block(fork[1])                              # now longer: reorg
    assert a.best.hash == fork[1].hash
    assert a.store.state_root == b.store.get_header(fork[1].hash).state_root
    retracted, enacted = retracted_seen[0]
    assert [blk.extrinsics for blk in retracted] == [[xt_a]]
    assert [blk.hash for blk in enacted] == [fork[0].hash, fork[1].hash]
    state = a.state()
    assert system.AccountNonce.get(state, CHARLIE.public_key) == 0   # the transfer was reverted
    assert balances.Account.get(state, BOB.public_key) == balances.Account.get(b.state(), BOB.public_key)
    a.import_block(fork[2])
    assert a.best.number == 4 and a.store.state_root == b.store.state_root
    assert full_root(a) == a.store.state_root == a.best.state_root


def test_fork_conflicting_with_finality_is_rejected(chains):
    a, b = chains
    common, _, _ = a.build_block(ALICE, 1, ts(a, 1), [])
    b.import_block(common)
    mine, _, _ = a.build_block(ALICE, 2, ts(a, 2), [])
    assert a.finalize(mine.hash)
    fork = [b.build_block(BOB, s, ts(b, s), [])[0] for s in (3, 4, 5)]
    with pytest.raises(BlockError, match="finalized"):
        a.import_block(fork[0])
    assert a.best.hash == mine.hash


def test_invalid_fork_block_keeps_the_old_chain(chains):
    a, b = chains
    common, _, _ = a.build_block(ALICE, 1, ts(a, 1), [])
    b.import_block(common)
    a.build_block(ALICE, 2, ts(a, 2), [])
    good, _, _ = b.build_block(BOB, 3, ts(b, 3), [])
    bad, _, _ = b.build_block(BOB, 4, ts(b, 4), [])
    from runtime.types import Block, Header
    h = bad.header
    forged = Header(h.parent_hash, h.number, h.slot, h.timestamp_ms, h.author, h.randao_reveal,
                    bytes(32), h.extrinsics_root)
    forged = forged.with_seal(BOB.sign(forged.signing_payload()))
    best_before, root_before = a.best.hash, a.store.state_root
    a.import_block(good)
    with pytest.raises(BlockError, match="state root"):
        a.import_block(Block(forged, bad.extrinsics))
    assert a.best.hash == best_before and a.store.state_root == root_before


def test_authority_set_rotates_at_epoch_boundary(tmp_path):
    chain = make_chain(tmp_path / "c")
    try:
        epoch = system.EpochLength.get(chain.state())
        xt = sign(chain, EVE, "staking", "bond", ["authority", 5_000 * 10**9], 0)
        chain.build_block(ALICE, 1, ts(chain, 1), [xt])
        assert EVE.public_key not in [a for a, _ in session.Authorities.get(chain.state())]
        for slot in range(2, epoch + 1):
            chain.build_block(ALICE, slot, ts(chain, slot), [])
        state = chain.state()
        authorities = {bytes(a): s for a, s in session.Authorities.get(state)}
        assert authorities[EVE.public_key] == 5_000 * 10**9
        assert session.SetId.get(state) == 1
        assert session.EpochRandomness.get(state) != bytes(32)
    finally:
        chain.store.close()


def test_a_cached_signature_does_not_carry_a_mortal_extrinsic_onto_another_fork(chains):
    """The verified-signature cache is keyed by the era's birth hash too: a mortal transfer signed
    for fork A's block 1 verifies there, and on fork B (another block 1) it is still refused."""
    from runtime.executive import InvalidTransaction
    from runtime.types import Era

    a, b = chains
    a_one = a.build_block(ALICE, 1, ts(a, 1), [])[0]
    b.build_block(ALICE, 2, ts(b, 2), [])  # fork B: another block 1
    assert b.best.hash != a_one.hash
    xt = sign(a, BOB, "balances", "transfer", [ALICE.public_key, 5], 0, era=Era(1, 64), birth_hash=a_one.hash)
    a.check_for_pool(xt)
    b.verified_signatures = a.verified_signatures  # one node's cache, seen from the other fork
    with pytest.raises(InvalidTransaction, match="signature does not verify"):
        b.check_for_pool(xt)
