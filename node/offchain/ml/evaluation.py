"""Deterministic held-out evaluation: float64, one thread, deterministic kernels, fixed order."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from node.offchain.ml.training import batch_loss

# torch's thread count and determinism switches are process-global: one evaluation at a time.
_EVAL_LOCK = threading.Lock()
EVAL_THREADS = 1


@contextmanager
def deterministic_cpu() -> Iterator[None]:
    """Pin torch to `EVAL_THREADS` threads and deterministic algorithms; restore on exit."""
    with _EVAL_LOCK:
        threads = torch.get_num_threads()
        enabled = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.set_num_threads(EVAL_THREADS)
        torch.use_deterministic_algorithms(True)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
            torch.set_num_threads(threads)


def total_loss(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss: str,
    batch_size: int,
    accuracy: bool,
) -> tuple[float, int | None]:
    """Sum of per-example losses (exactly rounded `math.fsum`) and, optionally, correct count.

    The model runs in float64 on the CPU over the examples in stored order.
    """
    model = model.to(dtype=torch.float64, device="cpu").eval()
    losses: list[float] = []
    correct = 0
    with deterministic_cpu():
        for start in range(0, inputs.shape[0], batch_size):
            x = inputs[start : start + batch_size]
            if x.is_floating_point():
                x = x.to(torch.float64)
            y = targets[start : start + batch_size]
            if y.is_floating_point():
                y = y.to(torch.float64)
            output = model(x)
            losses.extend(batch_loss(output, y, loss, reduction="none").tolist())
            if accuracy:
                correct += int((output.argmax(dim=1) == y).sum().item())
    try:
        total = math.fsum(losses)
    except OverflowError:
        total = math.inf
    return total, (correct if accuracy else None)
