"""`custom_csv`: classification or regression on the planner's own CSV or JSONL table.

Options to `prepare`: ``label_column`` (default ``label`` if present, else the last column),
``problem`` (``classification`` | ``regression`` | ``auto``: regression when every label is
a number and there are more than `MAX_AUTO_CLASSES` distinct values), ``format`` (``csv`` |
``jsonl``; default from the file suffix).  Features are standardised with the training
split's mean and standard deviation (recorded in the spec for inference); regression
targets likewise.  Metric: cross-entropy (classification, plus accuracy) or mean squared
error of the standardised target (regression).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from node.offchain.ml.base import PreparedData, TaskKind
from node.offchain.ml.digits import _check_mlp, build_mlp
from node.offchain.ml.errors import DataRejected
from node.offchain.ml.models import param_count
from node.offchain.ml.sources import read_source_text
from node.offchain.ml.spec import blake2b_hex, common_sections, ensure
from node.offchain.ml.splits import decode_xy, encode_xy
from node.offchain.ml.tables import Table, parse_table

MAX_AUTO_CLASSES = 20
MAX_CLASSES = 1000
MIN_ROWS = 10
HELDOUT_PCT = 20
OPTION_NAMES = {"label_column", "problem", "format"}


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _class_order(labels: list[str]) -> list[str]:
    """Distinct labels, numerically ordered when all are numbers, else as strings."""
    distinct = set(labels)
    if all(_is_number(label) for label in distinct):
        return sorted(distinct, key=lambda s: (float(s), s))
    return sorted(distinct)


def _standardise(values: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, list[float], list[float]]:
    mean = values[train].mean(dim=0)
    std = values[train].std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (values - mean) / std, mean.tolist(), std.tolist()


def _read_table(source: str | None, fmt: str | None, label_column: str | None) -> tuple[Table, str]:
    """The planner's table and its format (``csv`` | ``jsonl``, from the suffix unless given)."""
    text = read_source_text(source, what="custom_csv")
    fmt = fmt or ("jsonl" if str(source).lower().endswith((".jsonl", ".ndjson")) else "csv")
    if fmt not in ("csv", "jsonl"):
        raise DataRejected(f"format must be 'csv' or 'jsonl', got {fmt!r}")
    table = parse_table(text, Path(str(source)).name, fmt, label_column)
    if len(table.labels) < MIN_ROWS:
        raise DataRejected(f"{source}: {len(table.labels)} data rows, need at least {MIN_ROWS}")
    return table, fmt


def _problem_and_classes(source: str | None, table: Table, problem: str) -> tuple[str, list[str]]:
    """The problem (``auto`` resolved) and the distinct labels, checked to fit it."""
    classes = _class_order(table.labels)
    if problem == "auto":
        numeric = all(_is_number(label) for label in classes)
        problem = "regression" if numeric and len(classes) > MAX_AUTO_CLASSES else "classification"
    if problem == "regression":
        bad = next((i for i, label in enumerate(table.labels) if not _is_number(label)), None)
        if bad is not None:
            raise DataRejected(
                f"{source}: line {table.label_lines[bad]}: label {table.labels[bad]!r} is not a number "
                "(regression needs numeric labels)"
            )
    elif problem == "classification":
        if not 2 <= len(classes) <= MAX_CLASSES:
            raise DataRejected(
                f"{source}: classification needs 2..{MAX_CLASSES} classes, found {len(classes)}"
            )
    else:
        raise DataRejected(f"problem must be 'classification', 'regression' or 'auto', got {problem!r}")
    return problem, classes


