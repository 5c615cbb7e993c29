"""Attacks on the incentives (issue 12): the attacker's gain under the old rules, under today's, and honestly.

Run: `.venv/bin/python -m bench.attacks` (about a minute on one core). Most figures come from the
runtime's own pure functions (runtime.incentives, runtime.selection) fed with simulated tasks; the
"old" column re-creates the rule the review attacked (emission ∝ S^½ per task with one stake counted
in every task, the plain stake-weighted lower median, agreement = closeness only, slash of the
current bond, copies and reports accepted), the "now" column is the rule on main. Rows 4 and 9 run
the runtime itself in process (tests/attack_scenarios.py, the harness the tests use) with signed
calls; row 9's old column runs the same blocks with the old usage-emission rule put back. The other
chain-level defences (refused calls, locks) are asserted by tests/test_attacks*.py; here they appear
as the gain they leave the attacker. Honest noise is Gaussian, seeded: the figures are reproducible.
"""
from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from runtime import incentives
from runtime.incentives import (
    PPB,
    aggregate_scores,
    capped_weights,
    emission_split,
    order_agreement_ppb,
    rank_trainers,
    slash_amount,
    trainer_rewards,
    validator_rewards,
)
from runtime.modules.balances import UNIT
from runtime.selection import credit_select, selection_weight, weighted_sample
from tests.attack_scenarios import copy_attack, wash_trade

SHARE_CAP = PPB // 3
TASKS = 1000


def acct(i: int) -> bytes:
    return i.to_bytes(32, "big")


# ---------------------------------------------------------------- 1. self-dealing emission


