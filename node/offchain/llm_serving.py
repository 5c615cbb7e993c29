"""Chat completions from a `causal_lm_lora` top model (base + adapter merged), for the host worker.

`ChatModel.parse` validates an OpenAI-style ``POST /v1/chat/completions`` body (``messages``,
``max_tokens``, ``temperature``, ``stream``); `ChatModel.run` answers a batch of them.  The
prompt is rendered in ChatML with the generation prompt, truncated from the left to the
spec's context length; generation stops at ``<|im_end|>`` (finish_reason ``stop``) or after
``max_tokens`` (``length``).  Temperature 0 is greedy; above 0, sampling is seeded from the
prompt so a repeated paid query gets the same answer.  `sse_chunks` turns an answer into the
server-sent events of ``stream: true`` (OpenAI's ``chat.completion.chunk`` objects, then
``data: [DONE]``), one event per generated token.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from node.offchain.ml import llm_base
from runtime.crypto import blake2b_256

MAX_MESSAGES = 64
MAX_MESSAGE_CHARS = 8192
MAX_NEW_TOKENS = 256


class ChatRequestError(Exception):
    """A chat request the host refuses (status, code, message), before any voucher is spent."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class ChatAnswer:
    """One generated reply: its text, the per-token text pieces, token counts and finish reason."""

    text: str
    pieces: list[str]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    stream: bool


class ChatModel:
    """A merged base + adapter model and its tokenizer (see the module docstring)."""

    def __init__(self, model: Any, base: llm_base.BaseModel, context: int) -> None:
        self.model = model.float().eval()
        self.base = base
        self.context = context

    @staticmethod
    def parse(body: dict) -> ChatRequest:
        messages = body.get("messages")
        if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
            raise ChatRequestError(400, "bad_input", f"messages must be a list of 1..{MAX_MESSAGES} messages")
        clean = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(message.get("content"), str):
                raise ChatRequestError(400, "bad_input", "each message needs a role (system, user, assistant) "
                                                         "and a string content")
            if len(message["content"]) > MAX_MESSAGE_CHARS:
                raise ChatRequestError(413, "input_too_large", f"a message is over {MAX_MESSAGE_CHARS} characters")
            clean.append({"role": message["role"], "content": message["content"]})
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 64))
        temperature = body.get("temperature", 0)
        stream = body.get("stream", False)
        if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_NEW_TOKENS:
            raise ChatRequestError(400, "bad_input", f"max_tokens must be an integer in 1..{MAX_NEW_TOKENS}")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
            raise ChatRequestError(400, "bad_input", "temperature must be a number in [0, 2]")
        if not isinstance(stream, bool):
            raise ChatRequestError(400, "bad_input", "stream must be true or false")
        return ChatRequest(clean, max_tokens, float(temperature), stream)

    def run(self, batch: list[ChatRequest]) -> list[ChatAnswer]:
        with torch.inference_mode():
            return [self.generate(request) for request in batch]

    def generate(self, request: ChatRequest) -> ChatAnswer:
        """One reply, token by token with the key/value cache."""
        prompt = llm_base.encode_prompt(self.base, request.messages)
        room = max(1, self.context - request.max_tokens)
        ids = prompt[-room:]
        seed = int.from_bytes(blake2b_256(json.dumps([request.messages, request.temperature]).encode())[:8], "big")
        generator = torch.Generator().manual_seed(seed)
        tokens: list[int] = []
        past = None
        step_input = torch.tensor([ids], dtype=torch.int64)
        finish = "length"
        for _ in range(request.max_tokens):
            out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
            past = out.past_key_values  # transformers 5.24 also accepts `cache=`; this name works across 4.x/5.x
            logits = out.logits[0, -1].float()
            if request.temperature > 0:
                probs = torch.softmax(logits / request.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            else:
                token = int(logits.argmax())
            if token in (self.base.im_end, self.base.eos):
                finish = "stop"
                break
            tokens.append(token)
            step_input = torch.tensor([[token]], dtype=torch.int64)
        pieces, text = [], ""
        for count in range(1, len(tokens) + 1):  # per-token deltas that always add up to the full text
            decoded = self.base.tokenizer.decode(tokens[:count], skip_special_tokens=True)
            if decoded.endswith("\ufffd") and count < len(tokens):
                continue  # half of a multi-byte character: wait for the rest
            pieces.append(decoded[len(text):])
            text = decoded
        return ChatAnswer(text, pieces, len(ids), len(tokens), finish)


def completion_body(answer: ChatAnswer, model_cid: str, request_id: str, arena: dict) -> dict:
    """The OpenAI ``chat.completion`` object for a plain (non-streamed) answer."""
    return {"id": request_id, "object": "chat.completion", "created": int(time.time()), "model": model_cid,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": answer.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                      "total_tokens": answer.prompt_tokens + answer.completion_tokens},
            "arena": arena}


def sse_chunks(answer: ChatAnswer, model_cid: str, request_id: str, arena: dict) -> Iterator[bytes]:
    """Server-sent events of a streamed answer: role, one delta per token (the tokens of one
    multi-byte character in one delta), finish (with usage), [DONE]."""
    created = int(time.time())

    def event(delta: dict, finish: str | None = None, **extra: Any) -> bytes:
        chunk = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model_cid,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    yield event({"role": "assistant", "content": ""})
    for piece in answer.pieces:
        yield event({"content": piece})
    usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
             "total_tokens": answer.prompt_tokens + answer.completion_tokens}
    yield event({}, answer.finish_reason, usage=usage, arena=arena)
    yield b"data: [DONE]\n\n"


def parse_sse(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON chunks of a server-sent event stream, up to ``data: [DONE]`` (client side)."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)
