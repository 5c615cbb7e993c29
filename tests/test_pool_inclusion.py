"""PoolHandle drops what a best-chain block includes by hash, without rechecking it as stale;
a fork block's extrinsics stay pending."""
from __future__ import annotations

from pathlib import Path

from node.txpool import TxPool
from node.views import PoolHandle
from tests.helpers import ALICE, BOB, make_chain, sign


def test_included_extrinsics_leave_the_pool_without_a_recheck(tmp_path: Path) -> None:
    chain = make_chain(tmp_path / "db")
    checked: list[bytes] = []

    def check(encoded: bytes):
        checked.append(encoded)
        return chain.check_for_pool(encoded)

    handle = PoolHandle(TxPool(check), chain)
    chain.listeners.append(handle.on_import)
    xts = [sign(chain, ALICE, "balances", "transfer", [BOB.public_key, 1 + n], n) for n in range(3)]
    for x in xts:
        handle.admit(x)
    t0 = chain.spec.config["timestamp_ms"]
    chain.build_block(BOB, 1, t0 + 1000, xts[:2])
    checked.clear()
    handle.revalidate()
    assert handle.pending() == [xts[2]]
    assert xts[0] not in checked and xts[1] not in checked  # dropped, not rechecked as stale
    assert xts[2] in checked  # the account's next one is rechecked against the new state


def test_a_fork_blocks_extrinsics_stay_pending(tmp_path: Path) -> None:
    chain = make_chain(tmp_path / "db")
    fork_source = make_chain(tmp_path / "fork")
    handle = PoolHandle(TxPool(chain.check_for_pool), chain)
    chain.listeners.append(handle.on_import)
    xt = sign(chain, ALICE, "balances", "transfer", [BOB.public_key, 1], 0)
    t0 = chain.spec.config["timestamp_ms"]
    ours = [chain.build_block(BOB, slot, t0 + slot * 1000, [])[0] for slot in (1, 2)]
    fork, _, _ = fork_source.build_block(ALICE, 1, t0 + 1000, [xt])  # same height as ours[0], shorter
    handle.admit(xt)
    chain.import_block(fork)
    assert chain.store.canonical_hash(1) == ours[0].hash
    handle.revalidate()
    assert handle.pending() == [xt]
