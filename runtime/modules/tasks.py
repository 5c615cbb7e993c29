"""Tasks: the life of a training task, from creation to the top model. Read top to bottom.

One file because it reads as a task's whole life, phase by phase (STYLE.md).

    create ──(next block)── selection ──► training ──► model_reveal ──► validation ──► reveal ──► finalized
                                 │            │              │                              │
                                 │            └──────────────┴► failed (no model revealed)  └► failed (nothing scored)
                                 └► cancelled (nobody eligible)

1. `create(spec_cid, reward_pool, params)` moves the reward pool from the creator into the tasks
   pool account and opens the task in status "selection". Params are the fixed-order list
   `[kind, n_trainers, n_validators, min_stake, training_blocks, commit_blocks, reveal_blocks]`.
   A creator may hold at most `max_tasks_per_creator` open tasks and demand at most
   `max_min_stake` (so it cannot fill the chain's slots or fence honest participants out).
2. At the next block's `on_initialize` trainers, then validators, are seated
   (runtime.selection.credit_select) from the eligible accounts: bonded for the role with at
   least max(role minimum, min_stake), a live heartbeat (current or previous epoch), not the
   creator and not already chosen for the task. Weight = effective stake × reputation (α = 1).
   Each account's stored seat credit (`SeatCredit`) grows by its share of the seats and pays one
   seat when it sits, so seats follow weight over time and the beacon
   (system.randomness(ctx, encode(["arena/task", task_id, role]))) only jitters the order: a
   block author that withholds a selection block gains no seats. No eligible trainer or no
   eligible validator: the task is cancelled, the pool refunded and no credit spent. Each selected account's bond
   for its role is locked (staking.lock) until the task closes, so the stake recorded at selection
   can be neither unbonded nor dodged when a slash is due.
3. Training window [selected, selected + training_blocks): a selected trainer calls
   `start_training` then `commit_model(commitment)` with commitment = blake2b-256 of
   encode([task_id, trainer, model_cid]) (`model_commitment`; re-committing replaces it); block
   numbers and timestamps are recorded. No model CID is on chain before the window closes, and a
   commitment is bound to its trainer, so nobody can copy (or byte-tweak) a model seen there.
3b. Model reveal window (training_blocks over, or every trainer committed, whichever is first;
   no commitment at all → the task fails) of `model_reveal_blocks` (genesis limit): a committed
   trainer calls `submit_model(model_cid)`, which must match its commitment. A CID belongs to the
   first trainer that revealed it (any task): another trainer's copy is refused with
   `DuplicateModel`. No reveal = no submission.
4. Commit window (model_reveal_blocks over, or every committed trainer revealed, whichever is
   first; no submission at all → the task fails): a selected validator calls `start_validation`
   (the planner has published the sealed held-out set with `publish_validation_share`) and
   `commit_scores(hash)`.
5. Reveal window (commit_blocks over, or every validator committed): `reveal_scores(scores,
   salt)` must hash to the commitment (blake2b-256 of encode([task_id, validator, scores, salt]),
   scores = [[trainer, score]] sorted by trainer, each score in [0, MAX_SCORE]) and score exactly
   the submitted models.
6. Finalization (reveal_blocks over, or every committed validator revealed; or `finalize` by
   anyone at that point): scores are aggregated and the reward (pool + epoch emission) is paid
   (runtime.modules.rewards); validators that did not commit / reveal are slashed; history is
   written; the rank-1 model becomes the task's top model. Afterwards the creator may
   `publish_audit_key` so anyone can re-run validation.

Every phase transition happens in `on_initialize`, so a call is judged by the phase its block
started in; at the first block of each epoch the epoch's emission is minted for active tasks
with at least `min_validators_for_emission` validators, ∝ their stake with every account's
stake counted once across the tasks it sits in (`emission_weights`; docs/incentives.md).
"""
from __future__ import annotations

import re
from dataclasses import astuple, dataclass, replace
from typing import Annotated, Any, ClassVar

from runtime.codec import encode
from runtime.crypto import blake2b_256
from runtime.module import (
    U64,
    ArgCheck,
    Balance,
    Context,
    DispatchError,
    Hash,
    Module,
    Record,
    RecordMap,
    RecordValue,
    StorageMap,
    StorageValue,
    call,
    ensure,
)
from runtime.modules import balances, history, rewards, staking, system, treasury
from runtime.selection import NEW_ACCOUNT_CREDIT, Seating, credit_select, selection_weight

POOL_ACCOUNT = blake2b_256(b"arena/module/tasks")  # holds every open task's pool and emission
MAX_SCORES = 256
MAX_SCORE = 10**9  # the scoring rule's maximum (inv_loss_v1: a perfect model scores 10**9)
ACTIVE = ("selection", "training", "model_reveal", "validation", "reveal")

# ---------------------------------------------------------------- argument types

