"""`--nproc 2`: a LoRA adapter trained by two torchrun processes over gloo on the CPU (real torch.distributed).

The supervisor (`launch_distributed`) starts `torch.distributed.run`, relays both ranks' progress
lines, and returns the adapter rank 0 wrote; it must load and score like a one-process adapter,
and the ranks must have trained in lockstep (gradients all-reduced: rank 1 reports the same
steps).  A rank that fails makes the launch fail with its last lines.
"""
from __future__ import annotations

import logging

import pytest
import torch

from node.offchain.llm_worker import launch_distributed
from node.offchain.ml import LimitExceeded, get_kind

KIND = get_kind("causal_lm_lora")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def prepared():
    torch.set_num_threads(1)
    prepared = KIND.prepare(None, 11, options={"pretrain_steps": 5})
    prepared.spec["model"]["base_cid"] = "QmBase"
    return prepared


def test_two_gloo_processes_train_one_adapter(prepared, tmp_path):
    log = logging.getLogger("test.ddp")
    handler = Lines()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    base = prepared.folders["base"]
    adapter = launch_distributed(tmp_path / "run", prepared.spec, prepared.train_bytes, base, nproc=2, max_steps=6,
                                 common={"epochs": 1, "lr": 0.01, "seed": 3, "quality": "good", "device": "cpu"},
                                 log=log, task_id=7, timeout_s=300)
    progress = [line for line in handler.lines if line.startswith("event=train_progress")]
    assert any("rank=0 world=2 step=6 total=6" in line for line in progress), handler.lines
    result = KIND.evaluate(prepared.spec, adapter, prepared.heldout_bytes, base_files=base)
    untrained = KIND.train(prepared.spec, prepared.train_bytes, epochs=1, lr=0.01, seed=3, base_files=base,
                           quality="poor")
    assert result.rejected is None
    assert result.loss_ppb < KIND.evaluate(prepared.spec, untrained, prepared.heldout_bytes, base_files=base).loss_ppb


def test_a_failing_rank_fails_the_launch(prepared, tmp_path):
    spec = {**prepared.spec, "limits": {**prepared.spec["limits"], "max_lr": 0.001}}
    with pytest.raises(LimitExceeded, match="distributed training exited"):
        launch_distributed(tmp_path / "run", spec, prepared.train_bytes, prepared.folders["base"], nproc=2,
                           max_steps=2, common={"epochs": 1, "lr": 0.01, "seed": 3, "device": "cpu"},
                           log=logging.getLogger("test.ddp"), timeout_s=300)
