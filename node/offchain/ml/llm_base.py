"""Hugging Face base models for `causal_lm_lora`: build a tiny one locally, load any one defensively.

A base model is a Hugging Face model folder — ``config.json``, ``model.safetensors``,
``tokenizer.json``, ``tokenizer_config.json`` (optionally ``generation_config.json``,
``special_tokens_map.json``) — held as ``{file name: bytes}`` so it can go to and come from
IPFS unchanged.  Nothing is ever downloaded from a hub, nothing is unpickled, no remote code
runs: the config is rebuilt from its JSON for an allowed ``model_type`` (``llama``, ``qwen2``),
the weights are checked against the architecture's exact tensor table before safetensors
parses them, and the tokenizer is read by the Rust `tokenizers` library from its JSON.

Conversations are rendered in ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``, Qwen2's
template); the assistant tokens (content and ``<|im_end|>``) are the training and scoring
targets.  Plain text is cut into windows of `context_length` tokens, every token a target.
"""

from __future__ import annotations

import json
import os
import random
import threading
import types
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even by accident
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch
from torch import nn

from node.offchain.ml.errors import ModelRejected
from node.offchain.ml.tensorfile import load_tensors, parse_header

IM_START, IM_END, EOS = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [EOS, IM_START, IM_END]
IGNORE = -100
MODEL_TYPES = ("llama", "qwen2")
BASE_FILES = {  # allowed file names of a base model folder and their size caps (weights: from the spec)
    "config.json": 1 << 20, "tokenizer.json": 64 << 20, "tokenizer_config.json": 4 << 20,
    "generation_config.json": 1 << 20, "special_tokens_map.json": 1 << 20, "model.safetensors": None,
}
REQUIRED_BASE_FILES = ("config.json", "model.safetensors", "tokenizer.json")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


_STACK_LOCK = threading.Lock()
_STACK: types.SimpleNamespace | None = None


def stack() -> types.SimpleNamespace:
    """`transformers`, `peft` and `tokenizers`, imported once under a lock.

    transformers resolves its attributes lazily; two threads resolving them at the same time can
    see a half-initialised module (AttributeError), so every use goes through this namespace.
    """
    global _STACK
    with _STACK_LOCK:
        if _STACK is None:
            import peft
            import tokenizers
            import transformers
            from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

            _STACK = types.SimpleNamespace(transformers=transformers, peft=peft, tokenizers=tokenizers,
                                           AutoModelForCausalLM=AutoModelForCausalLM,
                                           configs={"llama": LlamaConfig, "qwen2": Qwen2Config})
        return _STACK


@dataclass
class BaseModel:
    """A loaded base model: the torch module (float32, eval), its tokenizer and special token ids."""

    model: nn.Module
    tokenizer: Any  # tokenizers.Tokenizer
    config: dict[str, Any]
    im_start: int
    im_end: int
    eos: int
    params: int


def _config_class(model_type: str) -> Any:
    return stack().configs[model_type]


def build_config(cfg: dict[str, Any]) -> Any:
    """A transformers config from a config.json dict, for an allowed model_type only."""
    model_type = cfg.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ModelRejected(f"base model_type {model_type!r} is not one of {MODEL_TYPES}")
    fields = {k: v for k, v in cfg.items() if k not in ("auto_map", "architectures", "transformers_version",
                                                          "model_type", "torch_dtype", "dtype")}
    try:
        return _config_class(model_type)(**fields)
    except Exception as exc:  # noqa: BLE001 - config classes validate with several error types
        raise ModelRejected(f"base config.json is not a valid {model_type} config: {str(exc)[:300]}") from None


def meta_model(config: Any) -> nn.Module:
    """The architecture on the meta device (no memory): shapes and parameter counts only."""
    auto = stack().AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


def _token_id(tokenizer: Any, token: str) -> int:
    ident = tokenizer.token_to_id(token)
    if ident is None:
        raise ModelRejected(f"the base tokenizer has no {token!r} token (ChatML needs it)")
    return int(ident)


