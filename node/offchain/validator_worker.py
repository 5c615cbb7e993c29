"""Validator worker: on selection, open the sealed held-out set, score every model, commit, reveal.

Per active task in which this account is a selected validator:

- training phase: nothing to do yet (the planner publishes the sealed held-out share meanwhile);
- validation phase: `tasks.start_validation` (once); fetch the share (`validationShare` CID),
  open it with this account's key, check it against the spec's `heldout_blake2b`; fetch every
  submitted model by CID (refused over the spec's `max_model_bytes` without downloading it) and
  evaluate it with the ML library (defensive loading: a truncated file, a wrong architecture or
  a pickle scores 0 with the reason logged); build the canonical integer scores and a fresh salt
  and **persist scores + salt + commitment before** `tasks.commit_scores` is sent;
- reveal phase: `tasks.reveal_scores(scores, salt)` from the persisted record.

So a validator that crashes between commit and reveal and is restarted still reveals in time:
the scores and salt are on disk, and the chain says the commitment is there and the reveal is
not. A persisted commitment that differs from the chain's (never expected) is reported, not
revealed. Options: `fault` = `crash-after-commit` (tests: exit the process right after the
commit is included, simulating a crash).
"""
from __future__ import annotations

import os
import time
from typing import cast

from node.offchain.content import ContentError, ContentTooLarge
from node.offchain.context import WorkerContext
from node.offchain.llm_worker import warm_up
from node.offchain.ml import MLError, get_kind
from node.offchain.ml.scores import canonical_scores, new_salt, score_commitment
from node.offchain.ml.sealing import MAX_SHARE_BYTES, SealingError, decode_share, open_share
from node.offchain.ml.spec import blake2b_hex
from node.offchain.trainer_worker import fetch_spec, my_entry
from node.offchain.worker import RoleLoop
from runtime.crypto import ss58_decode


class HeldOutMismatch(MLError):
    """The opened held-out set does not match the spec's digest (a faulty or dishonest planner)."""


def score_models(loop: RoleLoop, task: dict, spec: dict, heldout: bytes) -> list[dict]:
    """Evaluate every submitted model of `task`; [{trainer, cid, score, loss_ppb, rejected}] by trainer."""
    kind = get_kind(str(spec.get("kind")))
    by_address = {e["address"]: e for e in task["trainers"]}
    limit = int(spec["limits"].get("max_model_bytes", 0))
    results = []
    fetch_s = eval_s = 0.0
    for address in task["submissions"]:
        cid = by_address[address]["modelCid"]
        began = time.monotonic()
        if kind.artifact == "folder":  # a LoRA adapter folder on the spec's base model
            from node.offchain.llm_worker import score_adapter
            result, fetched = score_adapter(loop, kind, spec, cid, heldout)
            fetch_s, eval_s = fetch_s + fetched, eval_s + time.monotonic() - began - fetched
            results.append({"trainer": address, "cid": cid, "score": result.score, "loss_ppb": result.loss_ppb,
                            "accuracy_ppb": None, "tokens": result.examples, "rejected": result.rejected})
            _log_result(loop, task, address, cid, result)
            continue
        try:
            model = loop.content.fetch(cid, limit, "model")
        except ContentTooLarge as exc:
            results.append({"trainer": address, "cid": cid, "score": 0, "loss_ppb": None, "rejected": str(exc)})
            loop.log.warning("event=model_rejected task=%d trainer=%s cid=%s reason=%r", task["id"], address, cid,
                             str(exc))
            continue
        fetched = time.monotonic()
        result = kind.evaluate(spec, model, heldout)
        fetch_s, eval_s = fetch_s + fetched - began, eval_s + time.monotonic() - fetched
        results.append({"trainer": address, "cid": cid, "score": result.score, "loss_ppb": result.loss_ppb,
                        "accuracy_ppb": result.accuracy_ppb, "rejected": result.rejected})
        _log_result(loop, task, address, cid, result)
    loop.log.info("event=task_scored task=%d models=%d fetch_seconds=%.3f eval_seconds=%.3f", task["id"],
                  len(results), fetch_s, eval_s)
    return sorted(results, key=lambda r: ss58_decode(r["trainer"]))


def _log_result(loop: RoleLoop, task: dict, address: str, cid: str, result) -> None:
    if result.rejected:
        loop.log.warning("event=model_rejected task=%d trainer=%s cid=%s reason=%r", task["id"], address, cid,
                         result.rejected)
    else:
        loop.log.info("event=model_scored task=%d trainer=%s cid=%s loss_ppb=%d loss_nats=%.6f score=%d", task["id"],
                      address, cid, result.loss_ppb, result.loss_ppb / 10**9, result.score)