def _targets(table: Table, problem: str, classes: list[str], train: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Class indices, or targets standardised by the training split, and what the spec records of them."""
    if problem == "classification":
        index = {label: i for i, label in enumerate(classes)}
        return torch.tensor([index[label] for label in table.labels], dtype=torch.int64), {"classes": classes}
    raw = torch.tensor([float(label) for label in table.labels], dtype=torch.float64)
    y, target_mean, target_std = _standardise(raw.unsqueeze(1), train)
    return y.squeeze(1), {"target_mean": target_mean[0], "target_std": target_std[0]}


class CustomTable(TaskKind):
    """Tabular classification/regression from a planner file."""

    name = "custom_csv"

    def loss_name(self, spec: dict[str, Any]) -> str:
        """``mse`` for regression tasks, ``cross_entropy`` for classification."""
        task = spec.get("task") if isinstance(spec, dict) else None
        problem = task.get("problem") if isinstance(task, dict) else None
        return "mse" if problem == "regression" else "cross_entropy"

    def prepare(
        self, source: str | None, seed: int, *, options: dict[str, Any] | None = None
    ) -> PreparedData:
        """Parse the file, split 80/20 by `seed`, standardise, encode both splits."""
        options = dict(options or {})
        unknown = set(options) - OPTION_NAMES
        if unknown:
            raise DataRejected(f"unknown custom_csv options {sorted(unknown)}; known: {sorted(OPTION_NAMES)}")
        table, fmt = _read_table(source, options.get("format"), options.get("label_column"))
        problem, classes = _problem_and_classes(source, table, options.get("problem", "auto"))
        count = len(table.labels)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        cut = max(1, count * HELDOUT_PCT // 100)
        heldout, train = order[:cut].sort().values, order[cut:].sort().values
        x, mean, std = _standardise(torch.tensor(table.features, dtype=torch.float64), train)
        task: dict[str, Any] = {
            "source_format": fmt,
            "label_column": table.label_column,
            "feature_columns": table.feature_columns,
            "problem": problem,
            "feature_mean": mean,
            "feature_std": std,
        }
        y, target = _targets(table, problem, classes, train)
        task.update(target)
        train_bytes = encode_xy(self.name, "train", x[train], y[train])
        heldout_bytes = encode_xy(self.name, "heldout", x[heldout], y[heldout])
        outputs = len(classes) if problem == "classification" else 1
        model = {
            "arch": "mlp",
            "input_dim": len(table.feature_columns),
            "hidden": [64],
            "output_dim": outputs,
        }
        spec = common_sections(
            self.name,
            model,
            param_count(build_mlp(model)),
            loss="cross_entropy" if problem == "classification" else "mse",
            accuracy=problem == "classification",
            max_epochs=200,
            max_steps_per_epoch=200,
            training={"batch_size": 32, "epochs": 40, "lr": 0.01},
            data={
                "train_blake2b": blake2b_hex(train_bytes),
                "heldout_blake2b": blake2b_hex(heldout_bytes),
                "train_examples": len(train),
                "heldout_examples": len(heldout),
            },
            task=task,
        )
        return PreparedData(train_bytes, heldout_bytes, spec)

    def check_spec(self, spec: dict[str, Any]) -> None:
        """An MLP whose input and output widths match the task's columns and classes."""
        task = spec["task"]
        problem = task.get("problem")
        ensure(problem in ("classification", "regression"), f"task.problem {problem!r} is unknown")
        features = task.get("feature_columns")
        ensure(
            isinstance(features, list) and 1 <= len(features) <= 1000,
            "task.feature_columns must list 1..1000 names",
        )
        if problem == "classification":
            classes = task.get("classes")
            ensure(
                isinstance(classes, list) and 2 <= len(classes) <= MAX_CLASSES,
                f"task.classes must list 2..{MAX_CLASSES} labels",
            )
            ensure(
                spec["metric"]["accuracy"] is True,
                "classification reports accuracy: metric.accuracy must be true",
            )
            outputs = len(classes)
        else:
            ensure(
                spec["metric"]["accuracy"] is False,
                "regression has no accuracy: metric.accuracy must be false",
            )
            outputs = 1
        _check_mlp(spec["model"], len(features), outputs)

    def build_model(self, spec: dict[str, Any]) -> nn.Module:
        """An MLP of the spec's widths."""
        return build_mlp(spec["model"])

    def decode_split(
        self, spec: dict[str, Any], data: bytes, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised features and class indices (or standardised targets)."""
        task = spec["task"]
        classes = len(task["classes"]) if task["problem"] == "classification" else None
        return decode_xy(spec, data, split, features=len(task["feature_columns"]), classes=classes)
