"""The model architectures a spec may name.  Tiny on purpose: they train in seconds on CPU."""

from __future__ import annotations

import itertools

import torch
from torch import nn


class MLP(nn.Module):
    """``input → [Linear → ReLU]* → Linear``; tensor names ``layers.{i}.weight|bias``."""

    def __init__(self, input_dim: int, hidden: list[int], output_dim: int) -> None:
        super().__init__()
        widths = [input_dim, *hidden]
        modules: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            modules += [nn.Linear(width_in, width_out), nn.ReLU()]
        modules.append(nn.Linear(widths[-1], output_dim))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CharMLP(nn.Module):
    """Character model over a fixed context window (Bengio-style).

    ``tokens[B, context] → embed → flatten → Linear → tanh → Linear → logits[B, vocab]``.
    """

    def __init__(self, vocab_size: int, context: int, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.hidden = nn.Linear(context * embed_dim, hidden)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(tokens).flatten(1)
        return self.out(torch.tanh(self.hidden(embedded)))


def param_count(model: nn.Module) -> int:
    """Number of scalar parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
