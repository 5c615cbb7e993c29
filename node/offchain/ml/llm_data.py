"""Chat data of the `causal_lm_lora` kind: JSONL conversations or plain text, parsed strictly.

A conversation file has one JSON object per line::

    {"conversations": [{"role": "system" | "user" | "assistant", "content": str}, ...]}

(``"messages"`` is accepted as the list's name too, as OpenAI's fine-tuning files use it).
Every conversation needs at least one assistant message: only assistant tokens are scored.
Errors name the line.  The built-in data set (`builtin_conversations`) is generated from fixed
word lists and a seed, offline, so that a tiny model can learn it in seconds.
"""

from __future__ import annotations

import json
import keyword
import random
from typing import Any

from node.offchain.ml.errors import DataRejected

ROLES = ("system", "user", "assistant")
MAX_CONVERSATIONS = 200_000
MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 64 * 1024
HELDOUT_FRACTION = 10  # one conversation in ten is held out ...
HELDOUT_MAX = 64       # ... at most this many (validators score every held-out token)
TEXT_CHUNK_CHARS = 512

Conversation = list[dict[str, str]]


def parse_conversations(data: bytes | str, *, what: str) -> list[Conversation]:
    """The conversations of a JSONL file; `DataRejected` naming the first bad line."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    conversations: list[Conversation] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataRejected(f"{what}: line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataRejected(f"{what}: line {number}: each line must be a JSON object")
        messages = record.get("conversations", record.get("messages"))
        if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
            raise DataRejected(
                f"{what}: line {number}: needs a 'conversations' list of 1..{MAX_MESSAGES} messages"
            )
        conversation: Conversation = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise DataRejected(f"{what}: line {number}: message {index} is not an object")
            role, content = message.get("role"), message.get("content")
            if role not in ROLES:
                raise DataRejected(f"{what}: line {number}: message {index} has role {role!r}, not one of {ROLES}")
            if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
                raise DataRejected(
                    f"{what}: line {number}: message {index} content must be a string of at most "
                    f"{MAX_CONTENT_CHARS} characters"
                )
            conversation.append({"role": role, "content": content})
        if not any(m["role"] == "assistant" for m in conversation):
            raise DataRejected(f"{what}: line {number}: a conversation needs at least one assistant message")
        conversations.append(conversation)
        if len(conversations) > MAX_CONVERSATIONS:
            raise DataRejected(f"{what}: more than {MAX_CONVERSATIONS} conversations")
    if not conversations:
        raise DataRejected(f"{what}: no conversations")
    return conversations


def dump_conversations(conversations: list[Conversation]) -> bytes:
    """Canonical JSONL bytes (sorted keys, one conversation a line) of `conversations`."""
    lines = [json.dumps({"conversations": c}, sort_keys=True, ensure_ascii=False) for c in conversations]
    return ("\n".join(lines) + "\n").encode("utf-8")


def split_items(items: list[Any], seed: int) -> tuple[list[Any], list[Any]]:
    """A seed-chosen held-out part (1 in `HELDOUT_FRACTION`, at most `HELDOUT_MAX`) and the rest."""
    if len(items) < 4:
        raise DataRejected(f"need at least 4 conversations or text chunks to split, got {len(items)}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    count = max(1, min(len(items) // HELDOUT_FRACTION, HELDOUT_MAX))
    held = set(order[:count])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def text_chunks(text: str) -> list[str]:
    """Plain text cut into paragraphs-aligned chunks of about `TEXT_CHUNK_CHARS` characters."""
    chunks: list[str] = []
    current = ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > TEXT_CHUNK_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current.strip():
        chunks.append(current)
    return chunks


# ---------------------------------------------------------------- built-in data set

OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("light", "dark"), ("open", "closed"),
    ("early", "late"), ("full", "empty"), ("hard", "soft"), ("high", "low"), ("old", "new"), ("wet", "dry"),
    ("long", "short"), ("true", "false"), ("first", "last"), ("push", "pull"), ("left", "right"),
    ("loud", "quiet"), ("rich", "poor"), ("strong", "weak"), ("inside", "outside"), ("win", "lose"),
]
NOT_KEYWORDS = ["print", "list", "dict", "range", "len", "apple", "table", "self", "main", "value", "string",
                "number", "socket", "thread", "python", "object", "module", "input", "open", "format"]
SYSTEM_PROMPT = "You are a helpful assistant."


def _exchange(rng: random.Random) -> tuple[str, str]:
    choice = rng.randrange(4)
    if choice == 0:
        a, b = rng.randrange(0, 50), rng.randrange(0, 50)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if choice == 1:
        word, other = rng.choice(OPPOSITES)
        if rng.randrange(2):
            word, other = other, word
        return f"What is the opposite of {word}?", f"The opposite of {word} is {other}."
    if choice == 2:
        word = rng.choice(OPPOSITES)[rng.randrange(2)]
        return f"Spell the word {word}.", f"{word} is spelled " + "-".join(word.upper()) + "."
    word = rng.choice([*keyword.kwlist, *NOT_KEYWORDS])
    if keyword.iskeyword(word):
        return f"Is {word} a Python keyword?", f"Yes, {word} is a Python keyword."
    return f"Is {word} a Python keyword?", f"No, {word} is not a Python keyword."


def builtin_conversations(count: int = 640, seed: int = 7) -> list[Conversation]:
    """`count` short chats (arithmetic, opposites, spelling, Python keywords); fixed by `seed`."""
    rng = random.Random(seed)
    conversations: list[Conversation] = []
    for _ in range(count):
        conversation: Conversation = []
        if rng.randrange(3) == 0:
            conversation.append({"role": "system", "content": SYSTEM_PROMPT})
        for _turn in range(1 + (rng.randrange(4) == 0)):
            question, answer = _exchange(rng)
            conversation += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        conversations.append(conversation)
    return conversations
