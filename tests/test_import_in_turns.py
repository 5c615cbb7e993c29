"""Blocks are imported and built a few milliseconds at a time, with turns of the event loop in
between (issue 17: `system_health` p99 was 250-450 ms under load because one block's import or
authoring held the node's trio thread for that long).

The work only reads the store: executing the block, computing its state root, and gathering its
writes (`ChainStore.gather_block_writes`). Its outcome is committed only if the best state did not
change during the turns it gave away; otherwise the block is imported (or built) again at once.
"""
from __future__ import annotations

import pytest
import trio

from node.chain import BlockError
from node.storage import StorageError
from runtime.crypto import Keypair
from runtime.executive import drain as drain_steps
from runtime.types import Block, Header
from tests.helpers import ALICE, BOB, CHARLIE, make_chain, sign

DAVE = Keypair.from_dev_name("dave")
BIG = 500  # transfers: tens of milliseconds of work, several turns of 5 ms


def transfers(chain, count, to=CHARLIE):
    return [sign(chain, ALICE, "balances", "transfer", [to.public_key, 1], nonce) for nonce in range(count)]


def ts(chain, slot):
    return chain.spec.config["timestamp_ms"] + slot * chain.spec.slot_duration_ms


async def ticks_while(work) -> tuple[object, int]:
    """Run `work()` and count how often the loop ran another task before it returned."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await trio.lowlevel.checkpoint()
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        ticks = 0  # count only what runs while `work` does
        result = await work()
        during = ticks
        done = True
    return result, during


def started_flag(obj, name: str) -> list[bool]:
    """Wrap the stepwise method `obj.<name>` so the test sees when its first step has run."""
    real = getattr(obj, name)
    flag: list[bool] = []

    def wrapped(*args):
        steps = real(*args)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            flag.append(True)
            yield

    setattr(obj, name, wrapped)
    return flag


async def during_turns(work, started: list[bool], meanwhile) -> object:
    """Run `work()`; once its first step ran and it gave the loop a turn, call `meanwhile()`
    (a write on the loop); return what `work()` returned."""
    result: list[object] = []

    async def run() -> None:
        result.append(await work())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(30):
            while not started:
                await trio.lowlevel.checkpoint()
        assert not result, "the work finished before it gave the loop a turn"
        meanwhile()
    return result[0]


@pytest.fixture()
def rivals(tmp_path):
    """A peer at genesis and two blocks for height 1: X (BIG transfers) and its rival Y (3)."""
    source, peer, rival = (make_chain(tmp_path / name) for name in ("s", "p", "r"))
    try:
        x, _, _ = source.build_block(BOB, 1, ts(source, 1), transfers(source, BIG), budget_s=60.0)
        y, _, _ = rival.build_block(BOB, 2, ts(rival, 2), transfers(rival, 3, to=DAVE), budget_s=60.0)
        assert x.header.parent_hash == y.header.parent_hash
        yield peer, x, y
    finally:
        for chain in (source, peer, rival):
            chain.store.close()


def test_the_loop_runs_while_a_big_block_is_imported_and_the_import_is_the_same(tmp_path):
    author, stepwise, plain = (make_chain(tmp_path / name) for name in ("a", "s", "p"))
    try:
        block, _, _ = author.build_block(BOB, 1, ts(author, 1), transfers(author, BIG), budget_s=60.0)
        assert len(block.extrinsics) == BIG

        async def in_turns():
            return await stepwise.import_block_in_turns(block)

        imported, ticks = trio.run(ticks_while, in_turns)
        assert ticks > 0, "the import held the event loop"
        plain.import_block(block)
        assert stepwise.best.hash == plain.best.hash == block.hash
        assert stepwise.store.state_root == plain.store.state_root == block.header.state_root
        assert imported is not None and imported.events == plain.store.events(block.hash)
        assert dict(stepwise.store.db.iterator()) == dict(plain.store.db.iterator())  # the same writes
        assert stepwise.import_cost.per_extrinsic_s is not None  # the import was measured
    finally:
        for chain in (author, stepwise, plain):
            chain.store.close()


def test_an_invalid_block_is_refused_in_turns_as_at_once(tmp_path):
    author, peer = make_chain(tmp_path / "a"), make_chain(tmp_path / "b")
    try:
        block, _, _ = author.build_block(BOB, 1, ts(author, 1), transfers(author, 40), budget_s=60.0)
        h = block.header
        wrong_root = Header(h.parent_hash, h.number, h.slot, h.timestamp_ms, h.author, h.randao_reveal,
                            bytes(32), h.extrinsics_root)
        forged = Block(wrong_root.with_seal(BOB.sign(wrong_root.signing_payload())), block.extrinsics)
        with pytest.raises(BlockError, match="state root mismatch"):
            trio.run(peer.import_block_in_turns, forged)
        assert peer.best.number == 0 and not peer.store.has_block(forged.hash)
    finally:
        author.store.close()
        peer.store.close()


def test_a_block_whose_state_moved_during_its_turns_is_imported_again(rivals):
    """While block X is executed in turns, the loop commits a rival block Y at the same height:
    X's outcome (read partly before Y, partly after) is not committed; X is imported again and
    kept as a fork beside Y, and the best state is exactly Y's."""
    peer, x, y = rivals
    started = started_flag(peer.runtime, "execute_block_in_steps")

    def commit_y() -> None:  # the loop commits Y during one of X's turns
        assert peer.store.state_version == 0
        peer.import_block(y)

    imported_x = trio.run(during_turns, lambda: peer.import_block_in_turns(x), started, commit_y)
    assert imported_x is None  # X: a fork of the same length, kept, not best
    assert peer.best.hash == y.hash
    assert peer.store.state_root == y.header.state_root
    assert peer.store.has_block(x.hash)


