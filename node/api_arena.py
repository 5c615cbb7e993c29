"""RPC methods of the AI Arena modules: tasks, leaderboards, history, stakes and selection.

All read the best block's state. Accounts are SS58, CIDs strings, amounts integers in base units,
fractions in parts per billion. docs/protocol.md ("RPC") documents every shape.
"""
from __future__ import annotations

from typing import Any

from node.api import account_param, best_context
from node.rpc import RpcError, RpcServer
from node.views import ChainView
from runtime.crypto import ss58_encode
from runtime.module import Context
from runtime.modules import history, rewards, staking, tasks

MAX_LISTED_TASKS = 500


def _task_id(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RpcError(-32602, "task id must be a non-negative integer")
    return value


def _role(value: Any) -> str:
    if value not in staking.ROLES:
        raise RpcError(-32602, f"role must be one of {', '.join(staking.ROLES)}")
    return value


def task_json(ctx: Context, task: tasks.Task) -> dict:
    """Everything the chain knows about a task."""
    trainers = []
    for who, stake in task.trainers:
        work = tasks.Work.get(ctx.state, [task.id, who]) or tasks.TrainerWork(0, 0, 0, 0, "", None, 0)
        trainers.append({"address": ss58_encode(who), "stake": stake,
                         "startedBlock": work.started_block or None, "startedAt": work.started_ms or None,
                         "submittedBlock": work.submitted_block or None, "submittedAt": work.submitted_ms or None,
                         "modelCid": work.model_cid or None,
                         "modelCommitment": "0x" + work.commitment.hex() if work.commitment else None,
                         "commitBlock": work.committed_block or None})
    validators = []
    for who, stake in task.validators:
        vote = tasks.Votes.get(ctx.state, [task.id, who]) or tasks.ValidatorVote(0, 0, None, 0, 0)
        validators.append({"address": ss58_encode(who), "stake": stake,
                           "startedBlock": vote.started_block or None, "startedAt": vote.started_ms or None,
                           "commitment": "0x" + vote.commitment.hex() if vote.commitment else None,
                           "commitBlock": vote.commit_block or None, "revealBlock": vote.reveal_block or None})
    return {
        "id": task.id, "creator": ss58_encode(task.creator), "specCid": task.spec_cid, "kind": task.kind,
        "params": {"nTrainers": task.n_trainers, "nValidators": task.n_validators, "minStake": task.min_stake,
                   "trainingBlocks": task.training_blocks, "commitBlocks": task.commit_blocks,
                   "revealBlocks": task.reveal_blocks},
        "rewardPool": task.pool, "emission": task.emission, "status": task.status, "phaseEnd": task.phase_end,
        "timeline": [{"status": s, "block": b, "timestamp": t} for s, b, t in task.timeline],
        "trainers": trainers, "validators": validators,
        "submissions": [ss58_encode(t) for t in tasks.Submissions.get(ctx.state, task.id)],
        "validationShare": task.validation_share or None,
        "auditKey": "0x" + task.audit_key.hex() if task.audit_key else None,
        "topModel": task.top_model or None,
    }


def leaderboard_json(ctx: Context, task: tasks.Task) -> dict:
    entries = [{"rank": rank, "address": ss58_encode(who), "consensusScore": score, "reward": reward,
                "modelCid": cid}
               for who, rank, score, reward, cid in tasks.Leaderboard.get(ctx.state, task.id)]
    validators = [{"address": ss58_encode(who), "agreementPpb": agreement, "reward": reward}
                  for who, agreement, reward in tasks.ValidatorResults.get(ctx.state, task.id)]
    return {"taskId": task.id, "status": task.status, "kind": task.kind, "topModel": task.top_model or None,
            "reward": task.pool + task.emission, "entries": entries, "validators": validators}


def history_json(ctx: Context, who: bytes, role: str) -> dict:
    r = history.record(ctx, who, role)
    return {
        "address": ss58_encode(who), "role": role,
        "tasksJoined": r["tasks_joined"], "completed": r["completed"], "missedDeadlines": r["missed_deadlines"],
        "ranked": r["ranked"], "rankSum": r["rank_sum"], "bestRank": r["best_rank"] or None,
        "consensusScoreSum": r["consensus_score_sum"], "agreementSumPpb": r["agreement_sum_ppb"],
        "rewards": r["rewards"], "slashed": r["slashed"], "slashCount": r["slash_count"],
        "reputationPpb": history.reputation_ppb(ctx, who, role),
        "recent": [{"taskId": t, "rank": rank or None, "consensusScore": score, "agreementPpb": agreement,
                    "reward": reward} for t, rank, score, agreement, reward in history.recent(ctx, who, role)],
    }


def stakes_json(ctx: Context, who: bytes) -> dict:
    beat = staking.heartbeat_of(ctx, who)
    return {
        "address": ss58_encode(who),
        "bonds": {role: staking.bonded(ctx, who, role) for role in staking.ROLES if staking.bonded(ctx, who, role)},
        "effectiveStake": {role: rewards.effective_stake(ctx, who, role) for role in staking.roles_of(ctx, who)},
        "delegatedTo": staking.delegated_to(ctx, who),
        "delegators": [{"address": ss58_encode(d), "amount": a} for d, a in staking.delegators_of(ctx, who)],
        "delegations": [{"target": ss58_encode(t), "amount": a} for t, a in staking.Delegations.get(ctx.state, who)],
        "unlocking": [{"releaseBlock": b, "amount": a} for b, a in staking.Unlocking.get(ctx.state, who)],
        "heartbeat": None if beat is None else {
            "epoch": beat[0], "block": beat[1], "available": bool(beat[2]), "deviceKind": beat[3],
            "memoryMib": beat[4], "live": staking.is_live(ctx, who)},
    }


def find_task(ctx: Context, task_id: Any) -> tasks.Task | None:
    """The task with this id (checked as an RPC parameter), None if there is none."""
    raw = tasks.TaskById.get(ctx.state, _task_id(task_id))
    return None if raw is None else tasks.Task.from_list(raw)


def register(rpc: RpcServer, chain: ChainView) -> None:
    """Register the arena_* methods of the task, staking and history modules."""
    register_tasks(rpc, chain)
    register_accounts(rpc, chain)


def register_tasks(rpc: RpcServer, chain: ChainView) -> None:
    """arena_task, arena_tasks, arena_leaderboard, arena_topModel, arena_selection."""

    @rpc.method("arena_task")
    def task(task_id: int) -> dict | None:
        ctx = best_context(chain)
        found = find_task(ctx, task_id)
        return None if found is None else task_json(ctx, found)

    @rpc.method("arena_tasks")
    def task_list(status: str | None = None) -> list:
        ctx = best_context(chain)
        if status is not None and status not in (*tasks.ACTIVE, "active", "finalized", "failed", "cancelled"):
            raise RpcError(-32602, "status must be selection, training, validation, reveal, active, finalized, "
                                   "failed or cancelled")
        found = []
        last = tasks.NextTaskId.get(ctx.state) - 1
        for task_id in range(last, max(-1, last - MAX_LISTED_TASKS), -1):
            t = find_task(ctx, task_id)
            if t is None or (status == "active" and t.status not in tasks.ACTIVE) or (
                    status not in (None, "active") and t.status != status):
                continue
            found.append({"id": t.id, "kind": t.kind, "status": t.status, "creator": ss58_encode(t.creator),
                          "specCid": t.spec_cid, "rewardPool": t.pool, "emission": t.emission,
                          "phaseEnd": t.phase_end, "topModel": t.top_model or None})
        return found

    @rpc.method("arena_leaderboard")
    def leaderboard(task_id: int) -> dict | None:
        ctx = best_context(chain)
        found = find_task(ctx, task_id)
        return None if found is None else leaderboard_json(ctx, found)

    @rpc.method("arena_topModel")
    def top_model(task_id: int) -> dict | None:
        ctx = best_context(chain)
        found = find_task(ctx, task_id)
        if found is None or not found.top_model:
            return None
        who, _, score, reward, cid = tasks.Leaderboard.get(ctx.state, found.id)[0]
        return {"taskId": found.id, "modelCid": cid, "trainer": ss58_encode(who), "consensusScore": score,
                "reward": reward, "kind": found.kind, "specCid": found.spec_cid,
                "auditKey": "0x" + found.audit_key.hex() if found.audit_key else None}

    @rpc.method("arena_selection")
    def selection(task_id: int) -> dict | None:
        ctx = best_context(chain)
        found = find_task(ctx, task_id)
        if found is None:
            return None
        eligible = {role: [{"address": ss58_encode(w), "weight": str(weight)}
                           for w, weight in tasks.eligible(ctx, role, found, {found.creator})]
                    for role in ("trainer", "validator")}
        return {"taskId": found.id, "status": found.status,
                "trainers": [{"address": ss58_encode(a), "stake": s} for a, s in found.trainers],
                "validators": [{"address": ss58_encode(a), "stake": s} for a, s in found.validators],
                "eligibleNow": eligible}


def register_accounts(rpc: RpcServer, chain: ChainView) -> None:
    """arena_history, arena_stakes, arena_roles: what the chain records per account and role."""

    @rpc.method("arena_history")
    def account_history(address: str, role: str | None = None) -> dict:
        ctx = best_context(chain)
        who = account_param(address)
        if role is not None:
            return history_json(ctx, who, _role(role))
        return {r: history_json(ctx, who, r) for r in staking.ROLES}

    @rpc.method("arena_stakes")
    def stakes(address: str) -> dict:
        return stakes_json(best_context(chain), account_param(address))

    @rpc.method("arena_roles")
    def roles() -> dict:
        ctx = best_context(chain)
        return {role: {"minStake": staking.min_stake(ctx, role),
                       "members": [{"address": ss58_encode(w), "bonded": staking.bonded(ctx, w, role),
                                    "live": staking.is_live(ctx, w)} for w in staking.role_members(ctx, role)]}
                for role in staking.ROLES}
