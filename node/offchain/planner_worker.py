"""Planner worker: prepare data, create tasks, share the sealed held-out set, publish the audit key.

For each planned task (`ctx.options["tasks"]`, a list of `TaskPlan` dicts), in order:

1. prepare: `kind.prepare(source, seed)` with a secret random seed splits the data into a public
   training split and a held-out split; the training split goes to IPFS (its CID into the spec),
   the held-out split stays on this worker's disk (the spec records only its blake2b digest and
   size: `heldout_cid` stays null, so trainers cannot fetch it); the spec goes to IPFS;
2. wait until enough trainers and validators are live (bonded with a current heartbeat) so
   that selection can fill the task, then `tasks.create(spec_cid, reward, params)`;
3. once validators are selected: a fresh data key is stored first, then the held-out split is
   sealed to each selected validator's account key (`sealing.seal_for_validators`), the share
   added to IPFS and `tasks.publish_validation_share(task_id, cid)` sent;
4. after finalization (or failure): `tasks.publish_audit_key(task_id, key)`, so that anyone can
   open the share and re-run validation (`node.offchain.audit`).

Every step is recorded in the state file before or right after its extrinsic, so a restarted
planner neither creates a task twice nor loses the key of a published share. Data that does
not parse (`DataRejected`) is logged with its reason and that plan is marked failed.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from node.offchain.context import WorkerContext
from node.offchain.ml import MLError, get_kind
from node.offchain.ml.sealing import encode_share, new_data_key, seal_for_validators
from node.offchain.worker import RoleLoop
from runtime.crypto import ss58_decode
from runtime.modules.balances import UNIT


@dataclass
class TaskPlan:
    """One task the planner creates: kind, data source and on-chain parameters."""

    kind: str
    source: str | None = None          # a file for custom_csv / custom_text; None for built-in data
    n_trainers: int = 3
    n_validators: int = 3
    min_stake: int = 0
    training_blocks: int = 120
    commit_blocks: int = 60
    reveal_blocks: int = 30
    reward: int = 100 * UNIT
    epochs: int | None = None           # suggested epochs written into the spec (None: kind default)
    wait_eligible: bool = True          # wait for enough live trainers/validators before creating
    base_cid: str | None = None         # causal_lm_lora: a published base model folder (default: build one)

    def params(self) -> list:
        return [self.kind, self.n_trainers, self.n_validators, self.min_stake, self.training_blocks,
                self.commit_blocks, self.reveal_blocks]


def parse_plan(text: str, defaults: dict | None = None) -> dict:
    """`KIND[:SOURCE]` (CLI `--task`) → a TaskPlan dict, with `defaults` for the other fields."""
    kind, _, source = text.partition(":")
    return asdict(TaskPlan(kind=kind, source=source or None, **(defaults or {})))


class Planner(RoleLoop):
    """The planner role (module docstring)."""

    def setup(self) -> None:
        self.plans = self.state.data.setdefault("plans", [])
        wanted = self.ctx.options.get("tasks", [])
        for index, plan in enumerate(wanted):  # new plans are appended; recorded ones are kept as they are
            if index >= len(self.plans):
                self.plans.append({"plan": plan})
        self.state.save()

    def step(self) -> None:
        for index, entry in enumerate(self.plans):
            if entry.get("failed") or entry.get("done"):
                continue
            if "task_id" not in entry:
                if not self.create(index, entry):
                    return  # tasks are created in order
            else:
                self.follow(entry)

    # ------------------------------------------------------------ creation

    def prepare(self, index: int, entry: dict) -> None:
        plan = TaskPlan(**entry["plan"])
        kind = get_kind(plan.kind)
        seed = secrets.randbits(63)  # secret: the built-in kinds split public data by this seed
        options: dict = {}
        if plan.base_cid:  # a Hugging Face model folder someone published (`arena model publish DIR`)
            from node.offchain.folders import BASE_FILES
            from node.offchain.ml.llm import HARD_MAX_BASE_BYTES
            limits = {name: cap or HARD_MAX_BASE_BYTES for name, cap in BASE_FILES.items()}
            options["base"] = self.content.fetch_folder(plan.base_cid, limits, HARD_MAX_BASE_BYTES, "base model")
        prepared = kind.prepare(plan.source, seed, options=options)
        spec = prepared.spec
        for name, files in prepared.folders.items():  # e.g. the base model the kind built or was given
            cid = self.content.add_folder(files, f"{name} model plan={index}")
            if name == "base":
                spec["model"]["base_cid"] = cid
        if plan.epochs:
            spec["training"]["epochs"] = min(plan.epochs, spec["limits"]["max_epochs"])
        heldout_path = self.ctx.data_dir / f"heldout-plan{index}.bin"
        heldout_path.write_bytes(prepared.heldout_bytes)
        spec["data"]["train_cid"] = self.content.add(prepared.train_bytes, f"training data plan={index}")
        spec["data"]["heldout_cid"] = None  # published only sealed to the validators, then by key
        entry.update(spec_cid=self.content.add(json.dumps(spec, sort_keys=True).encode(), f"spec plan={index}"),
                     heldout_path=str(heldout_path), train_cid=spec["data"]["train_cid"])
        self.state.save()
        self.log.info("event=task_prepared plan=%d kind=%s spec_cid=%s train_cid=%s train_examples=%s "
                      "heldout_examples=%s", index, plan.kind, entry["spec_cid"], entry["train_cid"],
                      spec["data"].get("train_examples"), spec["data"].get("heldout_examples"))

    def enough_live(self, plan: TaskPlan) -> bool:
        roles = self.chain.call("arena_roles")
        me = self.ctx.key.address
        live = {role: sum(1 for m in roles[role]["members"] if m["live"] and m["address"] != me)
                for role in ("trainer", "validator")}
        ready = live["trainer"] >= plan.n_trainers and live["validator"] >= plan.n_validators
        if not ready:
            self.log.info("event=waiting_for_workers kind=%s live_trainers=%d/%d live_validators=%d/%d", plan.kind,
                          live["trainer"], plan.n_trainers, live["validator"], plan.n_validators)
        return ready

    def create(self, index: int, entry: dict) -> bool:
        """Prepare and create plan `index`; False while it cannot be created yet."""
        plan = TaskPlan(**entry["plan"])
        if "spec_cid" not in entry:
            try:
                self.prepare(index, entry)
            except MLError as exc:
                entry["failed"] = f"{type(exc).__name__}: {exc}"
                self.state.save()
                self.log.error("event=plan_failed plan=%d kind=%s reason=%r", index, plan.kind, entry["failed"])
                return True
        if plan.wait_eligible and not self.chain.was_submitted(f"create/{index}") \
                and not self.enough_live(plan):
            return False
        inclusion = self.chain.submit_once(f"create/{index}", "tasks", "create",
                                           [entry["spec_cid"], plan.reward, plan.params()])
        created = next(e for e in inclusion.events if e["module"] == "tasks" and e["name"] == "TaskCreated")
        entry["task_id"] = int(created["data"][0])
        self.state.save()
        self.log.info("event=task_created task=%d kind=%s spec_cid=%s reward=%d block=%d", entry["task_id"],
                      plan.kind, entry["spec_cid"], plan.reward, inclusion.block_number)
        return True

    # ------------------------------------------------------------ after creation

    def follow(self, entry: dict) -> None:
        task_id = entry["task_id"]
        task = self.chain.task(task_id)
        if task is None:
            return
        status = task["status"]
        if status == "cancelled":
            entry["done"] = True
            self.state.save()
            self.log.warning("event=task_cancelled task=%d reason=%r", task_id, "no eligible trainer or validator")
            return
        if status in ("training", "model_reveal", "validation", "reveal") and not task["validationShare"]:
            self.share(entry, task)
        if status in ("finalized", "failed"):
            if entry.get("data_key") and not task["auditKey"] and task["validationShare"]:
                self.chain.submit_once(f"task/{task_id}/audit_key", "tasks", "publish_audit_key",
                                       [task_id, bytes.fromhex(entry["data_key"])])
                self.log.info("event=audit_key_published task=%d", task_id)
            entry["done"] = True
            self.state.save()
            self.log.info("event=task_closed task=%d status=%s top_model=%s", task_id, status, task["topModel"])

    def share(self, entry: dict, task: dict) -> None:
        """Seal the held-out split to the selected validators and publish the share's CID."""
        task_id = task["id"]
        if "share_cid" not in entry:
            if "data_key" not in entry:  # stored before use: the audit needs exactly this key
                entry["data_key"] = new_data_key().hex()
                self.state.save()
            heldout = Path(entry["heldout_path"]).read_bytes()
            validators = [ss58_decode(v["address"]) for v in task["validators"]]
            share = seal_for_validators(heldout, validators, key=bytes.fromhex(entry["data_key"]))
            entry["share_cid"] = self.content.add(encode_share(share), f"validation share task={task_id}")
            self.state.save()
        self.chain.submit_once(f"task/{task_id}/share", "tasks", "publish_validation_share",
                               [task_id, entry["share_cid"]])
        self.log.info("event=validation_shared task=%d share_cid=%s validators=%d", task_id, entry["share_cid"],
                      len(task["validators"]))


def run(ctx: WorkerContext) -> None:
    """Run the planner role until `ctx.stop` is set (planned tasks in `ctx.options["tasks"]`)."""
    Planner(ctx).run()
