"""RPC methods of the marketplace: hosts of a model, usage per period, escrows and voucher channels.

All read the best block's state; accounts are SS58, amounts integers in base units.
docs/marketplace.md ("RPC") documents every shape.
"""
from __future__ import annotations

from typing import Any

from node.api import account_param, best_context
from node.rpc import RpcError, RpcServer
from node.views import ChainView
from runtime.crypto import ss58_encode
from runtime.module import Context
from runtime.modules import marketplace, tasks


def _cid(value: Any) -> str:
    if not tasks._is_cid(value):
        raise RpcError(-32602, "model must be a CID (CIDv0 'Qm…' or CIDv1 'b…')")
    return value


def _period(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RpcError(-32602, "period must be a non-negative integer")
    return value


def hosts_json(ctx: Context, model_cid: str) -> list[dict]:
    """Every registered host of a model with its endpoint and price."""
    found = []
    for host in marketplace.HostsOf.get(ctx.state, model_cid):
        endpoint, price, block = marketplace.Host.get(ctx.state, [model_cid, host])
        found.append({"address": ss58_encode(host), "publicKey": "0x" + host.hex(), "endpoint": endpoint,
                      "pricePerQuery": price, "registeredBlock": block})
    return found


def model_json(ctx: Context, model_cid: str) -> dict | None:
    info = marketplace.ModelInfo.get(ctx.state, model_cid)
    if info is None:
        return None
    task_id, trainer, validators = info
    return {"modelCid": model_cid, "taskId": task_id, "trainer": ss58_encode(trainer),
            "validators": [{"address": ss58_encode(v), "stake": s, "agreementPpb": a} for v, s, a in validators],
            "hosts": hosts_json(ctx, model_cid)}


def register(rpc: RpcServer, chain: ChainView) -> None:
    """Register the arena_* methods of the marketplace module."""

    @rpc.method("arena_hosts")
    def hosts(model: str) -> list:
        return hosts_json(best_context(chain), _cid(model))

    @rpc.method("arena_marketModels")
    def models() -> list:
        """Top models of finalized tasks (newest first, up to 100) with their hosts."""
        ctx = best_context(chain)
        found = []
        last = tasks.NextTaskId.get(ctx.state) - 1
        for task_id in range(last, max(-1, last - 500), -1):
            raw = tasks.TaskById.get(ctx.state, task_id)
            if raw is None:
                continue
            task = tasks.Task.from_list(raw)
            if task.status != "finalized" or not task.top_model:
                continue
            trainer = tasks.Leaderboard.get(ctx.state, task.id)[0][0]
            found.append({"taskId": task.id, "kind": task.kind, "modelCid": task.top_model, "specCid": task.spec_cid,
                          "trainer": ss58_encode(trainer), "hosts": hosts_json(ctx, task.top_model)})
            if len(found) >= 100:
                break
        return found

    @rpc.method("arena_marketModel")
    def model(model: str) -> dict | None:
        return model_json(best_context(chain), _cid(model))

    @rpc.method("arena_usage")
    def usage(model: str, period: int | None = None) -> dict:
        ctx = best_context(chain)
        cid = _cid(model)
        p = marketplace.current_period(ctx) if period is None else _period(period)
        rows = marketplace.Usage.get(ctx.state, [cid, p])
        return {"modelCid": cid, "period": p, "currentPeriod": marketplace.current_period(ctx),
                "hosts": [{"address": ss58_encode(h), "queries": q, "revenue": r} for h, q, r in rows],
                "queries": sum(q for _, q, _ in rows), "revenue": sum(r for _, _, r in rows),
                "payouts": [{"party": party, "address": ss58_encode(who), "amount": amount}
                            for party, who, amount in marketplace.Payouts.get(ctx.state, [cid, p])]}

    @rpc.method("arena_escrow")
    def escrow(address: str) -> dict:
        ctx = best_context(chain)
        who = account_param(address)
        balance, requested, release = marketplace.escrow_of(ctx, who)
        return {"address": ss58_encode(who), "balance": balance, "withdrawRequested": requested,
                "releaseBlock": release or None, "available": balance - requested}

    @rpc.method("arena_voucherState")
    def voucher_state(user: str, host: str, model: str) -> dict:
        """The last redeemed voucher of a channel (user, host, model)."""
        ctx = best_context(chain)
        queries, amount, nonce = marketplace.Redeemed.get(
            ctx.state, [account_param(user), account_param(host), _cid(model)])
        return {"cumulativeQueries": queries, "cumulativeAmount": amount, "nonce": nonce}

    @rpc.method("arena_marketParams")
    def market_params() -> dict:
        ctx = best_context(chain)
        p = marketplace.params(ctx)
        return {"periodBlocks": p["period_blocks"], "withdrawDelay": p["withdraw_delay"],
                "maxVouchersPerReport": p["max_vouchers_per_report"],
                "usageEmissionPerPeriod": p["usage_emission_per_period"],
                "usageSharesPpb": [[party, share] for party, share in marketplace.Shares.get(ctx.state)],
                "currentPeriod": marketplace.current_period(ctx), "poolAccount": ss58_encode(marketplace.POOL_ACCOUNT)}
