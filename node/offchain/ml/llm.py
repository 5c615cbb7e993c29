"""`causal_lm_lora`: fine-tune a Hugging Face causal language model with LoRA, scored by held-out loss.

What FLock's AI Arena runs: the planner names a base model folder on IPFS (`model.base_cid`)
and publishes chat data; trainers fine-tune a LoRA adapter with `peft` and publish the adapter
folder (``adapter_config.json`` + ``adapter_model.safetensors``, the layout `peft` writes and
reads); validators load base + adapter defensively and compute the mean per-token
cross-entropy over the assistant tokens of the sealed held-out conversations (ChatML, see
`llm_base`), in float64 on one CPU thread, quantized to integer parts-per-billion and mapped to
the score by ``inv_loss_v1`` like every kind.  See docs/task-kinds.md.

Spec (besides ``format``/``kind``)::

    "model":   {"arch": "hf_causal_lm", "base_cid": CID, "model_type": "qwen2"|"llama",
                "base_params": int}
    "lora":    {"r", "alpha", "dropout", "target_modules": [...]}     # suggested settings
    "limits":  {"max_rank", "target_modules": [...allowed], "max_trainable_params",
                "max_adapter_bytes", "max_base_params", "max_base_bytes", "max_epochs",
                "max_steps", "max_lr", "max_data_bytes", "context_length"}
    "training":{"batch_size", "epochs", "lr", "max_steps"}
    "metric":  {"loss": "assistant_token_cross_entropy" | "token_cross_entropy", "unit": "nats/token",
                "dtype": "float64", "loss_scale": 10**9, "quantization": "round_half_even",
                "score": "inv_loss_v1", "eval_batch_size": int, "accuracy": false}
    "data":    {"format": "jsonl_conversations" | "text", "train_cid", "heldout_cid",
                "train_blake2b", "heldout_blake2b", "train_examples", "heldout_examples"}
    "task":    {"chat_format": "chatml", "source": str}
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from node.offchain.ml import llm_base, llm_data
from node.offchain.ml.base import EvalResult, PreparedData, TaskKind
from node.offchain.ml.errors import DataRejected, LimitExceeded, ModelRejected, SpecRejected
from node.offchain.ml.evaluation import deterministic_cpu
from node.offchain.ml.llm_adapter import (
    ADAPTER_CONFIG,
    ADAPTER_FILES,
    ADAPTER_WEIGHTS,
    MAX_ADAPTER_CONFIG_BYTES,
    adapter_files,
    check_adapter,
)
from node.offchain.ml.sources import read_source_text
from node.offchain.ml.spec import (
    LOSS_SCALE,
    REJECTED_LOSS_PPB,
    SPEC_FORMAT,
    blake2b_hex,
    ensure,
    quantize_loss,
    score_from_loss_ppb,
)
from node.offchain.ml.training import Progress, curve_metadata, resolve_device

KIND = "causal_lm_lora"
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Hard caps a validator enforces whatever a (possibly hostile) planner writes into a spec.
HARD_MAX_BASE_PARAMS = 8_000_000_000
HARD_MAX_BASE_BYTES = 32 * 2**30
HARD_MAX_TRAINABLE = 200_000_000
HARD_MAX_ADAPTER_BYTES = 1 * 2**30
HARD_MAX_RANK = 256
HARD_MAX_CONTEXT = 32768
HARD_MAX_STEPS = 1_000_000
HARD_MAX_DATA_BYTES = 256 * 2**20
POOR_LR = 1e-5
LOSSES = {"jsonl_conversations": "assistant_token_cross_entropy", "text": "token_cross_entropy"}

BaseFiles = dict[str, bytes]


def _int(section: dict[str, Any], name: str, low: int, high: int, where: str) -> int:
    value = section.get(name)
    ensure(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
           f"spec {where}.{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)  # type: ignore[arg-type]


def lora_param_count(base_config: Any, r: int, modules: list[str]) -> int:
    """Trainable parameters of a LoRA adapter of rank `r` on `modules` of every layer."""
    with torch.device("meta"):
        model = llm_base.meta_model(base_config)
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in modules:
            count += r * (module.in_features + module.out_features)
    return count


def adapter_bytes_limit(trainable: int) -> int:
    """Size cap of a float32 adapter file with `trainable` values (header slack)."""
    return trainable * 4 + 256 * 1024


class CausalLMLoRA(TaskKind):
    """The `causal_lm_lora` kind (module docstring).  Its model is a folder, not one file."""

    name = KIND
    data_layout = "jsonl"
    artifact = "folder"  # workers publish/fetch `adapter_files`, and pass the base folder along

    # ------------------------------------------------------------ spec

    def loss_name(self, spec: dict[str, Any]) -> str:
        return LOSSES.get(spec.get("data", {}).get("format"), "assistant_token_cross_entropy")

    def validate_spec(self, spec: dict[str, Any]) -> None:
        """Every field the trainer and validator rely on, against hard caps (`SpecRejected`)."""
        ensure(isinstance(spec, dict), f"a task spec must be a dict, got {type(spec).__name__}")
        ensure(spec.get("format") == SPEC_FORMAT, f"spec format {spec.get('format')!r} is not {SPEC_FORMAT}")
        ensure(spec.get("kind") == self.name, f"spec kind {spec.get('kind')!r} is not {self.name!r}")
        for section in ("model", "lora", "limits", "training", "metric", "data", "task"):
            ensure(isinstance(spec.get(section), dict), f"spec section {section!r} is missing or not a dict")
        self.check_spec(spec)

    def check_spec(self, spec: dict[str, Any]) -> None:
        model, lora, limits, metric, data = (spec[k] for k in ("model", "lora", "limits", "metric", "data"))
        ensure(model.get("arch") == "hf_causal_lm", "model.arch must be 'hf_causal_lm'")
        ensure(model.get("model_type") in llm_base.MODEL_TYPES,
               f"model.model_type must be one of {llm_base.MODEL_TYPES}, got {model.get('model_type')!r}")
        ensure(isinstance(model.get("base_cid"), str) and 0 < len(model["base_cid"]) <= 128,
               "model.base_cid must name the base model folder on IPFS")
        _int(limits, "max_base_params", 1, HARD_MAX_BASE_PARAMS, "limits")
        _int(limits, "max_base_bytes", 1, HARD_MAX_BASE_BYTES, "limits")
        _int(limits, "max_trainable_params", 1, HARD_MAX_TRAINABLE, "limits")
        _int(limits, "max_adapter_bytes", 1, HARD_MAX_ADAPTER_BYTES, "limits")
        max_rank = _int(limits, "max_rank", 1, HARD_MAX_RANK, "limits")
        _int(limits, "max_epochs", 1, 1000, "limits")
        _int(limits, "max_steps", 1, HARD_MAX_STEPS, "limits")
        _int(limits, "max_data_bytes", 1, HARD_MAX_DATA_BYTES, "limits")
        _int(limits, "context_length", 8, HARD_MAX_CONTEXT, "limits")
        allowed = limits.get("target_modules")
        ensure(isinstance(allowed, list) and bool(allowed) and set(allowed) <= set(LORA_MODULES),
               f"limits.target_modules must be a non-empty subset of {LORA_MODULES}")
        max_lr = limits.get("max_lr")
        ensure(isinstance(max_lr, (int, float)) and 0 < max_lr <= 1, "limits.max_lr must be in (0, 1]")
        _int(lora, "r", 1, max_rank, "lora")
        ensure(isinstance(lora.get("alpha"), (int, float)) and 0 < lora["alpha"] <= 4096,
               "lora.alpha must be a number in (0, 4096]")
        ensure(isinstance(lora.get("dropout"), (int, float)) and 0 <= lora["dropout"] < 1,
               "lora.dropout must be in [0, 1)")
        ensure(isinstance(lora.get("target_modules"), list) and lora["target_modules"]
               and set(lora["target_modules"]) <= set(allowed), "lora.target_modules must be allowed by limits")
        _int(spec["training"], "batch_size", 1, 4096, "training")
        _int(spec["training"], "epochs", 1, limits["max_epochs"], "training")
        ensure(data.get("format") in LOSSES, f"data.format must be one of {sorted(LOSSES)}")
        ensure(metric.get("loss") == LOSSES[data["format"]], f"metric.loss must be {LOSSES[data['format']]!r}")
        for field, value in (("dtype", "float64"), ("loss_scale", LOSS_SCALE),
                             ("quantization", "round_half_even"), ("score", "inv_loss_v1")):
            ensure(metric.get(field) == value, f"spec metric.{field} must be {value!r}")
        _int(metric, "eval_batch_size", 1, 1024, "metric")
        ensure(spec["task"].get("chat_format") == "chatml", "task.chat_format must be 'chatml'")

    def build_model(self, spec: dict[str, Any]) -> nn.Module:
        raise SpecRejected("causal_lm_lora builds its model from the base folder; use train_adapter")

    def decode_split(self, spec: dict[str, Any], data: bytes, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        raise SpecRejected("causal_lm_lora splits are JSONL or text; see decode_examples")

    # ------------------------------------------------------------ planner

    def prepare(self, source: str | None, seed: int, *, options: dict[str, Any] | None = None) -> PreparedData:
        """Split the data by `seed`; build and pretrain a tiny base model unless `options["base"]` gives one.

        `source`: None (built-in chats), a ``.jsonl`` conversation file or a ``.txt`` file.
        Options: ``base`` (a base folder as {name: bytes}), ``context_length``, ``pretrain_steps``.
        The base folder goes out as `PreparedData.folders["base"]`; the planner publishes it and
        writes its CID into ``model.base_cid``.
        """
        options = options or {}
        if source is None:
            items: list[Any] = llm_data.builtin_conversations()
            fmt, origin = "jsonl_conversations", "built-in chats"
        else:
            text = read_source_text(source, what=KIND)
            if source.endswith(".jsonl"):
                items, fmt = llm_data.parse_conversations(text, what=source), "jsonl_conversations"
            else:
                items, fmt = llm_data.text_chunks(text), "text"
            origin = "planner file"
        train, heldout = llm_data.split_items(items, seed)
        if fmt == "text":
            train_bytes, heldout_bytes = ("\n\n".join(train) + "\n").encode(), ("\n\n".join(heldout) + "\n").encode()
            corpus = list(train)
        else:
            train_bytes, heldout_bytes = llm_data.dump_conversations(train), llm_data.dump_conversations(heldout)
            corpus = [m["content"] for c in train for m in c]
        base = options.get("base")
        if base is None:
            base = llm_base.build_tiny_base(corpus, seed=seed & 0xFFFF,
                                            steps=int(options.get("pretrain_steps", 40)))
        config, base_params = llm_base.check_base_files(base, max_params=HARD_MAX_BASE_PARAMS,
                                                        max_bytes=HARD_MAX_BASE_BYTES)
        context = int(options.get("context_length", 128))
        lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
        trainable = lora_param_count(config, 16, list(LORA_MODULES))
        spec = {
            "format": SPEC_FORMAT, "kind": KIND,
            "model": {"arch": "hf_causal_lm", "base_cid": "", "model_type": config.model_type,
                      "base_params": base_params},
            "lora": lora,
            "limits": {"max_rank": 16, "target_modules": list(LORA_MODULES), "max_trainable_params": trainable,
                       "max_adapter_bytes": adapter_bytes_limit(trainable), "max_base_params": base_params,
                       "max_base_bytes": sum(len(v) for v in base.values()), "max_epochs": 20,
                       "max_steps": 2000, "max_lr": 0.05, "max_data_bytes": 64 * 2**20,
                       "context_length": context},
            "training": {"batch_size": 16, "epochs": 2, "lr": 0.01, "max_steps": 60},
            "metric": {"loss": LOSSES[fmt], "unit": "nats/token", "dtype": "float64", "loss_scale": LOSS_SCALE,
                       "quantization": "round_half_even", "score": "inv_loss_v1", "eval_batch_size": 16,
                       "accuracy": False},
            "data": {"format": fmt, "train_cid": None, "heldout_cid": None,
                     "train_blake2b": blake2b_hex(train_bytes), "heldout_blake2b": blake2b_hex(heldout_bytes),
                     "train_examples": len(train), "heldout_examples": len(heldout)},
            "task": {"chat_format": "chatml", "source": origin},
        }
        return PreparedData(train_bytes, heldout_bytes, spec, folders={"base": base})

    # ------------------------------------------------------------ data

    def decode_examples(self, spec: dict[str, Any], data: bytes, split: str, base: llm_base.BaseModel
                        ) -> list[tuple[list[int], list[int]]]:
        """Token ids and labels of a split (digest checked; ``DataRejected`` for bad data)."""
        if len(data) > spec["limits"]["max_data_bytes"]:
            raise DataRejected(f"the {split} data is {len(data)} bytes, over limits.max_data_bytes")
        digest = spec["data"].get(f"{split}_blake2b")
        if digest is not None and blake2b_hex(data) != digest:
            raise DataRejected(f"the {split} data does not match the spec's {split}_blake2b digest")
        context = spec["limits"]["context_length"]
        if spec["data"]["format"] == "text":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise DataRejected(f"the {split} text is not UTF-8") from None
            examples = llm_base.encode_text(base, text.split("\n\n"), context)
        else:
            conversations = llm_data.parse_conversations(data, what=f"{split} data")
            examples = [llm_base.encode_conversation(base, c, context) for c in conversations]
        examples = [e for e in examples if any(label != llm_base.IGNORE for label in e[1][1:])]
        if not examples:
            raise DataRejected(f"the {split} data has no target tokens within context_length={context}")
        return examples

    def load_base(self, spec: dict[str, Any], files: BaseFiles) -> llm_base.BaseModel:
        """The spec's base model from its folder, loaded defensively (`ModelRejected` if unusable)."""
        base = llm_base.load_base(files, max_params=spec["limits"]["max_base_params"],
                                  max_bytes=spec["limits"]["max_base_bytes"])
        if base.config.get("model_type") != spec["model"]["model_type"]:
            raise ModelRejected(f"the base folder is a {base.config.get('model_type')!r} model, the spec says "
                                f"{spec['model']['model_type']!r}")
        return base

    # ------------------------------------------------------------ trainer

    def lora_config(self, settings: dict[str, Any]) -> Any:
        peft = llm_base.stack().peft

        return peft.LoraConfig(r=int(settings["r"]), lora_alpha=settings["alpha"],
                               lora_dropout=float(settings["dropout"]),
                               target_modules=list(settings["target_modules"]), bias="none",
                               task_type="CAUSAL_LM")

    def train(  # type: ignore[override]
            self, spec: dict[str, Any], train_bytes: bytes, *, epochs: int, lr: float, seed: int,
            quality: str = "good", progress: Progress = None, device: str = "cpu",
            base_files: BaseFiles | None = None, max_steps: int | None = None,
            lora: dict[str, Any] | None = None, distributed: Any = None) -> dict[str, bytes]:
        """Fine-tune a LoRA adapter; return the adapter folder ``{file name: bytes}``.

        `quality="poor"` takes one tiny step.  `device`: cpu | cuda | auto (bf16 autocast on
        GPUs that support it, else fp16).  `distributed`: a `torch.distributed` process group
        already initialised (gradients all-reduced, each rank a slice of every batch).
        """
        self.validate_spec(spec)
        if base_files is None:
            raise SpecRejected("causal_lm_lora training needs the base model folder (base_files)")
        settings = self.training_settings(spec, epochs, lr, lora)
        limits = spec["limits"]
        base = self.load_base(spec, base_files)
        examples = self.decode_examples(spec, train_bytes, "train", base)
        target = resolve_device(device)
        model = self.lora_model(base, settings, seed, limits["max_trainable_params"])
        model.to(target).train()
        batch_size = spec["training"]["batch_size"]
        steps_per_epoch = -(-len(examples) // batch_size)
        total = min(epochs * steps_per_epoch, max_steps or spec["training"].get("max_steps", limits["max_steps"]),
                    limits["max_steps"])
        if quality == "poor":
            total, lr = 1, POOR_LR
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        autocast = _autocast(target)
        # fp16 (GPUs without bf16) needs loss scaling so small adapter gradients do not underflow
        scaler = torch.amp.GradScaler("cuda") if target.type == "cuda" and not torch.cuda.is_bf16_supported() else None
        rank, world = (distributed.rank(), distributed.size()) if distributed is not None else (0, 1)
        batches = _shuffled_batches(len(examples), batch_size, seed)
        bar = None
        if progress == "tqdm" and rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="lora", unit="step", leave=False)
        pad = base.eos
        # the training curve: mean loss per window of steps (an epoch's worth, or 1/20 of a short run)
        window = max(1, min(steps_per_epoch, total // 20 or 1))
        curve: list[dict[str, Any]] = []
        window_sum = 0.0
        for step in range(1, total + 1):
            batch = next(batches)
            mine = batch[rank::world] or batch[:1]
            input_ids, mask, labels = (t.to(target) for t in llm_base.collate([examples[i] for i in mine], pad))
            with autocast:
                losses = llm_base.token_losses(model, input_ids, mask, labels)
            loss = losses.float().mean()
            _optimizer_step(loss, params, optimizer, scaler, distributed, world)
            value = float(loss.detach())
            window_sum += value
            if step % window == 0 or step == total:
                curve.append({"step": step, "loss": window_sum / (step - (step - 1) // window * window)})
                window_sum = 0.0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
            elif callable(progress) and rank == 0:
                progress(step, total, value)
        if bar is not None:
            bar.close()
        return adapter_files(model.to("cpu"), settings, KIND, curve_metadata(curve, "token_cross_entropy", "step"))

    def training_settings(self, spec: dict[str, Any], epochs: int, lr: float, lora: dict[str, Any] | None
                          ) -> dict[str, Any]:
        """The LoRA settings a run uses (the spec's, overridden by `lora`), with epochs and lr in the limits."""
        limits = spec["limits"]
        if not (isinstance(epochs, int) and 1 <= epochs <= limits["max_epochs"]):
            raise LimitExceeded(f"epochs={epochs!r} is outside [1, limits.max_epochs={limits['max_epochs']}]")
        if not (math.isfinite(lr) and 0 < lr <= limits["max_lr"]):
            raise LimitExceeded(f"lr={lr!r} is outside (0, limits.max_lr={limits['max_lr']}]")
        settings = {**spec["lora"], **(lora or {})}
        self.check_spec({**spec, "lora": settings})
        return settings

    def lora_model(self, base: llm_base.BaseModel, settings: dict[str, Any], seed: int, max_trainable: int) -> Any:
        """The base wrapped with a freshly seeded LoRA adapter (`LimitExceeded` over `max_trainable`)."""
        peft = llm_base.stack().peft

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = peft.get_peft_model(base.model, self.lora_config(settings))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if trainable > max_trainable:
            raise LimitExceeded(f"the adapter has {trainable} parameters, over limits.max_trainable_params")
        return model

    # ------------------------------------------------------------ validator

    def load_adapter(self, spec: dict[str, Any], base: llm_base.BaseModel, files: dict[str, bytes]) -> Any:
        """A `peft` model: base + the checked adapter (the base module is wrapped in place)."""
        peft = llm_base.stack().peft

        settings, tensors = check_adapter(spec["limits"], base, files)
        model = peft.get_peft_model(base.model, self.lora_config(settings))
        result = peft.set_peft_model_state_dict(model, tensors)
        if getattr(result, "unexpected_keys", None):
            raise ModelRejected(f"adapter tensors not used by peft: {result.unexpected_keys[:3]}")
        return model.eval()

    def merged_model(self, spec: dict[str, Any], base_files: BaseFiles, files: dict[str, bytes]
                     ) -> tuple[nn.Module, llm_base.BaseModel]:
        """Base + adapter merged into plain weights (what a host serves)."""
        base = self.load_base(spec, base_files)
        model = self.load_adapter(spec, base, files).merge_and_unload()
        return model.eval(), base

    def evaluate(self, spec: dict[str, Any], model_bytes: Any, heldout_bytes: bytes, *,  # type: ignore[override]
                 base_files: BaseFiles | None = None) -> EvalResult:
        """Mean per-token cross-entropy over the held-out targets; identical integers on every CPU.

        `model_bytes` is the adapter folder ``{file name: bytes}``.  The base model and the
        held-out data are the planner's responsibility (`ModelRejected` on the base, or
        `DataRejected`, propagate); anything wrong with the adapter scores 0 with the reason.
        """
        self.validate_spec(spec)
        if base_files is None:
            raise SpecRejected("causal_lm_lora evaluation needs the base model folder (base_files)")
        base = self.load_base(spec, base_files)
        examples = self.decode_examples(spec, heldout_bytes, "heldout", base)
        tokens = sum(sum(1 for x in labels[1:] if x != llm_base.IGNORE) for _, labels in examples)
        try:
            model = self.load_adapter(spec, base, model_bytes)
        except ModelRejected as exc:
            return EvalResult(REJECTED_LOSS_PPB, 0, None, tokens, rejected=str(exc))
        total = heldout_loss(model, examples, spec["metric"]["eval_batch_size"], base.eos)
        loss_ppb = quantize_loss(total, tokens)
        if loss_ppb >= REJECTED_LOSS_PPB:
            return EvalResult(REJECTED_LOSS_PPB, 0, None, tokens, rejected="the held-out loss is not finite")
        return EvalResult(loss_ppb, score_from_loss_ppb(loss_ppb), None, tokens)


def heldout_loss(model: nn.Module, examples: list[tuple[list[int], list[int]]], batch_size: int, pad: int) -> float:
    """Sum of per-token losses in float64 on one CPU thread, examples in stored order (`math.fsum`)."""
    model = model.to(dtype=torch.float64, device="cpu").eval()
    losses: list[float] = []
    with deterministic_cpu():
        for start in range(0, len(examples), batch_size):
            input_ids, mask, labels = llm_base.collate(examples[start : start + batch_size], pad)
            losses.extend(llm_base.token_losses(model, input_ids, mask, labels).tolist())
    try:
        return math.fsum(losses)
    except OverflowError:
        return math.inf


def _shuffled_batches(count: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Example indices, `batch_size` at a time, from epoch after epoch of seeded shuffles (endless)."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            fresh = list(range(count))
            rng.shuffle(fresh)
            order += fresh
        batch, order = order[:batch_size], order[batch_size:]
        yield batch


def _optimizer_step(loss: torch.Tensor, params: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                    scaler: Any, distributed: Any, world: int) -> None:
    """Backward, average the adapter gradients over the ranks (data parallel), step (through `scaler` if fp16)."""
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if distributed is not None:
        for p in params:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad, group=distributed)
                p.grad /= world
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _autocast(device: torch.device) -> Any:
    """bf16 autocast on GPUs that support it, fp16 otherwise; nothing on the CPU."""
    import contextlib

    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def loss_units(loss_ppb: int | None) -> dict[str, float] | None:
    """A loss in ppb as ML units: nats per token and perplexity (None for a rejected model)."""
    if loss_ppb is None or loss_ppb >= REJECTED_LOSS_PPB:
        return None
    nats = loss_ppb / LOSS_SCALE
    return {"loss_nats": round(nats, 6), "perplexity": round(math.exp(min(nats, 700.0)), 4)}


__all__ = ["ADAPTER_CONFIG", "ADAPTER_FILES", "ADAPTER_WEIGHTS", "KIND", "MAX_ADAPTER_CONFIG_BYTES", "CausalLMLoRA",
           "heldout_loss", "loss_units"]
