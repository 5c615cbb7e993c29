"""Validator throughput: models scored per minute through `evaluate` (defensive load, float64,
one thread, integer score) beside the raw float32 torch forward rate of the same model on the
same held-out data, measured in one run.

`python -m bench.ml_eval` prints one row per figure; `run()` returns them. Takes < 60 s.
"""

from __future__ import annotations

import time
from typing import Any

import safetensors.torch
import torch

from node.offchain.ml import get_kind

SECONDS_PER_FIGURE = 4.0
# (kind, training epochs)
CASES = (("digits_classifier", 10), ("char_lm", 2))


def _rate(action: Any) -> float:
    """Calls per minute of `action` over about `SECONDS_PER_FIGURE` seconds."""
    action()  # warm-up
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < SECONDS_PER_FIGURE:
        action()
        count += 1
    return count * 60.0 / elapsed


def _measure(name: str, epochs: int) -> list[dict[str, Any]]:
    kind = get_kind(name)
    prepared = kind.prepare(None, seed=1)
    spec = prepared.spec
    model_bytes = kind.train(spec, prepared.train_bytes, epochs=epochs, lr=spec["training"]["lr"], seed=1)
    inputs, _ = kind.decode_split(spec, prepared.heldout_bytes, "heldout")
    raw_model = kind.build_model(spec)
    raw_model.load_state_dict(safetensors.torch.load(model_bytes))
    raw_model.eval()
    batch = spec["metric"]["eval_batch_size"]

    def raw_forward() -> None:
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], batch):
                raw_model(inputs[start : start + batch])

    evaluated = _rate(lambda: kind.evaluate(spec, model_bytes, prepared.heldout_bytes))
    raw = _rate(raw_forward)
    examples = int(inputs.shape[0])
    return [
        {
            "figure": f"{name}: models scored via evaluate ({examples} held-out examples)",
            "value": evaluated,
            "unit": "models/min",
            "limit_name": "raw torch forward passes/min, same model and data",
            "limit": raw,
        },
    ]


def run() -> list[dict[str, Any]]:
    """Measure and return the rows."""
    rows: list[dict[str, Any]] = []
    for name, epochs in CASES:
        rows.extend(_measure(name, epochs))
    return rows


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['figure']:<66} {row['value']:>12.1f} {row['unit']:<11} "
            f"({row['limit_name']}: {row['limit']:.1f})"
        )
