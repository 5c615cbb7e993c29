"""Evaluation: identical integers across processes; hostile model files score 0 safely."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import msgpack
import pytest
import safetensors.torch
import torch

from node.offchain.ml import DataRejected, ModelRejected, get_kind
from node.offchain.ml.scores import InvalidScores, canonical_scores, score_commitment, verify_commitment
from node.offchain.ml.spec import REJECTED_LOSS_PPB, quantize_loss, score_from_loss_ppb

ROOT = Path(__file__).resolve().parent.parent


class _WritesMarker:
    """A pickle payload whose unpickling creates a file: what a hostile trainer would upload."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[override]
        return (Path.write_text, (Path(self.path), "pwned"))


@pytest.fixture(scope="module")
def digits():
    kind = get_kind("digits_classifier")
    prepared = kind.prepare(None, seed=21)
    model = kind.train(prepared.spec, prepared.train_bytes, epochs=10, lr=0.01, seed=3)
    return kind, prepared, model


@pytest.fixture(scope="module")
def char_lm():
    kind = get_kind("char_lm")
    prepared = kind.prepare(None, seed=21)
    model = kind.train(prepared.spec, prepared.train_bytes, epochs=1, lr=0.003, seed=3)
    return kind, prepared, model


_CHILD = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(3)  # differs from the parent: evaluation pins its own
from node.offchain.ml import get_kind
out = []
for name in sys.argv[1:]:
    d = Path(name)
    spec = json.loads((d / "spec.json").read_text())
    r = get_kind(spec["kind"]).evaluate(spec, (d / "model").read_bytes(), (d / "heldout").read_bytes())
    out.append([r.loss_ppb, r.score, r.accuracy_ppb])
