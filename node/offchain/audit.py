"""The audit: after finalization, anyone re-runs a task's validation from the published key.

Inputs are all public: the task (RPC), its spec and every model (IPFS), the sealed validation
share (IPFS, CID on chain) and the data key the planner published with `publish_audit_key`.
`audit_task` opens the share with the key, checks the held-out set against the spec's
`heldout_blake2b`, scores every submitted model exactly as a validator does, and compares the
result with each validator's revealed scores (read from the `reveal_scores` extrinsics in the
blocks the chain records as reveal blocks).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from node.offchain.ml import get_kind
from node.offchain.ml.sealing import MAX_SHARE_BYTES, decode_share, open_with_key
from node.offchain.ml.spec import blake2b_hex
from node.rpc_client import RpcClient
from runtime.crypto import ss58_decode, ss58_encode
from runtime.types import Extrinsic

MAX_SPEC_BYTES = 1 << 20


class AuditError(Exception):
    """The audit cannot run (key not yet published, data missing or not matching its digest)."""


@dataclass
class AuditReport:
    """Recomputed scores per trainer and each validator's revealed scores beside them."""

    task_id: int
    recomputed: dict[str, int]                 # trainer SS58 -> score
    losses: dict[str, int | None]              # trainer SS58 -> loss_ppb (None: rejected)
    revealed: dict[str, dict[str, int]] = field(default_factory=dict)  # validator -> trainer -> score
    rejected: dict[str, str] = field(default_factory=dict)              # trainer -> reason

    @property
    def matches(self) -> dict[str, bool]:
        """Per validator: did it reveal exactly the recomputed scores?"""
        return {v: scores == self.recomputed for v, scores in self.revealed.items()}

    @property
    def reproduced(self) -> bool:
        return bool(self.revealed) and all(self.matches.values())


def _ipfs(rpc_url: str):
    import ipfshttpclient

    from node.offchain.context import rpc_to_ipfs_multiaddr
    return ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(rpc_url), timeout=120)


def _fetch(ipfs, cid: str, limit: int, what: str) -> bytes:
    size = int(ipfs.files.stat(f"/ipfs/{cid}")["Size"])
    if size > limit:
        raise AuditError(f"{what} {cid} is {size} bytes, over the limit of {limit}")
    return bytes(ipfs.cat(cid))


def revealed_scores(client: RpcClient, task: dict) -> dict[str, dict[str, int]]:
    """Each validator's revealed scores, read from its reveal_scores extrinsic."""
    found: dict[str, dict[str, int]] = {}
    for validator in task["validators"]:
        number = validator.get("revealBlock")
        if not number:
            continue
        block = client.call("chain_getBlock", client.call("chain_getBlockHash", number))
        signer = ss58_decode(validator["address"])
        for raw in block["block"]["extrinsics"]:
            xt = Extrinsic.decode(bytes.fromhex(raw[2:]))
            call = xt.call
            if (xt.signer == signer and call.module == "tasks" and call.function == "reveal_scores"
                    and call.args[0] == task["id"]):
                found[validator["address"]] = {ss58_encode(t): int(s) for t, s in call.args[1]}
    return found


def audit_task(rpc_url: str, task_id: int) -> AuditReport:
    """Re-run the validation of a finalized task from public data (module docstring)."""
    client = RpcClient(rpc_url, timeout=30)
    task = client.call("arena_task", task_id)
    if task is None:
        raise AuditError(f"task {task_id} does not exist")
    if not task["auditKey"]:
        raise AuditError(f"task {task_id} ({task['status']}) has no published audit key yet")
    if not task["validationShare"]:
        raise AuditError(f"task {task_id} has no validation share on chain")
    ipfs = _ipfs(rpc_url)
    spec = json.loads(_fetch(ipfs, task["specCid"], MAX_SPEC_BYTES, "spec"))
    share = decode_share(_fetch(ipfs, task["validationShare"], MAX_SHARE_BYTES, "validation share"))
    heldout = open_with_key(share.ciphertext, bytes.fromhex(task["auditKey"][2:]))
    if blake2b_hex(heldout) != spec["data"].get("heldout_blake2b"):
        raise AuditError(f"the held-out set of task {task_id} does not match the spec's heldout_blake2b")
    kind = get_kind(spec["kind"])
    models = {e["address"]: e["modelCid"] for e in task["trainers"]}
    report = AuditReport(task_id, {}, {})
    limit = int(spec["limits"].get("max_model_bytes", 0))
    base = None
    if kind.artifact == "folder":  # LoRA adapters on a base model folder
        from node.offchain.folders import FolderRejected, adapter_limits, base_limits, read_folder
        base = read_folder(ipfs, spec["model"]["base_cid"], *base_limits(spec), "base model")
    for trainer in task["submissions"]:
        if base is not None:
            try:
                adapter = read_folder(ipfs, models[trainer], *adapter_limits(spec), "adapter")
            except FolderRejected as exc:
                report.recomputed[trainer], report.losses[trainer] = 0, None
                report.rejected[trainer] = str(exc)
                continue
            result = kind.evaluate(spec, adapter, heldout, base_files=base)  # type: ignore[arg-type, call-arg]
            report.recomputed[trainer] = result.score
            report.losses[trainer] = None if result.rejected else result.loss_ppb
            if result.rejected:
                report.rejected[trainer] = result.rejected
            continue
        try:
            model = _fetch(ipfs, models[trainer], limit, "model")
        except AuditError as exc:
            report.recomputed[trainer], report.losses[trainer] = 0, None
            report.rejected[trainer] = str(exc)
            continue
        result = kind.evaluate(spec, model, heldout)
        report.recomputed[trainer] = result.score
        report.losses[trainer] = None if result.rejected else result.loss_ppb
        if result.rejected:
            report.rejected[trainer] = result.rejected
    report.revealed = revealed_scores(client, task)
    return report
