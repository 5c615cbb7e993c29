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


def test_build_stops_at_the_block_capacity_measured_from_imports(tmp_path):
    """An author takes no more than this node imports in IMPORT_BUDGET_FRACTION of a slot: what
    peers can import before the next slot (issue 17: bigger blocks forked the chain under load)."""
    from node.chain import IMPORT_BUDGET_FRACTION, MIN_BLOCK_EXTRINSICS

    chain = make_chain(tmp_path / "db")
    try:
        assert chain.block_capacity() is None  # nothing imported yet: no cap but size and time
        wanted = MIN_BLOCK_EXTRINSICS + 6
        budget_s = chain.spec.slot_duration_ms * IMPORT_BUDGET_FRACTION / 1000
        chain.import_cost.record(budget_s * 100 / (wanted + 0.5), 100)  # 100 extrinsics imported at that speed
        assert chain.block_capacity() == wanted
        xts = transfers(chain, wanted + 30)
        block, _, _ = chain.build_block(BOB, 1, chain.spec.config["timestamp_ms"] + 1000, xts, budget_s=60.0)
        assert block.extrinsics == xts[:wanted] and chain.last_build_stop == "capacity"
    finally:
        chain.store.close()


def test_import_cost_is_measured_on_a_real_import(tmp_path):
    """A peer's block imported here sets this node's block capacity (its import speed)."""
    from node.chain import IMPORT_SAMPLE_MIN

    author, peer = make_chain(tmp_path / "a"), make_chain(tmp_path / "b")
    try:
        xts = transfers(author, IMPORT_SAMPLE_MIN)
        block, _, _ = author.build_block(BOB, 1, author.spec.config["timestamp_ms"] + 1000, xts, budget_s=60.0)
        assert len(block.extrinsics) == IMPORT_SAMPLE_MIN and author.block_capacity() is None
        peer.import_block(block)
        assert peer.import_cost.per_extrinsic_s is not None and peer.import_cost.per_extrinsic_s > 0
        assert peer.block_capacity() is not None
    finally:
        author.store.close()
        peer.store.close()
