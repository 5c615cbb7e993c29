"""History: every account's on-chain track record per role, read by selection and over RPC.

A record is kept per (account, role) as a fixed-order list of counters (`FIELDS`), plus the
`RECENT` most recent task outcomes. Only other modules write it (staking on slashes, tasks on
selection, submission, deadlines and finalization); it has no calls of its own.

Reputation (used by selection as a multiplier of the stake weight) is, in parts per billion:

    reliability = PPB · completed / (joined + 1)                 completed = models submitted
                                                                 (trainer) or scores revealed
                                                                 (validator); other roles: joined
    quality     = PPB                                  trainers and other roles
                = (agreement_sum + PPB) / (completed + 1)       validators (prior: one perfect)
    reputation  = max(REPUTATION_FLOOR, reliability · quality / PPB / (1 + slash_count))

so reputation is earned: a newcomer starts at the floor (a tenth), the value of the worst record,
so a new key never wipes a bad record for a better one; each task completed raises it (one of one
gives ½, nine of nine 0.9), each missed deadline or slash lowers it, and nobody falls below the
floor, so anyone can still be seated to build or rebuild a record.
"""
from __future__ import annotations

from runtime.module import Context, Module, StorageMap

PPB = 10**9
COUNTER_MAX = 2**64 - 1  # counters saturate here: the codec's integer range, never an abort
REPUTATION_FLOOR = PPB // 10
RECENT = 16  # task outcomes kept per (account, role)

FIELDS = (
    "tasks_joined",        # selected for a task in this role
    "completed",           # trainer: model submitted; validator: scores revealed
    "missed_deadlines",    # selected but did not submit / commit / reveal in time
    "ranked",              # tasks in which the trainer received a rank
    "rank_sum",            # sum of ranks received (average = rank_sum / ranked)
    "best_rank",           # 0 = never ranked
    "consensus_score_sum", # sum of consensus scores received (trainer)
    "agreement_sum_ppb",   # sum of validation agreement (validator)
    "rewards",             # total rewards received in this role (own part, after delegators)
    "slashed",             # total amount slashed in this role
    "slash_count",
)
_INDEX = {name: i for i, name in enumerate(FIELDS)}

Record = StorageMap("history", "Record", [0] * len(FIELDS))   # [account, role] -> FIELDS
# [account, role] -> [[task_id, rank, consensus_score, agreement_ppb, reward], ...] newest last
Recent = StorageMap("history", "Recent", [])


def record(ctx: Context, who: bytes, role: str) -> dict[str, int]:
    """The record of `who` in `role` as a name → value dict (zeros for a newcomer)."""
    return dict(zip(FIELDS, Record.get(ctx.state, [who, role])))


def add(ctx: Context, who: bytes, role: str, **increments: int) -> None:
    """Add to counters of a record (`best_rank` is special: it keeps the best non-zero rank).

    Every counter saturates at `COUNTER_MAX` (and is clamped at 0), so no increment, however large,
    can make the record unencodable and abort the settlement that writes it.
    """
    values = Record.get(ctx.state, [who, role])
    for name, amount in increments.items():
        i = _INDEX[name]
        if name == "best_rank":
            values[i] = amount if values[i] == 0 else min(values[i], amount)
        else:
            values[i] += amount
        values[i] = max(0, min(COUNTER_MAX, values[i]))
    Record.put(ctx.state, [who, role], values)


def note_outcome(ctx: Context, who: bytes, role: str, task_id: int, rank: int, score: int,
                 agreement_ppb: int, reward: int) -> None:
    """Append one task's outcome to the account's recent list (bounded to `RECENT`)."""
    entries = Recent.get(ctx.state, [who, role])
    entries.append([task_id, rank, min(score, COUNTER_MAX), agreement_ppb, min(reward, COUNTER_MAX)])
    Recent.put(ctx.state, [who, role], entries[-RECENT:])


def recent(ctx: Context, who: bytes, role: str) -> list[list[int]]:
    return Recent.get(ctx.state, [who, role])


def reputation_ppb(ctx: Context, who: bytes, role: str) -> int:
    """The reputation multiplier in PPB (module docstring); newcomers get the floor."""
    r = record(ctx, who, role)
    completed = r["completed"] if role in ("trainer", "validator") else r["tasks_joined"]
    reliability = PPB * completed // (r["tasks_joined"] + 1)
    quality = PPB
    if role == "validator":
        quality = (r["agreement_sum_ppb"] + PPB) // (completed + 1)
    value = reliability * quality // PPB // (1 + r["slash_count"])
    return max(REPUTATION_FLOOR, min(PPB, value))


class History(Module):
    """Per-account, per-role track record: written by staking and tasks, read by selection."""

    name = "history"
    storage = (Record, Recent)
