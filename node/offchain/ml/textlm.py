"""Character-level language models: `char_lm` (Python's own docs) and `custom_text`.

Vocabulary: index 0 is ``<unk>``, then every character seen at least `MIN_COUNT` times in
the training split, in code-point order.  The text is cut into chunks; a seed-chosen ~10 %
(capped at `HELDOUT_MAX_CHARS`) is held out.  Model: `char_mlp` over a fixed context window.
Metric: mean next-character cross-entropy (nats) on the held-out split.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn

from node.offchain.ml.base import PreparedData, TaskKind
from node.offchain.ml.errors import DataRejected
from node.offchain.ml.models import CharMLP, param_count
from node.offchain.ml.sources import read_source_text
from node.offchain.ml.spec import blake2b_hex, common_sections, ensure
from node.offchain.ml.splits import decode_tokens, encode_tokens

UNK = "<unk>"
MIN_COUNT = 2
MIN_TEXT_CHARS = 2000
HELDOUT_MAX_CHARS = 16384
MAX_VOCAB = 1024
DEFAULT_MODEL: dict[str, Any] = {"arch": "char_mlp", "context": 24, "embed_dim": 16, "hidden": 192}


def python_docs_text() -> str:
    """The English text of Python's ``pydoc_data.topics`` (offline), topics in name order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def split_text(text: str, seed: int) -> tuple[str, str]:
    """Seed-chosen held-out chunks and the rest, each kept in document order."""
    chunk = min(2048, max(64, len(text) // 20))
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    count = max(1, min(len(chunks) // 10, HELDOUT_MAX_CHARS // chunk))
    order = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(seed)).tolist()
    heldout = set(order[:count])
    train_text = "".join(c for i, c in enumerate(chunks) if i not in heldout)
    heldout_text = "".join(c for i, c in enumerate(chunks) if i in heldout)
    return train_text, heldout_text


def build_vocab(text: str) -> list[str]:
    """``[<unk>, chars...]`` for the characters seen at least `MIN_COUNT` times."""
    counts = Counter(text)
    chars = sorted(c for c, n in counts.items() if n >= MIN_COUNT)
    if len(chars) + 1 > MAX_VOCAB:
        raise DataRejected(f"the text has {len(chars)} distinct frequent characters, over {MAX_VOCAB - 1}")
    return [UNK, *chars]


def encode_text(text: str, vocab: list[str]) -> torch.Tensor:
    """Token ids of `text`; characters outside `vocab` map to ``<unk>`` (0)."""
    index = {c: i for i, c in enumerate(vocab) if i > 0}
    return torch.tensor([index.get(c, 0) for c in text], dtype=torch.int64)


class CharLanguageModel(TaskKind):
    """A character LM task built from a text; subclasses choose where the text comes from."""

    name = "char_lm"

    def source_text(self, source: str | None) -> tuple[str, str]:
        """The raw text and a description of where it came from."""
        if source is not None:
            raise DataRejected("char_lm uses Python's built-in documentation text; pass source=None")
        return python_docs_text(), "pydoc_data.topics"

    def prepare(
        self, source: str | None, seed: int, *, options: dict[str, Any] | None = None
    ) -> PreparedData:
        """Split the text by `seed`, build the vocabulary, encode both splits."""
        text, origin = self.source_text(source)
        if len(text) < MIN_TEXT_CHARS:
            raise DataRejected(f"{origin}: {len(text)} characters of text, need at least {MIN_TEXT_CHARS}")
        train_text, heldout_text = split_text(text, seed)
        vocab = build_vocab(train_text)
        train_bytes = encode_tokens(self.name, "train", encode_text(train_text, vocab))
        heldout_bytes = encode_tokens(self.name, "heldout", encode_text(heldout_text, vocab))
        context = DEFAULT_MODEL["context"]
        model = {**DEFAULT_MODEL, "vocab_size": len(vocab)}
        spec = common_sections(
            self.name,
            model,
            param_count(self._build(model)),
            loss="cross_entropy",
            accuracy=False,
            max_epochs=20,
            max_steps_per_epoch=150,
            training={"batch_size": 128, "epochs": 8, "lr": 0.003},
            data={
                "train_blake2b": blake2b_hex(train_bytes),
                "heldout_blake2b": blake2b_hex(heldout_bytes),
                "train_examples": len(train_text) - int(context),
                "heldout_examples": len(heldout_text) - int(context),
            },
            task={"source": origin, "vocab": vocab, "unk_index": 0},
            eval_batch_size=2048,
        )
        return PreparedData(train_bytes, heldout_bytes, spec)

    @staticmethod
    def _build(model: dict[str, Any]) -> nn.Module:
        return CharMLP(model["vocab_size"], model["context"], model["embed_dim"], model["hidden"])

    def check_spec(self, spec: dict[str, Any]) -> None:
        """`char_mlp` sizes in range and a vocabulary matching `vocab_size`."""
        model = spec["model"]
        ensure(model.get("arch") == "char_mlp", f"model.arch must be 'char_mlp', got {model.get('arch')!r}")
        for field, high in (
            ("vocab_size", MAX_VOCAB),
            ("context", 256),
            ("embed_dim", 256),
            ("hidden", 4096),
        ):
            value = model.get(field)
            ensure(
                isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high,
                f"model.{field} must be an integer in [1, {high}], got {value!r}",
            )
        vocab = spec["task"].get("vocab")
        ensure(
            isinstance(vocab, list) and len(vocab) == model["vocab_size"] and vocab[:1] == [UNK],
            "task.vocab must be a list starting with '<unk>' of length model.vocab_size",
        )

    def build_model(self, spec: dict[str, Any]) -> nn.Module:
        """A `CharMLP` of the spec's sizes."""
        return self._build(spec["model"])

    def decode_split(
        self, spec: dict[str, Any], data: bytes, split: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context windows and next-character targets."""
        model = spec["model"]
        return decode_tokens(spec, data, split, vocab_size=model["vocab_size"], context=model["context"])


class CustomText(CharLanguageModel):
    """`custom_text`: a character LM on the planner's own UTF-8 ``.txt`` file."""

    name = "custom_text"

    def source_text(self, source: str | None) -> tuple[str, str]:
        """The planner's file, decoded strictly (line number on a bad byte)."""
        return read_source_text(source, what="custom_text"), "planner file"
