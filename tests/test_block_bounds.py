"""Block building is bounded: by a size that fits one gossip message, and by a time budget."""
from node.chain import MAX_GOSSIP_BLOCK_BYTES
from p2p.config import NetworkLimits
from tests.helpers import ALICE, BOB, CHARLIE, make_chain, sign


def transfers(chain, count):
    return [sign(chain, ALICE, "balances", "transfer", [CHARLIE.public_key, 1], nonce) for nonce in range(count)]


def test_block_size_cap_keeps_the_block_under_the_limit(tmp_path):
    chain = make_chain(tmp_path / "db")
    try:
        xts = transfers(chain, 40)
        cap = 2_000
        block, _, _ = chain.build_block(BOB, 1, chain.spec.config["timestamp_ms"] + 1000, xts, max_bytes=cap)
        assert 0 < len(block.extrinsics) < 40
        assert len(block.encode()) <= cap
        assert chain.last_build_stop == "size"
        assert block.extrinsics == xts[:len(block.extrinsics)]  # in order: the rest waits for the next block
    finally:
        chain.store.close()


def test_default_size_cap_fits_the_gossip_limit():
    assert MAX_GOSSIP_BLOCK_BYTES < NetworkLimits().max_block_message


def test_build_stops_at_the_time_budget(tmp_path):
    chain = make_chain(tmp_path / "db")
    try:
        xts = transfers(chain, 10)
        block, _, _ = chain.build_block(BOB, 1, chain.spec.config["timestamp_ms"] + 1000, xts, budget_s=-1.0)
        assert block.extrinsics == [] and chain.last_build_stop == "time"
        block, _, _ = chain.build_block(BOB, 2, chain.spec.config["timestamp_ms"] + 2000, xts, budget_s=60.0)
        assert block.extrinsics == xts and chain.last_build_stop == "candidates"
    finally:
        chain.store.close()
