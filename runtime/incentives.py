"""The incentive mathematics: aggregation of validator scores, ranking, and every reward split.

One file because every formula of docs/incentives.md sits in one pure file, checked side by side.

Consensus-critical and pure. Every function takes integers, bytes and lists and returns the same;
there are no floats (not even intermediate), no clock, no randomness, no I/O, and no dependence
on dict iteration order: dicts are used only for look-ups, and every list returned is sorted (by
account bytes, task id or party name) or in an order the docstring names. Fractions are fixed
point in parts per billion (`PPB`). Every distribution conserves units exactly:
`sum(payouts) + remainder == amount`, and the caller sends the remainder to the treasury.

`docs/incentives.md` states every formula with its integer steps and a worked example.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PPB = 10**9


class IncentiveError(ValueError):
    """Invalid input to an incentive function (negative stake, fraction out of range, duplicate)."""


@dataclass(frozen=True)
class Distribution:
    """How an amount is paid: `payouts` sorted by account bytes (zeros omitted), and `remainder`.

    Always `sum(amount for _, amount in payouts) + remainder` equals the amount distributed; the
    remainder (rounding dust, or the whole amount when nobody qualifies) goes to the treasury.
    """

    payouts: list[tuple[bytes, int]]
    remainder: int

    @property
    def total_paid(self) -> int:
        """The sum of all payouts."""
        return sum(amount for _, amount in self.payouts)


@dataclass(frozen=True)
class Aggregation:
    """The outcome of aggregating validators' revealed scores for one task.

    `consensus`: per trainer (sorted by trainer), the stake-weighted κ-quantile of the scores.
    `clipped`: per validator (sorted by validator), its score for every trainer (sorted by
    trainer, zeros included) clipped at the consensus: min(score, consensus).
    `agreement_ppb`: per validator (sorted), 1 − normalised distance to consensus, in PPB.
    `raw`: per validator (sorted), its revealed score for every trainer (sorted, zeros included).
    """

    consensus: list[tuple[bytes, int]]
    clipped: list[tuple[bytes, list[tuple[bytes, int]]]]
    agreement_ppb: list[tuple[bytes, int]]
    raw: list[tuple[bytes, list[tuple[bytes, int]]]] = field(default_factory=list)


# ---------------------------------------------------------------- input checks


def _check_int(name: str, value: object, lo: int = 0, hi: int | None = None) -> int:
    """`value` as an int within [lo, hi]; bools and floats are rejected."""
    if type(value) is not int:
        raise IncentiveError(f"{name} must be an integer, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        upper = "∞" if hi is None else str(hi)
        raise IncentiveError(f"{name} is {value}, must lie in [{lo}, {upper}]")
    return value


def _check_ppb(name: str, value: object, lo: int = 0, hi: int = PPB) -> int:
    return _check_int(name, value, lo, hi)


def _check_account(name: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != 32:
        raise IncentiveError(f"{name} must be a 32-byte account id, got {value!r:.80}")
    return value


def _no_duplicates(name: str, keys: list) -> None:
    if len(set(keys)) != len(keys):
        seen: set = set()
        for key in keys:
            if key in seen:
                raise IncentiveError(f"{name} {key!r:.80} appears twice")
            seen.add(key)


# ---------------------------------------------------------------- pro-rata apportionment


def pro_rata(amount: int, weights: list[tuple[bytes, int]]) -> Distribution:
    """Split `amount` among accounts in proportion to integer weights, rounding every share down.

    Account i gets ⌊amount · w_i / Σw⌋; the remainder is amount − Σ payouts (< number of positive
    weights). If Σw = 0 nothing is paid and the whole amount is the remainder. Duplicate accounts
    are an error; the result does not depend on the order of `weights`.
    """
    _check_int("amount", amount)
    accounts = [_check_account("account", account) for account, _ in weights]
    _no_duplicates("account", accounts)
    for account, weight in weights:
        _check_int(f"weight of {account.hex()[:16]}", weight)
    return _apportion(amount, weights)


def _apportion(amount: int, weights: list[tuple[bytes, int]]) -> Distribution:
    """`pro_rata` without the input checks (callers have checked)."""
    total = sum(weight for _, weight in weights)
    if total == 0 or amount == 0:
        return Distribution([], amount)
    payouts = []
    for account, weight in sorted(weights):
        share = amount * weight // total
        if share:
            payouts.append((account, share))
    return Distribution(payouts, amount - sum(share for _, share in payouts))


# ---------------------------------------------------------------- concave weights

_Q = 96  # fractional bits of the internal fixed point used by `concave_weight`
_ONE = 1 << _Q


def _ln2_fixed() -> int:
    """ln 2 · 2^Q, from ln 2 = Σ_{k≥1} 1 / (k · 2^k), with 32 guard bits (floor)."""
    guard = _Q + 32
    return sum((1 << guard) // (k << k) for k in range(1, guard + 1)) >> 32


_LN2 = _ln2_fixed()


def _log2_fixed(x: int) -> int:
    """⌊log2(x) · 2^Q⌋ up to a few units in the last place, for x ≥ 1 (bit-by-bit squaring)."""
    n = x.bit_length() - 1
    m = x >> (n - _Q) if n >= _Q else x << (_Q - n)  # x / 2^n in Q, in [1, 2)
    result = n << _Q
    two = 2 << _Q
    bit = _ONE >> 1
    while bit:
        m = (m * m) >> _Q
        if m >= two:
            m >>= 1
            result |= bit
        bit >>= 1
    return result


def _exp2_fixed(y: int) -> int:
    """2^(y / 2^Q) · 2^Q (rounded down, each step monotone in y) for y ≥ 0."""
    whole, frac = y >> _Q, y & (_ONE - 1)
    x = (frac * _LN2) >> _Q  # frac · ln 2 in Q, < 0.7
    term, total, k = _ONE, _ONE, 1
    while term:
        term = ((term * x) >> _Q) // k
        total += term
        k += 1
    return total << whole


def _pow_fixed(stake: int, alpha_ppb: int) -> int:
    """stake^α · 2^Q with α = alpha_ppb / PPB, for stake ≥ 1 (monotone non-decreasing in stake)."""
    if alpha_ppb == PPB:
        return stake << _Q
    return _exp2_fixed(_log2_fixed(stake) * alpha_ppb // PPB)


def isqrt_weight(stake: int) -> int:
    """⌊√stake⌋ exactly: the square-root weight (concavity ½) in plain integer arithmetic."""
    return math.isqrt(_check_int("stake", stake))


def concave_weight(stake: int, alpha_ppb: int) -> int:
    """stake^α rounded to the nearest integer, α = alpha_ppb / PPB with 0 < α ≤ 1.

    Diminishing returns for selection (FLock-style): doubling stake multiplies the weight by
    only 2^α, so a large staker cannot crowd out everyone else. (Splitting stake over accounts
    raises Σ s_i^α; selection also weighs history and bonded minimums to counter that.) Computed as
    2^(α · log2 stake) in 96-bit fixed point: log2 bit by bit by repeated squaring, 2^f by its
    exponential series with ln 2 from Σ 1/(k·2^k). Relative error below 2^-88, so the result
    is the exactly rounded value for every stake below 2^64 except within 2^-24 of a half-unit
    boundary; perfect powers come out exactly (e.g. concave_weight(n², ½) = n). α = 1 returns the
    stake itself; stake 0 gives 0. Monotone non-decreasing in the stake.
    """
    _check_int("stake", stake)
    _check_ppb("alpha_ppb", alpha_ppb, 1, PPB)
    if stake == 0:
        return 0
    return (_pow_fixed(stake, alpha_ppb) + (_ONE >> 1)) >> _Q


# ---------------------------------------------------------------- quantile and aggregation


def stake_weighted_quantile(points: list[tuple[int, int]], kappa_ppb: int = PPB // 2) -> int:
    """The stake-weighted κ-quantile of (value, stake) points; κ = ½ is the weighted median.

    The smallest value v among points with positive stake such that
    PPB · Σ{stake : value ≤ v} ≥ κ_ppb · Σ stake. Zero-stake points never decide the result.
    No points, or zero total stake, gives 0. With honest points holding more than κ of the stake
    the result lies between the smallest and largest honest value, whatever the others submit.
    """
    _check_ppb("kappa_ppb", kappa_ppb)
    for value, stake in points:
        _check_int("value", value, lo=-(2**255))
        _check_int("stake", stake)
    return _quantile(points, kappa_ppb)


def _quantile(points: list[tuple[int, int]], kappa_ppb: int) -> int:
    """`stake_weighted_quantile` without the argument checks (for callers that checked already)."""
    positive = sorted((value, stake) for value, stake in points if stake > 0)
    total = sum(stake for _, stake in positive)
    if total == 0:
        return 0
    threshold = kappa_ppb * total
    cumulative = 0
    for value, stake in positive:
        cumulative += stake
        if cumulative * PPB >= threshold:
            return value
    raise AssertionError("unreachable: the cumulative stake reaches the total")


def capped_weights(stakes: list[int], max_share_ppb: int) -> list[int]:
    """Voting weights: the stakes with the largest cut down so that none exceeds max_share of the sum.

    Water-filling: w_i = min(s_i, C) with the largest C such that every capped weight is at
    most max_share · Σ w (C = ⌊share · S_rest / (PPB − k · share)⌋ with k accounts capped and
    S_rest the sum of the others). If k · share ≥ 1 for the k that would need capping (too few
    voters for the cap), every positive stake gets the smallest positive stake: one account, one
    vote. Parallel to `stakes`; zeros stay zero; max_share = PPB returns the stakes unchanged.
    """
    _check_ppb("max_share_ppb", max_share_ppb, 1, PPB)
    for stake in stakes:
        _check_int("stake", stake)
    if max_share_ppb == PPB or not stakes:
        return list(stakes)
    ordered = sorted((stake for stake in stakes if stake > 0), reverse=True)
    total = sum(ordered)
    if total == 0 or ordered[0] * PPB <= max_share_ppb * total:
        return list(stakes)
    rest = total
    for k in range(1, len(ordered) + 1):
        rest -= ordered[k - 1]
        if k * max_share_ppb >= PPB:
            break
        cap = max_share_ppb * rest // (PPB - k * max_share_ppb)
        if k == len(ordered) or ordered[k] <= cap:
            if cap >= 1:
                return [min(stake, cap) for stake in stakes]
            break
    floor = ordered[-1]
    return [floor if stake > 0 else 0 for stake in stakes]


def order_agreement_ppb(consensus: list[int], row: list[int]) -> int:
    """How well one validator's scores order the models as the consensus does, in PPB.

    Over every pair of models (i, j) with c_i ≠ c_j, weighted by the consensus gap |c_i − c_j|:
    +1 when the validator ordered the pair the same way strictly, −1 when the opposite way, 0
    when it scored them equal; the weighted mean τ (a gap-weighted Kendall τ) is clipped at 0:
    max(0, ⌊PPB · Σ w·sign / Σ w⌋). A validator that scores every model alike, or guesses an
    order, earns ~0; pairs the consensus cannot tell apart weigh nothing, so an honest validator's
    noise on near-equal models costs little. With fewer than two distinct consensus values
    there is nothing to order: PPB.
    """
    if len(consensus) != len(row):
        raise IncentiveError(f"{len(row)} scores for {len(consensus)} consensus values")
    agree = total = 0
    for i in range(len(consensus)):
        for j in range(i + 1, len(consensus)):
            gap = consensus[i] - consensus[j]
            if gap == 0:
                continue
            weight = abs(gap)
            total += weight
            said = row[i] - row[j]
            if said != 0:
                agree += weight if (said > 0) == (gap > 0) else -weight
    if total == 0:
        return PPB
    return max(0, PPB * agree // total)


def _score_rows(
    validator_stakes: list[tuple[bytes, int]],
    scores: list[tuple[bytes, list[tuple[bytes, int]]]],
    trainer_list: list[bytes],
) -> tuple[list[bytes], list[list[int]], list[int]]:
    """Checked inputs of `aggregate_scores`: (validators sorted, rows[v][t] in trainer order, stakes)."""
    stake_of: dict[bytes, int] = {}
    for validator, stake in validator_stakes:
        _check_account("validator", validator)
        if validator in stake_of:
            raise IncentiveError(f"validator {validator.hex()} has two stake entries")
        stake_of[validator] = _check_int(f"stake of validator {validator.hex()[:16]}", stake)
    index = {trainer: i for i, trainer in enumerate(trainer_list)}
    validators: list[bytes] = []
    rows: list[list[int]] = []
    for validator, revealed in sorted(scores, key=lambda entry: entry[0]):
        _check_account("validator", validator)
        if validator not in stake_of:
            raise IncentiveError(f"validator {validator.hex()} revealed scores but has no stake entry")
        if validators and validators[-1] == validator:
            raise IncentiveError(f"validator {validator.hex()} revealed scores twice")
        row = [0] * len(trainer_list)
        seen: set[bytes] = set()
        for trainer, score in revealed:
            if trainer in seen:
                raise IncentiveError(f"validator {validator.hex()[:16]} scored trainer {trainer!r:.80} twice")
            seen.add(trainer)
            if type(score) is not int or score < 0:
                raise IncentiveError(
                    f"validator {validator.hex()[:16]} gave score {score!r:.40}; scores are integers ≥ 0"
                )
            position = index.get(trainer)
            if position is not None:
                row[position] = score
        validators.append(validator)
        rows.append(row)
    return validators, rows, [stake_of[v] for v in validators]


def closeness_ppb(row: list[int], consensus: list[int]) -> int:
    """PPB − ⌊PPB · Σ_t |s_t − c_t| / max(Σ_t max(s_t, c_t), 1)⌋: 1 − normalised distance, in PPB."""
    distance = sum(abs(score - agreed) for score, agreed in zip(row, consensus))
    scale = sum(max(score, agreed) for score, agreed in zip(row, consensus))
    return PPB - PPB * distance // max(scale, 1)


def _consensus(rows: list[list[int]], votes: list[int], kappa_ppb: int, n_trainers: int) -> list[int]:
    return [_quantile([(row[t], vote) for row, vote in zip(rows, votes)], kappa_ppb) for t in range(n_trainers)]


def aggregate_scores(
    validator_stakes: list[tuple[bytes, int]],
    scores: list[tuple[bytes, list[tuple[bytes, int]]]],
    trainers: list[bytes],
    kappa_ppb: int = PPB // 2,
    *,
    max_share_ppb: int = PPB,
    refine: bool = False,
) -> Aggregation:
    """Aggregate the revealed scores of one task into consensus, clipped scores and agreement.

    Participants are the validators that appear in `scores` (those that revealed); each must
    have an entry in `validator_stakes` (entries without scores are ignored). A participant's
    score s_{v,t} for trainer t is what it revealed, or 0 if it did not score t; scores for
    accounts outside `trainers` are ignored. Scores are non-negative integers.

    - consensus c_t = stake_weighted_quantile([(s_{v,t}, vote_v) for every participant v], κ)
    - clipped s'_{v,t} = min(s_{v,t}, c_t)  (Yuma-style: overscoring cannot lift a trainer)
    - agreement_ppb_v = `closeness_ppb(s_v, c)` = PPB − ⌊PPB · Σ_t |s_{v,t} − c_t| /
      max(Σ_t max(s_{v,t}, c_t), 1)⌋, on the raw (unclipped) scores so that overscoring as well
      as underscoring costs agreement.

    Votes: the stakes reduced by `capped_weights(stakes, max_share_ppb)` (the runtime passes
    `max_validator_share_ppb`; the default PPB changes nothing), so that no single validator
    carries more than that share of the task's vote. `refine` (the runtime sets it): a second
    pass recomputes the consensus with votes reduced by closeness to the first pass, relative to
    the typical closeness m (the vote-weighted median of closeness): trusted_v = stake_v if
    closeness_v ≥ m, else ⌊stake_v · closeness_v / m⌋, then capped again. Nobody's vote grows;
    honest validators sit within their noise of a first-pass consensus that lies inside the
    honest range, so they keep (nearly) all of theirs, while a coalition that scored far from it
    (to push a model down or its friend up) loses its vote in proportion. Agreement and pay
    still use the full stakes.

    Cost O(V·T·log V) per pass: one sort of V scores per trainer.
    """
    _check_ppb("kappa_ppb", kappa_ppb)
    trainer_list = sorted(_check_account("trainer", t) for t in trainers)
    _no_duplicates("trainer", trainer_list)
    validators, rows, stakes = _score_rows(validator_stakes, scores, trainer_list)
    consensus = _consensus(rows, capped_weights(stakes, max_share_ppb), kappa_ppb, len(trainer_list))
    if refine:
        close = [closeness_ppb(row, consensus) for row in rows]
        typical = _quantile(list(zip(close, capped_weights(stakes, max_share_ppb))), PPB // 2)
        trusted = [stake if 2 * c >= typical else stake * c // max(typical, 1) for stake, c in zip(stakes, close)]
        consensus = _consensus(rows, capped_weights(trusted, max_share_ppb), kappa_ppb, len(trainer_list))
    clipped = [(v, [(t, min(score, agreed)) for t, score, agreed in zip(trainer_list, row, consensus)])
               for v, row in zip(validators, rows)]
    agreement = [(v, closeness_ppb(row, consensus)) for v, row in zip(validators, rows)]
    raw = [(validator, list(zip(trainer_list, row))) for validator, row in zip(validators, rows)]
    return Aggregation(list(zip(trainer_list, consensus)), clipped, agreement, raw)


def rank_trainers(consensus: list[tuple[bytes, int]], submission_order: list[bytes]) -> list[bytes]:
    """Trainers ordered best first: highest consensus score, ties by earlier submission.

    Index 0 is rank 1, the top model. Every trainer in `consensus` must appear in
    `submission_order` (its position there is its submission time); extra entries are ignored.
    """
    position: dict[bytes, int] = {}
    for i, trainer in enumerate(submission_order):
        if trainer in position:
            raise IncentiveError(f"trainer {trainer!r:.80} appears twice in the submission order")
        position[trainer] = i
    keys = []
    for trainer, score in consensus:
        _check_int("consensus score", score)
        if trainer not in position:
            raise IncentiveError(f"trainer {trainer!r:.80} has a consensus score but no submission")
        keys.append((-score, position[trainer], trainer))
    _no_duplicates("trainer", [trainer for _, _, trainer in keys])
    return [trainer for _, _, trainer in sorted(keys)]


# ---------------------------------------------------------------- reward splits


def validator_trainer_split(
    reward: int, trainer_stake: int, validator_stake: int, gamma_ppb: int
) -> tuple[int, int]:
    """(validators_part, trainers_part) of a task reward R, summing to R exactly.

    validators_part = ⌊R · (γ·(S_t + S_v) + (1 − 2γ)·S_v) / (S_t + S_v)⌋ with γ = gamma_ppb / PPB,
    i.e. R·(γ + (1 − 2γ)·S_v/(S_t + S_v)) rounded down; each side gets at least γ of R. With no
    stake at all the ratio is taken as ½ (validators get ⌊R/2⌋). 0 ≤ γ ≤ ½.
    """
    _check_int("reward", reward)
    _check_int("trainer_stake", trainer_stake)
    _check_int("validator_stake", validator_stake)
    _check_ppb("gamma_ppb", gamma_ppb, 0, PPB // 2)
    total = trainer_stake + validator_stake
    if total == 0:
        validators_part = reward // 2
    else:
        numerator = gamma_ppb * total + (PPB - 2 * gamma_ppb) * validator_stake
        validators_part = reward * numerator // (PPB * total)
    return validators_part, reward - validators_part


_GEOMETRIC_BITS = 128  # fixed point of the rank weights: g_1 = 2^128


def rank_weights(count: int, rho_ppb: int) -> list[int]:
    """Geometric rank weights g_1..g_count: g_1 = 2^128, g_{r+1} = ⌊g_r · ρ_ppb / PPB⌋.

    g_r ≈ 2^128 · ρ^(r−1), rounded down at each step (so it reaches 0 after ~128/log2(1/ρ)
    ranks, where the exact share would round to nothing anyway). ρ = 0 is winner-takes-all.
    """
    _check_int("count", count)
    _check_ppb("rho_ppb", rho_ppb)
    weights = []
    weight = 1 << _GEOMETRIC_BITS
    for _ in range(count):
        weights.append(weight)
        weight = weight * rho_ppb // PPB
    return weights


def trainer_rewards(
    pool: int, ranked: list[tuple[bytes, int]], rho_ppb: int, *, scored: list[bool] | None = None
) -> Distribution:
    """Split the trainers' pool by rank and stake: weight_r = g_r · effective_stake_r.

    `ranked` is [(trainer, effective stake)] in rank order (rank 1 first, as `rank_trainers`
    gives). g_r is `rank_weights` (≈ ρ^(r−1)); the share ∝ g_r · stake, which is the geometric
    rank weight times the relative stake. `scored`, parallel to `ranked`, marks trainers whose
    model was scored: pass `[consensus > 0 ...]`; an unscored trainer (model not loadable,
    consensus 0) gets nothing but still occupies its rank. Payouts via `pro_rata`.
    """
    _check_int("pool", pool)
    if scored is not None and len(scored) != len(ranked):
        raise IncentiveError(f"scored has {len(scored)} entries for {len(ranked)} ranked trainers")
    accounts = [_check_account("trainer", trainer) for trainer, _ in ranked]
    _no_duplicates("trainer", accounts)
    weights = []
    for r, ((trainer, stake), g) in enumerate(zip(ranked, rank_weights(len(ranked), rho_ppb))):
        _check_int(f"stake of trainer {trainer.hex()[:16]}", stake)
        counted = True if scored is None else bool(scored[r])
        weights.append((trainer, g * stake if counted else 0))
    return _apportion(pool, weights)


def validator_rewards(pool: int, validators: list[tuple[bytes, int, int]]) -> Distribution:
    """Split the validators' pool ∝ effective stake × agreement_ppb (rounded down, via `pro_rata`)."""
    _check_int("pool", pool)
    accounts = [_check_account("validator", validator) for validator, _, _ in validators]
    _no_duplicates("validator", accounts)
    weights = []
    for validator, stake, agreement in validators:
        _check_int(f"stake of validator {validator.hex()[:16]}", stake)
        _check_ppb(f"agreement of validator {validator.hex()[:16]}", agreement)
        weights.append((validator, stake * agreement))
    return _apportion(pool, weights)


