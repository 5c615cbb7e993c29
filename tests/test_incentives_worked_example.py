"""The worked example of docs/incentives.md, number by number, from the functions themselves.

The inputs and expected outputs are hard-coded here exactly as the document states them; if a
formula changes, this test and the document must change together.
"""
from __future__ import annotations

from runtime.incentives import (
    aggregate_scores,
    delegator_split,
    effective_stake,
    emission_split,
    rank_trainers,
    slash_amount,
    trainer_rewards,
    usage_split,
    validator_rewards,
    validator_trainer_split,
)


def acct(name: str) -> bytes:
    return name.encode().ljust(32, b"\0")


T1, T2, T3 = acct("T1"), acct("T2"), acct("T3")
V1, V2, V3 = acct("V1"), acct("V2"), acct("V3")
D1, D2, D3, D4 = acct("D1"), acct("D2"), acct("D3"), acct("D4")

REWARD = 1_000_000
GAMMA, RHO, EPSILON, SIGMA = 100_000_000, 500_000_000, 500_000_000, 100_000_000
# operator -> (own stake, delegations)
STAKES = {
    T1: (40_000, [(D1, 15_000), (D2, 5_000)]),
    T2: (30_000, []),
    T3: (10_000, [(D3, 40_000)]),
    V1: (4_000, [(D4, 2_000)]),
    V2: (3_000, []),
    V3: (2_000, []),
}
SUBMISSION_ORDER = [T2, T1, T3]
SCORES = [
    (V1, [(T1, 800), (T2, 600), (T3, 300)]),
    (V2, [(T1, 780), (T2, 640), (T3, 320)]),
    (V3, [(T1, 100), (T2, 100), (T3, 1_000)]),  # dishonest: lifts T3, sinks the others
]


def eff(who: bytes) -> int:
    own, delegations = STAKES[who]
    return effective_stake(own, sum(amount for _, amount in delegations), EPSILON)


def test_worked_example():
    assert [eff(a) for a in (T1, T2, T3, V1, V2, V3)] == [50_000, 30_000, 30_000, 5_000, 3_000, 2_000]
    validator_stakes = [(v, eff(v)) for v in (V1, V2, V3)]

    aggregation = aggregate_scores(validator_stakes, SCORES, [T1, T2, T3])
    assert aggregation.consensus == [(T1, 780), (T2, 600), (T3, 300)]
    assert aggregation.clipped == [
        (V1, [(T1, 780), (T2, 600), (T3, 300)]),
        (V2, [(T1, 780), (T2, 600), (T3, 300)]),
        (V3, [(T1, 100), (T2, 100), (T3, 300)]),
    ]
    assert aggregation.agreement_ppb == [(V1, 988_235_295), (V2, 965_517_242), (V3, 210_084_034)]
    assert 1_000_000_000 - 20 * 1_000_000_000 // 1_700 == 988_235_295  # the document's arithmetic

    ranked = rank_trainers(aggregation.consensus, SUBMISSION_ORDER)
    assert ranked == [T1, T2, T3]

    validators_part, trainers_part = validator_trainer_split(REWARD, 110_000, 10_000, GAMMA)
    assert (validators_part, trainers_part) == (166_666, 833_334)

    consensus = dict(aggregation.consensus)
    trainers = trainer_rewards(trainers_part, [(t, eff(t)) for t in ranked], RHO,
                               scored=[consensus[t] > 0 for t in ranked])
    assert trainers.payouts == [(T1, 574_713), (T2, 172_413), (T3, 86_206)]
    assert trainers.remainder == 2

    agreement = dict(aggregation.agreement_ppb)
    validators = validator_rewards(validators_part, [(v, s, agreement[v]) for v, s in validator_stakes])
    assert validators.payouts == [(V1, 99_725), (V2, 58_460), (V3, 8_480)]
    assert validators.remainder == 1

    expected_delegation = {
        T1: ([(D1, 77_585), (D2, 25_861), (T1, 471_266)], 1),
        T2: ([(T2, 172_413)], 0),
        T3: ([(D3, 51_723), (T3, 34_483)], 0),
        V1: ([(D4, 17_950), (V1, 81_775)], 0),
        V2: ([(V2, 58_460)], 0),
        V3: ([(V3, 8_480)], 0),
    }
    final: dict[bytes, int] = {}
    treasury = trainers.remainder + validators.remainder
    for operator, reward in trainers.payouts + validators.payouts:
        own, delegations = STAKES[operator]
        split = delegator_split(reward, operator, delegations, SIGMA, own_stake=own, epsilon_ppb=EPSILON)
        assert (split.payouts, split.remainder) == expected_delegation[operator]
        for who, amount in split.payouts:
            final[who] = final.get(who, 0) + amount
        treasury += split.remainder

    assert final == {
        T1: 471_266, D1: 77_585, D2: 25_861, T2: 172_413, T3: 34_483, D3: 51_723,
        V1: 81_775, D4: 17_950, V2: 58_460, V3: 8_480,
    }
    assert sum(final.values()) == 999_996
    assert treasury == 4
    assert sum(final.values()) + treasury == REWARD


def test_worked_example_unloadable_model_variant():
    scores = [
        (V1, [(T1, 800), (T2, 600)]),  # could not load T3's model: no score, counts as 0
        (V2, [(T1, 780), (T2, 640), (T3, 0)]),
        (V3, [(T1, 100), (T2, 100), (T3, 1_000)]),
    ]
    aggregation = aggregate_scores([(V1, 5_000), (V2, 3_000), (V3, 2_000)], scores, [T1, T2, T3])
    assert aggregation.consensus == [(T1, 780), (T2, 600), (T3, 0)]
    ranked = rank_trainers(aggregation.consensus, SUBMISSION_ORDER)
    consensus = dict(aggregation.consensus)
    trainers = trainer_rewards(833_334, [(t, eff(t)) for t in ranked], RHO,
                               scored=[consensus[t] > 0 for t in ranked])
    assert trainers.payouts == [(T1, 641_026), (T2, 192_307)]
    assert trainers.remainder == 1


def test_worked_example_other_parts():
    assert emission_split(1_000_000, [(1, 120_000), (2, 30_000)], 500_000_000) == ([(1, 666_666), (2, 333_333)], 1)
    shares = [("host", 500_000_000), ("trainer", 250_000_000), ("validators", 150_000_000),
              ("treasury", 100_000_000)]
    assert usage_split(10_001, shares) == (
        [("host", 5_000), ("trainer", 2_500), ("treasury", 1_000), ("validators", 1_500)], 1
    )
    assert slash_amount(8_000, 20_000_000) == 160
    assert slash_amount(8_000, 10_000_000) == 80
