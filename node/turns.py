"""Stepwise work on the node's event loop: a generator does one small step per `next`, and
`Turns.run` gives the other tasks a turn every TURN_S of work (block import and authoring,
node/chain.py; gossip admission and pool revalidation, node/consensus_service.py and
node/views.py; issue 17: one block held the loop for up to 250 ms). Without a loop,
`runtime.executive.drain` runs the same steps to their end.

One piece of such work per turn of the loop (`_Pieces`): when an import, a build and a few
gossiped batches all have work, a turn runs one piece of one of them, not a piece of each, so
RPC, votes and networking get the loop back after ~TURN_S of such work, not after several times
that (issue 17: at the ceiling a `system_health` answer needs several turns of its node's loop).
The chain's work goes first and keeps the pieces until it is done: a block's import or build is
never slowed by pool work, however much a peer gossips. Pool work takes its pieces in turn (FIFO).
In A/B sweeps of the 4-node network at 3,000 and 4,000 offered tx/s the `system_health` p99 fell
from 105-153 ms (three sweeps) to 97-133 ms (two), and finalized throughput stayed within the
machine's run-to-run spread (2,210-2,360 against 1,975-2,268 tx/s at 3,000 offered).
"""
from __future__ import annotations

import time
from collections.abc import Generator
from typing import TypeVar

import trio

T = TypeVar("T")
TURN_S = 0.005  # work done between two turns of the event loop


class _Pieces:
    """Who runs pieces of stepwise work: one holder at a time. The chain's work (a block's import
    or build) keeps them until it is done; the pool's (admission, revalidation) hands them on
    after each piece when anyone waits. Waiters queue FIFO, the chain's first. Handed over as
    `trio.Lock` is: `_hand_on` makes the next waiter the holder and wakes it."""

    def __init__(self) -> None:
        self.holder: trio.lowlevel.Task | None = None
        self.waiting = (trio.lowlevel.ParkingLot(), trio.lowlevel.ParkingLot())  # chain's, pool's

    async def take(self, chain: bool) -> None:
        """Become the holder; a turn of the loop passes first, even when no one holds them."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.holder is None:
            self.holder = trio.lowlevel.current_task()
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self.waiting[0 if chain else 1].park()  # `_hand_on` made us the holder

    async def next_turn(self, chain: bool) -> None:
        """Between two pieces: give the loop a turn, and the pieces to a waiter unless `chain`."""
        if chain or not any(self.waiting):
            await trio.lowlevel.checkpoint()
        else:
            self._hand_on()
            await self.take(chain)

    def give_back(self) -> None:
        """The work is done (or cancelled): hand the pieces on if this task holds them."""
        if self.holder is trio.lowlevel.current_task():
            self._hand_on()

    def _hand_on(self) -> None:
        for lot in self.waiting:
            if lot:
                (self.holder,) = lot.unpark(count=1)
                return
        self.holder = None


_PIECES = trio.lowlevel.RunVar[_Pieces]("arena_turns_pieces")


def _pieces() -> _Pieces:
    """The one `_Pieces` of this trio run (a node's event loop)."""
    try:
        return _PIECES.get()
    except LookupError:
        pieces = _Pieces()
        _PIECES.set(pieces)
        return pieces


class Turns:
    """Runs a stepwise computation on the event loop, a piece of TURN_S at a time (`chain`: a
    block's import or build, which goes first)."""

    def __init__(self, chain: bool = False) -> None:
        self._chain = chain
        self._busy = 0.0
        self._since: float | None = None

    def busy(self) -> float:
        """Seconds of work done so far (turns given away, and waits for the pieces, not counted)."""
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        return self._busy + running

    async def run(self, steps: Generator[None, None, T]) -> T:
        pieces = _pieces()
        await pieces.take(self._chain)
        try:
            while True:
                self._since = since = time.perf_counter()
                try:
                    while True:
                        try:
                            next(steps)
                        except StopIteration as done:
                            return done.value  # type: ignore[no-any-return]
                        if time.perf_counter() - since >= TURN_S:
                            break
                finally:
                    self._busy += time.perf_counter() - since
                    self._since = None
                await pieces.next_turn(self._chain)
        finally:
            pieces.give_back()
