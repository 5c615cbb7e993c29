"""Selection of a task's trainers and validators: seats ∝ weight, kept fair by credits. Pure.

Two rules live here.

`weighted_sample` — the plain weighted draw without replacement (each draw ∝ weight among those
not yet drawn, the Plackett–Luce law), driven by a beacon seed. Kept as a reference and for
tools; the tasks module no longer seats participants with it, because a draw that depends on one
block's randomness alone can be ground by that block's author (docs/incentives.md, attack 7).

`credit_select` — what the tasks module uses. Every (account, role) carries a *credit* (PPB
fixed point, one seat = `PPB`), stored on chain between tasks:

1. Inclusion targets (`inclusion_targets`): π_j = count · w_j / W, where an account whose π
   would reach one seat gets exactly one seat's worth and the rest share the remaining seats
   (iterated until no target exceeds one). Σ π_j = count (less rounding); weights are linear in
   stake, so splitting a stake over several accounts leaves the sum of their targets unchanged.
2. Every candidate's credit grows by its target: c_j ← c_j + π_j.
3. Ticket t_j = c_j + u_j, with u_j = blake2b-256(seed ‖ "arena/select" ‖ account) mod PPB, a
   jitter of at most one seat.
4. The `count` highest tickets (ties: larger account bytes) are seated; each pays one seat:
   c_j ← c_j − PPB.

Credits sum to a constant (what is added equals what is paid) and every credit stays in a
band a few seats wide, so over any run of tasks an account's seats equal the sum of its targets
up to that band, whatever the seeds were. The beacon only decides *when* an account sits, not
*how often*: an author that withholds a block to re-draw a seat pays for the seat from the same
credit it would otherwise have spent later. A fresh key starts at the lowest credit of the
candidates it joins (and at most `NEW_ACCOUNT_CREDIT`), so a new key never jumps a queue.

Weights used by the tasks module (`selection_weight`): stake weight × reputation,
    weight = concave_weight(effective_stake, α) · reputation_ppb
with α = 1 (linear) in every shipped genesis — below 1 splitting a stake raises Σ w and pays.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.crypto import blake2b_256
from runtime.incentives import PPB, concave_weight

DOMAIN = b"arena/select"
NEW_ACCOUNT_CREDIT = -PPB  # a fresh account waits one seat behind a neutral one


def draw(seed: bytes, index: int, modulus: int) -> int:
    """The i-th uniform-ish integer in [0, modulus) derived from the seed."""
    digest = blake2b_256(seed + DOMAIN + index.to_bytes(4, "big"))
    return int.from_bytes(digest, "big") % modulus


def jitter(seed: bytes, account: bytes) -> int:
    """The account's tie-breaking jitter in [0, PPB) for this seed (at most one seat of credit)."""
    return int.from_bytes(blake2b_256(seed + DOMAIN + account), "big") % PPB


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


def inclusion_targets(weights: list[int], count: int) -> list[int]:
    """Per candidate (parallel to `weights`), its share of `count` seats in PPB, none above one seat.

    π_j = m · w_j / W_rest rounded down, where the accounts whose share would reach a full seat
    are given exactly PPB, m is the number of seats left after them and W_rest the weight of
    the others (iterated until stable). Zero weights get 0; with count ≥ the number of positive
    weights every positive weight gets PPB.
    """
    if any(weight < 0 for weight in weights) or count < 0:
        raise ValueError("negative weight or count")
    full: set[int] = set()
    while True:
        rest = [i for i, w in enumerate(weights) if w > 0 and i not in full]
        seats = count - len(full)
        total = sum(weights[i] for i in rest)
        if seats <= 0 or total == 0:
            break
        grown = {i for i in rest if seats * weights[i] >= total}
        if not grown:
            break
        full |= grown
    seats = max(0, count - len(full))
    total = sum(w for i, w in enumerate(weights) if w > 0 and i not in full)
    return [PPB if i in full else (seats * w * PPB // total if w > 0 and total else 0)
            for i, w in enumerate(weights)]


@dataclass(frozen=True)
class Seating:
    """The outcome of `credit_select`: who sits (best ticket first) and every candidate's new credit."""

    chosen: list[bytes]
    credits: list[tuple[bytes, int]]  # sorted by account


def credit_select(candidates: list[tuple[bytes, int, int]], count: int, seed: bytes) -> Seating:
    """Seat up to `count` of (account, weight, credit) candidates by credit plus jitter (module docstring).

    Candidates with weight 0 neither accrue nor sit (their credit is returned unchanged). The
    result does not depend on the order of `candidates`.
    """
    if len({account for account, _, _ in candidates}) != len(candidates):
        raise ValueError("duplicate candidate")
    ordered = sorted(candidates)
    targets = inclusion_targets([weight for _, weight, _ in ordered], count)
    credit = {account: c + target for (account, _, c), target in zip(ordered, targets)}
    tickets = sorted(((credit[a] + jitter(seed, a), a) for a, w, _ in ordered if w > 0), reverse=True)
    chosen = [account for _, account in tickets[:count]]
    for account in chosen:
        credit[account] -= PPB
    return Seating(chosen, sorted(credit.items()))


def selection_weight(effective_stake: int, reputation_ppb: int, alpha_ppb: int) -> int:
    """Stake weight × reputation (both integers; see the module docstring)."""
    return concave_weight(effective_stake, alpha_ppb) * reputation_ppb
