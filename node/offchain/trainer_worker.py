"""Trainer worker: on selection, start training, train with torch, publish the model, commit to its
CID, then reveal it.

Per active task in which this account is a selected trainer, in the training phase:

1. `tasks.start_training(task_id)` (once: chain state and the state file say whether it was sent);
2. fetch the spec and the training split from IPFS (size-limited), train with the ML library
   (`kind.train`, CPU by default, CUDA with `--device auto|cuda` when present), progress as
   `event=train_progress` log lines (and a tqdm bar when attached to a terminal);
3. write the model file to the worker's directory and record its CID in the state file *before*
   submitting, so a restart re-uses the file instead of training again; the file carries the
   training curve the ML library recorded (per-epoch loss and accuracy, or per-window loss for
   LoRA) as safetensors metadata `arena_training`, which the dashboard draws (docs/dashboard.md);
4. `tasks.commit_model(task_id, blake2b-256(encode([task_id, trainer, cid])))` (once);
5. once the task's status (`arena_tasks`, polled) is `model_reveal`, the reveal
   `tasks.submit_model(task_id, cid)` (once). No CID is on chain before the training window
   closes, so no other trainer can copy the model (docs/incentives.md). The reveal runs in its own
   thread (own chain client and state file `reveal.json`): training another task may take longer
   than the short reveal window.

Options (`ctx.options`): `quality` good | poor | broken (demo: broken submits a truncated file
that does not load), `broken_mode` truncated | wrong_arch | pickle | huge, `epochs`, `device`,
`bond` (base units; default the role minimum).
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from node.offchain.chain_client import CallFailed, ChainClient, WorkerStopped
from node.offchain.context import WorkerContext
from node.offchain.llm_worker import warm_up
from node.offchain.ml import MLError, get_kind
from node.offchain.ml.spec import HARD_MAX_DATA_BYTES
from node.offchain.worker import POLL_S, RoleLoop
from runtime.codec import encode
from runtime.crypto import blake2b_256, ss58_decode

MAX_SPEC_BYTES = 1 << 20
QUALITIES = ("good", "poor", "broken")
BROKEN_MODES = ("truncated", "wrong_arch", "pickle", "huge")


def my_entry(task: dict, role_key: str, address: str) -> dict | None:
    """This account's entry in a task's `trainers` / `validators` list, if selected."""
    return next((e for e in task.get(role_key, []) if e["address"] == address), None)


def fetch_spec(loop: RoleLoop, spec_cid: str) -> dict:
    """The task spec (JSON on IPFS, at most 1 MiB)."""
    return json.loads(loop.content.fetch(spec_cid, MAX_SPEC_BYTES, "spec"))


def break_model(model: bytes, mode: str, spec: dict) -> bytes:
    """A model file that must not load, for the demo's broken trainer and the fault tests."""
    if mode == "truncated":
        return model[: len(model) // 2]
    if mode == "wrong_arch":
        import torch

        from node.offchain.ml.tensorfile import dump_tensors

        return dump_tensors({"layers.0.weight": torch.zeros(3, 3)}, {"arena_model_format": "1"})
    if mode == "pickle":  # what torch.save writes: a zip holding a pickle that could carry code
        import io
        import pickle

        buffer = io.BytesIO()
        pickle.dump({"weights": [0.0] * 16, "note": "never unpickled by validators"}, buffer)
        return buffer.getvalue()
    if mode == "huge":
        return model + b"\0" * (spec["limits"]["max_model_bytes"] + 1)
    raise ValueError(f"broken_mode must be one of {', '.join(BROKEN_MODES)}, got {mode!r}")


def break_adapter(adapter: dict[str, bytes], mode: str, spec: dict) -> dict[str, bytes]:
    """An adapter folder that must not load (same modes as `break_model`, on its weights file)."""
    from node.offchain.ml.llm import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    if mode == "wrong_arch":  # a LoRA on a module the spec does not allow, with made-up shapes
        config = json.loads(adapter[ADAPTER_CONFIG])
        config["target_modules"] = ["lm_head"]
        return {ADAPTER_CONFIG: json.dumps(config).encode(), ADAPTER_WEIGHTS: adapter[ADAPTER_WEIGHTS]}
    huge_spec = {"limits": {"max_model_bytes": spec["limits"]["max_adapter_bytes"]}}
    return {**adapter, ADAPTER_WEIGHTS: break_model(adapter[ADAPTER_WEIGHTS], mode, huge_spec)}


class Trainer(RoleLoop):
    """The trainer role (module docstring)."""

    bond_role = "trainer"

    def setup(self) -> None:
        quality = self.ctx.options.get("quality", "good")
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
        self.tasks = self.state.data.setdefault("tasks", {})
        if getattr(self, "_revealer", None) is None:
            self._revealer = threading.Thread(target=self._reveal_loop, daemon=True,
                                              name=f"reveal-{self.ctx.key.address[:8]}")
            self._revealer.start()

    def step(self) -> None:
        for summary in self.chain.active_tasks():
            warm_up(str(summary.get("kind")))
            record = self.tasks.get(str(summary["id"]), {})
            if summary["status"] not in ("training", "model_reveal") or record.get("done"):
                continue
            task = self.chain.task(summary["id"])
            if task is None or my_entry(task, "trainers", self.ctx.key.address) is None:
                continue
            self.work_on(task)

    def _record(self, task_id: int) -> dict:
        return self.tasks.setdefault(str(task_id), {})

    def work_on(self, task: dict) -> None:
        task_id = task["id"]
        me = my_entry(task, "trainers", self.ctx.key.address)
        assert me is not None
        record = self._record(task_id)
        if me["modelCid"]:
            record.update(done=True, model_cid=me["modelCid"])
            self.state.save()
            return
        if record.get("abandoned"):
            return
        if task["status"] == "model_reveal":
            if not me.get("modelCommitment"):
                record.update(done=True, missed="no model committed in the training window")
                self.state.save()
                self.log.warning("event=model_reveal_missed task=%d", task_id)
            return  # committed: the reveal thread reveals it
        if me.get("modelCommitment"):
            return  # committed: the reveal waits for the model_reveal phase
        if not me["startedBlock"]:
            self.chain.submit_once(f"task/{task_id}/start_training", "tasks", "start_training", [task_id])
            self.log.info("event=training_started task=%d kind=%s", task_id, task["kind"])
        if not record.get("model_cid"):
            try:
                model = self.train(task)
            except MLError as exc:  # the planner's spec or data is bad: say so once, do not retry
                record.update(abandoned=f"{type(exc).__name__}: {exc}")
                self.state.save()
                self.log.error("event=training_abandoned task=%d reason=%r", task_id, record["abandoned"])
                return
            if isinstance(model, dict):  # a folder (LoRA adapter): written and published as a directory
                path = self.ctx.data_dir / f"adapter-task{task_id}"
                path.mkdir(exist_ok=True)
                for name, data in model.items():
                    (path / name).write_bytes(data)
                record["model_path"] = str(path)
                record["model_cid"] = self.content.add_folder(model, f"adapter task={task_id}")
            else:
                path = self.ctx.data_dir / f"model-task{task_id}.safetensors"
                path.write_bytes(model)
                record["model_path"] = str(path)
                record["model_cid"] = self.content.add(model, f"model task={task_id}")
            self.state.save()
        commitment = blake2b_256(encode([task_id, self.ctx.key.public_key, record["model_cid"]]))
        inclusion = self.chain.submit_once(f"task/{task_id}/commit_model", "tasks", "commit_model",
                                           [task_id, commitment])
        record.update(committed_block=inclusion.block_number)
        self.state.save()
        self.log.info("event=model_committed task=%d cid=%s block=%d", task_id, record["model_cid"],
                      inclusion.block_number)

    def _reveal_loop(self) -> None:
        """Reveal every committed model as soon as its task is in `model_reveal` (module docstring, step 5)."""
        chain = ChainClient(self.ctx, self.ctx.state("reveal"))
        reported: set[str] = set()
        while not self.ctx.stop.wait(POLL_S):
            try:
                for summary in chain.active_tasks():
                    if summary["status"] == "model_reveal":
                        self._reveal(chain, int(summary["id"]))
            except WorkerStopped:
                return
            except CallFailed as exc:
                if exc.action not in reported:
                    reported.add(exc.action)
                    self.log.warning("event=model_reveal_failed action=%s error=%s", exc.action, exc.error)
            except Exception as exc:  # noqa: BLE001 - a failed poll must not end the reveals
                self.log.warning("event=reveal_error error=%s detail=%r", type(exc).__name__, str(exc)[:200])
                self.ctx.stop.wait(1.0)

    def _reveal(self, chain: ChainClient, task_id: int) -> None:
        record = self.tasks.get(str(task_id)) or {}
        cid = record.get("model_cid")
        task = chain.task(task_id) if cid else None
        me = my_entry(task, "trainers", self.ctx.key.address) if task else None
        if me is None or me["modelCid"] or not me.get("modelCommitment"):
            return
        if "0x" + blake2b_256(encode([task_id, self.ctx.key.public_key, cid])).hex() != me["modelCommitment"]:
            return  # committed to another file (lost state): nothing to reveal
        inclusion = chain.submit_once(f"task/{task_id}/submit_model", "tasks", "submit_model", [task_id, cid])
        self.log.info("event=model_submitted task=%d cid=%s block=%d quality=%s", task_id, cid,
                      inclusion.block_number, self.ctx.options.get("quality", "good"))

    def train(self, task: dict) -> bytes | dict[str, bytes]:
        """Fetch the spec and training data, train, and return the model file (or folder for LoRA kinds)."""
        task_id = task["id"]
        spec = fetch_spec(self, task["specCid"])
        kind = get_kind(str(spec.get("kind")))
        limit = min(int(spec["limits"].get("max_data_bytes", HARD_MAX_DATA_BYTES)), HARD_MAX_DATA_BYTES)
        train_bytes = self.content.fetch(spec["data"]["train_cid"], limit, "training data")
        quality = self.ctx.options.get("quality", "good")
        epochs = int(self.ctx.options.get("epochs") or spec["training"]["epochs"])
        seed = int.from_bytes(ss58_decode(self.ctx.key.address)[:4], "big") ^ task_id
        started = time.monotonic()
        self.log.info("event=train_begin task=%d kind=%s quality=%s epochs=%d device=%s", task_id, kind.name,
                      quality, epochs, self.ctx.options.get("device", "auto"))
        progress: Any = "tqdm" if self.ctx.options.get("progress_bar") and sys.stderr.isatty() else self._progress(task_id)
        common: dict[str, Any] = {"epochs": epochs, "lr": float(spec["training"]["lr"]), "seed": seed,
                                      "quality": "good" if quality == "good" else "poor", "progress": progress,
                                      "device": self.ctx.options.get("device", "auto")}
        if kind.artifact == "folder":
            from node.offchain.llm_worker import train_adapter
            adapter = train_adapter(self, kind, spec, train_bytes, task_id, common)
            if quality == "broken":
                adapter = break_adapter(adapter, self.ctx.options.get("broken_mode", "truncated"), spec)
            self.log.info("event=train_done task=%d bytes=%d seconds=%.2f quality=%s", task_id,
                          sum(len(v) for v in adapter.values()), time.monotonic() - started, quality)
            return adapter
        model = kind.train(spec, train_bytes, **common)
        if quality == "broken":
            model = break_model(model, self.ctx.options.get("broken_mode", "truncated"), spec)
        self.log.info("event=train_done task=%d bytes=%d seconds=%.2f quality=%s", task_id, len(model),
                      time.monotonic() - started, quality)
        return model

    def _progress(self, task_id: int):
        """A progress callback that logs about ten structured lines per training run."""
        def report(step: int, total: int, loss: float) -> None:
            if step == total or step % max(1, total // 10) == 0:
                self.log.info("event=train_progress task=%d step=%d total=%d loss=%.4f", task_id, step, total, loss)
        return report


def run(ctx: WorkerContext) -> None:
    """Run the trainer role until `ctx.stop` is set."""
    Trainer(ctx).run()
