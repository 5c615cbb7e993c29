"""Tasks from a planner's own files: CSV, JSONL and text; bad files name the line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from node.offchain.ml import DataRejected, get_kind


def _write_csv(path: Path, rows: int = 200) -> Path:
    rng = random.Random(1)
    lines = ["x1,x2,noise,label"]
    for _ in range(rows):
        a, b = rng.gauss(0, 1), rng.gauss(0, 1)
        lines.append(f"{a:.5f},{b:.5f},{rng.gauss(0, 5):.5f},{'cat' if a + b > 0 else 'dog'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_jsonl(path: Path, rows: int = 200) -> Path:
    rng = random.Random(2)
    with path.open("w") as out:
        for _ in range(rows):
            a, b = rng.gauss(0, 1), rng.gauss(0, 1)
            out.write(json.dumps({"a": a, "b": b, "price": 3 * a - 2 * b + 10 + rng.gauss(0, 0.1)}) + "\n")
    return path


def _good_beats_poor(kind_name: str, source: Path, epochs: int, **options) -> tuple:
    kind = get_kind(kind_name)
    prepared = kind.prepare(str(source), seed=5, options=options or None)
    assert prepared == kind.prepare(str(source), seed=5, options=options or None)
    spec = prepared.spec
    lr = spec["training"]["lr"]
    good = kind.train(spec, prepared.train_bytes, epochs=epochs, lr=lr, seed=1)
    poor = kind.train(spec, prepared.train_bytes, epochs=epochs, lr=lr, seed=1, quality="poor")
    good_result = kind.evaluate(spec, good, prepared.heldout_bytes)
    poor_result = kind.evaluate(spec, poor, prepared.heldout_bytes)
    assert good_result.loss_ppb < poor_result.loss_ppb
    return spec, good_result


def test_csv_classification(tmp_path: Path) -> None:
    spec, result = _good_beats_poor("custom_csv", _write_csv(tmp_path / "pets.csv"), epochs=20)
    task = spec["task"]
    assert task["problem"] == "classification" and task["classes"] == ["cat", "dog"]
    assert task["label_column"] == "label" and task["feature_columns"] == ["x1", "x2", "noise"]
    assert result.accuracy_ppb is not None and result.accuracy_ppb > 800_000_000


def test_jsonl_regression(tmp_path: Path) -> None:
    spec, result = _good_beats_poor(
        "custom_csv", _write_jsonl(tmp_path / "prices.jsonl"), epochs=20, label_column="price"
    )
    assert spec["task"]["problem"] == "regression" and spec["metric"]["loss"] == "mse"
    assert spec["model"]["output_dim"] == 1 and result.accuracy_ppb is None
    assert result.loss_ppb < 200_000_000  # standardised MSE well under the variance


def test_text_language_model(tmp_path: Path) -> None:
    rng = random.Random(3)
    words = [
        "the",
        "planner",
        "trains",
        "a",
        "model",
        "on",
        "its",
        "own",
        "text",
        "and",
        "validators",
        "score",
    ]
    source = tmp_path / "corpus.txt"
    source.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(600)))
    spec, _ = _good_beats_poor("custom_text", source, epochs=2)
    assert spec["kind"] == "custom_text" and spec["task"]["vocab"][0] == "<unk>"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("short_row.csv", "a,b,label\n1,2,x\n3,4,y\n5,6\n", "line 4: 2 fields"),
        ("word.csv", "a,b,label\n1,2,x\n3,four,y\n", "line 3: column 'b': 'four' is not a number"),
        ("empty.csv", "", "empty"),
        ("dup.csv", "a,a,label\n1,2,x\n", "unique"),
        ("nolabel.csv", "a,b,c\n" + "1,2,3\n" * 20, "label column 'target'"),
        ("inf.csv", "a,label\n1,x\ninf,y\n", "line 3: column 'a': 'inf' is not a finite number"),
        ("bad.jsonl", '{"a": 1, "label": "x"}\n\n{"a": 2, "label": \n', "line 3: invalid JSON"),
        ("list.jsonl", '{"a": 1, "label": "x"}\n[1, 2]\n', "line 2: expected a JSON object"),
        ("keys.jsonl", '{"a": 1, "label": "x"}\n{"b": 1, "label": "y"}\n', "line 2: keys differ"),
        ("bool.jsonl", '{"a": 1, "label": "x"}\n{"a": true, "label": "y"}\n', "line 2: column 'a'"),
        ("few.csv", "a,label\n1,x\n2,y\n", "at least 10"),
        ("one_class.csv", "a,label\n" + "1,x\n" * 20, "2..1000 classes"),
    ],
)
def test_bad_tables_are_rejected_with_line_numbers(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    source = tmp_path / name
    source.write_text(content)
    options = {"label_column": "target"} if name == "nolabel.csv" else None
    with pytest.raises(DataRejected, match=message):
        get_kind("custom_csv").prepare(str(source), seed=0, options=options)


def test_regression_needs_numeric_labels(tmp_path: Path) -> None:
    source = tmp_path / "mixed.csv"
    source.write_text("a,label\n" + "".join(f"{i},{i}\n" for i in range(30)) + "31,many\n")
    with pytest.raises(DataRejected, match="line 32: label 'many' is not a number"):
        get_kind("custom_csv").prepare(str(source), seed=0, options={"problem": "regression"})


def test_bad_text_files_are_rejected(tmp_path: Path) -> None:
    kind = get_kind("custom_text")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"first line\nsecond line\ncaf\xe9 on line three\n" * 200)
    with pytest.raises(DataRejected, match="line 3: not valid UTF-8"):
        kind.prepare(str(latin1), seed=0)
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(DataRejected, match="at least"):
        kind.prepare(str(short), seed=0)
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"ok\n" * 5 + b"\x00\x01" * 2000)
    with pytest.raises(DataRejected, match="line 6: NUL byte"):
        kind.prepare(str(binary), seed=0)
    with pytest.raises(DataRejected, match="not a readable file"):
        kind.prepare(str(tmp_path / "missing.txt"), seed=0)
    with pytest.raises(DataRejected, match="needs a source"):
        kind.prepare(None, seed=0)
