"""Property tests of the incentive mathematics (runtime/incentives.py).

Conservation (every unit paid or in the remainder, nothing negative), quantile properties, the
robustness of the consensus against a dishonest stake minority, ranking ties, monotonicity, and
independence from input order.
"""
from __future__ import annotations

import ast
import itertools
import random
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runtime import incentives
from runtime.incentives import (
    PPB,
    Distribution,
    IncentiveError,
    aggregate_scores,
    concave_weight,
    delegator_split,
    effective_stake,
    emission_split,
    isqrt_weight,
    pro_rata,
    rank_trainers,
    slash_amount,
    stake_weighted_quantile,
    trainer_rewards,
    usage_split,
    validator_rewards,
    validator_trainer_split,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

accounts = st.binary(min_size=32, max_size=32)
amounts = st.integers(min_value=0, max_value=10**24)
stakes = st.integers(min_value=0, max_value=10**18)
ppbs = st.integers(min_value=0, max_value=PPB)


def account(i: int) -> bytes:
    return i.to_bytes(32, "big")


def weighted(value_strategy=stakes, min_size: int = 0, max_size: int = 12):
    """A list of (distinct account, value)."""
    return st.lists(st.tuples(accounts, value_strategy), min_size=min_size, max_size=max_size,
                    unique_by=lambda pair: pair[0])


def assert_conserves(dist: Distribution, amount: int) -> None:
    assert dist.total_paid + dist.remainder == amount
    assert dist.remainder >= 0
    assert all(value > 0 for _, value in dist.payouts), "zero or negative payout"
    keys = [a for a, _ in dist.payouts]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def shuffled(items: list, seed: int) -> list:
    copy = list(items)
    random.Random(seed).shuffle(copy)
    return copy


# ---------------------------------------------------------------- consensus-safety of the module


def test_module_has_no_floats_clock_or_randomness():
    tree = ast.parse(Path(incentives.__file__).read_text())
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), "float literal"
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)), f"true division line {node.lineno}"
        assert not (isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Div)), "true division"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("float", "round", "pow"), f"{node.func.id}() line {node.lineno}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            assert not {"random", "time", "datetime", "os", "secrets"} & set(names)


# ---------------------------------------------------------------- pro rata and the splits


@SETTINGS
@given(amount=amounts, weights=weighted(), seed=st.integers())
def test_pro_rata_conserves_and_ignores_order(amount, weights, seed):
    dist = pro_rata(amount, weights)
    assert_conserves(dist, amount)
    assert pro_rata(amount, shuffled(weights, seed)) == dist
    positive = sum(1 for _, w in weights if w)
    assert dist.remainder < max(positive, 1) or positive == 0
    total = sum(w for _, w in weights)
    for a, paid in dist.payouts:
        assert paid == amount * dict(weights)[a] // total


@SETTINGS
@given(pool=amounts, entries=weighted(min_size=1), rho=ppbs, data=st.data())
def test_trainer_rewards_conserve_and_respect_rank_and_stake(pool, entries, rho, data):
    scored = data.draw(st.lists(st.booleans(), min_size=len(entries), max_size=len(entries)))
    dist = trainer_rewards(pool, entries, rho, scored=scored)
    assert_conserves(dist, pool)
    paid = dict(dist.payouts)
    for (trainer, stake), ok in zip(entries, scored):
        if not ok or stake == 0:
            assert trainer not in paid
    # better rank never earns less at equal stake, more stake never earns less at equal rank
    plain = dict(trainer_rewards(pool, entries, rho).payouts)
    for r in range(len(entries) - 1):
        (a, sa), (b, sb) = entries[r], entries[r + 1]
        if sa >= sb:
            assert plain.get(a, 0) >= plain.get(b, 0)


@SETTINGS
@given(pool=amounts, entries=weighted(min_size=1), rho=ppbs, index=st.integers(min_value=0),
       extra=st.integers(min_value=1, max_value=10**18))
