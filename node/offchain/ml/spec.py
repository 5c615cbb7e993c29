"""The task spec: common fields, hard limits, and the loss → integer score conversion.

A spec is a plain JSON-serialisable dict (the planner puts it on IPFS).  Fields common to
every kind::

    {"format": 1, "kind": str,
     "model": {"arch": str, ...size parameters},
     "limits": {"max_epochs", "max_steps_per_epoch", "max_params", "max_model_bytes",
                "max_data_bytes", "max_lr"},
     "training": {"batch_size", "epochs", "lr"},          # suggested defaults
     "metric": {"loss": "cross_entropy" | "mse", "dtype": "float64", "loss_scale": 10**9,
                "quantization": "round_half_even", "score": "inv_loss_v1",
                "eval_batch_size": int, "accuracy": bool},
     "data": {"format": "safetensors", "train_cid", "heldout_cid", "train_blake2b",
              "heldout_blake2b", "train_examples", "heldout_examples"},
     "task": {...kind-specific}}
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from typing import Any

from node.offchain.ml.errors import SpecRejected

SPEC_FORMAT = 1
LOSS_SCALE = 10**9  # losses are quantized to integer parts-per-billion
SCORE_NUMERATOR = 10**18
# A finite loss is capped here (10**6 nats/unit) so that every finite model keeps a score > 0.
LOSS_PPB_CAP = 10**15
# The loss reported for a model that could not be loaded or produced a non-finite loss: score 0.
REJECTED_LOSS_PPB = 10**18

# Hard caps a validator enforces whatever a (possibly hostile) planner writes into a spec.
HARD_MAX_PARAMS = 5_000_000
HARD_MAX_MODEL_BYTES = 32 * 2**20
HARD_MAX_DATA_BYTES = 64 * 2**20
HARD_MAX_EPOCHS = 1000
HARD_MAX_STEPS_PER_EPOCH = 100_000
HARD_MAX_EVAL_BATCH = 4096


def ensure(condition: bool, message: str) -> None:
    """Raise `SpecRejected(message)` unless `condition` holds."""
    if not condition:
        raise SpecRejected(message)


def blake2b_hex(data: bytes) -> str:
    """blake2b-256 of `data` as lowercase hex (the digest the spec records for each split)."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def model_bytes_limit(param_count: int) -> int:
    """Size limit for a float32 safetensors file holding `param_count` values (header slack)."""
    return param_count * 4 + 64 * 1024


def quantize_loss(total: float, count: int) -> int:
    """Mean of `count` per-example losses summing to `total`, in integer parts-per-billion.

    Exact rational arithmetic on the float64 `total` (round half to even), capped at
    `LOSS_PPB_CAP`; a non-finite total gives `REJECTED_LOSS_PPB`.
    """
    if count <= 0:
        raise ValueError("cannot take the mean of zero examples")
    if not math.isfinite(total):
        return REJECTED_LOSS_PPB
    ppb = round(Fraction(total) * LOSS_SCALE / count)
    return max(0, min(ppb, LOSS_PPB_CAP))


def score_from_loss_ppb(loss_ppb: int) -> int:
    """Score rule `inv_loss_v1`: ``10**18 // (10**9 + loss_ppb)``; higher is better.

    A perfect model (loss 0) scores 10**9, loss 1.0 scores 5*10**8, a rejected model 0.
    """
    if loss_ppb >= REJECTED_LOSS_PPB:
        return 0
    return SCORE_NUMERATOR // (LOSS_SCALE + loss_ppb)


def loss_from_score(score: int) -> float | None:
    """The held-out loss (nats, or MSE units) an `inv_loss_v1` score stands for; None for 0 (rejected).

    `score = 10**18 // (10**9 + loss_ppb)` pins loss_ppb to an interval of width ~10**18 / score**2
    ppb (about 10 ppb for a loss of 2 nats): this is its midpoint, good to ~10**-8 nats.
    """
    if score <= 0:
        return None
    low = Fraction(SCORE_NUMERATOR, score + 1) - LOSS_SCALE
    high = Fraction(SCORE_NUMERATOR, score) - LOSS_SCALE
    return max(0.0, float((low + high) / 2 / LOSS_SCALE))


