"""Read-only views the dashboard (and any explorer) needs beyond the per-object arena_* methods.

`arena_blocks` lists recent canonical blocks, `arena_blockDetail` decodes one block's
extrinsics with their events, `arena_scores` gives a task's revealed score matrix with the
consensus and ranks, `arena_trainingCurve` the per-epoch (or per-step) training loss and accuracy a
trainer wrote into its model file's safetensors header, and `arena_tryModel` (dev chains only) one
paid query of a task's top model, paid by the node's dev key. Shapes are documented in docs/rpc.md
("Dashboard views").
"""
from __future__ import annotations

import json
import math
import shlex
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from node.api import UNKNOWN_BLOCK
from node.jsonfmt import event_json, header_json, hexify, unhex
from node.rpc import RpcError, RpcServer
from p2p.content.errors import ContentError
from runtime.codec import CodecError
from runtime.crypto import Keypair, blake2b_256, ss58_encode
from runtime.modules import tasks
from runtime.state import Overlay
from runtime.types import Block, Extrinsic

if TYPE_CHECKING:
    from node.views import ChainView, NodeView

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


def recent_blocks(chain: ChainView, count: int, before: int | None) -> list:
    """Up to `count` canonical block summaries, newest first, ending below `before` (default: the best)."""
    store = chain.store
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


def score_matrix(state: Overlay, task_id: int) -> dict | None:
    """A task's revealed scores (rows validators, columns trainers) with the consensus ranks; None if unknown."""
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


def register(rpc: RpcServer, node: NodeView) -> None:
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
        return recent_blocks(chain, count, before)

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
        return score_matrix(chain.state(), task_id)

    @rpc.method("arena_trainingCurve")
    def training_curve_view(model_cid: str) -> dict | None:
        """The training curve the trainer recorded in a model's safetensors header (None when absent)."""
        if not isinstance(model_cid, str) or not 1 <= len(model_cid) <= 128 or "/" in model_cid:
            raise RpcError(-32602, "model_cid must be a CID (no path)")
        return training_curve(node.content, model_cid)

    register_try_model(rpc, node)


# ------------------------------------------------------------------ training curves

CURVE_KEY = "arena_training"  # = node.offchain.ml.training.CURVE_KEY (the node does not import torch)
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # = node.offchain.ml.llm.ADAPTER_WEIGHTS
MAX_HEADER_BYTES = 1 << 20
MAX_POINTS = 1000


def _safetensors_metadata(store: Any, path: str) -> dict | None:
    """The `__metadata__` map of a locally stored safetensors file, reading only its header."""
    try:
        head = b"".join(store.cat(path, 0, 8))
        if len(head) != 8:
            return None
        size = int.from_bytes(head, "little")
        if size > MAX_HEADER_BYTES:
            return None
        header = json.loads(b"".join(store.cat(path, 8, size)))
    except (ContentError, ValueError, OSError):  # absent, a folder, not safetensors: no curve
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def parse_curve(text: Any) -> dict | None:
    """A trainer's curve JSON, checked field by field (a trainer is not trusted): unit, loss, points."""
    try:
        raw = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("unit") not in ("epoch", "step") or not isinstance(raw.get("points"), list):
        return None
    unit = raw["unit"]
    points = []
    for item in raw["points"][:MAX_POINTS]:
        if not isinstance(item, dict):
            return None
        x, loss = item.get(unit), _number(item.get("loss"))
        if isinstance(x, bool) or not isinstance(x, int) or x < 0 or loss is None:
            return None
        point: dict[str, Any] = {unit: x, "loss": loss}
        accuracy = _number(item.get("accuracy"))
        if accuracy is not None and 0.0 <= accuracy <= 1.0:
            point["accuracy"] = accuracy
        points.append(point)
    loss_name = raw.get("loss")
    return {"unit": unit, "loss": loss_name[:40] if isinstance(loss_name, str) else "loss", "points": points}


def training_curve(store: Any, model_cid: str) -> dict | None:
    """The curve in a model file (a CID) or in an adapter folder's weights file; None when not stored here."""
    for path in (f"{model_cid}/{ADAPTER_WEIGHTS}", model_cid):
        meta = _safetensors_metadata(store, path)
        if meta is not None:
            curve = parse_curve(meta.get(CURVE_KEY))
            return None if curve is None else {"modelCid": model_cid, "file": path, **curve}
    return None


