"""The transaction pool: ready and future queues per account, priority by tip, bounded.

An extrinsic whose nonce is the account's next is *ready*; one with a gap is *future* and waits
until the gap is filled. Blocks take ready extrinsics best tip first, each account's in nonce
order. After every block the pool drops what was included or became invalid and promotes futures.

Admission control (issue 17): the pool holds a few blocks' worth at most (`max_total`) and
refuses new extrinsics with "pool full, retry" instead of queueing work the node cannot do in
time: when the node's own unfinalized backlog (pending here plus carried by blocks not yet final)
passes `backlog_blocks` blocks of what a block may carry, when the node's event loop lags behind
by more than `max_loop_lag_s` (measured by `LoopLag`), or when finality trails far behind. Each
refusal is decided before any signature is checked, so refusing costs almost nothing. A client
that gets code 1014 resubmits later (or to another node); RPC stays responsive.
"""
from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace

import trio

from runtime.crypto import blake2b_256
from runtime.executive import CheckedExtrinsic, InvalidTransaction, drain

log = logging.getLogger("arena.txpool")


class PoolError(Exception):
    """An extrinsic the pool refuses; `code` and `message` go back to the submitter."""

    def __init__(self, code: int, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.code = code
        self.kind = kind
        self.message = message

    @classmethod
    def from_invalid(cls, exc: InvalidTransaction) -> PoolError:
        return cls(exc.code, exc.kind, exc.message)


FULL_REVALIDATION_EVERY = 16
POOL_FULL = 1014


@dataclass(frozen=True)
class PoolLimits:
    # A few blocks' worth: a block takes ~2,000-4,000 transfers in its build budget, so more
    # pending than this only adds latency (and revalidation work) without adding throughput.
    max_total: int = 12_000
    max_per_account: int = 256
    max_future_gap: int = 64
    # Refuse new extrinsics while the event loop is this late (RPC, gossip and import share it).
    max_loop_lag_s: float = 0.25
    # ... or while finality trails the best block by more than this many blocks and the pool
    # holds a backlog (more than `backlog`): the network is not keeping up, more load only
    # delays votes and blocks behind extrinsic gossip. Without a backlog (a network that cannot
    # finalize for other reasons, e.g. authorities offline) transactions are still taken.
    max_finality_lag: int = 6
    backlog: int = 500
    # Not yet final, counted on this node: pending here plus carried by unfinalized blocks of the
    # best chain. Beyond `backlog_blocks` blocks' worth (a block's worth: `Chain.block_capacity`,
    # what peers import in time) more transfers only wait longer while their admission (a
    # signature and a state check on every node) takes the CPU that imports and votes need: the
    # finalized rate fell from 816 to 292 tx/s at twice the offered load before this bound.
    backlog_blocks: int = 2
    min_backlog: int = 500
    # What a peer already admitted gets more room (any author can then include it, not only the
    # node it was sent to; a transfer only its first node holds waits for that node's slots), but
    # not without bound: admitting gossip costs a signature check too, and exempt gossip forked
    # the chain at 3,000 tx/s offered (blocks waited behind it on the event loop).
    gossip_backlog_factor: int = 2


class LoopLag:
    """Event-loop lag of this trio thread: how late a short periodic sleep wakes up.

    `run()` is a task of the node's nursery; `current()` is the lag that decays (halves every
    `interval_s` of punctual wake-ups) so one long block import is remembered for a moment.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0
        self.max_lag_s = 0.0  # worst seen since start, for metrics and benchmarks

    def record(self, late_s: float) -> None:
        late_s = max(0.0, late_s)
        self.lag_s = max(late_s, self.lag_s / 2)
        self.max_lag_s = max(self.max_lag_s, late_s)

    def current(self) -> float:
        return self.lag_s

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await trio.sleep(self.interval_s)
            self.record(time.perf_counter() - before - self.interval_s)


class TxPool:
    """Pending extrinsics checked against the best state."""

    def __init__(self, check: Callable[[bytes], CheckedExtrinsic], limits: PoolLimits = PoolLimits()) -> None:
        self._check = check
        self.limits = limits
        self._by_sender: dict[bytes, dict[int, CheckedExtrinsic]] = {}
        self._by_hash: dict[bytes, CheckedExtrinsic] = {}
        self._calls = 0
        # arrival order of each pending extrinsic: blocks take the oldest first (among equal tips)
        self._arrival: dict[bytes, int] = {}
        self._arrivals = 0
        self._sweep = 0  # where the next slice of the rotating full revalidation starts
        self.lag: LoopLag | None = None  # set when the node runs its lag monitor
        self.finality_lag: Callable[[], int] | None = None  # best - finalized, set by the node
        # extrinsics in unfinalized blocks of the best chain, and what one block may carry (None:
        # not measured yet); set by the node for the backlog bound
        self.unfinalized: Callable[[], int] | None = None
        self.block_capacity: Callable[[], int | None] | None = None
        self.refused_backlog = 0
        self.refused_full = 0
        self.refused_lag = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    def contains(self, xt_hash: bytes) -> bool:
        return xt_hash in self._by_hash

    def submit(self, encoded: bytes, overload_exempt: bool = False, gossiped: bool = False) -> CheckedExtrinsic:
        """Check and add an extrinsic; raises PoolError with a readable reason.

        `overload_exempt`: skip the overload refusals (event-loop and finality lag), for what the
        node itself must keep (extrinsics of retracted blocks, its own equivocation reports);
        the size limit still applies. `gossiped`: a peer already admitted it, so the backlog
        bound (which meters new work into the network at the nodes' RPC) is `gossip_backlog_factor`
        times wider: taking it lets any author include it, not only its first node every few slots."""
        if blake2b_256(encoded) in self._by_hash:
            raise PoolError(1011, "AlreadyInPool", "this exact extrinsic is already in the pool")
        if not overload_exempt:
            self._admit(gossiped)
        try:
            checked = self._check(encoded)
        except InvalidTransaction as exc:
            raise PoolError.from_invalid(exc) from exc
        if checked.hash in self._by_hash:
            raise PoolError(1011, "AlreadyInPool", "this exact extrinsic is already in the pool")
        if checked.nonce_gap > self.limits.max_future_gap:
            raise PoolError(1004, "Future", f"nonce is {checked.nonce_gap} ahead of the account; at most {self.limits.max_future_gap} allowed")
        queue = self._by_sender.get(checked.sender, {})  # no empty queue is left behind on a refusal
        nonce = checked.extrinsic.nonce
        existing = queue.get(nonce)
        if existing is not None:
            if checked.extrinsic.tip <= existing.extrinsic.tip:
                raise PoolError(
                    1012, "PriorityTooLow",
                    f"nonce {nonce} is already pending with tip {existing.extrinsic.tip}; a replacement needs a higher tip",
                )
            del self._by_hash[existing.hash]
            self._arrival.pop(existing.hash, None)
        elif len(queue) >= self.limits.max_per_account:
            raise PoolError(1013, "AccountLimit", f"account has {len(queue)} pending extrinsics, the limit")
        elif len(self._by_hash) >= self.limits.max_total and not self._evict_for(checked):
            self.refused_full += 1
            raise PoolError(POOL_FULL, "PoolFull",
                            f"pool full, retry: it holds {len(self._by_hash)} extrinsics, the limit "
                            "(a higher tip may evict a lower one)")
        # (re)fetched: an eviction may have emptied and dropped this very sender's queue
        self._by_sender.setdefault(checked.sender, {})[nonce] = checked
        self._by_hash[checked.hash] = checked
        self._arrivals += 1
        self._arrival[checked.hash] = self._arrivals
        return checked

    def _admit(self, gossiped: bool = False) -> None:
        """Refuse before any work while the node is overloaded (its event loop is late)."""
        limits = self.limits
        if self.unfinalized is not None and self.block_capacity is not None:
            capacity = self.block_capacity()
            if capacity is not None:
                blocks = limits.backlog_blocks * (limits.gossip_backlog_factor if gossiped else 1)
                bound = max(limits.min_backlog, blocks * capacity)
                pending, in_blocks = len(self._by_hash), self.unfinalized()
                if pending + in_blocks >= bound:
                    self._refuse_backlog(pending, in_blocks, bound, capacity)
        if self.finality_lag is not None and len(self._by_hash) > limits.backlog:
            behind = self.finality_lag()
            if behind > limits.max_finality_lag:
                self.refused_lag += 1
                raise PoolError(POOL_FULL, "PoolFull",
                                f"pool full, retry: finality trails the best block by {behind} blocks "
                                f"(bound {limits.max_finality_lag}) with {len(self._by_hash)} extrinsics pending")
        if self.lag is None:
            return
        lag = self.lag.current()
        if lag > limits.max_loop_lag_s:
            self.refused_lag += 1
            raise PoolError(POOL_FULL, "PoolFull",
                            f"pool full, retry: node overloaded (event loop {lag * 1000:.0f} ms late, "
                            f"bound {self.limits.max_loop_lag_s * 1000:.0f} ms)")

    def _refuse_backlog(self, pending: int, in_blocks: int, bound: int, capacity: int) -> None:
        self.refused_backlog += 1
        raise PoolError(POOL_FULL, "PoolFull",
                        f"pool full, retry: {pending + in_blocks} extrinsics are not final yet ({pending} pending, "
                        f"{in_blocks} in unfinalized blocks), bound {bound} ({self.limits.backlog_blocks} blocks "
                        f"of {capacity})")

    async def watch_loop_lag(self, finality_lag: Callable[[], int] | None = None) -> None:
        """Measure this thread's event-loop lag for admission control (run in the node's nursery);
        `finality_lag() -> best - finalized` adds the finality bound."""
        self.finality_lag = finality_lag
        self.lag = LoopLag()
        await self.lag.run()

    def _evict_for(self, incoming: CheckedExtrinsic) -> bool:
        """Drop the lowest-tip last-in-line extrinsic if the incoming one pays more."""
        lowest = min(
            (q[max(q)] for q in self._by_sender.values() if q), key=lambda c: c.extrinsic.tip, default=None
        )
        if lowest is None or lowest.extrinsic.tip >= incoming.extrinsic.tip:
            return False
        self._remove(lowest)
        return True

    def _remove(self, checked: CheckedExtrinsic) -> None:
        self._by_hash.pop(checked.hash, None)
        self._arrival.pop(checked.hash, None)
        queue = self._by_sender.get(checked.sender)
        if queue is not None:
            queue.pop(checked.extrinsic.nonce, None)
            if not queue:
                del self._by_sender[checked.sender]

    def ready(self) -> list[bytes]:
        """Ready extrinsics in block order: highest tip first, then oldest first (first come, first
        served across accounts), each account in nonce order."""
        arrival = self._arrival
        heads: list[tuple[int, int, int, list[CheckedExtrinsic]]] = []  # (-tip, arrival, unique, rest)
        for queue in self._by_sender.values():
            if not queue:
                continue
            chain = []
            base = min(queue)
            first = queue[base]
            if first.nonce_gap:
                continue
            nonce = base
            while nonce in queue:
                chain.append(queue[nonce])
                nonce += 1
            chain.reverse()
            head = chain[-1]
            heads.append((-head.extrinsic.tip, arrival.get(head.hash, 0), len(heads), chain))
        heapq.heapify(heads)
        out: list[bytes] = []
        while heads:
            _, _, unique, chain = heads[0]
            out.append(chain.pop().encoded)
            if chain:
                head = chain[-1]
                heapq.heapreplace(heads, (-head.extrinsic.tip, arrival.get(head.hash, 0), unique, chain))
            else:
                heapq.heappop(heads)
        return out

    def pending(self) -> list[bytes]:
        return [c.encoded for c in self._by_hash.values()]

    def next_nonce(self, sender: bytes, account_nonce: int) -> int:
        """The nonce a new extrinsic from `sender` should carry, counting pending ready ones."""
        queue = self._by_sender.get(sender, {})
        nonce = account_nonce
        while nonce in queue:
            nonce += 1
        return nonce

    def revalidate(self, senders: set[bytes] | None = None) -> None:
        """After a new best block: drop included or invalid extrinsics, recompute nonce gaps.

        With `senders`, only those accounts are revisited (the ones a block can have made stale),
        and of each only the extrinsics up to the first that still passes are rechecked: the rest
        keep their check and get their nonce gap from it. Each call also rechecks a rotating
        slice of the rest (eras, balances): the whole pool every `FULL_REVALIDATION_EVERY` calls,
        without a stall of the node's event loop to recheck a full pool at once.
        """
        drain(self.revalidation(senders))

    def revalidation(self, senders: set[bytes] | None = None) -> Generator[None, None, None]:
        """`revalidate` in steps: it yields after each sender and each rechecked extrinsic, so a
        caller can give the event loop a turn between steps (issue 17: rechecking ~1,500 entries
        after each block held the loop 100-200 ms). Each step is whole; the pool may change
        between steps (admissions, removals), and later steps see that."""
        self._calls += 1
        if senders is not None:
            for sender in senders:
                self._revalidate_sender(sender)
                yield
            everything = list(self._by_hash.values())
            if not everything:
                return
            share = max(1, -(-len(everything) // FULL_REVALIDATION_EVERY))
            start = self._sweep % len(everything)
            candidates = everything[start:start + share]
            self._sweep = start + share
        else:
            candidates = list(self._by_hash.values())
        for checked in candidates:
            if self._by_hash.get(checked.hash) is not checked:
                continue  # removed or rechecked while this pass ran
            try:
                fresh = self._check(checked.encoded)
            except InvalidTransaction as exc:
                log.debug("dropping %s: %s", checked.hash.hex()[:16], exc)
                self._remove(checked)
                continue
            self._by_hash[fresh.hash] = fresh
            self._by_sender[fresh.sender][fresh.extrinsic.nonce] = fresh
            yield

    def _revalidate_sender(self, sender: bytes) -> None:
        queue = self._by_sender.get(sender)
        if not queue:
            return
        account_nonce: int | None = None
        for nonce in sorted(queue):
            checked = queue[nonce]
            if account_nonce is not None:
                gap = nonce - account_nonce
                if gap != checked.nonce_gap:
                    fresh = replace(checked, nonce_gap=gap)
                    queue[nonce] = fresh
                    self._by_hash[fresh.hash] = fresh
                continue
            try:
                fresh = self._check(checked.encoded)
            except InvalidTransaction as exc:
                log.debug("dropping %s: %s", checked.hash.hex()[:16], exc)
                self._remove(checked)
                continue
            account_nonce = nonce - fresh.nonce_gap
            queue[nonce] = fresh
            self._by_hash[fresh.hash] = fresh

    def remove(self, xt_hash: bytes) -> None:
        checked = self._by_hash.get(xt_hash)
        if checked is not None:
            self._remove(checked)