def effective_stake(own: int, delegated: int, epsilon_ppb: int) -> int:
    """own + ⌊ε · delegated⌋: delegated stake counts at the discount ε = epsilon_ppb / PPB."""
    _check_int("own", own)
    _check_int("delegated", delegated)
    _check_ppb("epsilon_ppb", epsilon_ppb)
    return own + delegated * epsilon_ppb // PPB


def delegator_split(
    reward: int,
    operator: bytes,
    delegations: list[tuple[bytes, int]],
    sigma_ppb: int,
    *,
    own_stake: int = 0,
    epsilon_ppb: int = PPB,
) -> Distribution:
    """Split an operator's reward with its delegators; payouts include the operator.

    The reward is first attributed to stake: the delegated part is
    R_d = ⌊R · ε·D / (own·PPB + ε·D)⌋ with D = Σ delegated, ε = epsilon_ppb (in PPB), own =
    `own_stake` — the share of the reward that the delegated stake earned through effective
    stake. Of R_d the operator keeps the commission σ and the delegators share
    P = ⌊R_d · (PPB − σ) / PPB⌋ pro rata to their delegated amounts (rounded down, dust to the
    remainder). The operator gets R − P. With own_stake = 0 (the default) R_d = R whenever
    anything is delegated: the operator keeps σ of the whole reward and delegators share 1 − σ.
    Runtime callers should pass own_stake and epsilon_ppb so that a small delegation earns a
    small part. No delegation (or zero effective stake) → the operator keeps everything.
    An operator that also delegated to itself receives both parts in one payout.
    """
    _check_int("reward", reward)
    _check_account("operator", operator)
    _check_ppb("sigma_ppb", sigma_ppb)
    _check_int("own_stake", own_stake)
    _check_ppb("epsilon_ppb", epsilon_ppb)
    accounts = [_check_account("delegator", delegator) for delegator, _ in delegations]
    _no_duplicates("delegator", accounts)
    for delegator, amount in delegations:
        _check_int(f"delegation of {delegator.hex()[:16]}", amount)
    delegated = sum(amount for _, amount in delegations)
    weighted = epsilon_ppb * delegated
    denominator = own_stake * PPB + weighted
    delegated_part = reward * weighted // denominator if denominator else 0
    pool = delegated_part * (PPB - sigma_ppb) // PPB
    shared = _apportion(pool, delegations)
    payouts = dict(shared.payouts)
    payouts[operator] = payouts.get(operator, 0) + reward - pool
    return Distribution(sorted((a, v) for a, v in payouts.items() if v), shared.remainder)


