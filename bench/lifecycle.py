"""A task's life on the local network: wall time of each phase and of the whole task, and the
validators' throughput beside the raw torch evaluation rate of the same models, in one run.

Starts the demo's setup quietly (4 nodes with 500 ms slots, planner, three trainers of quality
good / poor / broken, three validators), runs one digits_classifier and one char_lm task to
finalization, then:

- phase times come from the block timestamps in each task's on-chain timeline (created →
  training → validation → reveal → finalized); the limit beside each is the window the task
  allowed for that phase (blocks × slot);
- validator throughput = models scored per minute of validator evaluation (defensive load,
  float64 deterministic evaluation), and the same including the model's IPFS fetch, from the
  validators' `event=task_scored` log lines (three validator accounts share one process and
  the CPU with four nodes and the trainers, so this is throughput under load); the limit is the raw float32 torch forward pass over the same held-out set for the same
  (loadable) models, measured here after the audit key is published.

`python -m bench.lifecycle` prints the rows; `run()` returns them. About 1–2 minutes.
"""
from __future__ import annotations

import itertools
import json
import re
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench.common import print_rows, row

SLOT_S = 0.5
# the model reveal window after training (genesis `modules.tasks.model_reveal_blocks`, default 3)
MODEL_REVEAL_BLOCKS = int(json.loads((Path(__file__).resolve().parents[1] / "genesis.json").read_text())
                          ["modules"]["tasks"].get("model_reveal_blocks", 3))
RAW_SECONDS = 2.0


def _raw_rate(task: dict, rpc_url: str) -> float:
    """Raw float32 forward passes of the task's loadable models over its held-out set, per minute."""
    import safetensors.torch
    import torch

    from node.offchain.audit import _fetch, _ipfs
    from node.offchain.ml import get_kind
    from node.offchain.ml.sealing import decode_share, open_with_key

    ipfs = _ipfs(rpc_url)
    spec = json.loads(_fetch(ipfs, task["specCid"], 1 << 20, "spec"))
    kind = get_kind(spec["kind"])
    if kind.artifact == "folder":  # LoRA adapters: bench/llm.py measures their raw forward rate
        from bench.llm import raw_adapter_rate
        return raw_adapter_rate(task, spec, ipfs)
    share = decode_share(_fetch(ipfs, task["validationShare"], 80 << 20, "share"))
    heldout = open_with_key(share.ciphertext, bytes.fromhex(task["auditKey"][2:]))
    inputs, _ = kind.decode_split(spec, heldout, "heldout")
    models = []
    for entry in task["trainers"]:
        try:
            model = kind.build_model(spec)
            model.load_state_dict(safetensors.torch.load(_fetch(ipfs, entry["modelCid"], 64 << 20, "model")))
            models.append(model.eval())
        except Exception:  # noqa: BLE001, S112 - the broken model does not load raw either: skip it
            continue
    count, start = 0, time.perf_counter()
    with torch.inference_mode():
        while (elapsed := time.perf_counter() - start) < RAW_SECONDS:
            model = models[count % len(models)]
            for begin in range(0, inputs.shape[0], spec["metric"]["eval_batch_size"]):
                model(inputs[begin:begin + spec["metric"]["eval_batch_size"]])
            count += 1
    return count * 60.0 / elapsed


def _validator_rates(log_text: str) -> dict[int, tuple[float, float]]:
    """Per task: (models per minute of evaluation, models per minute of fetch + evaluation), from
    the validators' `event=task_scored` lines (all validators together)."""
    totals: dict[int, list[float]] = {}
    for m in re.finditer(r"event=task_scored task=(\d+) models=(\d+) fetch_seconds=([0-9.]+) "
                         r"eval_seconds=([0-9.]+)", log_text):
        entry = totals.setdefault(int(m.group(1)), [0, 0.0, 0.0])
        entry[0] += int(m.group(2))
        entry[1] += float(m.group(3))
        entry[2] += float(m.group(4))
    return {t: (n * 60.0 / max(ev, 1e-9), n * 60.0 / max(fe + ev, 1e-9)) for t, (n, fe, ev) in totals.items()}


def run() -> list[dict]:
    from node.demo.run import KINDS, WINDOWS, Demo

    base = Path(tempfile.mkdtemp(prefix="arena-bench-lifecycle-"))
    demo = Demo(base, Console(quiet=True))
    network = demo.network
    rows: list[dict] = []
    try:
        network.start_nodes()
        demo.fund()
        urls = demo.net.rpc_urls
        network.start_worker("trainers", "trainer", ["//trainer-good", "//trainer-poor", "//trainer-broken"], urls[1],
                          "--quality", "good,poor,broken")
        network.start_worker("validators", "validator", ["//validator-1", "//validator-2", "//validator-3"], urls[2])
        planner = ["--windows", ",".join(map(str, WINDOWS)), "--reward", "200"]
        for kind in KINDS:
            planner += ["--task", kind]
        wall_start = time.monotonic()
        network.start_worker("planner", "planner", ["eve"], urls[0], *planner)

        def finished() -> list[dict] | None:
            tasks = [network.rpc.call("arena_task", i) for i in range(len(KINDS))]
            done = all(t and t["status"] == "finalized" and t["auditKey"] for t in tasks)
            return tasks if done else None

        tasks = network.wait_until(finished, 240, "both tasks to finalize")
        wall = time.monotonic() - wall_start
        rates = _validator_rates((network.log_dir / "validators.log").read_text())
        windows = dict(zip(("training", "validation", "reveal"), WINDOWS))
        windows["model_reveal"] = MODEL_REVEAL_BLOCKS
        for task in tasks:
            kind = task["kind"]
            stamps = {e["status"]: e["timestamp"] for e in task["timeline"]}
            order = ["selection", "training", "model_reveal", "validation", "reveal", "finalized"]
            for before, after in itertools.pairwise(order):
                limit = windows.get(before, 1) * SLOT_S
                rows.append(row(f"lifecycle {kind}: {before} phase", (stamps[after] - stamps[before]) / 1000, "s",
                                f"window allowed ({before})", limit))
            rows.append(row(f"lifecycle {kind}: created → finalized", (stamps["finalized"] - stamps["selection"])
                            / 1000, "s", "sum of windows", (1 + sum(WINDOWS) + MODEL_REVEAL_BLOCKS) * SLOT_S))
            raw = _raw_rate(task, urls[3])
            scored, fetched_and_scored = rates.get(task["id"], (0.0, 0.0))
            rows.append(row(f"lifecycle {kind}: validator models scored/min", scored, "models/min",
                            "raw torch forward, same models", raw))
            rows.append(row(f"lifecycle {kind}: validator incl. IPFS fetch", fetched_and_scored, "models/min",
                            "raw torch forward, same models", raw))
        rows.append(row("lifecycle: both tasks, planner start → audit key", wall, "s",
                        "demo target (3 min)", 180.0))
    finally:
        network.stop_all()
    return rows


if __name__ == "__main__":
    print_rows(run())
