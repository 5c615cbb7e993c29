"""The LoRA adapter folder of `causal_lm_lora`: the files `peft` writes, and the check of an untrusted one.

A trainer publishes ``adapter_config.json`` + ``adapter_model.safetensors`` (float32, names
without the adapter name, deterministic bytes); a validator checks a folder it fetched in a
fixed order before any tensor is parsed (`check_adapter`), against the exact tensor table the
base architecture implies (`expected_adapter`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import nn

from node.offchain.ml import llm_base
from node.offchain.ml.errors import ModelRejected
from node.offchain.ml.tensorfile import dump_tensors, load_tensors, parse_header
from node.offchain.ml.training import CURVE_KEY

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
MAX_ADAPTER_CONFIG_BYTES = 64 * 1024


def adapter_files(model: Any, settings: dict[str, Any], kind: str, curve: str | None = None) -> dict[str, bytes]:
    """The adapter folder `peft` writes (names without the adapter name), float32, deterministic."""
    peft = llm_base.stack().peft

    state = peft.get_peft_model_state_dict(model)
    tensors = {k: v.detach().to(torch.float32).cpu().contiguous() for k, v in state.items()}
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": int(settings["r"]),
              "lora_alpha": settings["alpha"], "lora_dropout": float(settings["dropout"]),
              "target_modules": sorted(settings["target_modules"]), "bias": "none",
              "fan_in_fan_out": False, "inference_mode": True, "base_model_name_or_path": None}
    return {ADAPTER_CONFIG: json.dumps(config, indent=1, sort_keys=True).encode(),
            ADAPTER_WEIGHTS: dump_tensors(tensors, {"format": "pt", "arena_kind": kind,
                                                    **({CURVE_KEY: curve} if curve else {})})}


def check_adapter(limits: dict[str, Any], base: llm_base.BaseModel, files: dict[str, bytes]
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Validated LoRA settings and tensors of an untrusted adapter folder (`ModelRejected`).

    Order: file names, byte caps, config fields against the spec's limits, then the exact
    tensor table (names, shapes, F32) computed from the base architecture, the trainable
    parameter cap, and only then safetensors parsing and a finiteness check.
    """
    if not isinstance(files, dict) or set(files) != set(ADAPTER_FILES):
        raise ModelRejected(f"an adapter folder holds exactly {list(ADAPTER_FILES)}, got {sorted(files)[:6]}")
    if len(files[ADAPTER_CONFIG]) > MAX_ADAPTER_CONFIG_BYTES:
        raise ModelRejected(f"{ADAPTER_CONFIG} is over {MAX_ADAPTER_CONFIG_BYTES} bytes")
    if len(files[ADAPTER_WEIGHTS]) > limits["max_adapter_bytes"]:
        raise ModelRejected(f"{ADAPTER_WEIGHTS} is {len(files[ADAPTER_WEIGHTS])} bytes, over "
                            f"limits.max_adapter_bytes={limits['max_adapter_bytes']}")
    try:
        config = json.loads(files[ADAPTER_CONFIG])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelRejected(f"{ADAPTER_CONFIG} is not JSON") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise ModelRejected(f"{ADAPTER_CONFIG} must be a LoRA config (peft_type 'LORA')")
    if config.get("bias", "none") != "none" or config.get("fan_in_fan_out", False) \
            or config.get("modules_to_save") or config.get("use_dora") or config.get("layers_to_transform"):
        raise ModelRejected(f"{ADAPTER_CONFIG}: only plain LoRA is accepted (bias none, no DoRA, "
                            "no modules_to_save, no layer selection)")
    r, alpha, modules = config.get("r"), config.get("lora_alpha"), config.get("target_modules")
    if not (isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= limits["max_rank"]):
        raise ModelRejected(f"adapter rank r={r!r} is outside [1, limits.max_rank={limits['max_rank']}]")
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 < alpha <= 4096
            and math.isfinite(alpha)):
        raise ModelRejected(f"adapter lora_alpha={alpha!r} must be a number in (0, 4096]")
    if not (isinstance(modules, list) and modules and all(isinstance(m, str) for m in modules)
            and set(modules) <= set(limits["target_modules"])):
        raise ModelRejected(f"adapter target_modules {modules!r:.120} are not a subset of the spec's "
                            f"{limits['target_modules']}")
    settings = {"r": r, "alpha": alpha, "dropout": 0.0, "target_modules": sorted(set(modules))}
    table, _ = parse_header(files[ADAPTER_WEIGHTS], max_bytes=limits["max_adapter_bytes"],
                            what="adapter weights", error=ModelRejected)
    expected = expected_adapter(base, settings)
    if set(table) != set(expected):
        missing, extra = sorted(set(expected) - set(table)), sorted(set(table) - set(expected))
        raise ModelRejected(f"adapter tensors do not match the base model and target modules: missing "
                            f"{missing[:3]}, unexpected {extra[:3]}")
    for name, shape in expected.items():
        if table[name].shape != shape or table[name].dtype != "F32":
            raise ModelRejected(f"adapter tensor {name!r} is {table[name].dtype} {list(table[name].shape)}, "
                                f"the base model needs F32 {list(shape)}")
    trainable = sum(math.prod(s) for s in expected.values())
    if trainable > limits["max_trainable_params"]:
        raise ModelRejected(f"the adapter has {trainable} parameters, over limits.max_trainable_params="
                            f"{limits['max_trainable_params']}")
    tensors = load_tensors(files[ADAPTER_WEIGHTS], what="adapter weights", error=ModelRejected)
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise ModelRejected(f"adapter tensor {name!r} contains NaN or infinite values")
    return settings, tensors

def expected_adapter(base: llm_base.BaseModel, settings: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Names and shapes `peft` saves for a LoRA of `settings` on the base architecture."""
    config = llm_base.build_config(base.config)
    shapes: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        model = llm_base.meta_model(config)
    r = settings["r"]
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in settings["target_modules"]:
            shapes[f"base_model.model.{name}.lora_A.weight"] = (r, module.in_features)
            shapes[f"base_model.model.{name}.lora_B.weight"] = (module.out_features, r)
    return shapes
