"""JSON shapes of chain objects for RPC and the CLI: bytes as 0x-hex, accounts as SS58."""
from __future__ import annotations

from typing import Any

from runtime.crypto import ss58_encode
from runtime.modules.balances import UNIT
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


_NOT_ACCOUNTS = ("hash", "commitment", "key", "root", "salt", "signature")


def _event_value(value: Any, field_name: str) -> Any:
    if isinstance(value, (bytes, bytearray)):
        is_account = len(value) == 32 and not any(word in field_name for word in _NOT_ACCOUNTS)
        return ss58_encode(bytes(value)) if is_account else hexify(value)
    if isinstance(value, list):
        return [_event_value(v, field_name) for v in value]
    return value


def event_json(event: Event, field_names: list[str] | None = None) -> dict:
    """An event; with its declared field names, also `fields` by name.

    32-byte values are shown as SS58 accounts unless the field is a hash, commitment, key, root,
    salt or signature (then 0x-hex); other bytes are 0x-hex.
    """
    names = field_names if field_names and len(field_names) == len(event.data) else [""] * len(event.data)
    data = [_event_value(v, n) for v, n in zip(event.data, names)]
    out: dict[str, Any] = {"phase": event.phase, "module": event.module, "name": event.name, "data": data}
    if field_names and len(field_names) == len(event.data):
        out["fields"] = dict(zip(field_names, data))
    return out


def fmt_amount(units: int) -> str:
    """Base units as ARENA with every decimal that is not zero ('1.5 ARENA')."""
    return f"{units // UNIT}.{units % UNIT:09d}".rstrip("0").rstrip(".") + " ARENA"
