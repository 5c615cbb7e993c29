"""Stepwise work on the node's event loop: a generator does one small step per `next`, and
`Turns.run` gives the other tasks a turn every TURN_S of work (block import and authoring,
node/chain.py; issue 17: one block held the loop for up to 250 ms). Without a loop,
`runtime.executive.drain` runs the same steps to their end."""
from __future__ import annotations

import time
from collections.abc import Generator
from typing import TypeVar

import trio

T = TypeVar("T")
TURN_S = 0.005  # block work done between two turns of the event loop


class Turns:
    """Runs a stepwise computation on the event loop, giving other tasks a turn every TURN_S."""

    def __init__(self) -> None:
        self._busy = 0.0
        self._since: float | None = None

    def busy(self) -> float:
        """Seconds of work done so far (turns given away not counted)."""
        running = 0.0 if self._since is None else time.perf_counter() - self._since
        return self._busy + running

    async def run(self, steps: Generator[None, None, T]) -> T:
        self._since = time.perf_counter()
        try:
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                now = time.perf_counter()
                if now - self._since >= TURN_S:
                    self._busy += now - self._since
                    self._since = None
                    await trio.lowlevel.checkpoint()
                    self._since = time.perf_counter()
        finally:
            if self._since is not None:
                self._busy += time.perf_counter() - self._since
                self._since = None
