"""Parsing a planner's CSV or JSONL table into numeric features and raw labels.

CSV: the first row is the header; every later non-empty row has as many fields.  JSONL: one
JSON object a line (blank lines skipped), every object with the same keys.  Feature values
must be finite numbers; errors name the file, line and column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from node.offchain.ml.errors import DataRejected

MAX_ROWS = 1_000_000
MAX_COLUMNS = 1001


@dataclass(frozen=True)
class Table:
    """A parsed table: column names, per-row feature values and label strings."""

    columns: list[str]
    label_column: str
    feature_columns: list[str]
    features: list[list[float]]
    labels: list[str]
    label_lines: list[int]


def _number(value: Any, where: str, column: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataRejected(
            f"{where}: column {column!r}: {value!r} is not a number (features must be numeric)"
        )
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        raise DataRejected(
            f"{where}: column {column!r}: {value!r} is not a number (features must be numeric)"
        ) from None
    if not math.isfinite(number):
        raise DataRejected(f"{where}: column {column!r}: {value!r} is not a finite number")
    return number


def _label(value: Any, where: str, column: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        text = str(value).strip()
    elif isinstance(value, float) and math.isfinite(value):
        text = repr(value)
    else:
        raise DataRejected(f"{where}: label column {column!r}: {value!r} is not a scalar label")
    if text == "":
        raise DataRejected(f"{where}: label column {column!r} is empty")
    return text


def _rows_csv(text: str, name: str) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataRejected(f"{name}: the file is empty; a CSV needs a header row")
        rows = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataRejected(
                    f"{name}: line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                )
            rows.append((reader.line_num, list(row)))
    except csv.Error as exc:
        raise DataRejected(f"{name}: line {reader.line_num}: malformed CSV ({exc})") from None
    return [h.strip() for h in header], rows


def _rows_jsonl(text: str, name: str) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    header: list[str] | None = None
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataRejected(
                f"{name}: line {number}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(record, dict):
            raise DataRejected(f"{name}: line {number}: expected a JSON object, got {type(record).__name__}")
        if header is None:
            header = list(record)
        elif set(record) != set(header):
            missing = sorted(set(header) - set(record))
            extra = sorted(set(record) - set(header))
            raise DataRejected(
                f"{name}: line {number}: keys differ from line 1 (missing {missing}, extra {extra})"
            )
        rows.append((number, [record[key] for key in header]))
    if header is None:
        raise DataRejected(f"{name}: the file has no JSON records")
    return header, rows


def parse_table(text: str, name: str, fmt: str, label_column: str | None) -> Table:
    """Parse CSV (`fmt="csv"`) or JSONL (`fmt="jsonl"`) text; label defaults to ``label``/last."""
    columns, rows = _rows_csv(text, name) if fmt == "csv" else _rows_jsonl(text, name)
    if len(set(columns)) != len(columns) or any(not c for c in columns):
        raise DataRejected(f"{name}: column names must be non-empty and unique, got {columns}")
    if not 2 <= len(columns) <= MAX_COLUMNS:
        raise DataRejected(
            f"{name}: need a label and 1..{MAX_COLUMNS - 1} feature columns, got {len(columns)}"
        )
    if len(rows) > MAX_ROWS:
        raise DataRejected(f"{name}: {len(rows)} rows, over the {MAX_ROWS}-row limit")
    if label_column is None:
        label_column = "label" if "label" in columns else columns[-1]
    if label_column not in columns:
        raise DataRejected(f"{name}: label column {label_column!r} is not among the columns {columns}")
    label_at = columns.index(label_column)
    feature_columns = [c for c in columns if c != label_column]
    features, labels, lines = [], [], []
    for line, row in rows:
        where = f"{name}: line {line}"
        labels.append(_label(row[label_at], where, label_column))
        features.append([_number(v, where, columns[i]) for i, v in enumerate(row) if i != label_at])
        lines.append(line)
    return Table(columns, label_column, feature_columns, features, labels, lines)
