"""`digits_classifier`: scikit-learn's handwritten digits (1797 8x8 images), a small MLP.

Pixels (0..16) are scaled to [0, 1]; 20 % of the images, chosen by the seed, are held out.
Metric: mean cross-entropy (nats) on the held-out split, plus accuracy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from node.offchain.ml.base import PreparedData, TaskKind
from node.offchain.ml.errors import DataRejected
from node.offchain.ml.models import MLP, param_count
from node.offchain.ml.spec import blake2b_hex, common_sections, ensure
from node.offchain.ml.splits import decode_xy, encode_xy

FEATURES = 64
CLASSES = 10
HELDOUT_FRACTION_PCT = 20


def _check_mlp(model: dict[str, Any], features: int, outputs: int) -> None:
    ensure(model.get("arch") == "mlp", f"model.arch must be 'mlp', got {model.get('arch')!r}")
    ensure(model.get("input_dim") == features, f"model.input_dim must be {features}")
    ensure(model.get("output_dim") == outputs, f"model.output_dim must be {outputs}")
    hidden = model.get("hidden")
    ensure(
        isinstance(hidden, list)
        and 1 <= len(hidden) <= 4
        and all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 4096 for h in hidden),
        f"model.hidden must be a list of 1-4 layer widths in [1, 4096], got {hidden!r}",
    )


def build_mlp(model: dict[str, Any]) -> nn.Module:
    """The `mlp` architecture of a spec's `model` section."""
    return MLP(model["input_dim"], list(model["hidden"]), model["output_dim"])


class DigitsClassifier(TaskKind):
    """The built-in image classification kind."""

    name = "digits_classifier"

    def prepare(
        self, source: str | None, seed: int, *, options: dict[str, Any] | None = None
    ) -> PreparedData:
        """Split the digits data set by `seed` (`source` must be None: the data is built in)."""
        if source is not None:
            raise DataRejected("digits_classifier uses the built-in digits data set; pass source=None")
        from sklearn.datasets import load_digits  # local: sklearn import is slow

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        y = torch.tensor(digits.target, dtype=torch.int64)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        cut = len(y) * HELDOUT_FRACTION_PCT // 100
        heldout, train = order[:cut], order[cut:]
        train_bytes = encode_xy(self.name, "train", x[train], y[train])
        heldout_bytes = encode_xy(self.name, "heldout", x[heldout], y[heldout])
        model = {"arch": "mlp", "input_dim": FEATURES, "hidden": [64], "output_dim": CLASSES}
        spec = common_sections(
            self.name,
            model,
            param_count(build_mlp(model)),
            loss="cross_entropy",
            accuracy=True,
            max_epochs=100,
            max_steps_per_epoch=1000,
            training={"batch_size": 64, "epochs": 30, "lr": 0.01},
            data={
                "train_blake2b": blake2b_hex(train_bytes),
                "heldout_blake2b": blake2b_hex(heldout_bytes),
                "train_examples": len(train),
                "heldout_examples": len(heldout),
            },
            task={"source": "sklearn.datasets.load_digits", "classes": CLASSES, "input_scale": "pixel/16"},
        )
        return PreparedData(train_bytes, heldout_bytes, spec)

    def check_spec(self, spec: dict[str, Any]) -> None:
        """The model must be an MLP from 64 pixels to 10 classes."""
        _check_mlp(spec["model"], FEATURES, CLASSES)
        ensure(
            spec["metric"]["accuracy"] is True,
            "digits_classifier reports accuracy: metric.accuracy must be true",
        )

    def build_model(self, spec: dict[str, Any]) -> nn.Module:
        """An MLP of the spec's widths."""
        return build_mlp(spec["model"])

    def decode_split(
        self, spec: dict[str, Any], data: bytes, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels ``[N, 64]`` and labels ``[N]``."""
        return decode_xy(spec, data, split, features=FEATURES, classes=CLASSES)
