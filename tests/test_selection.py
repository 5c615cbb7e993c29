"""Selection: the weighted draw matches its law (chi-square, fixed seeds); credit seating keeps seats ∝ weight."""
from fractions import Fraction

import pytest

from runtime.crypto import blake2b_256
from runtime.incentives import concave_weight
from runtime.selection import PPB, credit_select, inclusion_targets, selection_weight, weighted_sample
from tests.runtime_harness import KEYS, UNIT, RuntimeHarness

ACCOUNTS = [bytes([i]) * 32 for i in range(1, 6)]
# chi-square critical values at p = 0.001
CRITICAL_001 = {4: 18.47, 19: 43.82}


def seeds(count: int, label: bytes):
    return [blake2b_256(label + i.to_bytes(4, "big")) for i in range(count)]


def chi_square(observed: dict, expected: dict) -> float:
    return sum((observed.get(k, 0) - e) ** 2 / e for k, e in expected.items())


def test_first_draw_frequencies_match_weights():
    weights = [1, 2, 3, 4, 10]
    candidates = list(zip(ACCOUNTS, weights))
    n = 6000
    observed: dict[bytes, int] = {}
    for seed in seeds(n, b"first"):
        pick = weighted_sample(candidates, 1, seed)[0]
        observed[pick] = observed.get(pick, 0) + 1
    total = sum(weights)
    expected = {a: n * w / total for a, w in candidates}
    assert chi_square(observed, expected) < CRITICAL_001[len(weights) - 1]


def ordered_pair_law(candidates):
    """Exact probability of each ordered pair of draws (successive sampling)."""
    total = sum(w for _, w in candidates)
    law = {}
    for a, wa in candidates:
        for b, wb in candidates:
            if a != b:
                law[(a, b)] = Fraction(wa, total) * Fraction(wb, total - wa)
    return law


def test_two_draws_without_replacement_follow_successive_sampling():
    candidates = list(zip(ACCOUNTS, [5, 1, 2, 8, 4]))
    law = ordered_pair_law(candidates)
    n = 8000
    observed: dict[tuple, int] = {}
    for seed in seeds(n, b"pairs"):
        a, b = weighted_sample(candidates, 2, seed)
        assert a != b
        observed[(a, b)] = observed.get((a, b), 0) + 1
    expected = {k: float(p) * n for k, p in law.items()}
    assert chi_square(observed, expected) < CRITICAL_001[len(law) - 1]


def test_deterministic_and_order_independent():
    candidates = list(zip(ACCOUNTS, [3, 1, 4, 1, 5]))
    seed = blake2b_256(b"x")
    first = weighted_sample(candidates, 3, seed)
    assert weighted_sample(candidates[::-1], 3, seed) == first
    assert len(set(first)) == 3
    assert weighted_sample(candidates, 10, seed)[:3] == first  # asks for more than exist: all, no repeats
    assert len(weighted_sample(candidates, 10, seed)) == 5
    assert weighted_sample([(ACCOUNTS[0], 0)], 1, seed) == []  # zero weight is never drawn
    with pytest.raises(ValueError):
        weighted_sample([(ACCOUNTS[0], 1), (ACCOUNTS[0], 2)], 1, seed)


def test_weight_is_concave_in_stake_times_reputation():
    alpha = 500_000_000
    assert selection_weight(400, 10**9, alpha) == 20 * 10**9
    assert selection_weight(1600, 10**9, alpha) == 40 * 10**9  # 4× the stake, 2× the weight
    assert selection_weight(1600, 5 * 10**8, alpha) == 20 * 10**9


def test_tasks_use_the_documented_weights():
    from runtime.modules import history, rewards, tasks
    h = RuntimeHarness()
    calls = []
    for name, amount in (("bob", 20), ("charlie", 80), ("dave", 45)):
        key = KEYS[name]
        calls += [(key, "staking", "bond", ["trainer", amount * UNIT]), (key, "staking", "heartbeat", [[1, "cpu", 1]])]
    calls.append((KEYS["ferdie"], "staking", "bond", ["trainer", 50 * UNIT]))  # no heartbeat: not eligible
    h.block(*calls)
    ctx = h.ctx()
    dummy = tasks.Task(0, KEYS["alice"].public_key, "", "k", 1, 1, 0, 1, 1, 1, 0, 0, "selection", 0,
                       [], [], [], "", b"", "")
    found = dict(tasks.eligible(ctx, "trainer", dummy, {KEYS["dave"].public_key}))
    alpha = rewards.params(ctx)["alpha_ppb"]
    assert set(found) == {KEYS["bob"].public_key, KEYS["charlie"].public_key}
    for name, amount in (("bob", 20), ("charlie", 80)):
        who = KEYS[name].public_key
        assert found[who] == concave_weight(amount * UNIT, alpha) * history.reputation_ppb(ctx, who, "trainer")


def test_inclusion_targets_share_the_seats_and_cap_one_seat():
    assert inclusion_targets([1, 1, 2], 2) == [PPB // 2, PPB // 2, PPB]
    assert inclusion_targets([10, 1, 1], 2) == [PPB, PPB // 2, PPB // 2]   # a whale gets one seat, no more
    assert inclusion_targets([3, 0, 5], 5) == [PPB, 0, PPB]
    assert inclusion_targets([2, 2, 2, 2, 2], 1) == [PPB // 5] * 5
    # splitting a weight over accounts leaves the sum of their targets unchanged (below the cap)
    assert sum(inclusion_targets([2, 2, 2, 2, 2, 40], 1)[:5]) == inclusion_targets([10, 40], 1)[0]


def test_credit_seating_gives_seats_in_proportion_to_weight_whatever_the_seeds():
    weights = [1, 2, 3, 4, 10]
    credits = {a: -PPB for a in ACCOUNTS}
    seats = dict.fromkeys(ACCOUNTS, 0)
    runs = 1000
    for i, seed in enumerate(seeds(runs, b"credit")):
        outcome = credit_select([(a, w, credits[a]) for a, w in zip(ACCOUNTS, weights)], 2, seed)
        if i % 2:  # the same result whatever the candidates' order
            again = credit_select([(a, w, credits[a]) for a, w in reversed(list(zip(ACCOUNTS, weights)))], 2, seed)
            assert again == outcome
        assert len(set(outcome.chosen)) == 2
        credits.update(dict(outcome.credits))
        for a in outcome.chosen:
            seats[a] += 1
    targets = inclusion_targets(weights, 2)
    for a, target in zip(ACCOUNTS, targets):
        assert abs(seats[a] - runs * target / PPB) <= 3
    assert abs(sum(credits.values()) + 5 * PPB) <= runs * 5  # credits are conserved up to rounding dust
    assert credit_select([(ACCOUNTS[0], 0, 7)], 1, seeds(1, b"z")[0]).chosen == []  # zero weight never sits
    with pytest.raises(ValueError):
        credit_select([(ACCOUNTS[0], 1, 0), (ACCOUNTS[0], 2, 0)], 1, seeds(1, b"z")[0])
