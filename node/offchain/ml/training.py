"""The training loop every kind shares: Adam, shuffled mini-batches, capped steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

ProgressFn = Callable[[int, int, float], None]
"""Called as ``progress(step, total_steps, last_batch_loss)`` after every optimizer step."""

Progress = ProgressFn | Literal["tqdm"] | None

POOR_LR = 1e-4  # the "poor" trainer takes one step this small: a barely trained model


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
) -> nn.Module:
    """Train `model` in place and return it (on the CPU, float32)."""
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
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator)
        for index in range(steps_per_epoch):
            batch = order[index * batch_size : (index + 1) * batch_size]
            x = inputs[batch].to(device)
            y = targets[batch].to(device)
            optimizer.zero_grad(set_to_none=True)
            value = batch_loss(model(x), y, loss)
            value.backward()
            optimizer.step()
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value.item():.3f}")
            elif callable(progress):
                progress(step, total, value.item())
    if bar is not None:
        bar.close()
    return model.to("cpu").eval()