def load_tokenizer(data: bytes) -> Any:
    """A `tokenizers.Tokenizer` from tokenizer.json bytes (Rust parser, no code)."""
    try:
        return stack().tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - the Rust parser raises plain Exception subclasses
        raise ModelRejected(f"tokenizer.json does not load: {str(exc)[:200]}") from None


def check_base_files(files: dict[str, bytes], *, max_params: int, max_bytes: int) -> tuple[Any, int]:
    """Config and parameter count of a base folder, checked without loading any weight."""
    unknown = sorted(set(files) - set(BASE_FILES))
    missing = [name for name in REQUIRED_BASE_FILES if name not in files]
    if unknown or missing:
        raise ModelRejected(f"base model folder: unexpected files {unknown[:5]}, missing {missing}")
    try:
        cfg = json.loads(files["config.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelRejected(f"base config.json is not JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelRejected("base config.json must be a JSON object")
    config = build_config(cfg)
    model = meta_model(config)
    count = sum(p.numel() for p in model.parameters())
    if count > max_params:
        raise ModelRejected(f"base model has {count} parameters, over the limit of {max_params}")
    table, _ = parse_header(files["model.safetensors"], max_bytes=max_bytes, what="base weights",
                            error=ModelRejected)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing_t = sorted(set(expected) - set(table) - tied)
    extra = sorted(set(table) - set(expected))
    if missing_t or extra:
        raise ModelRejected(f"base weights do not match config.json: missing {missing_t[:4]}, unexpected {extra[:4]}")
    for name, info in table.items():
        if info.shape != expected[name]:
            raise ModelRejected(f"base tensor {name!r} has shape {list(info.shape)}, config needs {list(expected[name])}")
        if info.dtype not in ("F32", "F16", "BF16"):
            raise ModelRejected(f"base tensor {name!r} has dtype {info.dtype}")
    return config, count


def load_base(files: dict[str, bytes], *, max_params: int, max_bytes: int) -> BaseModel:
    """Load a base model folder defensively (module docstring); float32, eval mode, on the CPU."""
    auto = stack().AutoModelForCausalLM
    config, count = check_base_files(files, max_params=max_params, max_bytes=max_bytes)
    tokenizer = load_tokenizer(files["tokenizer.json"])
    ids = {token: _token_id(tokenizer, token) for token in (IM_START, IM_END)}
    eos = tokenizer.token_to_id(EOS)
    vocab = int(config.vocab_size)
    if max(ids.values()) >= vocab or tokenizer.get_vocab_size() > vocab:
        raise ModelRejected(f"the tokenizer has {tokenizer.get_vocab_size()} tokens, the model only {vocab}")
    tensors = load_tensors(files["model.safetensors"], what="base weights", error=ModelRejected)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = auto.from_config(config)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    if unexpected or any(k != "lm_head.weight" for k in missing):
        raise ModelRejected(f"base weights do not load: missing {missing[:4]}, unexpected {unexpected[:4]}")
    if missing:
        model.tie_weights()
    model.float().eval()
    return BaseModel(model, tokenizer, json.loads(files["config.json"]), ids[IM_START], ids[IM_END],
                     int(eos if eos is not None else ids[IM_END]), count)


# ---------------------------------------------------------------- encoding

def encode_conversation(base: BaseModel, conversation: list[dict[str, str]], context: int) -> tuple[list[int], list[int]]:
    """ChatML token ids and labels (assistant content + ``<|im_end|>``; others `IGNORE`), truncated."""
    tok = base.tokenizer
    ids: list[int] = []
    labels: list[int] = []
    newline = tok.encode("\n", add_special_tokens=False).ids
    for message in conversation:
        head = [base.im_start, *tok.encode(message["role"] + "\n", add_special_tokens=False).ids]
        body = [*tok.encode(message["content"], add_special_tokens=False).ids, base.im_end]
        ids += head + body + newline
        target = body if message["role"] == "assistant" else [IGNORE] * len(body)
        labels += [IGNORE] * len(head) + target + [IGNORE] * len(newline)
    return ids[:context], labels[:context]


def encode_prompt(base: BaseModel, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` followed by the assistant header (generation prompt)."""
    ids, _ = encode_conversation(base, messages, 1 << 30)
    return ids + [base.im_start, *base.tokenizer.encode("assistant\n", add_special_tokens=False).ids]


def encode_text(base: BaseModel, chunks: list[str], context: int) -> list[tuple[list[int], list[int]]]:
    """Each text chunk as windows of `context` tokens, every token a target."""
    examples = []
    for chunk in chunks:
        ids = [*base.tokenizer.encode(chunk, add_special_tokens=False).ids, base.eos]
        for start in range(0, max(1, len(ids) - 1), context):
            window = ids[start : start + context]
            if len(window) >= 2:
                examples.append((window, list(window)))
    return examples


def collate(examples: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and shifted-in-loss ``labels``."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad, dtype=torch.int64)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.int64)
    mask = torch.zeros((len(examples), width), dtype=torch.int64)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return input_ids, mask, labels


def token_losses(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-target cross-entropy (nats) of next-token prediction over labelled positions."""
    logits = model(input_ids=input_ids, attention_mask=mask).logits
    shifted = labels[:, 1:]
    keep = shifted != IGNORE
    flat = logits[:, :-1][keep]
    return torch.nn.functional.cross_entropy(flat, shifted[keep], reduction="none")


# ---------------------------------------------------------------- building a tiny base model

def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained with `tokenizers` on `texts` (deterministic)."""
    tokenizers = stack().tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def build_tiny_base(
    texts: list[str], *, seed: int, model_type: str = "qwen2", vocab_size: int = 640, steps: int = 40,
    context: int = 64, batch_size: int = 8, lr: float = 5e-3, progress: Any = None,
) -> dict[str, bytes]:
    """A small base model folder: tokenizer trained on `texts`, briefly pretrained on them."""
    auto = stack().AutoModelForCausalLM
    tokenizer = train_tokenizer(texts, vocab_size)
    config = _config_class(model_type)(
        vocab_size=tokenizer.get_vocab_size(), bos_token_id=tokenizer.token_to_id(EOS),
        eos_token_id=tokenizer.token_to_id(IM_END), pad_token_id=tokenizer.token_to_id(EOS), **TINY_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config)
        stream: list[int] = []
        for text in texts:
            stream += [*tokenizer.encode(text).ids, tokenizer.token_to_id(EOS)]
        data = torch.tensor(stream, dtype=torch.int64)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        rng = random.Random(seed)
        model.train()
        for step in range(steps):
            starts = [rng.randrange(0, max(1, len(stream) - context - 1)) for _ in range(batch_size)]
            batch = torch.stack([data[s : s + context] for s in starts])
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(step + 1, steps, float(loss.detach()))
    model.eval()
    return dump_base(model, tokenizer)


def dump_base(model: Any, tokenizer: Any) -> dict[str, bytes]:
    """A Hugging Face model folder (file name → bytes) for `model` and `tokenizer`."""
    from node.offchain.ml.tensorfile import dump_tensors

    state = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    config = model.config.to_dict()
    config.pop("transformers_version", None)
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML_TEMPLATE, "eos_token": IM_END,
        "pad_token": EOS, "bos_token": None, "model_max_length": int(model.config.max_position_embeddings),
        "added_tokens_decoder": {str(tokenizer.token_to_id(t)): {"content": t, "special": True}
                                 for t in SPECIAL_TOKENS},
    }
    return {
        "config.json": json.dumps(config, indent=1, sort_keys=True).encode(),
        "model.safetensors": dump_tensors(state, {"format": "pt"}),
        "tokenizer.json": tokenizer.to_str().encode(),
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=1, sort_keys=True).encode(),
    }