print(json.dumps(out))
"""


def test_identical_integers_in_another_process(digits, char_lm, tmp_path: Path) -> None:
    expected, dirs = [], []
    for kind, prepared, model in (digits, char_lm):
        result = kind.evaluate(prepared.spec, model, prepared.heldout_bytes)
        assert kind.evaluate(prepared.spec, model, prepared.heldout_bytes) == result
        expected.append([result.loss_ppb, result.score, result.accuracy_ppb])
        folder = tmp_path / kind.name
        folder.mkdir()
        (folder / "spec.json").write_text(json.dumps(prepared.spec))
        (folder / "model").write_bytes(model)
        (folder / "heldout").write_bytes(prepared.heldout_bytes)
        dirs.append(str(folder))
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, *dirs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(child.stdout) == expected


def test_evaluation_restores_torch_settings(digits) -> None:
    kind, prepared, model = digits
    threads = torch.get_num_threads()
    kind.evaluate(prepared.spec, model, prepared.heldout_bytes)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def _assert_rejected(kind, prepared, blob: bytes, reason: str) -> None:
    with pytest.raises(ModelRejected, match=reason):
        kind.load_model(prepared.spec, blob)
    result = kind.evaluate(prepared.spec, blob, prepared.heldout_bytes)
    assert result.score == 0 and result.loss_ppb == REJECTED_LOSS_PPB
    assert result.rejected is not None and reason.split("|")[0].split(".")[0] in result.rejected


def test_pickle_with_code_is_never_executed(digits, tmp_path: Path) -> None:
    kind, prepared, _ = digits
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    pickle.loads(pickle.dumps(_WritesMarker(str(proof))))  # the payload is real ...
    assert proof.exists()
    payload = pickle.dumps({"layers.0.weight": _WritesMarker(str(marker))}, protocol=2)
    _assert_rejected(kind, prepared, payload, "pickle")
    archive = io.BytesIO()  # ... and so is a torch.save-style zip carrying it
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    _assert_rejected(kind, prepared, archive.getvalue(), "zip")
    assert not marker.exists()  # ... but nothing of it ran


def test_broken_and_hostile_files_are_rejected(digits, char_lm) -> None:
    kind, prepared, model = digits
    limit = prepared.spec["limits"]["max_model_bytes"]
    _assert_rejected(kind, prepared, b"", "truncated")
    _assert_rejected(kind, prepared, model[:-10], "truncated")
    _assert_rejected(kind, prepared, model + b"\x00" * 8, "padded")
    _assert_rejected(kind, prepared, os.urandom(4000), "not a valid safetensors")
    _assert_rejected(kind, prepared, b"\x00" * (limit + 1), "over the limit")
    _assert_rejected(kind, prepared, struct.pack("<Q", 20) + b"not json at all!!!!!" + b"", "header")
    _assert_rejected(kind, prepared, char_lm[2], "over the limit|architecture")

    tensors = safetensors.torch.load(model)
    wrong_arch = get_kind("digits_classifier")
    spec32 = json.loads(json.dumps(prepared.spec))
    spec32["model"]["hidden"] = [32]
    _assert_rejected(
        kind, prepared, wrong_arch.train(spec32, prepared.train_bytes, epochs=1, lr=0.01, seed=0), "shape"
    )
    renamed = {("x." + k if k.endswith("bias") else k): v for k, v in tensors.items()}
    _assert_rejected(kind, prepared, safetensors.torch.save(renamed), "architecture")
    extra = {**tensors, "extra": torch.zeros(1)}
    _assert_rejected(kind, prepared, safetensors.torch.save(extra), "architecture")
    doubles = {k: v.double() for k, v in tensors.items()}
    _assert_rejected(kind, prepared, safetensors.torch.save(doubles), "dtype|over the limit")
    nan = {k: v.clone() for k, v in tensors.items()}
    nan["layers.0.weight"][0, 0] = float("nan")
    _assert_rejected(kind, prepared, safetensors.torch.save(nan), "NaN")


def test_huge_finite_weights_score_zero_not_crash(digits) -> None:
    kind, prepared, model = digits
    tensors = {k: v.clone() for k, v in safetensors.torch.load(model).items()}
    tensors["layers.2.weight"].fill_(3e38)
    result = kind.evaluate(prepared.spec, safetensors.torch.save(tensors), prepared.heldout_bytes)
    assert result.score >= 0
    assert result.rejected is None or "finite" in result.rejected


def test_fixed_point_conversion() -> None:
    assert quantize_loss(1.0, 1) == 10**9
    assert quantize_loss(3.0, 2 * 10**9) == 2  # 1.5 ppb: round half to even, exact rationals
    assert quantize_loss(1.0, 2 * 10**9) == 0  # 0.5 ppb
    assert quantize_loss(float("inf"), 3) == REJECTED_LOSS_PPB
    assert score_from_loss_ppb(0) == 10**9
    assert score_from_loss_ppb(10**9) == 5 * 10**8
    assert score_from_loss_ppb(REJECTED_LOSS_PPB) == 0
    assert score_from_loss_ppb(10**15) > 0


def test_score_commitment_is_the_documented_hash() -> None:
    validator, a, b, salt = b"v" * 32, b"a" * 32, b"b" * 32, b"s" * 32
    commitment = score_commitment(7, validator, [[b, 5], [a, 9]], salt)
    preimage = msgpack.packb([7, validator, [[a, 9], [b, 5]], salt], use_bin_type=True)
    assert commitment == hashlib.blake2b(preimage, digest_size=32).digest()
    assert verify_commitment(commitment, 7, validator, [[a, 9], [b, 5]], salt)
    assert not verify_commitment(commitment, 7, validator, [[a, 9], [b, 6]], salt)
    assert canonical_scores([(b, 1), (a, 2)]) == [[a, 2], [b, 1]]
    with pytest.raises(InvalidScores, match="twice"):
        canonical_scores([[a, 1], [a, 2]])
    with pytest.raises(InvalidScores):
        score_commitment(7, validator, [[a, -1]], salt)


def test_heldout_data_must_match_the_spec_digest(digits) -> None:
    kind, prepared, model = digits
    other = kind.prepare(None, seed=22)
    with pytest.raises(DataRejected, match="heldout_blake2b"):
        kind.evaluate(prepared.spec, model, other.heldout_bytes)
    with pytest.raises(DataRejected, match="train_blake2b"):
        kind.train(prepared.spec, other.train_bytes, epochs=1, lr=0.01, seed=0)
