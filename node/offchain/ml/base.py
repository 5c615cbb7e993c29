"""`TaskKind`: what every task kind provides, and the shared train / load / evaluate logic.

A kind supplies four things: `prepare` (planner data → splits + spec), `check_spec`
(kind-specific spec fields), `build_model` (architecture from the spec) and `decode_split`
(split bytes → input and target tensors).  Training, defensive loading and deterministic
evaluation are the same for every kind and live here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from node.offchain.ml.errors import DataRejected, LimitExceeded, ModelRejected
from node.offchain.ml.evaluation import total_loss
from node.offchain.ml.models import param_count
from node.offchain.ml.spec import (
    LOSS_SCALE,
    REJECTED_LOSS_PPB,
    blake2b_hex,
    ensure,
    quantize_loss,
    score_from_loss_ppb,
    validate_common,
)
from node.offchain.ml.tensorfile import dump_tensors, load_tensors, parse_header
from node.offchain.ml.training import CURVE_KEY, Progress, curve_metadata, fit, resolve_device

MODEL_FORMAT = "1"


@dataclass(frozen=True)
class PreparedData:
    """What the planner publishes: the training split, the (sealed) held-out split, the spec."""

    train_bytes: bytes
    heldout_bytes: bytes
    spec: dict[str, Any]
    # Folders ({file name: bytes}) the planner publishes too; for "base" the CID goes to model.base_cid.
    folders: dict[str, dict[str, bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    """A validator's integer verdict on one model.

    `loss_ppb` is the mean held-out loss in parts-per-billion, `score` follows the spec's
    score rule (0 for a rejected model), `accuracy_ppb` is set for classifiers, `rejected`
    holds the reason when the model could not be loaded or gave a non-finite loss.
    """

    loss_ppb: int
    score: int
    accuracy_ppb: int | None
    examples: int
    rejected: str | None = None


class TaskKind(ABC):
    """One kind of training task (see the module docstring)."""

    name: str = ""
    data_layout: str = ""
    artifact: str = "file"  # "folder": models are folders ({file name: bytes}) and train on a base folder

    # ---- to implement per kind -------------------------------------------------------------

    @abstractmethod
    def prepare(
        self, source: str | None, seed: int, *, options: dict[str, Any] | None = None
    ) -> PreparedData:
        """Build the train and held-out splits and a default spec; deterministic given `seed`."""

    @abstractmethod
    def check_spec(self, spec: dict[str, Any]) -> None:
        """Validate the kind-specific spec fields (`model`, `task`); raise `SpecRejected`."""

    @abstractmethod
    def build_model(self, spec: dict[str, Any]) -> nn.Module:
        """A freshly initialised model of the spec's architecture (spec already validated)."""

    @abstractmethod
    def decode_split(
        self, spec: dict[str, Any], data: bytes, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of a serialized split; raise `DataRejected` for bad data."""

    # ---- shared ----------------------------------------------------------------------------

    def loss_name(self, spec: dict[str, Any]) -> str:
        """The loss this kind uses for `spec` (``cross_entropy`` unless overridden)."""
        return "cross_entropy"

    def validate_spec(self, spec: dict[str, Any]) -> None:
        """Full spec validation: common fields, kind fields, and the parameter budget."""
        ensure(isinstance(spec, dict), f"a task spec must be a dict, got {type(spec).__name__}")
        ensure(spec.get("kind") == self.name, f"spec kind {spec.get('kind')!r} is not {self.name!r}")
        validate_common(spec, self.name, loss=self.loss_name(spec))
        self.check_spec(spec)
        with torch.device("meta"):
            count = param_count(self.build_model(spec))
        limit = spec["limits"]["max_params"]
        ensure(
            count <= limit, f"the spec's architecture has {count} parameters, over limits.max_params={limit}"
        )

    def expected_tensors(self, spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """Exact tensor names and shapes of a model file for `spec` (all float32)."""
        with torch.device("meta"):
            model = self.build_model(spec)
        return {name: tuple(t.shape) for name, t in model.state_dict().items()}

    def _split(self, spec: dict[str, Any], data: bytes, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        digest = spec["data"].get(f"{split}_blake2b")
        if digest is not None and blake2b_hex(data) != digest:
            raise DataRejected(f"the {split} data does not match the spec's {split}_blake2b digest")
        return self.decode_split(spec, data, split)

    def train(
        self,
        spec: dict[str, Any],
        train_bytes: bytes,
        *,
        epochs: int,
        lr: float,
        seed: int,
        quality: str = "good",
        progress: Progress = None,
        device: str = "cpu",
    ) -> bytes:
        """Train a model on the training split and return it as safetensors bytes.

        `quality="poor"` takes a single tiny step (a deliberately weak trainer).  `device`
        is ``cpu``, ``cuda`` or ``auto``.  Raises `LimitExceeded` when `epochs` or `lr`
        exceed the spec's limits.
        """
        self.validate_spec(spec)
        limits = spec["limits"]
        if not (isinstance(epochs, int) and 1 <= epochs <= limits["max_epochs"]):
            raise LimitExceeded(f"epochs={epochs!r} is outside [1, limits.max_epochs={limits['max_epochs']}]")
        if not (math.isfinite(lr) and 0 < lr <= limits["max_lr"]):
            raise LimitExceeded(f"lr={lr!r} is outside (0, limits.max_lr={limits['max_lr']}]")
        if quality not in ("good", "poor"):
            raise ValueError(f"quality must be 'good' or 'poor', got {quality!r}")
        inputs, targets = self._split(spec, train_bytes, "train")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build_model(spec)
        curve: list[dict[str, Any]] = []
        model = fit(
            model,
            inputs,
            targets,
            loss=self.loss_name(spec),
            epochs=epochs,
            lr=lr,
            batch_size=spec["training"]["batch_size"],
            max_steps_per_epoch=limits["max_steps_per_epoch"],
            seed=seed,
            quality=quality,
            progress=progress,
            device=resolve_device(device),
            curve=curve,
        )
        tensors = {name: t.to(torch.float32) for name, t in model.state_dict().items()}
        return dump_tensors(tensors, {"arena_model_format": MODEL_FORMAT, "arena_kind": self.name,
                                      CURVE_KEY: curve_metadata(curve, self.loss_name(spec))})

    def load_model(self, spec: dict[str, Any], model_bytes: bytes) -> nn.Module:
        """Load an untrusted model file defensively; raise `ModelRejected` with the reason.

        Order: size limit (before any parsing), safetensors layout, exact tensor names,
        shapes and dtype (float32), finite values.  Never unpickles anything.
        """
        self.validate_spec(spec)
        return self._load_validated(spec, model_bytes)

    def _load_validated(self, spec: dict[str, Any], model_bytes: bytes) -> nn.Module:
        if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
            raise ModelRejected(f"a model file must be bytes, got {type(model_bytes).__name__}")
        model_bytes = bytes(model_bytes)
        table, _ = parse_header(
            model_bytes, max_bytes=spec["limits"]["max_model_bytes"], what="model file", error=ModelRejected
        )
        expected = self.expected_tensors(spec)
        missing = sorted(set(expected) - set(table))
        unexpected = sorted(set(table) - set(expected))
        if missing or unexpected:
            raise ModelRejected(
                f"model file does not match the {spec['model']['arch']!r} architecture of the spec: "
                f"missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}"
            )
        for name, shape in expected.items():
            info = table[name]
            if info.shape != shape:
                raise ModelRejected(
                    f"tensor {name!r} has shape {list(info.shape)}, the spec needs {list(shape)}"
                )
            if info.dtype != "F32":
                raise ModelRejected(f"tensor {name!r} has dtype {info.dtype}, model files must be F32")
        tensors = load_tensors(model_bytes, what="model file", error=ModelRejected)
        for name, tensor in tensors.items():
            if not bool(torch.isfinite(tensor).all()):
                raise ModelRejected(f"tensor {name!r} contains NaN or infinite values")
        with torch.device("meta"):
            model = self.build_model(spec)
        model.load_state_dict(tensors, strict=True, assign=True)
        return model.eval()

    def evaluate(self, spec: dict[str, Any], model_bytes: bytes, heldout_bytes: bytes) -> EvalResult:
        """Score one model on the held-out split; identical integers on every run.

        A model that cannot be loaded (or yields a non-finite loss) gets score 0 and the
        reason in `rejected`.  A bad spec raises `SpecRejected`, bad held-out data
        `DataRejected`: those are the planner's fault, not the trainer's.
        """
        self.validate_spec(spec)
        inputs, targets = self._split(spec, heldout_bytes, "heldout")
        count = int(inputs.shape[0])
        try:
            model = self._load_validated(spec, model_bytes)
        except ModelRejected as exc:
            return EvalResult(REJECTED_LOSS_PPB, 0, None, count, rejected=str(exc))
        metric = spec["metric"]
        total, correct = total_loss(
            model,
            inputs,
            targets,
            loss=self.loss_name(spec),
            batch_size=metric["eval_batch_size"],
            accuracy=metric["accuracy"],
        )
        loss_ppb = quantize_loss(total, count)
        if loss_ppb >= REJECTED_LOSS_PPB:
            return EvalResult(
                REJECTED_LOSS_PPB, 0, None, count, rejected="the model's held-out loss is not finite"
            )
        accuracy_ppb = None if correct is None else correct * LOSS_SCALE // count
        return EvalResult(loss_ppb, score_from_loss_ppb(loss_ppb), accuracy_ppb, count)