def test_trainer_more_stake_never_earns_less(pool, entries, rho, index, extra):
    i = index % len(entries)
    before = dict(trainer_rewards(pool, entries, rho).payouts).get(entries[i][0], 0)
    raised = list(entries)
    raised[i] = (entries[i][0], entries[i][1] + extra)
    after = dict(trainer_rewards(pool, raised, rho).payouts).get(entries[i][0], 0)
    assert after >= before


def test_trainer_rewards_geometric_by_rank():
    ranked = [(account(i), 100) for i in range(1, 4)]
    dist = trainer_rewards(700, ranked, PPB // 2)
    assert dist.payouts == [(account(1), 400), (account(2), 200), (account(3), 100)]
    assert dist.remainder == 0
    winner = trainer_rewards(700, ranked, 0)
    assert winner.payouts == [(account(1), 700)]
    nobody = trainer_rewards(700, ranked, PPB // 2, scored=[False, False, False])
    assert nobody == Distribution([], 700)


@SETTINGS
@given(pool=amounts, entries=st.lists(st.tuples(accounts, stakes, ppbs), max_size=12, unique_by=lambda e: e[0]),
       seed=st.integers(), index=st.integers(min_value=0), extra=st.integers(min_value=1, max_value=PPB))
def test_validator_rewards_conserve_and_are_monotone(pool, entries, seed, index, extra):
    dist = validator_rewards(pool, entries)
    assert_conserves(dist, pool)
    assert validator_rewards(pool, shuffled(entries, seed)) == dist
    if entries:
        i = index % len(entries)
        v, s, g = entries[i]
        before = dict(dist.payouts).get(v, 0)
        more_stake = list(entries)
        more_stake[i] = (v, s + extra, g)
        assert dict(validator_rewards(pool, more_stake).payouts).get(v, 0) >= before
        more_agreement = list(entries)
        more_agreement[i] = (v, s, min(PPB, g + extra))
        assert dict(validator_rewards(pool, more_agreement).payouts).get(v, 0) >= before


@SETTINGS
@given(reward=amounts, st_=stakes, sv=stakes, gamma=st.integers(min_value=0, max_value=PPB // 2),
       extra=st.integers(min_value=1, max_value=10**18))
def test_validator_trainer_split(reward, st_, sv, gamma, extra):
    v, t = validator_trainer_split(reward, st_, sv, gamma)
    assert v + t == reward and v >= 0 and t >= 0
    assert v >= reward * gamma // PPB and t >= reward * gamma // PPB
    v2, _ = validator_trainer_split(reward, st_, sv + extra, gamma)
    assert v2 >= v  # more validation stake never lowers the validators' part
    _, t2 = validator_trainer_split(reward, st_ + extra, sv, gamma)
    assert t2 >= t


def test_validator_trainer_split_values():
    assert validator_trainer_split(1000, 0, 0, 100_000_000) == (500, 500)
    assert validator_trainer_split(1000, 300, 100, 100_000_000) == (300, 700)  # 0.1 + 0.8·¼
    assert validator_trainer_split(1000, 100, 0, 100_000_000) == (100, 900)
    assert validator_trainer_split(1000, 0, 100, PPB // 2) == (500, 500)
    with pytest.raises(IncentiveError):
        validator_trainer_split(1000, 1, 1, PPB // 2 + 1)


@SETTINGS
@given(reward=amounts, operator=accounts, delegations=weighted(), sigma=ppbs, own=stakes, eps=ppbs,
       seed=st.integers())
def test_delegator_split_conserves(reward, operator, delegations, sigma, own, eps, seed):
    assume(all(d != operator for d, _ in delegations))
    dist = delegator_split(reward, operator, delegations, sigma, own_stake=own, epsilon_ppb=eps)
    assert_conserves(dist, reward)
    assert delegator_split(reward, operator, shuffled(delegations, seed), sigma,
                           own_stake=own, epsilon_ppb=eps) == dist
    paid = dict(dist.payouts)
    operator_part = paid.get(operator, 0)
    # the operator always keeps at least what its own stake earned plus σ of the rest
    effective = own * PPB + eps * sum(a for _, a in delegations)
    if effective:
        assert operator_part >= reward * own * PPB // effective
    if not delegations or sum(a for _, a in delegations) == 0:
        assert paid == ({operator: reward} if reward else {})
    # a delegator never earns more than (1 − σ) of what its stake earned at ε
    for delegator, amount in delegations:
        if effective:
            assert paid.get(delegator, 0) * PPB * effective <= reward * eps * amount * (PPB - sigma) + PPB * effective


def test_delegator_split_readings():
    op, d1, d2 = account(1), account(2), account(3)
    # own_stake = 0: operator keeps σ = 10 % of the reward, delegators share 90 % pro rata
    assert delegator_split(1000, op, [(d1, 1), (d2, 3)], 100_000_000).payouts == [(op, 100), (d1, 225), (d2, 675)]
    # own 600, delegated 400 at ε = ½ → effective 800, delegated part 250, delegators get 225
    dist = delegator_split(1000, op, [(d1, 100), (d2, 300)], 100_000_000, own_stake=600, epsilon_ppb=PPB // 2)
    assert dist.payouts == [(op, 775), (d1, 56), (d2, 168)] and dist.remainder == 1
    # the operator delegating to itself gets one merged payout
    merged = delegator_split(1000, op, [(op, 1), (d2, 1)], 0)
    assert merged.payouts == [(op, 500), (d2, 500)]


@SETTINGS
@given(emission=amounts, tasks=st.lists(st.tuples(st.integers(0, 2**32), stakes), max_size=12,
                                       unique_by=lambda e: e[0]), beta=ppbs, seed=st.integers())
def test_emission_split_conserves_and_is_monotone(emission, tasks, beta, seed):
    split, remainder = emission_split(emission, tasks, beta)
    assert sum(a for _, a in split) + remainder == emission and remainder >= 0
    assert all(a > 0 for _, a in split) and [t for t, _ in split] == sorted(t for t, _ in split)
    assert emission_split(emission, shuffled(tasks, seed), beta) == (split, remainder)
    got = dict(split)
    for ta, sa in tasks:
        for tb, sb in tasks:
            if sa >= sb:
                assert got.get(ta, 0) >= got.get(tb, 0)


def test_emission_split_values():
    assert emission_split(1000, [(1, 100), (2, 400)], PPB // 2) == ([(1, 333), (2, 666)], 1)
    assert emission_split(1000, [(1, 100), (2, 400)], PPB) == ([(1, 200), (2, 800)], 0)
    assert emission_split(1000, [(1, 100), (2, 400), (3, 0)], 0) == ([(1, 500), (2, 500)], 0)
    assert emission_split(1000, [], PPB) == ([], 1000)


@SETTINGS
@given(revenue=amounts, shares=st.lists(st.tuples(st.text(min_size=1, max_size=8), ppbs), max_size=5,
                                        unique_by=lambda e: e[0]))
def test_usage_split(revenue, shares):
    if sum(s for _, s in shares) > PPB:
        with pytest.raises(IncentiveError):
            usage_split(revenue, shares)
        return
    split, remainder = usage_split(revenue, shares)
    assert sum(a for _, a in split) + remainder == revenue and remainder >= 0
    assert [n for n, _ in split] == sorted(n for n, _ in split) and all(a > 0 for _, a in split)


@SETTINGS
@given(stake=stakes, fraction=ppbs, own=stakes, delegated=stakes, eps=ppbs)
def test_slash_and_effective_stake(stake, fraction, own, delegated, eps):
    assert 0 <= slash_amount(stake, fraction) <= stake
    assert slash_amount(stake, PPB) == stake and slash_amount(stake, 0) == 0
    assert own <= effective_stake(own, delegated, eps) <= own + delegated
    assert effective_stake(own, delegated, PPB) == own + delegated


# ---------------------------------------------------------------- concave weights


@settings(max_examples=200, deadline=None)
@given(stake=st.integers(min_value=1, max_value=2**64), alpha=st.integers(min_value=1, max_value=PPB))
def test_concave_weight_is_nearest_integer(stake, alpha):
    got = concave_weight(stake, alpha)
    with localcontext() as ctx:
        ctx.prec = 80
        exact = Decimal(stake) ** (Decimal(alpha) / Decimal(PPB))
        assert abs(Decimal(got) - exact) <= Decimal("0.5") + exact * Decimal(2) ** -80


@SETTINGS
@given(a=st.integers(min_value=0, max_value=2**70), b=st.integers(min_value=0, max_value=2**70), alpha=st.integers(1, PPB))
def test_concave_weight_monotone(a, b, alpha):
    lo, hi = sorted((a, b))
    assert concave_weight(lo, alpha) <= concave_weight(hi, alpha) <= hi


def test_concave_weight_exact_points():
    for n in (1, 2, 3, 10, 12345, 2**31 - 1, 10**9, 2**40 + 7):
        assert concave_weight(n * n, PPB // 2) == n == isqrt_weight(n * n)
        assert concave_weight(n, PPB) == n
    assert concave_weight(10**9, PPB // 3) == 1000
    assert concave_weight(0, PPB // 2) == 0
    assert incentives._LN2 >> (incentives._Q - 64) == 0xB17217F7D1CF79AB  # ln 2 · 2^64
    with pytest.raises(IncentiveError):
        concave_weight(5, 0)
    with pytest.raises(IncentiveError):
        concave_weight(5, PPB + 1)


# ---------------------------------------------------------------- quantile


points_strategy = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 10**6)), max_size=15)


@SETTINGS
@given(points=points_strategy, kappa=ppbs, seed=st.integers())
def test_quantile_definition(points, kappa, seed):
    q = stake_weighted_quantile(points, kappa)
    assert stake_weighted_quantile(shuffled(points, seed), kappa) == q
    total = sum(s for _, s in points)
    if total == 0:
        assert q == 0
        return
    assert q in {v for v, s in points if s > 0}
    at_or_below = sum(s for v, s in points if v <= q)
    below = sum(s for v, s in points if v < q)
    assert at_or_below * PPB >= kappa * total
    if kappa > 0:
        assert below * PPB < kappa * total  # nothing smaller qualifies
    assert stake_weighted_quantile(points, PPB) == max(v for v, s in points if s > 0)


@SETTINGS
@given(points=points_strategy, k1=ppbs, k2=ppbs)
def test_quantile_monotone_in_kappa(points, k1, k2):
    lo, hi = sorted((k1, k2))
    assert stake_weighted_quantile(points, lo) <= stake_weighted_quantile(points, hi)


def test_quantile_edges():
    assert stake_weighted_quantile([]) == 0
    assert stake_weighted_quantile([(7, 0)]) == 0
    assert stake_weighted_quantile([(1, 0), (5, 10)]) == 5
    assert stake_weighted_quantile([(1, 5), (9, 5)]) == 1  # exactly half at 1 suffices
    assert stake_weighted_quantile([(1, 4), (9, 5)]) == 9
    with pytest.raises(IncentiveError):
        stake_weighted_quantile([(1, -1)])


# ---------------------------------------------------------------- aggregation


@st.composite
def honest_majority(draw):
    """Validators split into honest (> ½ stake) and dishonest, and each trainer's honest range."""
    n_trainers = draw(st.integers(1, 6))
    trainers = [account(1000 + i) for i in range(n_trainers)]
    n_honest = draw(st.integers(1, 6))
    n_dishonest = draw(st.integers(0, 6))
    honest_stakes = draw(st.lists(st.integers(1, 10**6), min_size=n_honest, max_size=n_honest))
    dishonest_stakes = draw(st.lists(st.integers(0, 10**6), min_size=n_dishonest, max_size=n_dishonest))
    total_honest = sum(honest_stakes)
    # scale the dishonest side down until honest stake is strictly more than half
    while sum(dishonest_stakes) >= total_honest:
        dishonest_stakes = [s // 2 for s in dishonest_stakes]
    validators = [account(i + 1) for i in range(n_honest + n_dishonest)]
    score = st.integers(0, PPB)
    truth = [draw(score) for _ in trainers]
    noise = draw(st.integers(0, PPB // 10))
    scores = []
    for v in validators[:n_honest]:
        row = [(t, max(0, truth[i] + draw(st.integers(-noise, noise)))) for i, t in enumerate(trainers)]
        scores.append((v, row))
    for v in validators[n_honest:]:
        attack = draw(st.sampled_from(["zero", "max", "random", "silent"]))
        if attack == "silent":
            row = []
        elif attack == "zero":
            row = [(t, 0) for t in trainers]
        elif attack == "max":
            row = [(t, 10**30) for t in trainers]
        else:
            row = [(t, draw(st.integers(0, 10**12))) for t in trainers]
        scores.append((v, row))
    stakes_ = list(zip(validators, honest_stakes + dishonest_stakes))
    return stakes_, scores, trainers, n_honest


@SETTINGS
@given(case=honest_majority(), seed=st.integers())
def test_consensus_lies_within_honest_scores(case, seed):
    validator_stakes, scores, trainers, n_honest = case
    result = aggregate_scores(shuffled(validator_stakes, seed), shuffled(scores, seed), trainers)
    honest = dict(scores[:n_honest])
    for trainer, consensus in result.consensus:
        values = [dict(row)[trainer] for row in honest.values()]
        assert min(values) <= consensus <= max(values)


@st.composite
def any_reveals(draw):
    n_trainers = draw(st.integers(0, 6))
    trainers = [account(1000 + i) for i in range(n_trainers)]
    n_validators = draw(st.integers(0, 6))
    validators = [account(i + 1) for i in range(n_validators)]
    stakes_ = [(v, draw(st.integers(0, 10**6))) for v in validators]
    scores = []
    for v in validators:
        if draw(st.booleans()) or not trainers:
            scored = draw(st.lists(st.sampled_from(trainers), unique=True)) if trainers else []
            scores.append((v, [(t, draw(st.integers(0, 1000))) for t in scored]))
    return stakes_, scores, trainers


@SETTINGS
@given(case=any_reveals(), seed=st.integers(), kappa=ppbs)
def test_aggregation_shape_and_bounds(case, seed, kappa):
    validator_stakes, scores, trainers = case
    result = aggregate_scores(validator_stakes, scores, trainers, kappa)
    again = aggregate_scores(
        shuffled(validator_stakes, seed),
        [(v, shuffled(row, seed)) for v, row in shuffled(scores, seed)],
        shuffled(trainers, seed),
        kappa,
    )
    assert again == result
    assert [t for t, _ in result.consensus] == sorted(trainers)
    revealed = sorted(v for v, _ in scores)
    assert [v for v, _ in result.clipped] == revealed == [v for v, _ in result.agreement_ppb]
    consensus = dict(result.consensus)
    stake_of = dict(validator_stakes)
    for trainer, c in result.consensus:
        column = [(dict(row).get(trainer, 0), stake_of[v]) for v, row in scores]
        assert c == stake_weighted_quantile(column, kappa)
    for (validator, clipped), (_, agreement) in zip(result.clipped, result.agreement_ppb):
        raw = dict(dict(scores)[validator])
        assert [t for t, _ in clipped] == sorted(trainers)
        for trainer, value in clipped:
            assert value == min(raw.get(trainer, 0), consensus[trainer])
        assert 0 <= agreement <= PPB
        if all(raw.get(t, 0) == consensus[t] for t in trainers):
            assert agreement == PPB


def test_aggregation_agreement_values():
    t1, t2 = account(101), account(102)
    v1, v2, v3 = account(1), account(2), account(3)
    result = aggregate_scores(
        [(v1, 10), (v2, 10), (v3, 5), (account(4), 99)],  # account 4 did not reveal: ignored
        [(v1, [(t1, 60), (t2, 40)]), (v2, [(t1, 60), (t2, 40)]), (v3, [(t1, 100)])],
        [t1, t2],
    )
    assert result.consensus == [(t1, 60), (t2, 40)]
    assert result.clipped[2] == (v3, [(t1, 60), (t2, 0)])
    # v3: distance (40 + 40) / (100 + 40) → agreement = 1e9 − ⌊8e10 / 140⌋
    assert result.agreement_ppb == [(v1, PPB), (v2, PPB), (v3, PPB - 80 * PPB // 140)]


def test_aggregation_rejects_bad_input():
    t = account(100)
    with pytest.raises(IncentiveError):
        aggregate_scores([(account(1), 1)], [(account(2), [(t, 1)])], [t])  # no stake entry
    with pytest.raises(IncentiveError):
        aggregate_scores([(account(1), 1)], [(account(1), [(t, -1)])], [t])
    with pytest.raises(IncentiveError):
        aggregate_scores([(account(1), 1)], [(account(1), [(t, 1)]), (account(1), [])], [t])
    with pytest.raises(IncentiveError):
        aggregate_scores([(account(1), 1)], [(account(1), [(t, 1), (t, 2)])], [t])
    with pytest.raises(IncentiveError):
        aggregate_scores([(account(1), 1)], [(account(1), [(t, 1.5)])], [t])
    with pytest.raises(IncentiveError):
        aggregate_scores([(account(1), -3)], [], [t])


# ---------------------------------------------------------------- ranking


@SETTINGS
@given(scores=st.lists(st.integers(0, 5), min_size=0, max_size=12), seed=st.integers())
def test_ranking_orders_by_score_then_submission(scores, seed):
    trainers = [account(i + 1) for i in range(len(scores))]
    order = shuffled(trainers, seed)
    consensus = list(zip(trainers, scores))
    ranked = rank_trainers(shuffled(consensus, seed + 1), order)
    assert sorted(ranked) == sorted(trainers)
    score = dict(consensus)
    position = {t: i for i, t in enumerate(order)}
    for a, b in itertools.pairwise(ranked):
        assert score[a] > score[b] or (score[a] == score[b] and position[a] < position[b])


def test_ranking_tie_goes_to_earlier_submission():
    a, b, c = account(1), account(2), account(3)
    assert rank_trainers([(a, 5), (b, 7), (c, 7)], [c, a, b]) == [c, b, a]
    assert rank_trainers([(a, 5), (b, 7), (c, 7)], [b, c, a]) == [b, c, a]
    with pytest.raises(IncentiveError):
        rank_trainers([(a, 5)], [b])


def test_invalid_inputs_are_named_errors():
    with pytest.raises(IncentiveError):
        pro_rata(-1, [])
    with pytest.raises(IncentiveError):
        pro_rata(10, [(account(1), 1), (account(1), 2)])
    with pytest.raises(IncentiveError):
        validator_rewards(10, [(account(1), 1, PPB + 1)])
    with pytest.raises(IncentiveError):
        trainer_rewards(10, [(account(1), 1)], PPB, scored=[True, False])
    with pytest.raises(IncentiveError):
        effective_stake(1, 1, 1.0)  # type: ignore[arg-type]
    with pytest.raises(IncentiveError):
        usage_split(10, [("host", PPB), ("trainer", 1)])
    with pytest.raises(IncentiveError):
        slash_amount(True, 1)  # type: ignore[arg-type]
