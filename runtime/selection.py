"""Weighted random sampling without replacement, driven by a beacon seed. Pure and deterministic.

Algorithm (`weighted_sample`):

1. Drop candidates with weight 0; sort the rest by account bytes (input order never matters).
2. For draw i = 0, 1, …, count − 1 while candidates remain:
   r_i = int.from_bytes(blake2b-256(seed ‖ "arena/select" ‖ u32_be(i)), "big") mod W,
   where W is the total weight of the candidates still in the pool; walk the pool in account
   order accumulating weights and take the first candidate whose cumulative weight exceeds r_i;
   remove it from the pool.
3. Return the drawn accounts in draw order.

So at each draw a remaining candidate is taken with probability weight / remaining weight (up to
a bias below W / 2^256 from the modulo). The probability of the first pick is exactly
w_j / Σw; inclusion probabilities for later draws follow the usual successive-sampling
(Plackett–Luce) law.

Weights used by the tasks module (`selection_weight`): concave stake weight × reputation,
    weight = concave_weight(effective_stake, α) · reputation_ppb
with concave_weight(s, α) = round(s^α) from `runtime.incentives` (diminishing returns: doubling
stake multiplies weight by 2^α only) and reputation_ppb from `runtime.modules.history`.
"""
from __future__ import annotations

from runtime.crypto import blake2b_256
from runtime.incentives import concave_weight

DOMAIN = b"arena/select"


def draw(seed: bytes, index: int, modulus: int) -> int:
    """The i-th uniform-ish integer in [0, modulus) derived from the seed."""
    digest = blake2b_256(seed + DOMAIN + index.to_bytes(4, "big"))
    return int.from_bytes(digest, "big") % modulus


def weighted_sample(candidates: list[tuple[bytes, int]], count: int, seed: bytes) -> list[bytes]:
    """Draw up to `count` distinct accounts, each draw ∝ weight among those not yet drawn."""
    if len({account for account, _ in candidates}) != len(candidates):
        raise ValueError("duplicate candidate")
    pool = sorted((account, weight) for account, weight in candidates if weight > 0)
    if any(weight < 0 for _, weight in candidates):
        raise ValueError("negative weight")
    chosen: list[bytes] = []
    for index in range(count):
        if not pool:
            break
        total = sum(weight for _, weight in pool)
        target = draw(seed, index, total)
        cumulative = 0
        for position, (account, weight) in enumerate(pool):
            cumulative += weight
            if cumulative > target:
                chosen.append(account)
                del pool[position]
                break
    return chosen


def selection_weight(effective_stake: int, reputation_ppb: int, alpha_ppb: int) -> int:
    """Concave stake weight × reputation (both integers; see the module docstring)."""
    return concave_weight(effective_stake, alpha_ppb) * reputation_ppb