# ------------------------------------------------------------------ "try the model" (dev chains only)

TRY_ERROR = -32010
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
TEXT_KINDS = ("char_lm", "custom_text")
CHAT_KINDS = ("causal_lm_lora",)
MAX_TRY_INPUT = 4096


def parse_rows(text: str) -> list[list[float]]:
    """Numbers for a classifier: "1,2,3" (one row), a JSON list (one row) or a JSON list of rows."""
    stripped = text.strip()
    values: Any
    try:
        values = json.loads(stripped) if stripped.startswith("[") else \
            [float(p) for p in stripped.replace(",", " ").split()]
    except ValueError as exc:
        raise RpcError(-32602, f"input must be numbers (1,2,3) or a JSON list of rows: {exc}") from None
    rows = values if values and isinstance(values[0], list) else [values]
    for row in rows:
        if not isinstance(row, list) or not row or not all(_number(v) is not None for v in row):
            raise RpcError(-32602, "every input row must be a non-empty list of finite numbers")
    return [[float(v) for v in row] for row in rows]


def query_command(task_id: int, text: str) -> str:
    """The `arena model query` command that pays for the same query with the user's own key."""
    return f"arena model query {task_id} --input {shlex.quote(text)} --key YOUR_KEY"


def register_try_model(rpc: RpcServer, node: NodeView) -> None:
    """arena_tryModel: on a dev chain, the node's dev key pays a registered loopback host for one query."""

    def market_entry(task_id: int) -> dict:
        for entry in rpc.methods["arena_marketModels"]():
            if entry["taskId"] == task_id:
                return entry
        raise RpcError(TRY_ERROR, f"task {task_id} has no top model in the marketplace")

    def ask(entry: dict, host: dict, text: str, max_tokens: int) -> dict:
        from node.offchain.user_client import ArenaModelClient, ModelQueryError

        key = node.config.author_key or Keypair.from_dev_name("alice")
        rpc_url = f"http://127.0.0.1:{node.config.rpc_port}"
        client = ArenaModelClient(rpc_url, key, node.config.base_path / "dashboard-vouchers")
        try:
            if entry["kind"] in CHAT_KINDS:
                answer = client.chat(entry["taskId"], [{"role": "user", "content": text}], max_tokens=max_tokens,
                                     host=host["endpoint"])
            elif entry["kind"] in TEXT_KINDS:
                answer = client.query(entry["taskId"], text, max_tokens=max_tokens, host=host["endpoint"])
            else:
                answer = client.query(entry["taskId"], parse_rows(text), host=host["endpoint"])
        except ModelQueryError as exc:
            raise RpcError(TRY_ERROR, f"the host refused: {exc}") from None
        finally:
            client.close()
        return {"output": answer.output, "cost": answer.cost, "cumulativeAmount": answer.cumulative_amount,
                "payer": key.address}

    @rpc.method("arena_tryModel", unsafe=True)
    async def try_model(task_id: int, text: str, max_tokens: int = 32) -> dict:
        """One paid query of a task's top model, paid by this node's dev key (dev chains only)."""
        if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 0:
            raise RpcError(-32602, "task id must be a non-negative integer")
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_TRY_INPUT:
            raise RpcError(-32602, f"input must be text of 1 to {MAX_TRY_INPUT} characters")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 256:
            raise RpcError(-32602, "max_tokens must be from 1 to 256")
        entry = market_entry(task_id)
        command = query_command(task_id, text)
        if not node.config.dev:
            raise RpcError(TRY_ERROR, "arena_tryModel pays with the node's dev key, so it exists only on a dev "
                                      f"chain (--dev); pay with your own key: {command}", {"command": command})
        hosts = sorted((h for h in entry["hosts"] if urlsplit(h["endpoint"]).hostname in LOOPBACK_HOSTS),
                       key=lambda h: (h["pricePerQuery"], h["address"]))
        if not hosts:
            raise RpcError(TRY_ERROR, f"no host on this machine (loopback) serves task {task_id}'s model",
                           {"command": command})
        result = await anyio.to_thread.run_sync(ask, entry, hosts[0], text, max_tokens)
        return {"taskId": task_id, "modelCid": entry["modelCid"], "kind": entry["kind"], "host": hosts[0]["address"],
                "endpoint": hosts[0]["endpoint"], "command": command, **result}