def test_building_in_turns_lets_the_loop_run_and_builds_what_building_at_once_would(tmp_path):
    stepwise, plain = make_chain(tmp_path / "s"), make_chain(tmp_path / "p")
    try:
        candidates = transfers(stepwise, BIG)

        async def build():
            return await stepwise.build_block_in_turns(BOB, 1, ts(stepwise, 1), candidates)

        (block, _, rejected), ticks = trio.run(ticks_while, build)
        assert ticks > 0, "the build held the event loop"
        same, _, _ = plain.build_block(BOB, 1, ts(plain, 1), candidates[:len(block.extrinsics)], budget_s=60.0)
        assert block.extrinsics and not rejected
        assert block.header.state_root == same.header.state_root and stepwise.best.hash == block.hash
        assert dict(stepwise.store.db.iterator()) == dict(plain.store.db.iterator())  # the same writes
    finally:
        stepwise.store.close()
        plain.store.close()


def test_a_build_whose_parent_moved_meanwhile_is_built_again_on_the_new_best_block(tmp_path):
    source, builder = make_chain(tmp_path / "s"), make_chain(tmp_path / "b")
    try:
        arrived, _, _ = source.build_block(BOB, 1, ts(source, 1), transfers(source, 3, to=DAVE), budget_s=60.0)
        candidates = transfers(builder, BIG)
        started = started_flag(builder, "_assembly")

        block, _, _ = trio.run(during_turns, lambda: builder.build_block_in_turns(BOB, 2, ts(builder, 2), candidates),
                               started, lambda: builder.import_block(arrived))  # a block arrives meanwhile
        assert block.header.parent_hash == arrived.hash and builder.best.hash == block.hash
        assert builder.store.state_root == block.header.state_root
    finally:
        source.store.close()
        builder.store.close()


def test_a_block_whose_state_moved_while_its_writes_were_gathered_is_imported_again(rivals, monkeypatch):
    """As above, but the rival block Y lands while X's writes (with their undo journal, read from
    the state before Y) are being gathered: they are not written; X is imported again."""
    monkeypatch.setattr("node.turns.TURN_S", 0.0)  # a turn after every step
    peer, x, y = rivals
    started = started_flag(peer.store, "gather_block_writes")

    imported_x = trio.run(during_turns, lambda: peer.import_block_in_turns(x), started,
                          lambda: peer.import_block(y))
    assert imported_x is None and peer.best.hash == y.hash
    assert peer.store.state_root == y.header.state_root and peer.store.has_block(x.hash)
    assert peer.store.get_block(peer.store.canonical_hash(1)) == y


def test_a_build_whose_parent_moved_while_its_writes_were_gathered_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setattr("node.turns.TURN_S", 0.0)
    source, builder = make_chain(tmp_path / "s"), make_chain(tmp_path / "b")
    try:
        arrived, _, _ = source.build_block(BOB, 1, ts(source, 1), transfers(source, 3, to=DAVE), budget_s=60.0)
        started = started_flag(builder.store, "gather_block_writes")

        block, _, _ = trio.run(during_turns, lambda: builder.build_block_in_turns(BOB, 2, ts(builder, 2),
                                                                                  transfers(builder, BIG)),
                               started, lambda: builder.import_block(arrived))
        assert block.header.parent_hash == arrived.hash and builder.best.hash == block.hash
        assert builder.store.state_root == block.header.state_root
    finally:
        source.store.close()
        builder.store.close()


def test_writes_gathered_on_another_best_state_are_refused_and_nothing_is_written(rivals):
    """The store's own guard: the undo journal of gathered writes holds the state they were read on."""
    peer, x, y = rivals
    outcome, update = drain_steps(peer._execution(x))
    gathering = peer.store.gather_block_writes(x, outcome.changes, update, outcome.events)
    next(gathering)  # the first step read part of the undo journal from the state before Y
    peer.import_block(y)
    gathered = drain_steps(gathering)
    before = dict(peer.store.db.iterator())
    with pytest.raises(StorageError, match="gathered on another best state"):
        peer.store.commit_gathered(gathered)
    assert dict(peer.store.db.iterator()) == before and peer.best.hash == y.hash
