"""One piece of stepwise work per turn of the event loop (node/turns.py, issue 17).

Block import and authoring, gossip admission and pool revalidation all run in pieces of TURN_S.
When several have work at once, a turn of the loop runs one piece of one of them, not a piece of
each: otherwise a `system_health` request, which needs several turns of its node's loop, waits
for every runnable piece in each of them. A block's import or build goes first and keeps the
pieces until it is done; pool work takes them in turn (FIFO).

A trio Instrument counts the loop's turns (`before_io_wait` is called once per turn, before the
turn's batch of tasks runs); each step of work records the turn it ran in.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import TypeVar

import trio

from consensus.validity import expected_author
from node import turns
from node.service import ArenaNode, NodeConfig
from node.turns import TURN_S, Turns
from p2p import Verdict
from runtime.crypto import Keypair, blake2b_256
from tests.test_extrinsic_gossip import transfer

T = TypeVar("T")


class TurnLog(trio.abc.Instrument):
    """Counts the loop's turns and records, per turn, which work's steps ran in it."""

    def __init__(self) -> None:
        self.turn = 0
        self.ran: dict[int, list[str]] = defaultdict(list)
        self.done: list[str] = []

    def before_io_wait(self, timeout: float) -> None:
        self.turn += 1

    def recorded(self, name: str, steps: Generator[None, None, T]) -> Generator[None, None, T]:
        """`steps`, each recorded under the turn it ran in; `name` is done when they are."""
        while True:
            try:
                next(steps)
            except StopIteration as finished:
                self.done.append(name)
                return finished.value  # type: ignore[no-any-return]
            self.ran[self.turn].append(name)
            yield

    def work(self, name: str, steps: int) -> Generator[None, None, str]:
        """`steps` steps of TURN_S / 4 of busy work each, recorded."""
        def busy_steps() -> Generator[None, None, str]:
            for _ in range(steps):
                end = time.perf_counter() + TURN_S / 4
                while time.perf_counter() < end:
                    pass
                yield
            return name

        return self.recorded(name, busy_steps())

    def owners(self) -> list[str]:
        """Whose steps ran in each turn, in order (one work per turn: check `together` first)."""
        return [self.ran[turn][0] for turn in sorted(self.ran)]

    def together(self) -> dict[int, set[str]]:
        """The turns in which more than one work ran."""
        return {turn: set(names) for turn, names in self.ran.items() if len(set(names)) > 1}

    def run(self, main) -> None:
        """trio.run(main), failing after 30 s: pieces never handed on leave work waiting forever."""
        async def bounded() -> None:
            with trio.fail_after(30):
                await main()

        trio.run(bounded, instruments=[self])


def test_a_turn_of_the_loop_runs_one_piece_and_the_pieces_take_turns() -> None:
    log = TurnLog()

    async def main() -> None:
        async def one(name: str) -> None:
            assert await Turns().run(log.work(name, 40)) == name

        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(one, name)

    log.run(main)
    assert sorted(log.done) == ["a", "b", "c"]
    assert not log.together()
    assert all(len(names) <= 5 for names in log.ran.values())  # a piece ends once TURN_S of work is done
    owners = log.owners()
    # while all three have work, every three consecutive pieces are one of each (FIFO)
    all_busy = owners[:next(i for i, o in enumerate(owners) if o not in owners[i + 1:])]
    assert len(all_busy) >= 3 * 8
    for i in range(len(all_busy) - 2):
        assert len(set(all_busy[i:i + 3])) == 3, all_busy


def test_the_chains_work_keeps_the_pieces_until_it_is_done() -> None:
    """A block's import (or build) started while pool work runs: from its first piece to its last,
    no pool work runs, so a flood of gossiped batches cannot slow a block down; the loop still
    gets a turn after every piece."""
    log = TurnLog()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for name in "ab":
                nursery.start_soon(Turns().run, log.work(name, 60))
            while len(log.ran) < 6:  # the pool's work is under way, taking turns
                await trio.lowlevel.checkpoint()
            nursery.start_soon(Turns(chain=True).run, log.work("block", 40))

    log.run(main)
    assert not log.together()
    owners = log.owners()
    first, last = owners.index("block"), len(owners) - 1 - owners[::-1].index("block")
    assert set(owners[first:last + 1]) == {"block"}, owners
    assert {"a", "b"} <= set(owners[last + 1:])  # the pool's work goes on after it


def test_work_cancelled_holding_or_awaiting_the_pieces_leaves_them_to_the_others() -> None:
    """Cancelled while it waits for the pieces, work hands nothing on (another task holds them and
    keeps running alone); cancelled while it holds them, it hands them on."""
    log = TurnLog()

    async def run_in(scope: trio.CancelScope, turns_: Turns, name: str) -> None:
        with scope:
            await turns_.run(log.work(name, 400))

    async def main() -> None:
        waiting, holding = trio.CancelScope(), trio.CancelScope()
        async with trio.open_nursery() as nursery:
            # three pool tasks take turns: each waits two pieces out of three
            nursery.start_soon(run_in, waiting, Turns(), "waits")
            for name in ("pool-1", "pool-2"):
                nursery.start_soon(Turns().run, log.work(name, 40))
            while len(log.ran) < 9:
                await trio.lowlevel.checkpoint()
            waiting.cancel()
            # the chain's work keeps the pieces until it is cancelled
            nursery.start_soon(run_in, holding, Turns(chain=True), "block")
            while not any("block" in names for names in log.ran.values()):
                await trio.lowlevel.checkpoint()
            holding.cancel()
        pieces = turns._pieces()
        assert pieces.holder is None and not any(pieces.waiting)

    log.run(main)
    assert sorted(log.done) == ["pool-1", "pool-2"]
    assert not log.together(), log.together()


def test_gossip_admission_and_block_import_share_the_turns(tmp_path: Path) -> None:
    """The node's real pieces: a gossiped batch being admitted and a block being imported never run
    in the same turn of the loop, and both finish."""
    source = ArenaNode(NodeConfig(tmp_path / "source"))
    node = ArenaNode(NodeConfig(tmp_path / "node"))
    try:
        dev = [Keypair.from_dev_name(name) for name in ("alice", "bob", "charlie", "dave", "eve", "ferdie")]
        authors = {k.public_key: k for k in dev}
        senders = dev[1:]
        block, _, _ = source.chain.build_block(
            authors[expected_author(source.chain.state(), 1)], 1, source.spec.config["timestamp_ms"] + source.spec.slot_duration_ms,
            [transfer(source, nonce) for nonce in range(400)], budget_s=60.0)
        assert len(block.extrinsics) == 400
        # not ALICE's (the block's); at most max_future_gap ahead of each account's nonce
        batch = [transfer(node, nonce, key=key) for key in senders for nonce in range(60)]
        log = TurnLog()
        service, chain = node.consensus, node.chain
        assert service is not None
        real_admit, real_execution = service.pool.admit, chain._execution

        def admit(encoded: bytes):
            log.ran[log.turn].append("admit")
            return real_admit(encoded)

        service.pool.admit = admit  # type: ignore[method-assign,assignment]
        chain._execution = lambda block: log.recorded("import", real_execution(block))  # type: ignore[method-assign]
        results: dict[str, object] = {}

        async def main() -> None:
            async def admission() -> None:
                results["admission"] = await service.validate_extrinsics("12D3KooWpeer", batch)

            async def importing() -> None:
                results["import"] = await chain.import_block_in_turns(block)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(admission)
                nursery.start_soon(importing)

        log.run(main)
        assert results["import"] is not None and chain.best.hash == block.hash
        assert results["admission"] is Verdict.ACCEPT
        assert all(service.pool.contains(blake2b_256(x)) for x in batch)
        assert {"admit", "import"} <= {name for names in log.ran.values() for name in names}
        assert not log.together(), f"turns {sorted(log.together())[:5]} ran admission and import together"
    finally:
        source.store.close()
        node.store.close()
