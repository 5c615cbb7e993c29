"""Rewards: epoch emission to active tasks, settling a finished task, and validator penalties.

All arithmetic is done by `runtime.incentives` (pure integer functions, documented in
docs/incentives.md); this module moves the funds. Every unit is accounted for:

- emission: at the first block of an epoch, `emission_per_epoch` is minted into the tasks pool
  account, split across active tasks ∝ S_i^β (S_i = the summed effective stake of the task's
  selected participants); the rounding remainder is minted to the treasury. No active task: no
  emission.
- settlement: a task's reward R (its pool plus the emission it accrued) leaves the pool account
  and is paid in full: validators' part R·(γ + (1−2γ)·ΣS_v/(ΣS_t+ΣS_v)), trainers' part the rest;
  trainers by geometric rank weight (ρ) × effective stake, unscored models (consensus 0) get
  nothing; validators by effective stake × agreement; each operator's payout is then split with
  its delegators (they share 1 − σ of the part their delegated stake earned). Every rounding
  remainder goes to the treasury.
- penalties: a selected validator that did not commit, or committed but did not reveal, loses
  `slash_no_commit_ppb` / `slash_no_reveal_ppb` of the validator bond locked at its selection
  (staking.slash), and each of its delegators the same fraction of its delegation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runtime import incentives
from runtime.module import Context, Module, StorageValue
from runtime.modules import balances, history, staking, treasury

PPB = incentives.PPB
PARAM_NAMES = (
    "emission_per_epoch", "beta_ppb", "gamma_ppb", "rho_ppb", "epsilon_ppb", "sigma_ppb",
    "kappa_ppb", "alpha_ppb", "slash_no_commit_ppb", "slash_no_reveal_ppb", "max_validator_share_ppb",
)
DEFAULTS = {
    "emission_per_epoch": 0, "beta_ppb": PPB, "gamma_ppb": 100_000_000,
    "rho_ppb": 500_000_000, "epsilon_ppb": 500_000_000, "sigma_ppb": 100_000_000,
    "kappa_ppb": 500_000_000, "alpha_ppb": PPB, "slash_no_commit_ppb": 10_000_000,
    "slash_no_reveal_ppb": 20_000_000, "max_validator_share_ppb": PPB // 3,
}

Params = StorageValue("rewards", "Params", [DEFAULTS[n] for n in PARAM_NAMES])


def params(ctx: Context) -> dict[str, int]:
    """The reward parameters by name (genesis `modules.rewards`)."""
    return dict(zip(PARAM_NAMES, Params.get(ctx.state)))


def effective_stake(ctx: Context, who: bytes, role: str) -> int:
    """own bond for `role` + ε · stake delegated to `who`."""
    return incentives.effective_stake(
        staking.bonded(ctx, who, role), staking.delegated_to(ctx, who), params(ctx)["epsilon_ppb"])


# ---------------------------------------------------------------- emission


def emit_epoch(ctx: Context, pool_account: bytes, task_stakes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Mint this epoch's emission into `pool_account` for the active tasks; returns [(task_id, amount)]."""
    p = params(ctx)
    emission = p["emission_per_epoch"]
    if emission == 0 or not task_stakes:
        return []
    amounts, remainder = incentives.emission_split(emission, task_stakes, p["beta_ppb"])
    paid = sum(amount for _, amount in amounts)
    if paid:
        balances.mint(ctx, pool_account, paid)
    if remainder:
        balances.mint(ctx, treasury.TREASURY_ACCOUNT, remainder)
        ctx.deposit_event("treasury", "Deposit", remainder, "emission remainder")
    for task_id, amount in amounts:
        ctx.deposit_event("rewards", "EpochEmission", task_id, amount)
    return amounts


# ---------------------------------------------------------------- settlement


@dataclass(frozen=True)
class TrainerResult:
    trainer: bytes
    rank: int
    consensus: int
    reward: int


@dataclass(frozen=True)
class ValidatorResult:
    validator: bytes
    agreement_ppb: int
    reward: int


@dataclass(frozen=True)
class Settlement:
    trainers: list[TrainerResult]      # rank order
    validators: list[ValidatorResult]  # sorted by account
    to_treasury: int


def _pay(ctx: Context, pool_account: bytes, task_id: int, operator: bytes, role: str, amount: int) -> int:
    """Pay an operator's reward, sharing it with its delegators; returns the dust left over."""
    if amount == 0:
        return 0
    p = params(ctx)
    split = incentives.delegator_split(
        amount, operator, staking.delegators_of(ctx, operator), p["sigma_ppb"],
        own_stake=staking.bonded(ctx, operator, role), epsilon_ppb=p["epsilon_ppb"],
    )
    for who, paid in split.payouts:
        balances.transfer(ctx, pool_account, who, paid)
        ctx.deposit_event("rewards", "RewardPaid", task_id, who, role if who == operator else "delegator", paid)
        if who == operator:
            history.add(ctx, who, role, rewards=paid)
    return split.remainder


