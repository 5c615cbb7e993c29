"""The transaction pool: ready and future queues per account, priority by tip, bounded.

An extrinsic whose nonce is the account's next is *ready*; one with a gap is *future* and waits
until the gap is filled. Blocks take ready extrinsics best tip first, each account's in nonce
order. After every block the pool drops what was included or became invalid and promotes futures.
"""
from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass

from runtime.executive import CheckedExtrinsic, InvalidTransaction

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


@dataclass(frozen=True)
class PoolLimits:
    max_total: int = 50_000
    max_per_account: int = 256
    max_future_gap: int = 64


class TxPool:
    """Pending extrinsics checked against the best state."""

    def __init__(self, check: Callable[[bytes], CheckedExtrinsic], limits: PoolLimits = PoolLimits()) -> None:
        self._check = check
        self.limits = limits
        self._by_sender: dict[bytes, dict[int, CheckedExtrinsic]] = {}
        self._by_hash: dict[bytes, CheckedExtrinsic] = {}
        self._calls = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    def contains(self, xt_hash: bytes) -> bool:
        return xt_hash in self._by_hash

    def submit(self, encoded: bytes) -> CheckedExtrinsic:
        """Check and add an extrinsic; raises PoolError with a readable reason."""
        try:
            checked = self._check(encoded)
        except InvalidTransaction as exc:
            raise PoolError.from_invalid(exc) from exc
        if checked.hash in self._by_hash:
            raise PoolError(1011, "AlreadyInPool", "this exact extrinsic is already in the pool")
        if checked.nonce_gap > self.limits.max_future_gap:
            raise PoolError(1004, "Future", f"nonce is {checked.nonce_gap} ahead of the account; at most {self.limits.max_future_gap} allowed")
        queue = self._by_sender.setdefault(checked.sender, {})
        nonce = checked.extrinsic.nonce
        existing = queue.get(nonce)
        if existing is not None:
            if checked.extrinsic.tip <= existing.extrinsic.tip:
                raise PoolError(
                    1012, "PriorityTooLow",
                    f"nonce {nonce} is already pending with tip {existing.extrinsic.tip}; a replacement needs a higher tip",
                )
            del self._by_hash[existing.hash]
        elif len(queue) >= self.limits.max_per_account:
            raise PoolError(1013, "AccountLimit", f"account has {len(queue)} pending extrinsics, the limit")
        elif len(self._by_hash) >= self.limits.max_total and not self._evict_for(checked):
            raise PoolError(1014, "PoolFull", f"pool holds {len(self._by_hash)} extrinsics, the limit")
        queue[nonce] = checked
        self._by_hash[checked.hash] = checked
        return checked

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
        queue = self._by_sender.get(checked.sender)
        if queue is not None:
            queue.pop(checked.extrinsic.nonce, None)
            if not queue:
                del self._by_sender[checked.sender]

    def ready(self) -> list[bytes]:
        """Ready extrinsics in block order: highest tip first, each account in nonce order."""
        heads: list[tuple[int, int, bytes, list[CheckedExtrinsic]]] = []
        for sender, queue in self._by_sender.items():
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
            heads.append((-chain[-1].extrinsic.tip, len(heads), sender, chain))
        heapq.heapify(heads)
        out: list[bytes] = []
        while heads:
            _, order, sender, chain = heapq.heappop(heads)
            out.append(chain.pop().encoded)
            if chain:
                heapq.heappush(heads, (-chain[-1].extrinsic.tip, order, sender, chain))
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

        With `senders`, only those accounts' extrinsics are rechecked (the ones a block can have
        made stale); every `FULL_REVALIDATION_EVERY`-th call rechecks everything (eras, balances).
        """
        self._calls += 1
        if senders is not None and self._calls % FULL_REVALIDATION_EVERY:
            candidates = [c for s in senders for c in self._by_sender.get(s, {}).values()]
        else:
            candidates = list(self._by_hash.values())
        for checked in candidates:
            try:
                fresh = self._check(checked.encoded)
            except InvalidTransaction as exc:
                log.debug("dropping %s: %s", checked.hash.hex()[:16], exc)
                self._remove(checked)
                continue
            self._by_hash[fresh.hash] = fresh
            self._by_sender[fresh.sender][fresh.extrinsic.nonce] = fresh

    def remove(self, xt_hash: bytes) -> None:
        checked = self._by_hash.get(xt_hash)
        if checked is not None:
            self._remove(checked)