def common_sections(
    kind: str,
    model: dict[str, Any],
    param_count: int,
    *,
    loss: str,
    accuracy: bool,
    max_epochs: int,
    max_steps_per_epoch: int,
    training: dict[str, Any],
    data: dict[str, Any],
    task: dict[str, Any],
    eval_batch_size: int = 1024,
) -> dict[str, Any]:
    """Assemble a full spec dict from its parts (used by every kind's `prepare`)."""
    return {
        "format": SPEC_FORMAT,
        "kind": kind,
        "model": model,
        "limits": {
            "max_epochs": max_epochs,
            "max_steps_per_epoch": max_steps_per_epoch,
            "max_params": param_count,
            "max_model_bytes": model_bytes_limit(param_count),
            "max_data_bytes": HARD_MAX_DATA_BYTES,
            "max_lr": 1.0,
        },
        "training": training,
        "metric": {
            "loss": loss,
            "dtype": "float64",
            "loss_scale": LOSS_SCALE,
            "quantization": "round_half_even",
            "score": "inv_loss_v1",
            "eval_batch_size": eval_batch_size,
            "accuracy": accuracy,
        },
        "data": {"format": "safetensors", "train_cid": None, "heldout_cid": None, **data},
        "task": task,
    }


def _int_field(section: dict[str, Any], name: str, low: int, high: int, where: str) -> int:
    value = section.get(name)
    ensure(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        f"spec {where}.{name} must be an integer in [{low}, {high}], got {value!r}",
    )
    assert isinstance(value, int)
    return value


def validate_common(spec: Any, kind: str, *, loss: str) -> None:
    """Check the fields every kind shares; raise `SpecRejected` naming the bad field."""
    ensure(isinstance(spec, dict), f"a task spec must be a dict, got {type(spec).__name__}")
    ensure(spec.get("format") == SPEC_FORMAT, f"spec format {spec.get('format')!r} is not {SPEC_FORMAT}")
    ensure(spec.get("kind") == kind, f"spec kind {spec.get('kind')!r} is not {kind!r}")
    for section in ("model", "limits", "training", "metric", "data", "task"):
        ensure(isinstance(spec.get(section), dict), f"spec section {section!r} is missing or not a dict")
    limits = spec["limits"]
    _int_field(limits, "max_epochs", 1, HARD_MAX_EPOCHS, "limits")
    _int_field(limits, "max_steps_per_epoch", 1, HARD_MAX_STEPS_PER_EPOCH, "limits")
    _int_field(limits, "max_params", 1, HARD_MAX_PARAMS, "limits")
    _int_field(limits, "max_model_bytes", 1, HARD_MAX_MODEL_BYTES, "limits")
    _int_field(limits, "max_data_bytes", 1, HARD_MAX_DATA_BYTES, "limits")
    max_lr = limits.get("max_lr")
    ensure(
        isinstance(max_lr, (int, float)) and 0 < max_lr <= 10,
        f"spec limits.max_lr must be in (0, 10], got {max_lr!r}",
    )
    _int_field(spec["training"], "batch_size", 1, 65536, "training")
    metric = spec["metric"]
    ensure(
        metric.get("loss") == loss,
        f"spec metric.loss must be {loss!r} for this task, got {metric.get('loss')!r}",
    )
    ensure(metric.get("dtype") == "float64", "spec metric.dtype must be 'float64'")
    ensure(metric.get("loss_scale") == LOSS_SCALE, f"spec metric.loss_scale must be {LOSS_SCALE}")
    ensure(
        metric.get("quantization") == "round_half_even", "spec metric.quantization must be 'round_half_even'"
    )
    ensure(metric.get("score") == "inv_loss_v1", f"unknown score rule {metric.get('score')!r}")
    ensure(isinstance(metric.get("accuracy"), bool), "spec metric.accuracy must be true or false")
    _int_field(metric, "eval_batch_size", 1, HARD_MAX_EVAL_BATCH, "metric")
    ensure(spec["data"].get("format") == "safetensors", "spec data.format must be 'safetensors'")