def self_dealing() -> tuple[float, float, float]:
    """Emission share of an attacker (200 ARENA, 31 own tasks) next to one honest task (100 ARENA)."""
    honest = (0, 100 * UNIT)
    old = [honest] + [(i, 200 * UNIT) for i in range(1, 32)]          # every task counts the full 200
    amounts, _ = emission_split(10_000 * UNIT, old, PPB // 2)
    old_share = sum(a for t, a in amounts if t) / sum(a for _, a in amounts)
    # now: at most 4 tasks per creator, each bond divided by its seats, linear; and the attacker's
    # 1-validator tasks are below min_validators_for_emission (3): weight 0. Even with 3 own
    # validators in each task the deduplicated stake gives the 200 / 300 below.
    new = [honest] + [(i, 200 * UNIT // 4) for i in range(1, 5)]
    amounts, _ = emission_split(10_000 * UNIT, new, PPB)
    new_share = sum(a for t, a in amounts if t) / sum(a for _, a in amounts)
    return old_share, new_share, 200 / 300


# ---------------------------------------------------------------- 5. a coalition in a task's vote


def _task_scores(rng: random.Random, n_models: int, noise: float) -> tuple[list[float], list[list[float]]]:
    quality = sorted((rng.uniform(0.3, 0.9) for _ in range(n_models)), reverse=True)
    return quality, [[max(0.0, q + rng.gauss(0, noise)) for q in quality] for _ in range(8)]


def coalition(share: float, validators: int, rule: str, seed: int = 1, push: float | None = None,
              noise: float = 0.02) -> float:
    """Fraction of tasks whose best model ranks first when a coalition holds `share` of the stake.

    push None: the coalition scores the best model 0 and its friend (the worst model) the maximum.
    push δ: it scores every model at its true quality but the best δ lower and its friend δ higher
    (staying close to the consensus to keep its vote under the refined rule). Honest validators
    see each model's quality plus Gaussian noise (sd `noise`, 0.02 as in the issue).
    """
    rng = random.Random(seed)
    good = 0
    n_coal = max(1, round(validators * share)) if share else 0
    for _ in range(TASKS):
        quality, honest_rows = _task_scores(rng, 4, noise)
        trainers = [acct(100 + i) for i in range(4)]
        vals = [acct(i + 1) for i in range(validators)]
        # the coalition splits `share` of the stake over its seats, the honest the rest
        stakes = [(v, int(share * 10**6 / n_coal) if i < n_coal else int((1 - share) * 10**6 / (validators - n_coal)))
                  for i, v in enumerate(vals)]
        reveals = []
        for i, v in enumerate(vals):
            if i < n_coal and push is None:
                row = [0] * 4
                row[-1] = PPB
            elif i < n_coal:
                row = [int(q * PPB) for q in quality]
                row[0] = max(0, row[0] - int(push * PPB))
                row[-1] = min(PPB, row[-1] + int(push * PPB))
            else:
                row = [int(x * PPB) for x in honest_rows[i]]
            reveals.append((v, list(zip(trainers, row))))
        cap = SHARE_CAP if rule == "now" else PPB
        agg = aggregate_scores(stakes, reveals, trainers, max_share_ppb=cap, refine=rule == "now")
        if rank_trainers(agg.consensus, trainers)[0] == trainers[0]:
            good += 1
    return good / TASKS


def heavy_validator_capture(seed: int = 2) -> tuple[float, float]:
    """How often a party with 20 % of all validator stake (one account) carries ≥ half a 5-seat task's vote."""
    rng = random.Random(seed)
    population = [(acct(1), 200 * UNIT)] + [(acct(10 + i), 40 * UNIT) for i in range(20)]
    weights = [(a, selection_weight(s, PPB, PPB // 2)) for a, s in population]
    stake_of = dict(population)
    old = new = 0
    for _ in range(TASKS):
        seats = weighted_sample(weights, 5, rng.randbytes(32))
        stakes = [stake_of[a] for a in seats]
        if acct(1) in seats:
            i = seats.index(acct(1))
            old += 2 * stakes[i] >= sum(stakes)
            capped = capped_weights(stakes, SHARE_CAP)
            new += 2 * capped[i] >= sum(capped)
    return old / TASKS, new / TASKS


# ---------------------------------------------------------------- 6. lazy validators


def lazy(seed: int = 3) -> tuple[float, float, float, float]:
    """Reward of a constant-score and of a random-order validator relative to an honest one (old, now)."""
    rng = random.Random(seed)
    totals = {"old": [0, 0, 0], "now": [0, 0, 0]}  # honest, constant, guesser
    for _ in range(TASKS):
        quality, honest_rows = _task_scores(rng, 4, 0.02)
        trainers = [acct(100 + i) for i in range(4)]
        vals = [acct(i + 1) for i in range(5)]
        typical = int(sum(quality) / len(quality) * PPB)
        guess = [int(rng.uniform(0.3, 0.9) * PPB) for _ in quality]
        rows = [[int(x * PPB) for x in honest_rows[i]] for i in range(3)] + [[typical] * 4, guess]
        reveals = [(v, list(zip(trainers, row))) for v, row in zip(vals, rows)]
        stakes = [(v, 30 * UNIT) for v in vals]
        agg = aggregate_scores(stakes, reveals, trainers, max_share_ppb=SHARE_CAP)
        consensus = [c for _, c in agg.consensus]
        closeness = dict(agg.agreement_ppb)
        for rule in ("old", "now"):
            entries = []
            for v, row in zip(vals, rows):
                a = closeness[v] if rule == "old" else closeness[v] * order_agreement_ppb(consensus, row) // PPB
                entries.append((v, 30 * UNIT, a))
            paid = dict(validator_rewards(1000 * UNIT, entries).payouts)
            totals[rule][0] += paid.get(vals[0], 0)
            totals[rule][1] += paid.get(vals[3], 0)
            totals[rule][2] += paid.get(vals[4], 0)
    return (totals["old"][1] / totals["old"][0], totals["now"][1] / totals["now"][0],
            totals["old"][2] / totals["old"][0], totals["now"][2] / totals["now"][0])


# ---------------------------------------------------------------- 7. selection grinding


class CreditBook:
    """The chain's stored seat credits for one role, fed through `credit_select` task after task."""

    def __init__(self, weights: list[tuple[bytes, int]]) -> None:
        self.weights = weights
        self.credit = {a: -PPB for a, _ in weights}

    def trial(self, count: int, seed: bytes):
        return credit_select([(a, w, self.credit[a]) for a, w in self.weights], count, seed)

    def commit(self, seating) -> None:
        self.credit.update(dict(seating.credits))


def grinding(author_share: float, grind: int, tasks: int = 4000, seed: int = 7) -> dict[str, float]:
    """Seat rate of the attacker's trainer (one of 5 equal trainers, one seat per task): honest vs cheating.

    Each task's selection block has a random author; with probability `author_share` it is the
    attacker, which sees the draw before publishing. `grind` = 0: when its trainer is not seated
    it withholds the block, and the next slot's author (again the attacker with that
    probability) draws anew, as often as it comes round. `grind` = N: it also tries N variants of
    its own reveal (ed25519 lets a signer pick its nonce) and publishes the best one.
    """
    rng = random.Random(seed)
    trainers = [(acct(1 + i), 40 * UNIT * PPB) for i in range(5)]
    me = trainers[0][0]
    out = {}
    for rule in ("old", "now"):
        for attacking in (False, True):
            book = CreditBook(trainers)
            seated = 0
            for _ in range(tasks):
                while True:
                    mine = attacking and rng.random() < author_share
                    for _ in range(1 + (grind if mine else 0)):
                        beacon = rng.randbytes(32)
                        if rule == "old":
                            chosen, outcome = weighted_sample(trainers, 1, beacon), None
                        else:
                            outcome = book.trial(1, beacon)
                            chosen = outcome.chosen
                        if me in chosen:
                            break
                    if not mine or me in chosen:
                        break  # published (a withheld block is simply never seen)
                if outcome is not None:
                    book.commit(outcome)
                seated += me in chosen
            out[f"{rule}-{'attack' if attacking else 'honest'}"] = seated / tasks
    return out


# ---------------------------------------------------------------- 8. sybil splitting


def sybil(seed: int = 4) -> dict[str, tuple[float, float]]:
    """Seats per 5-seat task and share of the trainers' pool for 200 ARENA in 1 account vs over 10.

    Twenty honest accounts hold 40 ARENA each (the attacker holds 20 % of the stake). Models are
    of equal quality (ranks fall at random); pay is `trainer_rewards` (rank weight × stake).
    Old rule: `weighted_sample` with weight stake^½; now: `credit_select` with weight ∝ stake.
    """
    rng = random.Random(seed)
    honest = [(acct(100 + i), 40 * UNIT) for i in range(20)]
    out: dict[str, tuple[float, float]] = {}
    for rule in ("old", "now"):
        for split in (1, 10):
            mine = {acct(1 + i): 200 * UNIT // split for i in range(split)}
            stake = dict(honest) | mine
            alpha = PPB // 2 if rule == "old" else PPB
            weights = [(a, selection_weight(s, PPB, alpha)) for a, s in stake.items()]
            book = CreditBook(weights)
            seats = share = 0.0
            for _ in range(TASKS):
                beacon = rng.randbytes(32)
                if rule == "old":
                    chosen = weighted_sample(weights, 5, beacon)
                else:
                    seating = book.trial(5, beacon)
                    book.commit(seating)
                    chosen = seating.chosen
                rng.shuffle(chosen)
                paid = dict(trainer_rewards(10**12, [(a, stake[a]) for a in chosen], PPB // 2).payouts)
                seats += sum(1 for a in chosen if a in mine)
                share += sum(v for a, v in paid.items() if a in mine) / 10**12
            out[f"{rule}-{split}"] = (seats / TASKS, share / TASKS)
    return out


# ---------------------------------------------------------------- 5. how far honest validators disagree


def validator_score_spread() -> tuple[int, int]:
    """(largest difference between scores of one model, models scored): digits models, 1 / 2 / 4 torch threads.

    Each model is scored by the validator worker's own path (`kind.evaluate`, as
    node/offchain/validator_worker.score_models and node/offchain/audit.py call it), with the
    process's torch thread count set to 1, 2 and 4 before the call.
    """
    import torch

    from node.offchain.ml import get_kind

    kind = get_kind("digits_classifier")
    prepared = kind.prepare(None, seed=7)
    models = [kind.train(prepared.spec, prepared.train_bytes, epochs=e, lr=0.01, seed=e) for e in (2, 6)]
    threads_before = torch.get_num_threads()
    spread = 0
    try:
        for model in models:
            scores = []
            for threads in (1, 2, 4):
                torch.set_num_threads(threads)
                scores.append(kind.evaluate(prepared.spec, model, prepared.heldout_bytes).score)
            spread = max(spread, max(scores) - min(scores))
    finally:
        torch.set_num_threads(threads_before)
    return spread, len(models)


# ---------------------------------------------------------------- 9. wash trading by a bonded host


@contextmanager
def old_usage_emission_rule() -> Iterator[None]:
    """The rule before the cap: a period mints its whole usage emission whatever the revenue."""
    capped = incentives.usage_emission_budget
    incentives.usage_emission_budget = lambda emission, revenue, shares: emission  # type: ignore[assignment]
    try:
        yield
    finally:
        incentives.usage_emission_budget = capped


def main() -> int:
    rows: list[tuple[str, str, str, str, str]] = []
    old, new, baseline = self_dealing()
    rows.append(("1 self-dealing tasks: attacker emission share", f"{old:.1%}", f"{new:.1%} (0 % <3 validators)",
                 f"{baseline:.1%}", "≤ stake share"))
    rows.append(("2 u64 score: tasks paid after poisoning", "0 %", "100 % (reveal refused)", "100 %", "no abort"))
    bond = 1000 * UNIT
    rows.append(("3 unbond, commit, never reveal: slashed ARENA", "0", f"{slash_amount(bond, 20_000_000) / UNIT:g}",
                 f"{slash_amount(bond, 20_000_000) / UNIT:g}", "= plain bond"))
    rows.append(("3 10 bonded + 990 delegated, no reveal: slashed", f"{slash_amount(10 * UNIT, 20_000_000) / UNIT:g}",
                 f"{(slash_amount(10 * UNIT, 20_000_000) + slash_amount(990 * UNIT, 20_000_000)) / UNIT:g}",
                 f"{slash_amount(bond, 20_000_000) / UNIT:g}", "= plain bond"))
    rows.append(("3 delegator undelegates its 990 mid-task: slashed", "0",
                 f"{slash_amount(990 * UNIT, 10_000_000) / UNIT:g}", f"{slash_amount(990 * UNIT, 10_000_000) / UNIT:g}",
                 "= staying"))
    copy = copy_attack()
    refused = sum(1 for error in copy.refused.values() if error)
    copy_now = f"{copy.copier_pay / copy.original_pay:.2f} ({refused} of {len(copy.refused)} tries refused²)"
    rows.append(("4 copied or byte-tweaked model: copier's pay / original's (old: review's figure¹)", "2.00",
                 copy_now, "n/a", "0"))
    for share, n in ((0.49, 5), (0.5, 5), (0.5, 2)):
        rows.append((f"5 best model first, coalition {share:.0%} of {n} validators", f"{coalition(share, n, 'old'):.1%}",
                     f"{coalition(share, n, 'now'):.1%}", f"{coalition(0.0, n, 'now'):.1%}", "≥ 95 % at 49 %"))
    pushes = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
    old_subtle = min(coalition(0.49, 5, "old", push=d) for d in pushes)
    new_subtle = min(coalition(0.49, 5, "now", push=d) for d in pushes)
    rows.append(("5 … 49 %, subtle push (worst of 6 sizes)", f"{old_subtle:.1%}", f"{new_subtle:.1%}",
                 f"{coalition(0.0, 5, 'now'):.1%}", "≥ 95 % at 49 %"))
    for sd in (0.02, 0.005, 0.001):
        sizes = pushes + (sd / 2, sd, 2 * sd, 4 * sd)
        worst = {rule: min(coalition(0.49, 5, rule, push=d, noise=sd) for d in sizes) for rule in ("old", "now")}
        rows.append((f"5 … subtle push, honest noise sd {sd:g} (worst of 10 sizes)", f"{worst['old']:.1%}",
                     f"{worst['now']:.1%}", f"{coalition(0.0, 5, 'now', noise=sd):.1%}", "≥ 95 % at 49 %"))
    spread, scored = validator_score_spread()
    rows.append((f"5 real validators: score spread, {scored} digits models, 1/2/4 threads", "n/a",
                 f"{spread} of 10^9", "n/a", "≤ sd 0.005"))
    old_cap, new_cap = heavy_validator_capture()
    rows.append(("5 20 % stake holds ≥ ½ of a 5-seat task's vote", f"{old_cap:.1%}", f"{new_cap:.1%}", "0 %", "0"))
    c_old, c_new, g_old, g_new = lazy()
    rows.append(("6 constant-score validator reward / honest", f"{c_old:.2f}", f"{c_new:.2f}", "1.00", "≤ 0.5"))
    rows.append(("6 random-order validator reward / honest", f"{g_old:.2f}", f"{g_new:.2f}", "1.00", "≤ 0.5"))
    for label, g in (("withholding", grinding(0.25, 0)), ("+ 64 reveal variants", grinding(0.25, 64))):
        rows.append((f"7 seat rate, ¼ of slots, {label}", f"{g['old-attack']:.3f}", f"{g['now-attack']:.3f}",
                     f"{g['old-honest']:.3f} / {g['now-honest']:.3f}", "≤ +0.02"))
    sy = sybil()
    rows.append(("8 seats per task, 200 ARENA: 1 account → 10", f"{sy['old-1'][0]:.2f} → {sy['old-10'][0]:.2f}",
                 f"{sy['now-1'][0]:.2f} → {sy['now-10'][0]:.2f}", f"{sy['now-1'][0]:.2f}", "no gain"))
    rows.append(("8 trainer-pool share: 1 account → 10", f"{sy['old-1'][1]:.2f} → {sy['old-10'][1]:.2f}",
                 f"{sy['now-1'][1]:.2f} → {sy['now-10'][1]:.2f}", f"{sy['now-1'][1]:.2f}", "no gain"))
    rows.append(("8 reputation of a fresh key / of the worst record", "1.0 / 0.1", "0.1 / 0.1", "n/a", "fresh ≤ worst"))
    rows.append(("9 usage report by an unbonded non-host: gain", "+68 % of emission", "0 (refused)", "0", "0"))
    with old_usage_emission_rule():
        wash_old = wash_trade()
    wash_now = wash_trade()
    rows.append(("9 wash trade by a bonded host³: net gain per ARENA paid", f"{wash_old.gain_per_unit_paid:+.3f}",
                 f"{wash_now.gain_per_unit_paid:+.3f}", "0 (no trade)", "≤ 0"))
    per_unit = {name: (w.honest_emission / w.honest_revenue, w.honest_emission_alone / w.honest_revenue)
                for name, w in (("old", wash_old), ("now", wash_now))}
    rows.append(("9 … honest host beside it: usage emission per ARENA served",
                 "{:.2f} (alone {:.2f})".format(*per_unit["old"]), "{:.2f} (alone {:.2f})".format(*per_unit["now"]),
                 "n/a", "= alone"))
    rows.append(("10 second host on one 0.99 escrow: paid", "0 of 0.99", "channel: 0.99 each", "0.99", "all"))
    widths = [max(len(r[i]) for r in rows + [("attack", "old rules", "now", "honest", "target")]) for i in range(5)]
    header = ("attack", "old rules", "now", "honest", "target")
    for r in [header] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)))
    print("\n¹ recorded by the review: a copier that submitted the original's CID in the training window was paid"
          " 4,040 ARENA against\n  the original's 2,020 (pay scales with stake); the runtime no longer has that"
          " submit-in-training rule to re-create in process.")
    print("² in process, signed calls (tests/attack_scenarios.copy_attack): " + "; ".join(
        f"{label}: {error or 'accepted'}" for label, error in copy.refused.items())
          + f"; copier paid {copy.copier_pay / UNIT:g}, original {copy.original_pay / UNIT:g} ARENA")
    print(f"³ in process (tests/attack_scenarios.wash_trade): host + trainer + every validator of the task pays"
          f" {wash_now.paid / UNIT:g} ARENA to itself in a period where an honest host serves"
          f" {wash_now.honest_revenue / UNIT:g} ARENA; usage emission 1 ARENA per period; fees excluded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
