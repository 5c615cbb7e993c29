"""The transaction pool: ready/future queues, priority, replacement, limits, revalidation."""
import pytest

from node.txpool import PoolError, PoolLimits, TxPool
from tests.helpers import ALICE, BOB, CHARLIE, make_chain, sign


@pytest.fixture()
def chain(tmp_path):
    c = make_chain(tmp_path / "db")
    yield c
    c.store.close()


def xfer(chain, key, nonce, tip=0, amount=1):
    return sign(chain, key, "balances", "transfer", [CHARLIE.public_key, amount], nonce, tip=tip)


def test_future_waits_for_gap_then_becomes_ready(chain):
    pool = TxPool(chain.check_for_pool)
    pool.submit(xfer(chain, ALICE, 1))
    assert pool.ready() == []
    pool.submit(xfer(chain, ALICE, 0))
    assert len(pool.ready()) == 2
    assert pool.next_nonce(ALICE.public_key, 0) == 2


def test_priority_by_tip_and_nonce_order_within_account(chain):
    pool = TxPool(chain.check_for_pool)
    a0, a1 = xfer(chain, ALICE, 0, tip=1), xfer(chain, ALICE, 1, tip=100)
    b0 = xfer(chain, BOB, 0, tip=50)
    for x in (a1, a0, b0):
        pool.submit(x)
    assert pool.ready() == [b0, a0, a1]


def test_replacement_needs_higher_tip(chain):
    pool = TxPool(chain.check_for_pool)
    pool.submit(xfer(chain, ALICE, 0, tip=5))
    with pytest.raises(PoolError) as info:
        pool.submit(xfer(chain, ALICE, 0, tip=5, amount=2))
    assert info.value.kind == "PriorityTooLow"
    better = xfer(chain, ALICE, 0, tip=6, amount=2)
    pool.submit(better)
    assert pool.ready() == [better] and len(pool) == 1


def test_duplicate_and_limits(chain):
    pool = TxPool(chain.check_for_pool, PoolLimits(max_total=3, max_per_account=2, max_future_gap=5))
    x = xfer(chain, ALICE, 0)
    pool.submit(x)
    with pytest.raises(PoolError) as info:
        pool.submit(x)
    assert info.value.kind == "AlreadyInPool"
    pool.submit(xfer(chain, ALICE, 1))
    with pytest.raises(PoolError) as info:
        pool.submit(xfer(chain, ALICE, 2))
    assert info.value.kind == "AccountLimit"
    with pytest.raises(PoolError) as info:
        pool.submit(xfer(chain, BOB, 9))
    assert info.value.kind == "Future"
    pool.submit(xfer(chain, BOB, 0))
    with pytest.raises(PoolError) as info:
        pool.submit(xfer(chain, CHARLIE, 0))
    assert info.value.kind == "PoolFull"
    pool.submit(xfer(chain, CHARLIE, 0, tip=10))  # evicts the lowest tip
    assert len(pool) == 3


def test_revalidation_after_block(chain):
    pool = TxPool(chain.check_for_pool)
    included, kept = xfer(chain, ALICE, 0), xfer(chain, ALICE, 1)
    pool.submit(included)
    pool.submit(kept)
    chain.build_block(BOB, 1, chain.spec.config["timestamp_ms"] + 1000, [included])
    pool.revalidate()
    assert pool.ready() == [kept]


def test_pool_full_says_retry(chain):
    pool = TxPool(chain.check_for_pool, PoolLimits(max_total=2))
    pool.submit(xfer(chain, ALICE, 0))
    pool.submit(xfer(chain, BOB, 0))
    with pytest.raises(PoolError) as info:
        pool.submit(xfer(chain, CHARLIE, 0))
    assert info.value.code == 1014 and "pool full, retry" in info.value.message
    assert pool.refused_full == 1


def test_event_loop_lag_refuses_then_recovers(chain):
    from node.txpool import LoopLag

    pool = TxPool(chain.check_for_pool, PoolLimits(max_loop_lag_s=0.1))
    pool.lag = LoopLag()
    pool.lag.record(0.5)  # a wake-up 500 ms late: the node is behind
    with pytest.raises(PoolError) as info:
        pool.submit(xfer(chain, ALICE, 0))
    assert info.value.code == 1014 and "overloaded" in info.value.message and len(pool) == 0
    for _ in range(4):
        pool.lag.record(0.0)  # punctual wake-ups: the remembered lag halves each time
    pool.submit(xfer(chain, ALICE, 0))
    assert len(pool) == 1 and pool.refused_lag == 1


