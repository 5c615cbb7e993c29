"""Load and run the models a host serves: one `ServedModel` per top model, its input checks and batch forward.

`load_served_model` pulls a finished task's spec and model from the content store (size-limited,
loaded defensively by its task kind); `ServedModel.parse` validates one request's input before
any voucher is spent (`BadRequest` otherwise) and `ServedModel.run` answers a batch of parsed
inputs with one forward pass (or one generation loop).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from runtime.codec import encode
from runtime.crypto import blake2b_256

MAX_PROMPT_CHARS = 2048
MAX_TOKENS = 256
MAX_ROWS = 32
MAX_SPEC_BYTES = 1 << 20
ENDPOINTS = {"digits_classifier": "predict", "custom_csv": "predict", "char_lm": "completions",
             "custom_text": "completions", "causal_lm_lora": "chat/completions"}


_NUMBER_TYPES = frozenset((int, float))  # not bool: True is no feature value


def _finite_row(row: Any, width: int) -> bool:
    """A list of `width` ints/floats, each of magnitude below 1e9 (no NaN, no infinity); map() keeps it cheap."""
    return (isinstance(row, list) and len(row) == width and _NUMBER_TYPES.issuperset(map(type, row))
            and (width == 0 or max(map(abs, row)) < 1e9) and not any(map(math.isnan, row)))


class BadRequest(Exception):
    """A request the host refuses before looking at its voucher."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class ServedModel:
    """One loaded model and how to run it."""

    cid: str
    task_id: int
    kind: str
    spec: dict
    module: Any
    price: int

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.kind]

    def parse(self, body: dict) -> Any:
        """The validated input of one request (BadRequest on bad input)."""
        if self.endpoint == "chat/completions":  # an LLM: `module` is a llm_serving.ChatModel
            from node.offchain.llm_serving import ChatRequestError
            try:
                return self.module.parse(body)
            except ChatRequestError as exc:
                raise BadRequest(exc.status, exc.code, exc.message) from None
        if self.endpoint == "completions":
            prompt = body.get("prompt", "")
            max_tokens = body.get("max_tokens", 32)
            temperature = body.get("temperature", 0)
            if not isinstance(prompt, str):
                raise BadRequest(400, "bad_input", "prompt must be a string")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise BadRequest(413, "input_too_large", f"prompt is {len(prompt)} characters, limit {MAX_PROMPT_CHARS}")
            if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_TOKENS:
                raise BadRequest(400, "bad_input", f"max_tokens must be an integer in 1..{MAX_TOKENS}")
            if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
                raise BadRequest(400, "bad_input", "temperature must be a number in [0, 2]")
            return prompt, max_tokens, float(temperature)
        rows = body.get("inputs", [body["input"]] if "input" in body else None)
        width = len(self.spec["task"].get("feature_columns", [])) or int(self.spec["model"]["input_dim"])
        if not isinstance(rows, list) or not rows:
            raise BadRequest(400, "bad_input", f"give `input` (one row of {width} numbers) or `inputs` (rows)")
        if len(rows) > MAX_ROWS:
            raise BadRequest(413, "input_too_large", f"{len(rows)} rows, limit {MAX_ROWS} per query")
        if not all(_finite_row(row, width) for row in rows):
            raise BadRequest(400, "bad_input", f"each row must be {width} finite numbers")
        return rows

    def run(self, inputs: list[Any]) -> list[Any]:
        """Answer a batch of parsed inputs with one forward pass (or one generation loop)."""
        import torch

        if self.endpoint == "chat/completions":
            return self.module.run(inputs)
        with torch.inference_mode():
            return self._complete(inputs) if self.endpoint == "completions" else self._predict(inputs)

    def _predict(self, batch: list[list[list[float]]]) -> list[list[dict]]:
        import torch

        rows = [row for rows in batch for row in rows]
        x = torch.tensor(rows, dtype=torch.float32)
        task = self.spec["task"]
        if self.kind == "digits_classifier":
            x = x / 16.0
        elif "feature_mean" in task:
            x = (x - torch.tensor(task["feature_mean"])) / torch.tensor(task["feature_std"])
        out = self.module(x)
        answers = []
        if task.get("problem") == "regression":
            values = (out[:, 0] * task["target_std"] + task["target_mean"]).tolist()
            answers = [{"value": round(v, 6)} for v in values]
        else:
            probs = torch.softmax(out.double(), dim=1)
            classes = task.get("classes")
            labels = classes if isinstance(classes, list) else list(range(probs.shape[1]))
            for p in probs.tolist():
                best = max(range(len(p)), key=lambda i: (p[i], -i))
                answers.append({"label": labels[best], "probabilities": [round(v, 6) for v in p]})
        found, start = [], 0
        for rows_of_one in batch:
            found.append(answers[start:start + len(rows_of_one)])
            start += len(rows_of_one)
        return found

    def _complete(self, batch: list[tuple[str, int, float]]) -> list[str]:
        import torch

        vocab = self.spec["task"]["vocab"]
        index = {c: i for i, c in enumerate(vocab) if i > 0}
        context = int(self.spec["model"]["context"])
        # Short prompts are left-padded with text the model saw in training (newlines), not <unk>,
        # which never appears in a training window and throws a tiny model off.
        pad = index.get("\n", index.get(" ", 0))
        windows = []
        for prompt, _, _ in batch:
            tokens = [index.get(c, 0) for c in prompt[-context:]]
            windows.append([pad] * (context - len(tokens)) + tokens)
        state = torch.tensor(windows, dtype=torch.int64)
        steps = max(n for _, n, _ in batch)
        temps = torch.tensor([t for _, _, t in batch], dtype=torch.float32).unsqueeze(1)
        generator = torch.Generator().manual_seed(int.from_bytes(blake2b_256(encode([p for p, _, _ in batch]))[:4], "big"))
        produced: list[list[int]] = [[] for _ in batch]
        for _ in range(steps):
            logits = self.module(state)
            logits[:, 0] = float("-inf")  # never emit <unk>
            greedy = logits.argmax(dim=1)
            sampled = torch.multinomial(torch.softmax(logits / temps.clamp(min=1e-3), dim=1), 1, generator=generator)[:, 0]
            nxt = torch.where(temps[:, 0] > 0, sampled, greedy)
            for i, token in enumerate(nxt.tolist()):
                produced[i].append(token)
            state = torch.cat([state[:, 1:], nxt.unsqueeze(1)], dim=1)
        return ["".join(vocab[t] for t in tokens[:n]) for tokens, (_, n, _) in zip(produced, batch)]


