"""Read-only views the dashboard (and any explorer) needs beyond the per-object arena_* methods.

`arena_blocks` lists recent canonical blocks, `arena_blockDetail` decodes one block's
extrinsics with their events, `arena_scores` gives a task's revealed score matrix with the
consensus and ranks. Shapes are documented in docs/rpc.md ("Dashboard views").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.api import UNKNOWN_BLOCK
from node.jsonfmt import event_json, header_json, hexify, unhex
from node.rpc import RpcError, RpcServer
from runtime.codec import CodecError
from runtime.crypto import blake2b_256, ss58_encode
from runtime.modules import tasks
from runtime.types import Block, Extrinsic

if TYPE_CHECKING:
    from node.service import ArenaNode

MAX_BLOCKS = 100
SCORE_ONE_NAT = 10**9  # inv_loss_v1: score = 10**18 // (10**9 + loss_ppb), so loss = 10**9 / score - 1


def loss_from_score(score: int) -> float | None:
    """The held-out loss (nats) a consensus score stands for under inv_loss_v1; None for score 0."""
    if score <= 0:
        return None
    return max(0.0, SCORE_ONE_NAT / score - 1.0)


def _value_json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return ss58_encode(bytes(value)) if len(value) == 32 else hexify(value)
    if isinstance(value, list):
        return [_value_json(v) for v in value]
    return value


def extrinsic_json(encoded: bytes) -> dict:
    """A decoded extrinsic: signer, nonce, era, tip, call; 32-byte arguments shown as SS58."""
    out: dict[str, Any] = {"hash": hexify(blake2b_256(encoded)), "length": len(encoded)}
    try:
        xt = Extrinsic.decode(encoded)
    except CodecError as exc:
        out["error"] = str(exc)
        return out
    out.update({"signer": ss58_encode(xt.signer), "nonce": xt.nonce, "tip": xt.tip,
                "era": {"birth": xt.era.birth, "period": xt.era.period},
                "call": {"module": xt.call.module, "function": xt.call.function,
                         "args": [_value_json(a) for a in xt.call.args]}})
    return out


def register(rpc: RpcServer, node: ArenaNode) -> None:
    """Register arena_blocks, arena_blockDetail and arena_scores."""
    chain = node.chain
    store = chain.store

    def field_names(module: str, name: str) -> list[str] | None:
        found = chain.runtime.modules.get(module)
        return found.events.get(name) if found is not None else None

    def block_by(ref: Any) -> Block:
        if isinstance(ref, int) and not isinstance(ref, bool):
            if not 0 <= ref < 2**64:
                raise RpcError(-32602, "block number must be from 0 to 2**64-1")
            block_hash = store.canonical_hash(ref)
        elif ref is None:
            block_hash = store.best_hash()
        else:
            block_hash = unhex(ref, "block hash")
        block = store.get_block(block_hash) if block_hash else None
        if block is None:
            raise RpcError(UNKNOWN_BLOCK, f"block {ref} is not known to this node")
        return block

    @rpc.method("arena_blocks")
    def blocks(count: int = 20, before: int | None = None) -> list:
        """Up to `count` canonical blocks, newest first, ending below `before` (default: the best)."""
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_BLOCKS:
            raise RpcError(-32602, f"count must be an integer from 1 to {MAX_BLOCKS}")
        best = store.best_header().number
        top = best if before is None else min(best, int(before) - 1)
        finalized = chain.finalized.number
        out = []
        for number in range(top, max(-1, top - count), -1):
            block_hash = store.canonical_hash(number)
            block = store.get_block(block_hash) if block_hash else None
            if block is None:
                continue
            header = header_json(block.header)
            out.append({"number": number, "hash": header["hash"], "author": header["author"],
                        "timestamp": header["timestamp"], "extrinsics": len(block.extrinsics),
                        "events": len(store.events(block.hash)), "finalized": number <= finalized})
        return out

    @rpc.method("arena_blockDetail")
    def block_detail(ref: Any = None) -> dict:
        """A block (by number or hash) with decoded extrinsics and every event."""
        block = block_by(ref)
        events = [event_json(e, field_names(e.module, e.name)) for e in store.events(block.hash)]
        return {"header": header_json(block.header),
                "finalized": block.header.number <= chain.finalized.number
                and store.canonical_hash(block.header.number) == block.hash,
                "extrinsics": [extrinsic_json(x) for x in block.extrinsics], "events": events}

    @rpc.method("arena_scores")
    def scores(task_id: int) -> dict | None:
        """The revealed score matrix of a task: rows validators, columns trainers, plus consensus."""
        if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 0:
            raise RpcError(-32602, "task id must be a non-negative integer")
        state = chain.state()
        raw = tasks.TaskById.get(state, task_id)
        if raw is None:
            return None
        task = tasks.Task.from_list(raw)
        trainers = [who for who, _ in task.trainers]
        reveals = tasks.Reveals.get(state, task_id)
        board = {bytes(who): (rank, score, reward) for who, rank, score, reward, _ in tasks.Leaderboard.get(state, task_id)}
        rows = []
        for validator, row in reveals:
            by_trainer = {bytes(t): s for t, s in row}
            rows.append({"validator": ss58_encode(validator),
                         "scores": [by_trainer.get(bytes(t)) for t in trainers]})
        consensus = []
        for who in trainers:
            rank, score, reward = board.get(bytes(who), (None, None, None))
            consensus.append({"trainer": ss58_encode(who), "rank": rank, "consensusScore": score, "reward": reward,
                              "lossNats": loss_from_score(score) if score is not None else None})
        return {"taskId": task_id, "status": task.status, "kind": task.kind,
                "trainers": [ss58_encode(t) for t in trainers], "rows": rows, "consensus": consensus,
                "scoreRule": "inv_loss_v1: score = 10^18 // (10^9 + loss_ppb); loss_nats = 10^9 / score - 1"}