def test_incremental_revalidation_drops_included_and_promotes(chain):
    pool = TxPool(chain.check_for_pool)
    a0, a1, a2, a4 = (xfer(chain, ALICE, n) for n in (0, 1, 2, 4))
    for x in (a0, a1, a2, a4):
        pool.submit(x)
    chain.build_block(BOB, 1, chain.spec.config["timestamp_ms"] + 1000, [a0, a1])
    pool.revalidate({ALICE.public_key})
    assert pool.ready() == [a2] and len(pool) == 2  # a4 still waits for nonce 3
    a3 = xfer(chain, ALICE, 3)
    chain.build_block(BOB, 2, chain.spec.config["timestamp_ms"] + 2000, [a2])
    pool.revalidate({ALICE.public_key})
    pool.submit(a3)
    assert pool.ready() == [a3, a4]


def test_finality_lag_with_a_backlog_refuses(chain):
    pool = TxPool(chain.check_for_pool, PoolLimits(max_finality_lag=3, backlog=1))
    behind = [10]
    pool.finality_lag = lambda: behind[0]
    pool.submit(xfer(chain, ALICE, 0))  # no backlog yet: a stalled finality alone refuses nothing
    pool.submit(xfer(chain, BOB, 0))
    with pytest.raises(PoolError) as info:
        pool.submit(xfer(chain, CHARLIE, 0))
    assert info.value.code == 1014 and "finality trails" in info.value.message
    behind[0] = 2  # finality caught up
    pool.submit(xfer(chain, CHARLIE, 0))
    assert len(pool) == 3


def test_rotating_revalidation_drops_an_invalid_extrinsic_of_an_untouched_sender(chain):
    from node.txpool import FULL_REVALIDATION_EVERY

    pool = TxPool(chain.check_for_pool)
    a0 = xfer(chain, ALICE, 0)
    pool.submit(a0)
    # ALICE's nonce 0 is spent in a block the pool is not told about (as after a reorg)
    chain.build_block(BOB, 1, chain.spec.config["timestamp_ms"] + 1000, [a0])
    for _ in range(FULL_REVALIDATION_EVERY):
        pool.revalidate(set())  # blocks that touched nobody in the pool
    assert len(pool) == 0


def test_overload_exempt_submissions_pass_the_lag_refusal(chain):
    from node.txpool import LoopLag

    pool = TxPool(chain.check_for_pool, PoolLimits(max_loop_lag_s=0.1))
    pool.lag = LoopLag()
    pool.lag.record(1.0)
    with pytest.raises(PoolError):
        pool.submit(xfer(chain, ALICE, 0))
    pool.submit(xfer(chain, ALICE, 0), overload_exempt=True)  # e.g. re-added from a retracted block
    assert len(pool) == 1


def test_a_refused_new_sender_leaves_no_empty_queue(chain):
    """A PoolFull refusal of a sender with nothing pending left an empty queue behind, and the
    next block's `ready()` crashed the node (min() of an empty sequence)."""
    pool = TxPool(chain.check_for_pool, PoolLimits(max_total=1))
    pool.submit(xfer(chain, ALICE, 0, tip=5))
    with pytest.raises(PoolError):
        pool.submit(xfer(chain, BOB, 0))
    assert pool.ready() == [xfer(chain, ALICE, 0, tip=5)]


def test_eviction_of_the_same_senders_only_extrinsic_keeps_the_pool_consistent(chain):
    pool = TxPool(chain.check_for_pool, PoolLimits(max_total=1))
    pool.submit(xfer(chain, ALICE, 1, tip=1))  # a future one, the only one in the pool
    replacement = xfer(chain, ALICE, 0, tip=9)
    pool.submit(replacement)  # evicts ALICE's nonce-1 extrinsic, emptying ALICE's queue
    assert len(pool) == 1 and pool.ready() == [replacement]