def load_served_model(worker: Any, cid: str, task_id: int, spec_cid: str, price: int) -> ServedModel:
    """Fetch and load the top model `cid` of task `task_id` through `worker`'s content store."""
    from node.offchain.ml import get_kind

    spec = json.loads(worker.content.fetch(spec_cid, MAX_SPEC_BYTES, "spec"))
    kind = get_kind(spec["kind"])
    if kind.artifact == "folder":  # a LoRA adapter: merged into its base model and served as chat
        from node.offchain.folders import adapter_limits
        from node.offchain.llm_serving import ChatModel
        from node.offchain.llm_worker import fetch_base
        adapter = worker.content.fetch_folder(cid, *adapter_limits(spec), "adapter")
        merged, base = kind.merged_model(spec, fetch_base(worker, spec), adapter)  # type: ignore[attr-defined]
        worker.log.info("event=model_loaded model=%s task=%d kind=%s base=%s", cid, task_id, spec["kind"],
                        spec["model"]["base_cid"])
        return ServedModel(cid, task_id, spec["kind"], spec, ChatModel(merged, base,
                           int(spec["limits"]["context_length"])), price)
    data = worker.content.fetch(cid, int(spec["limits"]["max_model_bytes"]), "model")
    module = kind.load_model(spec, data)
    worker.log.info("event=model_loaded model=%s task=%d kind=%s bytes=%d", cid, task_id, spec["kind"], len(data))
    return ServedModel(cid, task_id, spec["kind"], spec, module, price)