def settle_task(
    ctx: Context,
    task_id: int,
    reward: int,
    pool_account: bytes,
    trainers: list[tuple[bytes, int]],
    validators: list[tuple[bytes, int]],
    reveals: list[tuple[bytes, list[tuple[bytes, int]]]],
) -> Settlement:
    """Aggregate and pay a task whose `reward` sits in `pool_account`.

    `trainers`: [(trainer, effective stake)] of those that submitted, in submission order;
    `validators`: [(validator, effective stake)] of those that revealed; `reveals`: their scores.
    """
    p = params(ctx)
    aggregation = incentives.aggregate_scores(validators, reveals, [t for t, _ in trainers], p["kappa_ppb"],
                                              max_share_ppb=max(1, p["max_validator_share_ppb"]), refine=True)
    ranked = incentives.rank_trainers(aggregation.consensus, [t for t, _ in trainers])
    consensus = dict(aggregation.consensus)
    stake_of = dict(trainers)
    validators_part, trainers_part = incentives.validator_trainer_split(
        reward, sum(stake_of.values()), sum(s for _, s in validators), p["gamma_ppb"])
    trainer_dist = incentives.trainer_rewards(
        trainers_part, [(t, stake_of[t]) for t in ranked], p["rho_ppb"],
        scored=[consensus[t] > 0 for t in ranked])
    # agreement = closeness to consensus × gap-weighted order agreement: guessing earns little
    consensus_row = [c for _, c in aggregation.consensus]
    agreement = {v: a * incentives.order_agreement_ppb(consensus_row, [s for _, s in row]) // PPB
                 for (v, a), (_, row) in zip(aggregation.agreement_ppb, aggregation.raw)}
    validator_stake = dict(validators)
    validator_dist = incentives.validator_rewards(
        validators_part, [(v, validator_stake[v], agreement[v]) for v in sorted(agreement)])
    dust = trainer_dist.remainder + validator_dist.remainder
    trainer_paid = dict(trainer_dist.payouts)
    validator_paid = dict(validator_dist.payouts)
    for who, amount in trainer_dist.payouts:
        dust += _pay(ctx, pool_account, task_id, who, "trainer", amount)
    for who, amount in validator_dist.payouts:
        dust += _pay(ctx, pool_account, task_id, who, "validator", amount)
    if dust:
        balances.withdraw(ctx, pool_account, dust)
        treasury.credit(ctx, dust, f"task {task_id} remainder")
    return Settlement(
        [TrainerResult(t, rank, consensus[t], trainer_paid.get(t, 0)) for rank, t in enumerate(ranked, 1)],
        [ValidatorResult(v, agreement[v], validator_paid.get(v, 0)) for v in sorted(agreement)],
        dust,
    )


def penalize_validator(ctx: Context, task_id: int, validator: bytes, committed: bool) -> int:
    """Slash a selected validator that did not commit (or did not reveal); returns the amount.

    The fraction is taken of the bond the task locked at selection (which `staking.unbond` could
    not release meanwhile), not of whatever is bonded now, and every delegation to the validator
    loses the same fraction: routing stake through a second account's delegation does not
    shrink the penalty.
    """
    p = params(ctx)
    fraction = p["slash_no_reveal_ppb"] if committed else p["slash_no_commit_ppb"]
    at_selection = staking.locked_for(ctx, validator, "validator", task_id)
    amount = incentives.slash_amount(at_selection, fraction)
    reason = f"task {task_id}: " + ("no reveal" if committed else "no commit")
    taken = staking.slash(ctx, validator, "validator", amount, reason)
    return taken + staking.slash_delegators(ctx, validator, fraction, reason)


class Rewards(Module):
    """Reward parameters and events; the tasks module drives emission and settlement."""

    name = "rewards"
    storage = (Params,)
    events: ClassVar[dict[str, list[str]]] = {
        "EpochEmission": ["task_id", "amount"],
        "RewardPaid": ["task_id", "who", "as", "amount"],
    }

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        values = []
        for name in PARAM_NAMES:
            value = int(config.get(name, DEFAULTS[name]))
            if name.endswith("_ppb") and not 0 <= value <= PPB:
                raise ValueError(f"rewards.{name} = {value} must lie in [0, {PPB}]")
            values.append(value)
        Params.put(ctx.state, values)