class Validator(RoleLoop):
    """The validator role (module docstring)."""

    bond_role = "validator"

    def setup(self) -> None:
        self.tasks = self.state.data.setdefault("tasks", {})

    def step(self) -> None:
        for summary in self.chain.active_tasks():
            warm_up(str(summary.get("kind")))
            record = self.tasks.get(str(summary["id"]), {})
            if summary["status"] not in ("validation", "reveal") or record.get("done"):
                continue
            task = self.chain.task(summary["id"])
            if task is None or my_entry(task, "validators", self.ctx.key.address) is None:
                continue
            if task["status"] == "validation":
                self.validate(task)
            elif task["status"] == "reveal":
                self.reveal(task)

    def _record(self, task_id: int) -> dict:
        return self.tasks.setdefault(str(task_id), {})

    def heldout(self, task: dict, spec: dict) -> bytes | None:
        """Open this validator's sealed share of the held-out set (None while not yet published)."""
        if not task["validationShare"]:
            return None
        wire = self.content.fetch(task["validationShare"], MAX_SHARE_BYTES, "validation share")
        data = open_share(decode_share(wire), self.ctx.key.seed)
        if blake2b_hex(data) != spec["data"].get("heldout_blake2b"):
            raise HeldOutMismatch(f"the held-out set of task {task['id']} does not match the spec's heldout_blake2b")
        return data

    def validate(self, task: dict) -> None:
        task_id = task["id"]
        me = my_entry(task, "validators", self.ctx.key.address)
        assert me is not None
        record = self._record(task_id)
        if me["commitment"]:
            return
        if not me["startedBlock"]:
            self.chain.submit_once(f"task/{task_id}/start_validation", "tasks", "start_validation", [task_id])
            self.log.info("event=validation_started task=%d models=%d", task_id, len(task["submissions"]))
        if not record.get("commitment"):
            spec = fetch_spec(self, task["specCid"])
            try:
                heldout = self.heldout(task, spec)
            except (SealingError, MLError, ContentError) as exc:
                self.log.error("event=heldout_unusable task=%d error=%s detail=%r", task_id, type(exc).__name__,
                               str(exc)[:200])
                return
            if heldout is None:
                self.log.info("event=waiting_for_share task=%d", task_id)
                return
            results = score_models(self, task, spec, heldout)
            scores = canonical_scores([[ss58_decode(r["trainer"]), r["score"]] for r in results])
            salt = new_salt()
            commitment = score_commitment(task_id, self.ctx.key.public_key, scores, salt)
            # Persist before committing: a crash after the commit must still be able to reveal.
            record.update(scores=[[cast(bytes, t).hex(), s] for t, s in scores], salt=salt.hex(),
                          commitment=commitment.hex(),
                          results=results)
            self.state.save()
        self.chain.submit_once(f"task/{task_id}/commit", "tasks", "commit_scores",
                               [task_id, bytes.fromhex(record["commitment"])])
        self.log.info("event=scores_committed task=%d commitment=%s scores=%s", task_id, record["commitment"][:16],
                      ",".join(str(s) for _, s in record["scores"]))
        if self.ctx.options.get("fault") == "crash-after-commit":
            self.log.warning("event=fault_injected fault=crash-after-commit task=%d", task_id)
            os._exit(17)

    def reveal(self, task: dict) -> None:
        task_id = task["id"]
        me = my_entry(task, "validators", self.ctx.key.address)
        assert me is not None
        record = self._record(task_id)
        if not me["commitment"] or me["revealBlock"]:
            record["done"] = True
            self.state.save()
            return
        if me["commitment"] != "0x" + record.get("commitment", ""):
            self.log.error("event=cannot_reveal task=%d reason=%r", task_id,
                           "the commitment on chain is not the one in this worker's state file")
            record["done"] = True
            self.state.save()
            return
        scores = [[bytes.fromhex(t), s] for t, s in record["scores"]]
        inclusion = self.chain.submit_once(f"task/{task_id}/reveal", "tasks", "reveal_scores",
                                           [task_id, scores, bytes.fromhex(record["salt"])])
        record.update(done=True, revealed_block=inclusion.block_number)
        self.state.save()
        self.log.info("event=scores_revealed task=%d block=%d", task_id, inclusion.block_number)


def run(ctx: WorkerContext) -> None:
    """Run the validator role until `ctx.stop` is set."""
    Validator(ctx).run()