_CID_V0 = re.compile(r"^Qm[1-9A-HJ-NP-Za-km-z]{44}$")
_CID_V1 = re.compile(r"^b[a-z2-7]{20,120}$")
_KIND = re.compile(r"^[a-z0-9_]{1,64}$")


def _is_cid(v: Any) -> bool:
    return isinstance(v, str) and bool(_CID_V0.match(v) or _CID_V1.match(v))


def _is_params(v: Any) -> bool:
    return (
        isinstance(v, list) and len(v) == 7
        and isinstance(v[0], str) and bool(_KIND.match(v[0]))
        and all(type(x) is int and 0 <= x < 2**64 for x in v[1:])
    )


def _is_scores(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= MAX_SCORES and all(
        isinstance(e, list) and len(e) == 2 and isinstance(e[0], bytes) and len(e[0]) == 32
        and type(e[1]) is int and 0 <= e[1] <= MAX_SCORE for e in v
    )


Cid = Annotated[str, ArgCheck("CID (CIDv0 'Qm…' base58, or CIDv1 base32 'b…')", _is_cid)]
TaskParams = Annotated[list, ArgCheck(
    "params [kind (a-z0-9_), n_trainers, n_validators, min_stake, training_blocks, commit_blocks, "
    "reveal_blocks] (integers ≥ 0)", _is_params)]
Scores = Annotated[list, ArgCheck(
    f"scores [[trainer account (32 bytes), score (0..{MAX_SCORE})], ...] (≤ {MAX_SCORES} entries)", _is_scores)]
Salt = Annotated[bytes, ArgCheck("salt (≤ 64 bytes)", lambda v: isinstance(v, bytes) and len(v) <= 64)]
AuditKey = Annotated[bytes, ArgCheck("key (1..64 bytes)", lambda v: isinstance(v, bytes) and 0 < len(v) <= 64)]

# ---------------------------------------------------------------- the task record


@dataclass
class Task:
    """One task, stored as a fixed-order list of these fields."""

    id: int
    creator: bytes
    spec_cid: str
    kind: str
    n_trainers: int
    n_validators: int
    min_stake: int
    training_blocks: int
    commit_blocks: int
    reveal_blocks: int
    pool: int                 # reward pool paid in by the creator
    emission: int             # epoch emission accrued while active
    status: str
    phase_end: int            # first block at which the current window is over
    trainers: list            # [[account, effective stake at selection]] in draw order
    validators: list          # same for validators
    timeline: list            # [[status, block, timestamp_ms]] one per phase entered
    validation_share: str     # CID of the sealed held-out set ("" until published)
    audit_key: bytes          # the planner's symmetric key (b"" until published)
    top_model: str            # CID of the rank-1 model ("" until finalized with a scored model)

    def to_list(self) -> list:
        return list(astuple(self))

    @classmethod
    def from_list(cls, values: list) -> Task:
        return cls(*values)

    def enter(self, ctx: Context, status: str, window: int) -> None:
        self.status = status
        self.phase_end = ctx.block_number + window
        self.timeline.append([status, ctx.block_number, ctx.timestamp_ms])
        ctx.deposit_event("tasks", "PhaseChanged", self.id, status, ctx.block_number, self.phase_end)


@dataclass(frozen=True)
class TrainerWork(Record):
    """A selected trainer's work on a task (zeros and "" until it happens)."""

    started_block: int
    started_ms: int
    submitted_block: int
    submitted_ms: int
    model_cid: str
    commitment: bytes | None  # blake2b-256(encode([task_id, trainer, model_cid])), None until committed
    committed_block: int      # block of the latest commit_model (0 until then)


@dataclass(frozen=True)
class ValidatorVote(Record):
    """A selected validator's vote on a task: started, committed (hash), revealed (zeros until then)."""

    started_block: int
    started_ms: int
    commitment: bytes | None
    commit_block: int
    reveal_block: int


@dataclass(frozen=True)
class ModelOrigin(Record):
    """Who first submitted a model CID, for which task, in which block (copies are refused)."""

    trainer: bytes
    task_id: int
    block: int


# ---------------------------------------------------------------- storage

@dataclass(frozen=True)
class TaskLimits(Record):
    """The chain's bounds on tasks (genesis `modules.tasks`)."""

    max_trainers: int
    max_validators: int
    max_window_blocks: int
    min_reward_pool: int
    max_active_tasks: int
    max_tasks_per_creator: int     # open tasks per creator
    max_min_stake: int             # the highest min_stake a creator may demand
    min_validators_for_emission: int
    model_reveal_blocks: int       # the model reveal window after training


Limits = RecordValue("tasks", "Limits", TaskLimits(32, 32, 10_000, 1, 64, 4, 0, 1, 3))
Kinds = StorageValue("tasks", "Kinds", [])              # allowed task kinds ([] = any)
NextTaskId = StorageValue("tasks", "NextTaskId", 0)
TaskById = StorageMap("tasks", "Task", None)             # id -> Task.to_list()
Active = StorageValue("tasks", "Active", [])            # ids of tasks not yet closed, ascending
Work = RecordMap("tasks", "Work", TrainerWork)          # [id, trainer] -> TrainerWork
Submissions = StorageMap("tasks", "Submissions", [])    # id -> trainers in submission order
Votes = RecordMap("tasks", "Votes", ValidatorVote)      # [id, validator] -> ValidatorVote
Reveals = StorageMap("tasks", "Reveals", [])            # id -> [[validator, scores]] in reveal order
# id -> [[trainer, rank, consensus, reward, model_cid]] rank order
Leaderboard = StorageMap("tasks", "Leaderboard", [])
ValidatorResults = StorageMap("tasks", "ValidatorResults", [])  # id -> [[validator, agreement_ppb, reward]]
ModelOwner = RecordMap("tasks", "ModelOwner", ModelOrigin)  # model_cid -> its first submission
SeatCredit = StorageMap("tasks", "SeatCredit", None)   # [role, account] -> selection credit (PPB = one seat)

# ---------------------------------------------------------------- errors


class _TaskError(DispatchError):
    module = "tasks"


class UnknownTask(_TaskError):
    """No task has this id."""


class InvalidParams(_TaskError):
    """The task parameters are out of bounds."""


class UnknownKind(_TaskError):
    """This chain does not know the task kind."""


class PoolTooSmall(_TaskError):
    """The reward pool is below the minimum."""


class TooManyActiveTasks(_TaskError):
    """The chain, or this creator, has reached its limit of open tasks."""


class DuplicateModel(_TaskError):
    """Another trainer already submitted this model CID: copies earn nothing."""


class WrongPhase(_TaskError):
    """The task is not in the phase this call needs."""


class NotSelected(_TaskError):
    """The caller was not selected for this role in this task."""


class NotCreator(_TaskError):
    """Only the task's creator may do this."""


class AlreadyStarted(_TaskError):
    """The caller already started this step."""


class TrainingNotStarted(_TaskError):
    """Call start_training before submitting a model."""


class AlreadySubmitted(_TaskError):
    """The trainer already submitted a model for this task."""


class ModelNotCommitted(_TaskError):
    """Commit to the model (commit_model) in the training window before revealing it."""


class ValidationNotStarted(_TaskError):
    """Call start_validation before committing scores."""


class AlreadyCommitted(_TaskError):
    """The validator already committed scores for this task."""


class NotCommitted(_TaskError):
    """The validator has no commitment to reveal."""


class AlreadyRevealed(_TaskError):
    """The validator already revealed its scores."""


class CommitmentMismatch(_TaskError):
    """The revealed scores and salt do not hash to the commitment."""


class UnknownTrainer(_TaskError):
    """A score names an account that did not submit a model for this task."""


class IncompleteScores(_TaskError):
    """The scores must cover every submitted model exactly once, sorted by trainer."""


class AlreadyPublished(_TaskError):
    """The audit key was already published."""


class NotFinished(_TaskError):
    """The task cannot be finalized yet."""


# ---------------------------------------------------------------- reads


def get_task(ctx: Context, task_id: int) -> Task:
    raw = TaskById.get(ctx.state, task_id)
    ensure(raw is not None, UnknownTask, f"task {task_id} does not exist")
    return Task.from_list(raw)


def put_task(ctx: Context, task: Task) -> None:
    TaskById.put(ctx.state, task.id, task.to_list())


def commitment(task_id: int, validator: bytes, scores: list, salt: bytes) -> bytes:
    """The score commitment: blake2b-256(encode([task_id, validator, scores, salt]))."""
    return blake2b_256(encode([task_id, validator, scores, salt]))


def model_commitment(task_id: int, trainer: bytes, model_cid: str) -> bytes:
    """What a trainer commits to in the training window: bound to the task, the trainer and the CID."""
    return blake2b_256(encode([task_id, trainer, model_cid]))


def _require_phase(task: Task, *phases: str) -> None:
    ensure(task.status in phases, WrongPhase,
           f"task {task.id} is in {task.status}; this call needs {' or '.join(phases)}")


def _require_member(task: Task, who: bytes, role: str) -> None:
    members = task.trainers if role == "trainer" else task.validators
    ensure(any(account == who for account, _ in members), NotSelected,
           f"caller is not a selected {role} of task {task.id}")


# ---------------------------------------------------------------- selection


def eligible(ctx: Context, role: str, task: Task, excluded: set[bytes]) -> list[tuple[bytes, int]]:
    """[(account, selection weight)] for accounts that may be drawn for `role` in `task`."""
    floor = max(staking.min_stake(ctx, role), task.min_stake)
    alpha = rewards.params(ctx)["alpha_ppb"]
    found = []
    for who in staking.role_members(ctx, role):
        if who in excluded or staking.bonded(ctx, who, role) < floor or not staking.is_live(ctx, who):
            continue
        weight = selection_weight(rewards.effective_stake(ctx, who, role), history.reputation_ppb(ctx, who, role), alpha)
        found.append((who, weight))
    return found


def seat_credits(ctx: Context, role: str, accounts: list[bytes]) -> list[int]:
    """The stored selection credit of each account; a fresh key gets the lowest among them (≤ NEW_ACCOUNT_CREDIT)."""
    stored = [SeatCredit.get(ctx.state, [role, who]) for who in accounts]
    start = min([NEW_ACCOUNT_CREDIT] + [c for c in stored if c is not None])
    return [start if c is None else c for c in stored]


def seat(ctx: Context, role: str, task: Task, excluded: set[bytes], count: int) -> Seating:
    """Seat `count` of the eligible accounts for `role` by credit (runtime.selection.credit_select)."""
    weights = eligible(ctx, role, task, excluded)
    credits = seat_credits(ctx, role, [who for who, _ in weights])
    seed = system.randomness(ctx, encode(["arena/task", task.id, role]))
    return credit_select([(who, w, c) for (who, w), c in zip(weights, credits)], count, seed)


def select_participants(ctx: Context, task: Task) -> None:
    """Seat trainers, then validators, and open the training window (or cancel the task).

    The seat credits are written only when the task goes ahead: a cancelled task costs nobody a seat.
    """
    excluded = {task.creator}
    seatings: dict[str, Seating] = {}
    for role, count in (("trainer", task.n_trainers), ("validator", task.n_validators)):
        seatings[role] = seat(ctx, role, task, excluded, count)
        excluded.update(seatings[role].chosen)
    chosen = {role: seating.chosen for role, seating in seatings.items()}
    if not chosen["trainer"] or not chosen["validator"]:
        _close(ctx, task, "cancelled", refund=True)
        return
    for role, seating in seatings.items():
        for who, credit in seating.credits:
            SeatCredit.put(ctx.state, [role, who], credit)
    task.trainers = [[t, rewards.effective_stake(ctx, t, "trainer")] for t in chosen["trainer"]]
    task.validators = [[v, rewards.effective_stake(ctx, v, "validator")] for v in chosen["validator"]]
    closes_by = (ctx.block_number + task.training_blocks + Limits.get(ctx.state).model_reveal_blocks
                 + task.commit_blocks + task.reveal_blocks)
    for role, accounts in chosen.items():
        for who in accounts:
            history.add(ctx, who, role, tasks_joined=1)
            staking.lock(ctx, who, role, task.id, staking.bonded(ctx, who, role), until=closes_by)
    ctx.deposit_event("tasks", "Selected", task.id, chosen["trainer"], chosen["validator"])
    task.enter(ctx, "training", task.training_blocks)


# ---------------------------------------------------------------- phase advance and finalization


def _model_committed(ctx: Context, task: Task) -> list[bytes]:
    works = [(t, Work.get(ctx.state, [task.id, t])) for t, _ in task.trainers]
    return [t for t, work in works if work is not None and work.commitment is not None]


def _committed(ctx: Context, task: Task) -> list[bytes]:
    votes = [(v, Votes.get(ctx.state, [task.id, v])) for v, _ in task.validators]
    return [v for v, vote in votes if vote is not None and vote.commitment is not None]


def _reveal_done(ctx: Context, task: Task) -> bool:
    return ctx.block_number >= task.phase_end or len(Reveals.get(ctx.state, task.id)) == len(_committed(ctx, task))


def advance(ctx: Context, task: Task) -> None:
    """Move `task` to its next phase if its window is over or everyone has acted."""
    over = ctx.block_number >= task.phase_end
    if task.status == "selection" and over:
        select_participants(ctx, task)
    elif task.status == "training" and (over or len(_model_committed(ctx, task)) == len(task.trainers)):
        if _model_committed(ctx, task):
            task.enter(ctx, "model_reveal", Limits.get(ctx.state).model_reveal_blocks)
        else:
            finalize_task(ctx, task)
    elif task.status == "model_reveal" and (
            over or len(Submissions.get(ctx.state, task.id)) == len(_model_committed(ctx, task))):
        if Submissions.get(ctx.state, task.id):
            task.enter(ctx, "validation", task.commit_blocks)
        else:
            finalize_task(ctx, task)
    elif task.status == "validation" and (over or len(_committed(ctx, task)) == len(task.validators)):
        if _committed(ctx, task):
            task.enter(ctx, "reveal", task.reveal_blocks)
        else:
            finalize_task(ctx, task)
    elif task.status == "reveal" and _reveal_done(ctx, task):
        finalize_task(ctx, task)


def _release_locks(ctx: Context, task: Task) -> None:
    for who, _ in task.trainers:
        staking.release(ctx, who, "trainer", task.id)
    for who, _ in task.validators:
        staking.release(ctx, who, "validator", task.id)


def _close(ctx: Context, task: Task, status: str, refund: bool) -> None:
    """End a task without paying rewards: pool back to the creator, emission to the treasury."""
    _release_locks(ctx, task)
    if refund and task.pool:
        balances.transfer(ctx, POOL_ACCOUNT, task.creator, task.pool)
    if task.emission:
        balances.withdraw(ctx, POOL_ACCOUNT, task.emission)
        treasury.credit(ctx, task.emission, f"task {task.id} emission unused")
    task.enter(ctx, status, 0)
    Active.put(ctx.state, [i for i in Active.get(ctx.state) if i != task.id])


def finalize_task(ctx: Context, task: Task) -> None:
    """Aggregate scores, pay rewards, punish absentees, write history and the top model."""
    submitted = Submissions.get(ctx.state, task.id)
    reveals = Reveals.get(ctx.state, task.id)
    committed = set(_committed(ctx, task))
    revealed = {v for v, _ in reveals}
    for trainer, _ in task.trainers:
        if trainer not in submitted:
            history.add(ctx, trainer, "trainer", missed_deadlines=1)
    if submitted:
        for validator, _ in task.validators:
            if validator not in revealed:
                history.add(ctx, validator, "validator", missed_deadlines=1)
                rewards.penalize_validator(ctx, task.id, validator, validator in committed)
    if not submitted or not reveals:
        _close(ctx, task, "failed", refund=True)
        ctx.deposit_event("tasks", "TaskFailed", task.id, "no model submitted" if not submitted else "no scores revealed")
        return
    stakes = {a: s for a, s in task.trainers + task.validators}
    settlement = rewards.settle_task(
        ctx, task.id, task.pool + task.emission, POOL_ACCOUNT,
        [(t, stakes[t]) for t in submitted],
        [(v, stakes[v]) for v, _ in sorted(reveals)],
        [(v, [(t, s) for t, s in scores]) for v, scores in reveals],
    )
    board: list[list] = []
    for result in settlement.trainers:
        work = Work.get(ctx.state, [task.id, result.trainer])
        assert work is not None  # every ranked trainer submitted
        cid = work.model_cid
        board.append([result.trainer, result.rank, result.consensus, result.reward, cid])
        history.add(ctx, result.trainer, "trainer", ranked=1, rank_sum=result.rank, best_rank=result.rank,
                    consensus_score_sum=result.consensus)
        history.note_outcome(ctx, result.trainer, "trainer", task.id, result.rank, result.consensus, 0, result.reward)
    for v in settlement.validators:
        history.add(ctx, v.validator, "validator", agreement_sum_ppb=v.agreement_ppb)
        history.note_outcome(ctx, v.validator, "validator", task.id, 0, 0, v.agreement_ppb, v.reward)
    Leaderboard.put(ctx.state, task.id, board)
    ValidatorResults.put(ctx.state, task.id, [[v.validator, v.agreement_ppb, v.reward] for v in settlement.validators])
    top = settlement.trainers[0]
    task.top_model = board[0][4] if top.consensus > 0 else ""
    _release_locks(ctx, task)
    task.enter(ctx, "finalized", 0)
    Active.put(ctx.state, [i for i in Active.get(ctx.state) if i != task.id])
    ctx.deposit_event("tasks", "TaskFinalized", task.id, top.trainer if task.top_model else None, task.top_model,
                      task.pool + task.emission)


def emission_weights(ctx: Context) -> list[tuple[int, int]]:
    """[(task_id, weight)] for the active tasks past selection: each account's stake counted once.

    A participant's stake recorded at selection is divided by the number of such tasks it holds
    a seat in for that role, and a task's weight is the sum of these shares. So one bond weighs
    the same in the emission whether it sits in one task or in thirty: opening many tasks for
    one's own accounts multiplies nothing. Tasks with fewer selected validators than
    `min_validators_for_emission` get weight 0: where one or two accounts decide the scores, the
    creator's pool is still paid but no new units are minted for it.
    """
    min_validators = Limits.get(ctx.state).min_validators_for_emission
    open_tasks = []
    seats: dict[tuple[bytes, str], int] = {}
    for task_id in Active.get(ctx.state):
        task = get_task(ctx, task_id)
        if task.status == "selection" or len(task.validators) < min_validators:
            continue
        members = [(a, "trainer", s) for a, s in task.trainers] + [(a, "validator", s) for a, s in task.validators]
        open_tasks.append((task_id, members))
        for account, role, _ in members:
            seats[(account, role)] = seats.get((account, role), 0) + 1
    return [(task_id, sum(stake // seats[(account, role)] for account, role, stake in members))
            for task_id, members in open_tasks]


def emit_for_active_tasks(ctx: Context) -> None:
    """At an epoch start: mint the epoch's emission for tasks past selection, ∝ deduplicated stake."""
    for task_id, amount in rewards.emit_epoch(ctx, POOL_ACCOUNT, emission_weights(ctx)):
        task = get_task(ctx, task_id)
        task.emission += amount
        put_task(ctx, task)


# ---------------------------------------------------------------- module


class Tasks(Module):
    """Training tasks: creation, selection, training, commit–reveal validation, finalization."""

    name = "tasks"
    storage = (Limits, Kinds, NextTaskId, TaskById, Active, Work, Submissions, Votes, Reveals,
               Leaderboard, ValidatorResults, ModelOwner, SeatCredit)
    errors = (UnknownTask, InvalidParams, UnknownKind, PoolTooSmall, TooManyActiveTasks, WrongPhase,
              NotSelected, NotCreator, AlreadyStarted, TrainingNotStarted, AlreadySubmitted, ModelNotCommitted,
              ValidationNotStarted, AlreadyCommitted, NotCommitted, AlreadyRevealed,
              CommitmentMismatch, UnknownTrainer, IncompleteScores, AlreadyPublished, NotFinished, DuplicateModel)
    events: ClassVar[dict[str, list[str]]] = {
        "TaskCreated": ["task_id", "creator", "spec_cid", "kind", "reward_pool"],
        "PhaseChanged": ["task_id", "status", "block", "window_end"],
        "Selected": ["task_id", "trainers", "validators"],
        "TrainingStarted": ["task_id", "trainer", "block", "timestamp_ms"],
        "ModelCommitted": ["task_id", "trainer", "commitment", "block", "timestamp_ms"],
        "ModelSubmitted": ["task_id", "trainer", "model_cid", "block", "timestamp_ms"],
        "ValidationShared": ["task_id", "share_cid"],
        "ValidationStarted": ["task_id", "validator", "block", "timestamp_ms"],
        "ScoresCommitted": ["task_id", "validator", "commitment"],
        "ScoresRevealed": ["task_id", "validator"],
        "TaskFinalized": ["task_id", "top_trainer", "top_model", "reward"],
        "TaskFailed": ["task_id", "reason"],
        "AuditKeyPublished": ["task_id", "key"],
    }

    @call(weight=200_000)
    @staticmethod
    def create(ctx: Context, spec_cid: Cid, reward_pool: Balance, params: TaskParams) -> None:
        """Open a task: reserve `reward_pool` into the pool account; selection follows next block."""
        assert ctx.origin is not None
        kind, n_trainers, n_validators, min_stake, training, commit, reveal = params
        limits = Limits.get(ctx.state)
        max_trainers, max_validators, max_window = limits.max_trainers, limits.max_validators, limits.max_window_blocks
        min_pool, max_active, per_creator = limits.min_reward_pool, limits.max_active_tasks, limits.max_tasks_per_creator
        max_min_stake = limits.max_min_stake
        kinds = Kinds.get(ctx.state)
        ensure(not kinds or kind in kinds, UnknownKind, f"kind {kind!r} is not one of {', '.join(kinds)}")
        ensure(1 <= n_trainers <= max_trainers, InvalidParams, f"n_trainers must be 1..{max_trainers}, got {n_trainers}")
        ensure(1 <= n_validators <= max_validators, InvalidParams,
               f"n_validators must be 1..{max_validators}, got {n_validators}")
        for name, window in (("training_blocks", training), ("commit_blocks", commit), ("reveal_blocks", reveal)):
            ensure(1 <= window <= max_window, InvalidParams, f"{name} must be 1..{max_window}, got {window}")
        ensure(min_stake <= max_min_stake, InvalidParams,
               f"min_stake {min_stake} is above the chain's cap {max_min_stake}: a creator may not fence off a task")
        ensure(reward_pool >= min_pool, PoolTooSmall, f"reward pool {reward_pool} is below the minimum {min_pool}")
        active = Active.get(ctx.state)
        ensure(len(active) < max_active, TooManyActiveTasks, f"{len(active)} tasks are open (limit {max_active})")
        mine = sum(1 for i in active if get_task(ctx, i).creator == ctx.origin)
        ensure(mine < per_creator, TooManyActiveTasks, f"this creator has {mine} open tasks (limit {per_creator})")
        balances.transfer(ctx, ctx.origin, POOL_ACCOUNT, reward_pool)
        task_id = NextTaskId.get(ctx.state)
        NextTaskId.put(ctx.state, task_id + 1)
        task = Task(task_id, ctx.origin, spec_cid, kind, n_trainers, n_validators, min_stake, training, commit,
                    reveal, reward_pool, 0, "selection", ctx.block_number + 1, [], [],
                    [["selection", ctx.block_number, ctx.timestamp_ms]], "", b"", "")
        put_task(ctx, task)
        Active.put(ctx.state, active + [task_id])
        ctx.deposit_event("tasks", "TaskCreated", task_id, ctx.origin, spec_cid, kind, reward_pool)

    @call(weight=20_000)
    @staticmethod
    def start_training(ctx: Context, task_id: U64) -> None:
        """A selected trainer starts training (block and timestamp recorded)."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        _require_phase(task, "training")
        _require_member(task, ctx.origin, "trainer")
        ensure(not Work.contains(ctx.state, [task_id, ctx.origin]), AlreadyStarted, "training already started")
        Work.put(ctx.state, [task_id, ctx.origin], TrainerWork(ctx.block_number, ctx.timestamp_ms, 0, 0, "", None, 0))
        ctx.deposit_event("tasks", "TrainingStarted", task_id, ctx.origin, ctx.block_number, ctx.timestamp_ms)

    @call(weight=20_000)
    @staticmethod
    def commit_model(ctx: Context, task_id: U64, commitment_hash: Hash) -> None:
        """A selected trainer commits to its model (see `model_commitment`) within the training window."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        _require_phase(task, "training")
        _require_member(task, ctx.origin, "trainer")
        work = Work.get(ctx.state, [task_id, ctx.origin])
        ensure(work is not None, TrainingNotStarted, "call start_training first")
        assert work is not None
        Work.put(ctx.state, [task_id, ctx.origin],
                 replace(work, commitment=commitment_hash, committed_block=ctx.block_number))
        ctx.deposit_event("tasks", "ModelCommitted", task_id, ctx.origin, commitment_hash, ctx.block_number,
                          ctx.timestamp_ms)

    @call(weight=30_000)
    @staticmethod
    def submit_model(ctx: Context, task_id: U64, model_cid: Cid) -> None:
        """A committed trainer reveals its model's CID within the model reveal window."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        _require_phase(task, "model_reveal")
        _require_member(task, ctx.origin, "trainer")
        work = Work.get(ctx.state, [task_id, ctx.origin])
        ensure(work is not None and work.commitment is not None, ModelNotCommitted,
               "no model commitment to reveal (commit_model in the training window)")
        assert work is not None
        ensure(work.model_cid == "", AlreadySubmitted, f"model {work.model_cid} was already submitted")
        ensure(model_commitment(task_id, ctx.origin, model_cid) == work.commitment, CommitmentMismatch,
               "blake2b-256(encode([task_id, trainer, model_cid])) differs from the commitment")
        owner = ModelOwner.get(ctx.state, model_cid)
        ensure(owner is None or owner.trainer == ctx.origin, DuplicateModel,
               f"model {model_cid} was first submitted by another trainer (task {owner.task_id if owner else 0})")
        if owner is None:
            ModelOwner.put(ctx.state, model_cid, ModelOrigin(ctx.origin, task_id, ctx.block_number))
        Work.put(ctx.state, [task_id, ctx.origin],
                 replace(work, submitted_block=ctx.block_number, submitted_ms=ctx.timestamp_ms, model_cid=model_cid))
        Submissions.put(ctx.state, task_id, Submissions.get(ctx.state, task_id) + [ctx.origin])
        history.add(ctx, ctx.origin, "trainer", completed=1)
        ctx.deposit_event("tasks", "ModelSubmitted", task_id, ctx.origin, model_cid, ctx.block_number, ctx.timestamp_ms)

    @call(weight=20_000)
    @staticmethod
    def publish_validation_share(ctx: Context, task_id: U64, share_cid: Cid) -> None:
        """The creator publishes the CID of the held-out set sealed to each selected validator."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        ensure(task.creator == ctx.origin, NotCreator, "only the task's creator publishes the validation share")
        _require_phase(task, "training", "model_reveal", "validation", "reveal")
        task.validation_share = share_cid
        put_task(ctx, task)
        ctx.deposit_event("tasks", "ValidationShared", task_id, share_cid)

    @call(weight=20_000)
    @staticmethod
    def start_validation(ctx: Context, task_id: U64) -> None:
        """A selected validator starts validating (block and timestamp recorded)."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        _require_phase(task, "validation")
        _require_member(task, ctx.origin, "validator")
        ensure(not Votes.contains(ctx.state, [task_id, ctx.origin]), AlreadyStarted, "validation already started")
        Votes.put(ctx.state, [task_id, ctx.origin], ValidatorVote(ctx.block_number, ctx.timestamp_ms, None, 0, 0))
        ctx.deposit_event("tasks", "ValidationStarted", task_id, ctx.origin, ctx.block_number, ctx.timestamp_ms)

    @call(weight=20_000)
    @staticmethod
    def commit_scores(ctx: Context, task_id: U64, commitment_hash: Hash) -> None:
        """A selected validator commits to its scores (see `commitment`)."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        _require_phase(task, "validation")
        _require_member(task, ctx.origin, "validator")
        vote = Votes.get(ctx.state, [task_id, ctx.origin])
        ensure(vote is not None, ValidationNotStarted, "call start_validation first")
        assert vote is not None
        ensure(vote.commitment is None, AlreadyCommitted, f"committed at block {vote.commit_block}")
        Votes.put(ctx.state, [task_id, ctx.origin], replace(vote, commitment=commitment_hash, commit_block=ctx.block_number))
        ctx.deposit_event("tasks", "ScoresCommitted", task_id, ctx.origin, commitment_hash)

    @call(weight=100_000)
    @staticmethod
    def reveal_scores(ctx: Context, task_id: U64, scores: Scores, salt: Salt) -> None:
        """Reveal the committed scores: one per submitted model, sorted by trainer."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        _require_phase(task, "reveal")
        _require_member(task, ctx.origin, "validator")
        vote = Votes.get(ctx.state, [task_id, ctx.origin])
        ensure(vote is not None and vote.commitment is not None, NotCommitted, "no commitment to reveal")
        assert vote is not None
        ensure(vote.reveal_block == 0, AlreadyRevealed, f"revealed at block {vote.reveal_block}")
        ensure(commitment(task_id, ctx.origin, scores, salt) == vote.commitment, CommitmentMismatch,
               "blake2b-256(encode([task_id, validator, scores, salt])) differs from the commitment")
        submitted = Submissions.get(ctx.state, task_id)
        for trainer, _ in scores:
            ensure(trainer in submitted, UnknownTrainer, f"account 0x{trainer.hex()} submitted no model for task {task_id}")
        ensure([t for t, _ in scores] == sorted(submitted), IncompleteScores,
               f"{len(scores)} scores for {len(submitted)} submitted models; give each exactly once, sorted by trainer")
        Votes.put(ctx.state, [task_id, ctx.origin], replace(vote, reveal_block=ctx.block_number))
        Reveals.put(ctx.state, task_id, Reveals.get(ctx.state, task_id) + [[ctx.origin, scores]])
        history.add(ctx, ctx.origin, "validator", completed=1)
        ctx.deposit_event("tasks", "ScoresRevealed", task_id, ctx.origin)

    @call(weight=500_000)
    @staticmethod
    def finalize(ctx: Context, task_id: U64) -> None:
        """Anyone: finalize a task whose reveal window is over or whose committed validators all revealed."""
        task = get_task(ctx, task_id)
        _require_phase(task, "reveal")
        ensure(_reveal_done(ctx, task), NotFinished,
               f"reveal window ends at block {task.phase_end} and not every committed validator has revealed")
        finalize_task(ctx, task)
        put_task(ctx, task)

    @call(weight=20_000)
    @staticmethod
    def publish_audit_key(ctx: Context, task_id: U64, key: AuditKey) -> None:
        """After finalization the creator reveals the symmetric key of the held-out set."""
        assert ctx.origin is not None
        task = get_task(ctx, task_id)
        ensure(task.creator == ctx.origin, NotCreator, "only the task's creator publishes the audit key")
        _require_phase(task, "finalized", "failed")
        ensure(task.audit_key == b"", AlreadyPublished)
        task.audit_key = key
        put_task(ctx, task)
        ctx.deposit_event("tasks", "AuditKeyPublished", task_id, key)

    @staticmethod
    def on_initialize(ctx: Context) -> None:
        """Mint epoch emission (at epoch starts), then advance every open task's phase."""
        if system.is_epoch_start(ctx):
            emit_for_active_tasks(ctx)
        for task_id in Active.get(ctx.state):
            task = get_task(ctx, task_id)
            events_before = len(ctx.events)
            ctx.state.begin()
            try:
                advance(ctx, task)
            except Exception as err:  # noqa: BLE001 - a runtime bug must not halt the chain: fail the task instead
                ctx.state.rollback()
                del ctx.events[events_before:]
                task = get_task(ctx, task_id)
                _close(ctx, task, "failed", refund=True)
                ctx.deposit_event("tasks", "TaskFailed", task_id, f"internal error: {type(err).__name__}: {err}")
            else:
                ctx.state.commit()
            put_task(ctx, task)

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        if int(config.get("model_reveal_blocks", 3)) < 1:
            raise ValueError("tasks.model_reveal_blocks must be at least 1 (trainers need a block to reveal in)")
        Limits.put(ctx.state, TaskLimits(
            int(config.get("max_trainers", 32)), int(config.get("max_validators", 32)),
            int(config.get("max_window_blocks", 10_000)), int(config.get("min_reward_pool", 1)),
            int(config.get("max_active_tasks", 64)), int(config.get("max_tasks_per_creator", 4)),
            int(config.get("max_min_stake", 0)), int(config.get("min_validators_for_emission", 1)),
            int(config.get("model_reveal_blocks", 3)),
        ))
        Kinds.put(ctx.state, [str(k) for k in config.get("kinds", [])])

