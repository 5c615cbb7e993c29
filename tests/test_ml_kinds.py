"""Task kinds: deterministic preparation, good beats poor, spec limits are honoured."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from node.offchain.ml import KINDS, LimitExceeded, SpecRejected, get_kind
from node.offchain.ml.kinds import kind_of
from node.offchain.ml.splits import decode_tokens


@pytest.fixture(scope="module")
def digits():
    kind = get_kind("digits_classifier")
    prepared = kind.prepare(None, seed=7)
    good = kind.train(prepared.spec, prepared.train_bytes, epochs=20, lr=0.01, seed=1)
    poor = kind.train(prepared.spec, prepared.train_bytes, epochs=20, lr=0.01, seed=1, quality="poor")
    return kind, prepared, good, poor


@pytest.fixture(scope="module")
def char_lm():
    kind = get_kind("char_lm")
    prepared = kind.prepare(None, seed=7)
    good = kind.train(prepared.spec, prepared.train_bytes, epochs=4, lr=0.003, seed=1)
    poor = kind.train(prepared.spec, prepared.train_bytes, epochs=4, lr=0.003, seed=1, quality="poor")
    return kind, prepared, good, poor


def test_registry_lists_the_kinds() -> None:
    assert set(KINDS) >= {"digits_classifier", "char_lm", "custom_csv", "custom_text"}
    with pytest.raises(SpecRejected, match="unknown task kind"):
        get_kind("no_such_kind")
    with pytest.raises(SpecRejected):
        kind_of({"kind": 3})


@pytest.mark.parametrize("name", ["digits_classifier", "char_lm"])
def test_prepare_is_deterministic_and_json(name: str) -> None:
    kind = get_kind(name)
    first, second, other = kind.prepare(None, 11), kind.prepare(None, 11), kind.prepare(None, 12)
    assert first == second
    assert first.heldout_bytes != other.heldout_bytes
    assert json.loads(json.dumps(first.spec)) == first.spec
    kind.validate_spec(first.spec)


def test_digits_good_model_beats_poor(digits) -> None:
    kind, prepared, good, poor = digits
    good_result = kind.evaluate(prepared.spec, good, prepared.heldout_bytes)
    poor_result = kind.evaluate(prepared.spec, poor, prepared.heldout_bytes)
    assert good_result.rejected is None and poor_result.rejected is None
    assert good_result.loss_ppb < poor_result.loss_ppb
    assert good_result.score > poor_result.score > 0
    assert good_result.accuracy_ppb is not None and good_result.accuracy_ppb > 850_000_000
    assert good_result.examples == prepared.spec["data"]["heldout_examples"]


def test_char_lm_beats_poor_and_unigram_baseline(char_lm) -> None:
    kind, prepared, good, poor = char_lm
    spec = prepared.spec
    good_result = kind.evaluate(spec, good, prepared.heldout_bytes)
    poor_result = kind.evaluate(spec, poor, prepared.heldout_bytes)
    assert good_result.accuracy_ppb is None
    assert good_result.loss_ppb < poor_result.loss_ppb
    # Unigram baseline: train-split character frequencies (add-one smoothed) on held-out targets.
    model = spec["model"]
    _, train_targets = decode_tokens(
        spec, prepared.train_bytes, "train", vocab_size=model["vocab_size"], context=1
    )
    counts = Counter(train_targets.tolist())
    total = sum(counts.values()) + model["vocab_size"]
    _, targets = decode_tokens(
        spec, prepared.heldout_bytes, "heldout", vocab_size=model["vocab_size"], context=model["context"]
    )
    unigram = -sum(math.log((counts[t] + 1) / total) for t in targets.tolist()) / len(targets)
    assert good_result.loss_ppb < (unigram - 0.5) * 1e9


def test_train_honours_spec_limits(digits) -> None:
    kind, prepared, _, _ = digits
    spec = prepared.spec
    with pytest.raises(LimitExceeded, match="max_epochs"):
        kind.train(spec, prepared.train_bytes, epochs=spec["limits"]["max_epochs"] + 1, lr=0.01, seed=0)
    with pytest.raises(LimitExceeded, match="max_lr"):
        kind.train(spec, prepared.train_bytes, epochs=1, lr=50.0, seed=0)
    too_big = json.loads(json.dumps(spec))
    too_big["model"]["hidden"] = [4096, 4096]
    with pytest.raises(SpecRejected, match="max_params"):
        kind.train(too_big, prepared.train_bytes, epochs=1, lr=0.01, seed=0)


def test_progress_callback_and_step_cap() -> None:
    kind = get_kind("char_lm")
    prepared = kind.prepare(None, seed=3)
    spec = json.loads(json.dumps(prepared.spec))
    spec["limits"]["max_steps_per_epoch"] = 5
    calls: list[tuple[int, int]] = []
    kind.train(
        spec, prepared.train_bytes, epochs=2, lr=0.003, seed=0, progress=lambda s, t, _: calls.append((s, t))
    )
    assert calls == [(step, 10) for step in range(1, 11)]


def test_train_is_reproducible_on_cpu(digits) -> None:
    kind, prepared, _, _ = digits
    first = kind.train(prepared.spec, prepared.train_bytes, epochs=1, lr=0.01, seed=5)
    second = kind.train(prepared.spec, prepared.train_bytes, epochs=1, lr=0.01, seed=5)
    assert first == second
    assert torch.get_num_threads() >= 1


def test_spec_tampering_is_rejected(digits) -> None:
    kind, prepared, good, _ = digits
    for path, value in [
        (("format",), 2),
        (("metric", "loss"), "mse"),
        (("metric", "score"), "something_else"),
        (("limits", "max_model_bytes"), 10**12),
        (("model", "output_dim"), 11),
    ]:
        spec = json.loads(json.dumps(prepared.spec))
        section = spec
        for key in path[:-1]:
            section = section[key]
        section[path[-1]] = value
        with pytest.raises(SpecRejected):
            kind.evaluate(spec, good, prepared.heldout_bytes)
