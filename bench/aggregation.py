"""Finalising a task: `aggregate_scores` + `rank_trainers` + every reward function for V
validators × T trainers, beside the raw cost of merely walking and summing the same V×T score
matrix in pure Python, measured in one run (the ratio shows the overhead over that floor).

`python -m bench.aggregation` prints one row per figure and how the time grows with V·T; `run()`
returns the rows. Takes well under 60 s. Inputs come from a seeded generator (benchmarks are not
consensus code).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from runtime.incentives import (
    PPB,
    aggregate_scores,
    delegator_split,
    effective_stake,
    rank_trainers,
    trainer_rewards,
    validator_rewards,
    validator_trainer_split,
)

SIZES = ((16, 64), (64, 256), (256, 1024))
AIM_SECONDS = 1.0  # the aim for 256 x 1,024: a finalize of the largest task fits in one block's budget


def _inputs(validators: int, trainers: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    vals = [rng.randbytes(32) for _ in range(validators)]
    trns = [rng.randbytes(32) for _ in range(trainers)]
    quality = [rng.randrange(0, PPB) for _ in trns]
    scores = []
    for i, v in enumerate(vals):
        if i % 5 == 4:  # every fifth validator submits noise
            row = [(t, rng.randrange(0, PPB)) for t in trns]
        else:
            row = [(t, max(0, q + rng.randrange(-PPB // 50, PPB // 50))) for t, q in zip(trns, quality)]
        scores.append((v, row))
    return {
        "validator_stakes": [(v, rng.randrange(10**12, 10**15)) for v in vals],
        "scores": scores,
        "trainers": trns,
        "trainer_stakes": {t: (rng.randrange(10**12, 10**14), rng.randrange(0, 10**14)) for t in trns},
    }


def finalize(data: dict[str, Any]) -> int:
    """Everything `tasks.finalize` computes from the reveals; returns the treasury remainder."""
    stakes = data["validator_stakes"]
    aggregation = aggregate_scores(stakes, data["scores"], data["trainers"])
    ranked = rank_trainers(aggregation.consensus, data["trainers"])
    consensus = dict(aggregation.consensus)
    own_delegated = data["trainer_stakes"]
    trainer_eff = [(t, effective_stake(own_delegated[t][0], own_delegated[t][1], 500_000_000)) for t in ranked]
    v_part, t_part = validator_trainer_split(
        10**15, sum(s for _, s in trainer_eff), sum(s for _, s in stakes), 100_000_000
    )
    trainers = trainer_rewards(t_part, trainer_eff, 800_000_000, scored=[consensus[t] > 0 for t in ranked])
    agreement = dict(aggregation.agreement_ppb)
    validators = validator_rewards(v_part, [(v, s, agreement[v]) for v, s in stakes])
    remainder = trainers.remainder + validators.remainder
    for trainer, amount in trainers.payouts[:8]:
        remainder += delegator_split(amount, trainer, [(trainer[::-1], 10**13)], 100_000_000).remainder
    return remainder


def raw_walk(data: dict[str, Any]) -> int:
    """The floor: touch and sum every score of the V×T matrix once."""
    total = 0
    for _, row in data["scores"]:
        for _, score in row:
            total += score
    return total


def _seconds(action: Callable[[Any], object], data: Any, budget: float = 1.5) -> float:
    """Best wall time of `action(data)` over a few runs within about `budget` seconds."""
    best = float("inf")
    spent, runs = 0.0, 0
    while runs < 2 or (spent < budget and runs < 20):
        start = time.perf_counter()
        action(data)
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        runs += 1
    return best


def run() -> list[dict[str, Any]]:
    """Measure and return the rows."""
    rows: list[dict[str, Any]] = []
    for validators, trainers in SIZES:
        data = _inputs(validators, trainers, seed=validators * trainers)
        full = _seconds(finalize, data)
        raw = _seconds(raw_walk, data)
        label = f"{validators} validators x {trainers} trainers"
        rows.append({
            "figure": f"finalize maths, {label}",
            "value": full,
            "unit": "s",
            "limit_name": "raw walk+sum of the same score matrix (s)",
            "limit": raw,
        })
    return rows


if __name__ == "__main__":
    results = run()
    for row in results:
        print(
            f"{row['figure']:<62} {row['value']:>10.4f} {row['unit']:<3} "
            f"({row['limit_name']}: {row['limit']:.1f})"
        )
    finals = results
    print(f"aim: finalize maths for 256 x 1024 within {AIM_SECONDS} s")
    for (v0, t0), (v1, t1), a, b in zip(SIZES, SIZES[1:], finals, finals[1:]):
        growth = b["value"] / a["value"]
        print(f"growth {v0}x{t0} -> {v1}x{t1}: cells x{(v1 * t1) // (v0 * t0)}, time x{growth:.1f}")