def emission_split(
    emission: int, task_stakes: list[tuple[int, int]], beta_ppb: int
) -> tuple[list[tuple[int, int]], int]:
    """Split an epoch's emission across active tasks ∝ S_i^β → ([(task_id, amount)], remainder).

    Weight w_i = S_i^β in 96-bit fixed point (the unrounded value behind `concave_weight`);
    β = 0 weighs every task with positive stake equally; a task with S_i = 0 gets nothing.
    amount_i = ⌊E · w_i / Σw⌋, sorted by task id, zero amounts omitted; remainder = E − Σ.
    """
    _check_int("emission", emission)
    _check_ppb("beta_ppb", beta_ppb)
    ids = [_check_int("task id", task_id) for task_id, _ in task_stakes]
    _no_duplicates("task id", ids)
    weights = []
    for task_id, stake in task_stakes:
        _check_int(f"stake of task {task_id}", stake)
        if stake == 0:
            weight = 0
        elif beta_ppb == 0:
            weight = 1
        else:
            weight = _pow_fixed(stake, beta_ppb)
        weights.append((task_id, weight))
    total = sum(weight for _, weight in weights)
    if total == 0:
        return [], emission
    amounts = [(task_id, emission * weight // total) for task_id, weight in sorted(weights)]
    amounts = [(task_id, amount) for task_id, amount in amounts if amount]
    return amounts, emission - sum(amount for _, amount in amounts)


def slash_amount(stake: int, fraction_ppb: int) -> int:
    """⌊stake · fraction_ppb / PPB⌋: the part of a stake a slash removes (rounded in the staker's favour)."""
    _check_int("stake", stake)
    _check_ppb("fraction_ppb", fraction_ppb)
    return stake * fraction_ppb // PPB


def usage_split(revenue: int, shares_ppb: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], int]:
    """Split redeemed usage revenue among named parties by their genesis shares.

    Party p gets ⌊revenue · share_p / PPB⌋; Σ shares ≤ PPB; the result is sorted by party name
    (zero amounts omitted) and the remainder (unassigned share plus rounding) goes to the treasury.
    """
    _check_int("revenue", revenue)
    names = []
    for name, share in shares_ppb:
        if type(name) is not str or not name:
            raise IncentiveError(f"party name must be a non-empty str, got {name!r:.40}")
        _check_ppb(f"share of {name}", share)
        names.append(name)
    _no_duplicates("party", names)
    total = sum(share for _, share in shares_ppb)
    if total > PPB:
        raise IncentiveError(f"usage shares sum to {total} ppb, more than {PPB}")
    amounts = [(name, revenue * share // PPB) for name, share in sorted(shares_ppb)]
    amounts = [(name, amount) for name, amount in amounts if amount]
    return amounts, revenue - sum(amount for _, amount in amounts)


RECOVERABLE_USAGE_PARTIES = ("host", "trainer", "validators")


def usage_emission_budget(emission: int, revenue: int, shares_ppb: list[tuple[str, int]]) -> int:
    """The usage emission a period may mint: min(E, ⌊revenue · u / PPB⌋).

    u = PPB − Σ shares of "host", "trainer" and "validators": the share of revenue that no party to
    a query can get back (the treasury's share plus any unassigned share). A host that pays itself
    through a second account and is also the model's trainer and every one of its task's validators
    recovers at most (1 − u) of what it pays; with each (model, host) entry's emission at most u ×
    its revenue, and that emission split like revenue, a wash trade of W returns at most
    (1 − u)·W + (1 − u)·u·W, a loss of u²·W. The caller splits the budget ∝ revenue (`pro_rata`),
    so every entry's part is at most u × its revenue, and mints nothing of E − budget.
    """
    _check_int("emission", emission)
    _check_int("revenue", revenue)
    usage_split(0, shares_ppb)  # checks the shares
    recoverable = sum(share for name, share in shares_ppb if name in RECOVERABLE_USAGE_PARTIES)
    return min(emission, revenue * (PPB - recoverable) // PPB)
