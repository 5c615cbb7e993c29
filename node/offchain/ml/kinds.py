"""The registry of task kinds: `KINDS` maps a spec's ``kind`` to its implementation."""

from __future__ import annotations

from typing import Any

from node.offchain.ml.base import EvalResult, PreparedData, TaskKind
from node.offchain.ml.digits import DigitsClassifier
from node.offchain.ml.errors import SpecRejected
from node.offchain.ml.llm import CausalLMLoRA
from node.offchain.ml.tabular import CustomTable
from node.offchain.ml.textlm import CharLanguageModel, CustomText

KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (DigitsClassifier(), CharLanguageModel(), CustomTable(), CustomText(), CausalLMLoRA())
}

__all__ = ["KINDS", "EvalResult", "PreparedData", "TaskKind", "get_kind", "kind_of"]


def get_kind(name: str) -> TaskKind:
    """The task kind called `name`; `SpecRejected` lists the known kinds otherwise."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise SpecRejected(f"unknown task kind {name!r}; known kinds: {sorted(KINDS)}")
    return kind


def kind_of(spec: dict[str, Any]) -> TaskKind:
    """The task kind a spec names."""
    if not isinstance(spec, dict):
        raise SpecRejected(f"a task spec must be a dict, got {type(spec).__name__}")
    return get_kind(spec.get("kind"))  # type: ignore[arg-type]