def test_unfinalized_backlog_refuses_before_any_check(chain):
    """Pending plus carried by unfinalized blocks at `backlog_blocks` blocks' worth: "pool full,
    retry", decided before the extrinsic is checked (no signature verified for a refusal)."""
    checked = []

    def check(encoded):
        checked.append(encoded)
        return chain.check_for_pool(encoded)

    pool = TxPool(check, PoolLimits(backlog_blocks=2, min_backlog=1))
    in_blocks = [0]
    pool.unfinalized = lambda: in_blocks[0]
    pool.block_capacity = lambda: 2          # a block carries 2: the bound is 4
    pool.submit(xfer(chain, ALICE, 0))
    in_blocks[0] = 3                         # 1 pending + 3 in unfinalized blocks
    refused = xfer(chain, BOB, 0)
    with pytest.raises(PoolError) as info:
        pool.submit(refused)
    assert info.value.code == 1014 and "not final yet" in info.value.message
    assert refused not in checked and pool.refused_backlog == 1 and len(pool) == 1
    in_blocks[0] = 0                         # those blocks became final
    pool.submit(refused)
    assert len(pool) == 2


def test_unfinalized_backlog_without_a_measured_capacity_refuses_nothing(chain):
    pool = TxPool(chain.check_for_pool, PoolLimits(backlog_blocks=1, min_backlog=1))
    pool.unfinalized = lambda: 1_000
    pool.block_capacity = lambda: None       # no block imported yet: nothing to size the bound by
    pool.submit(xfer(chain, ALICE, 0))
    assert len(pool) == 1


def test_pool_handle_counts_extrinsics_of_unfinalized_blocks(chain):
    from node.views import PoolHandle

    handle = PoolHandle(TxPool(chain.check_for_pool), chain)
    chain.listeners.append(handle.on_import)
    t0 = chain.spec.config["timestamp_ms"]
    first, _, _ = chain.build_block(BOB, 1, t0 + 1000, [xfer(chain, ALICE, 0), xfer(chain, ALICE, 1)])
    chain.build_block(BOB, 2, t0 + 2000, [xfer(chain, ALICE, 2)])
    assert handle.unfinalized_extrinsics() == 3
    chain.finalize(first.hash)
    assert handle.unfinalized_extrinsics() == 1


def test_ready_serves_accounts_first_come_first_served(chain):
    """Among equal tips, the oldest pending extrinsic goes first, across accounts: an account that
    keeps sending must not push a later account's transfer out of every capped block (before,
    blocks took whole accounts in the order the accounts first appeared)."""
    pool = TxPool(chain.check_for_pool)
    a0, a1, b0, a2 = xfer(chain, ALICE, 0), xfer(chain, ALICE, 1), xfer(chain, BOB, 0), xfer(chain, ALICE, 2)
    for x in (a0, a1, b0, a2):
        pool.submit(x)
    assert pool.ready() == [a0, a1, b0, a2]
    late_first = TxPool(chain.check_for_pool)
    for x in (a1, b0, a0):  # ALICE's nonce 1 waits for 0, which arrives last
        late_first.submit(x)
    assert late_first.ready() == [b0, a0, a1]


def test_unfinalized_backlog_is_wider_for_gossip(chain):
    """The backlog bound meters new transfers at the RPC; one a peer already admitted gets
    `gossip_backlog_factor` times the room (any author can then include it, not only the node it
    was first sent to), and is refused beyond that."""
    pool = TxPool(chain.check_for_pool, PoolLimits(backlog_blocks=1, min_backlog=1, gossip_backlog_factor=2))
    in_blocks = [3]
    pool.unfinalized = lambda: in_blocks[0]
    pool.block_capacity = lambda: 3          # RPC bound 3, gossip bound 6
    with pytest.raises(PoolError):
        pool.submit(xfer(chain, ALICE, 0))
    pool.submit(xfer(chain, ALICE, 0), gossiped=True)
    assert len(pool) == 1
    in_blocks[0] = 5
    with pytest.raises(PoolError):
        pool.submit(xfer(chain, BOB, 0), gossiped=True)


def test_unfinalized_count_walks_a_bounded_number_of_blocks(chain, monkeypatch):
    """A long finality stall must not make every admission walk the whole unfinalized chain."""
    from node.views import PoolHandle

    handle = PoolHandle(TxPool(chain.check_for_pool), chain)
    chain.listeners.append(handle.on_import)
    monkeypatch.setattr(PoolHandle, "UNFINALIZED_WALK", 2)
    t0 = chain.spec.config["timestamp_ms"]
    for slot in (1, 2, 3):
        chain.build_block(BOB, slot, t0 + 1000 * slot, [xfer(chain, ALICE, slot - 1)])
    assert handle.unfinalized_extrinsics() == 2
