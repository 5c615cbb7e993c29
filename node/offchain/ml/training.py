"""The training loop every kind shares: Adam, shuffled mini-batches, capped steps."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

ProgressFn = Callable[[int, int, float], None]
"""Called as ``progress(step, total_steps, last_batch_loss)`` after every optimizer step."""

Progress = ProgressFn | Literal["tqdm"] | None

POOR_LR = 1e-4  # the "poor" trainer takes one step this small: a barely trained model
CURVE_KEY = "arena_training"
"""safetensors metadata key holding the training curve (JSON, see `curve_metadata`)."""
MAX_CURVE_POINTS = 200


def curve_metadata(points: list[dict[str, Any]], loss: str, unit: str = "epoch") -> str:
    """The curve a trainer records, as the JSON string stored under `CURVE_KEY` in the model file.

    ``{"unit": "epoch", "loss": "cross_entropy", "points": [{"epoch": 1, "loss": 0.91, "accuracy": 0.72}, ...]}``
    `loss` is the mean training loss of the epoch's batches (nats for cross-entropy), `accuracy`
    the fraction of training examples of those batches classified right (absent for regression).
    At most `MAX_CURVE_POINTS` points (evenly thinned, the last kept).
    """
    if len(points) > MAX_CURVE_POINTS:
        stride = -(-len(points) // (MAX_CURVE_POINTS - 1))
        kept = points[stride - 1 :: stride]
        points = kept if kept[-1] is points[-1] else [*kept, points[-1]]
    rounded = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in p.items()} for p in points]
    return json.dumps({"unit": unit, "loss": loss, "points": rounded}, sort_keys=True, separators=(",", ":"))


def batch_loss(
    output: torch.Tensor, target: torch.Tensor, loss: str, reduction: str = "mean"
) -> torch.Tensor:
    """The spec's loss: ``cross_entropy`` over logits or ``mse`` on a single output."""
    if loss == "cross_entropy":
        return F.cross_entropy(output, target, reduction=reduction)
    return F.mse_loss(output.squeeze(-1), target, reduction=reduction)


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (must be available) or ``auto`` (CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    return torch.device(device)


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss: str,
    epochs: int,
    lr: float,
    batch_size: int,
    max_steps_per_epoch: int,
    seed: int,
    quality: str,
    progress: Progress,
    device: torch.device,
    curve: list[dict[str, Any]] | None = None,
) -> nn.Module:
    """Train `model` in place and return it (on the CPU, float32).

    With `curve`, one point per epoch is appended: ``{"epoch", "loss", "accuracy"?}`` (mean batch
    loss and, for cross-entropy, the fraction of the epoch's training examples predicted right).
    """
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    count = inputs.shape[0]
    steps_per_epoch = min(max_steps_per_epoch, -(-count // batch_size))
    if quality == "poor":
        epochs, steps_per_epoch, lr = 1, 1, POOR_LR
    total = epochs * steps_per_epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    bar = tqdm(total=total, desc="train", unit="step", leave=False) if progress == "tqdm" else None
    step = 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(count, generator=generator)
        loss_sum, right, seen = 0.0, 0, 0
        for index in range(steps_per_epoch):
            batch = order[index * batch_size : (index + 1) * batch_size]
            x = inputs[batch].to(device)
            y = targets[batch].to(device)
            optimizer.zero_grad(set_to_none=True)
            output = model(x)
            value = batch_loss(output, y, loss)
            value.backward()
            optimizer.step()
            step += 1
            if curve is not None:
                loss_sum += value.item() * len(batch)
                seen += len(batch)
                if loss == "cross_entropy":
                    right += int((output.detach().argmax(dim=-1) == y).sum().item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value.item():.3f}")
            elif callable(progress):
                progress(step, total, value.item())
        if curve is not None and seen:
            point: dict[str, Any] = {"epoch": epoch, "loss": loss_sum / seen}
            if loss == "cross_entropy":
                point["accuracy"] = right / seen
            curve.append(point)
    if bar is not None:
        bar.close()
    return model.to("cpu").eval()
