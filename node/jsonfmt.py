"""JSON shapes of chain objects for RPC and the CLI: bytes as 0x-hex, accounts as SS58."""
from __future__ import annotations

from typing import Any

from runtime.crypto import ss58_encode
from runtime.types import Block, Event, Header


def hexify(value: Any) -> Any:
    """Recursively turn bytes into 0x-hex strings (32-byte values stay hex; use `account` for SS58)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [hexify(v) for v in value]
    if isinstance(value, dict):
        return {k: hexify(v) for k, v in value.items()}
    return value


def unhex(text: Any, what: str = "value") -> bytes:
    """Bytes from a 0x-hex string; ValueError with a readable message otherwise."""
    if not isinstance(text, str) or not text.startswith("0x"):
        raise ValueError(f"{what} must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(text[2:])
    except ValueError as exc:
        raise ValueError(f"{what} is not valid hex: {exc}") from exc


def header_json(header: Header) -> dict:
    return {
        "hash": hexify(header.hash),
        "parentHash": hexify(header.parent_hash),
        "number": header.number,
        "slot": header.slot,
        "timestamp": header.timestamp_ms,
        "author": ss58_encode(header.author) if any(header.author) else None,
        "randaoReveal": hexify(header.randao_reveal),
        "stateRoot": hexify(header.state_root),
        "extrinsicsRoot": hexify(header.extrinsics_root),
        "seal": hexify(header.seal),
    }


def block_json(block: Block) -> dict:
    return {"header": header_json(block.header), "extrinsics": [hexify(x) for x in block.extrinsics]}


def _event_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return ss58_encode(bytes(value))
    return hexify(value) if isinstance(value, (bytes, bytearray)) else (
        [_event_value(v) for v in value] if isinstance(value, list) else value
    )


def event_json(event: Event) -> dict:
    """An event with 32-byte values shown as SS58 (they are almost always accounts)."""
    return {"phase": event.phase, "module": event.module, "name": event.name,
            "data": [_event_value(v) for v in event.data]}
