"""A typed Python client for an Arena node, in the spirit of substrate-interface.

Everything it builds comes from the node's typed metadata (`state_getMetadata`): call arguments
are converted from friendly values (SS58 or 0x-hex accounts, 0x-hex bytes, dicts or lists for
structs) by their declared types, storage keys and values are encoded and decoded by their
declared types. Transport: JSON-RPC over HTTP (node/rpc_client.py, the one RPC client) and a
WebSocket for watching extrinsics and following events. docs/client.md shows it in use.

    from node.client import ArenaClient
    from runtime.crypto import Keypair
    client = ArenaClient("http://127.0.0.1:9933")
    call = client.compose_call("balances", "transfer", {"dest": bob_address, "amount": 10**9})
    receipt = client.submit_and_watch(client.create_signed_extrinsic(call, Keypair.from_dev_name("alice")))
    print(receipt.block_hash, receipt.success, receipt.events)
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import trio
from trio_websocket import open_websocket_url

from node.rpc_client import DEFAULT_RPC, RpcClient, RpcClientError
from runtime.codec import decode, encode
from runtime.crypto import CryptoError, Keypair, blake2b_256, parse_account, ss58_encode
from runtime.types import Call, Era, sign_extrinsic

__all__ = ["ArenaClient", "ClientError", "ExtrinsicReceipt", "RpcClientError"]


class ClientError(Exception):
    """A value that does not fit its declared type, an unknown call or storage item, a failed watch."""


@dataclass
class ExtrinsicReceipt:
    """What happened to a submitted extrinsic: its block, its events, success or the named error."""

    extrinsic_hash: str
    block_hash: str | None = None
    finalized: bool = False
    statuses: list[Any] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return any(e["module"] == "system" and e["name"] == "ExtrinsicSuccess" for e in self.events)

    @property
    def error(self) -> dict | None:
        """{module, error, message, fee} of a failed call, None if it succeeded."""
        for e in self.events:
            if e["module"] == "system" and e["name"] == "ExtrinsicFailed":
                return e.get("fields") or dict(zip(("module", "error", "message", "fee"), e["data"]))
        return None


# ----------------------------------------------------------------- typed values


Resolver = Callable[[Any, str], Any]


def to_raw(value: Any, t: Any, where: str = "value", resolve: Resolver | None = None) -> Any:
    """Convert a friendly value to what the chain encodes for type descriptor `t` (ClientError if it does not fit).

    `resolve(value, type_name)`, if given, first rewrites primitive values (the CLI turns key names
    into accounts and '1.5' into base units with it).
    """
    if isinstance(t, str):
        return _primitive_to_raw(resolve(value, t) if resolve else value, t, where)
    if "struct" in t:
        fields = t["struct"]
        if isinstance(value, dict):
            missing = [n for n, _ in fields if n not in value]
            if missing:
                raise ClientError(f"{where}: missing field(s) {', '.join(missing)}")
            return [to_raw(value[n], ft, f"{where}.{n}", resolve) for n, ft in fields]
        if isinstance(value, (list, tuple)) and len(value) == len(fields):
            return [to_raw(v, ft, f"{where}.{n}", resolve) for v, (n, ft) in zip(value, fields)]
        raise ClientError(f"{where}: expected {len(fields)} fields ({', '.join(n for n, _ in fields)})")
    if "list" in t:
        if not isinstance(value, (list, tuple)):
            raise ClientError(f"{where}: expected a list")
        if len(value) < t.get("min", 0) or ("max" in t and len(value) > t["max"]):
            raise ClientError(f"{where}: expected {t.get('min', 0)} to {t.get('max', '∞')} items, got {len(value)}")
        return [to_raw(v, t["list"], f"{where}[{i}]", resolve) for i, v in enumerate(value)]
    if "tuple" in t:
        if not isinstance(value, (list, tuple)) or len(value) != len(t["tuple"]):
            raise ClientError(f"{where}: expected {len(t['tuple'])} items")
        return [to_raw(v, it, f"{where}[{i}]", resolve) for i, (v, it) in enumerate(zip(value, t["tuple"]))]
    if "option" in t:
        return None if value is None else to_raw(value, t["option"], where, resolve)
    if "enum" in t:
        if value not in t["enum"]:
            raise ClientError(f"{where}: must be one of {t['enum']}")
        return value
    if "bytes" in t:
        raw = _bytes_of(value, where)
        if not t["bytes"].get("min", 0) <= len(raw) <= t["bytes"].get("max", len(raw)):
            raise ClientError(f"{where}: expected {t['bytes'].get('min', 0)} to {t['bytes']['max']} bytes")
        return raw
    if "text" in t:
        if not isinstance(value, str) or len(value.encode()) > t["text"].get("maxBytes", 1 << 30):
            raise ClientError(f"{where}: expected text of at most {t['text'].get('maxBytes')} bytes")
        return value
    if "int" in t:
        return _int_of(value, t["int"]["min"], t["int"]["max"], where)
    raise ClientError(f"{where}: unknown type descriptor {t!r}")


_INT_RANGES = {"u8": 2**8 - 1, "u32": 2**32 - 1, "u64": 2**64 - 1, "Balance": 2**64 - 1, "Ppb": 2**64 - 1}
_FIXED = {"AccountId": 32, "Hash": 32, "Signature": 64}


def _int_of(value: Any, lo: int, hi: int, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ClientError(f"{where}: expected an integer from {lo} to {hi}, got {value!r:.40}")
    return value


def _bytes_of(value: Any, where: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError as exc:
            raise ClientError(f"{where}: not hex: {exc}") from exc
    raise ClientError(f"{where}: expected bytes or a 0x-hex string")


def _primitive_to_raw(value: Any, t: str, where: str) -> Any:
    if t in _INT_RANGES:
        return _int_of(value, 0, _INT_RANGES[t], where)
    if t == "AccountId" and isinstance(value, str) and not value.startswith("0x"):
        try:
            return parse_account(value)
        except CryptoError as exc:
            raise ClientError(f"{where}: {exc}") from exc
    if t in _FIXED:
        raw = _bytes_of(value, where)
        if len(raw) != _FIXED[t]:
            raise ClientError(f"{where}: {t} is {_FIXED[t]} bytes, got {len(raw)}")
        return raw
    if t == "Bytes":
        return _bytes_of(value, where)
    if t in ("Text", "Cid", "Role"):
        if not isinstance(value, str):
            raise ClientError(f"{where}: expected a string")
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise ClientError(f"{where}: expected true or false")
        return value
    if t == "Any":
        return value
    raise ClientError(f"{where}: unknown type {t!r}")


def from_raw(value: Any, t: Any) -> Any:
    """Decode a chain value of type `t` into a friendly one: structs as dicts, accounts as SS58, bytes as 0x-hex."""
    if value is None:
        return None
    if isinstance(t, str):
        if t == "AccountId" and isinstance(value, bytes) and len(value) == 32:
            return ss58_encode(value)
        if isinstance(value, bytes):
            return "0x" + value.hex()
        return value
    if "struct" in t and isinstance(value, list):
        return {n: from_raw(v, ft) for (n, ft), v in zip(t["struct"], value)}
    if "list" in t and isinstance(value, list):
        return [from_raw(v, t["list"]) for v in value]
    if "option" in t:
        return from_raw(value, t["option"])
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


# ----------------------------------------------------------------- the client


class ArenaClient:
    """Connect to a node, read its metadata, compose/sign/submit/watch calls, query storage and views."""

    def __init__(self, url: str = DEFAULT_RPC, timeout: float = 30.0, resolve: Resolver | None = None) -> None:
        self.url = url.rstrip("/")
        self.rpc = RpcClient(self.url, timeout=timeout)
        self.timeout = timeout
        self.resolve = resolve  # see to_raw
        self._metadata: dict | None = None

    def close(self) -> None:
        self.rpc.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- metadata

    @property
    def metadata(self) -> dict:
        """The node's typed metadata (fetched once; `refresh()` after a runtime upgrade)."""
        if self._metadata is None:
            self._metadata = self.rpc.call("state_getMetadata")
        return self._metadata

    def refresh(self) -> None:
        self._metadata = None

    def call_info(self, module: str, function: str) -> dict:
        modules = self.metadata["modules"]
        if module not in modules:
            raise ClientError(f"unknown module {module!r} (modules: {', '.join(sorted(modules))})")
        calls = modules[module]["calls"]
        if function not in calls:
            raise ClientError(f"module {module!r} has no call {function!r} (calls: {', '.join(sorted(calls))})")
        return calls[function]

    # ------------------------------------------------------------- calls and extrinsics

    def compose_call(self, module: str, function: str, args: dict | list | None = None) -> Call:
        """A call with its arguments converted by their declared types (a dict by name, or a list in order)."""
        declared = self.call_info(module, function)["args"]
        given = args if args is not None else []
        if isinstance(given, dict):
            unknown = set(given) - {a["name"] for a in declared}
            if unknown:
                raise ClientError(f"{module}.{function} has no argument(s) {', '.join(sorted(unknown))}")
            missing = [a["name"] for a in declared if a["name"] not in given]
            if missing:
                raise ClientError(f"{module}.{function}: missing argument(s) {', '.join(missing)}")
            values = [given[a["name"]] for a in declared]
        else:
            if len(given) != len(declared):
                raise ClientError(f"{module}.{function} takes {len(declared)} argument(s) "
                                  f"({', '.join(a['name'] for a in declared)}), got {len(given)}")
            values = list(given)
        raw = [to_raw(v, a["type"], f"{module}.{function} {a['name']}", self.resolve) for v, a in zip(values, declared)]
        return Call(module, function, raw)

    def create_signed_extrinsic(self, call: Call, keypair: Keypair, *, nonce: int | None = None, tip: int = 0,
                                era_period: int = 0) -> bytes:
        """Sign `call` for this chain (genesis hash and spec version from the metadata); returns the encoding."""
        meta = self.metadata
        genesis_hash = bytes.fromhex(meta["properties"]["genesisHash"][2:])
        if nonce is None:
            nonce = self.rpc.call("system_accountNextIndex", keypair.address)
        if era_period:
            best = self.rpc.call("chain_getHeader")
            era = Era(best["number"], era_period)
            birth_hash = bytes.fromhex(best["hash"][2:]) if best["number"] else genesis_hash
        else:
            era, birth_hash = Era(0, 0), genesis_hash
        return sign_extrinsic(keypair, call, nonce, genesis_hash, meta["specVersion"], era, tip, birth_hash)

    def query_fee(self, extrinsic: bytes) -> dict:
        """payment_queryInfo: {weight, partialFee, tip, total, length} in base units."""
        return self.rpc.call("payment_queryInfo", "0x" + extrinsic.hex())

    def submit(self, extrinsic: bytes) -> str:
        """Submit without watching; returns the extrinsic hash."""
        return self.rpc.call("author_submitExtrinsic", "0x" + extrinsic.hex())

    def submit_and_watch(self, extrinsic: bytes, wait_for: str = "inBlock",
                         timeout: float | None = None) -> ExtrinsicReceipt:
        """author_submitAndWatchExtrinsic until the extrinsic is in a block ("inBlock") or final ("finalized")."""
        if wait_for not in ("inBlock", "finalized"):
            raise ClientError("wait_for must be 'inBlock' or 'finalized'")
        receipt = ExtrinsicReceipt("0x" + blake2b_256(extrinsic).hex())
        limit = self.timeout if timeout is None else timeout

        async def watch() -> None:
            async with open_websocket_url(self._ws_url()) as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "author_submitAndWatchExtrinsic",
                                                  "params": ["0x" + extrinsic.hex()]}))
                while True:
                    message = json.loads(await ws.get_message())
                    if "error" in message:
                        err = message["error"]
                        raise RpcClientError(err.get("code", -1), err.get("message", "?"), err.get("data"))
                    status = message.get("params", {}).get("result") if "params" in message else None
                    if status is None:
                        continue
                    receipt.statuses.append(status)
                    if status in ("dropped", "invalid"):
                        raise ClientError(f"extrinsic {receipt.extrinsic_hash} was {status}")
                    if isinstance(status, dict) and "inBlock" in status:
                        receipt.block_hash = status["inBlock"]
                        if wait_for == "inBlock":
                            return
                    if isinstance(status, dict) and "finalized" in status:
                        receipt.block_hash = status["finalized"]
                        receipt.finalized = True
                        return

        if not trio_run_with_timeout(watch, limit):
            raise ClientError(f"extrinsic {receipt.extrinsic_hash} not {wait_for} within {limit:.0f} s "
                              f"(statuses so far: {receipt.statuses})")
        found = self.rpc.call("arena_extrinsic", receipt.extrinsic_hash)
        if found and found.get("status") == "inBlock":
            receipt.events = found["events"]
        return receipt

    # ------------------------------------------------------------- storage and views

    def storage_key(self, module: str, name: str, key: Any = None) -> bytes:
        """The raw state key of a storage item (a map's key converted by its declared key type)."""
        item = self._storage_item(module, name)
        prefix = f"{module}:{name}".encode()
        if item["kind"] == "value":
            return prefix
        if key is None:
            raise ClientError(f"{module}.{name} is a map: give a key of type {item['key']}")
        return prefix + b":" + encode(to_raw(key, item["key"], f"{module}.{name} key", self.resolve))

    def query(self, module: str, name: str, key: Any = None) -> Any:
        """A storage item at the best block, decoded by its declared type (the default when absent)."""
        item = self._storage_item(module, name)
        raw = self.rpc.call("state_getStorage", "0x" + self.storage_key(module, name, key).hex())
        data = bytes.fromhex((raw or item["default"])[2:])
        return from_raw(decode(data), item["value"])

    def view(self, method: str, *params: Any) -> Any:
        """An arena_* (or any) RPC view: `client.view("arena_leaderboard", 0)`."""
        return self.rpc.call(method, *params)

    def _storage_item(self, module: str, name: str) -> dict:
        storage = self.metadata["modules"].get(module, {}).get("storage", {})
        if name not in storage:
            raise ClientError(f"no storage item {module}.{name} (items: {', '.join(sorted(storage)) or 'none'})")
        return storage[name]

    # ------------------------------------------------------------- events

    def subscribe_events(self, handler: Callable[[dict, list[dict]], Any], timeout: float | None = None,
                         finalized: bool = False) -> Any:
        """Call `handler(header, events)` for every new (or finalized) block until it returns non-None; returns that."""
        method = "chain_subscribeFinalizedHeads" if finalized else "chain_subscribeNewHeads"
        result: list[Any] = []

        async def follow() -> None:
            async with open_websocket_url(self._ws_url()) as ws:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}))
                while True:
                    message = json.loads(await ws.get_message())
                    header = message.get("params", {}).get("result") if "params" in message else None
                    if not isinstance(header, dict):
                        continue
                    events = await trio.to_thread.run_sync(self.rpc.call, "arena_events", header["hash"])
                    outcome = handler(header, events)
                    if outcome is not None:
                        result.append(outcome)
                        return

        if not trio_run_with_timeout(follow, self.timeout if timeout is None else timeout):
            raise ClientError("subscription ended by timeout before the handler returned a value")
        return result[0]

    def _ws_url(self) -> str:
        if self.url.startswith("https://"):
            return "wss://" + self.url[len("https://"):] + "/"
        return "ws://" + self.url.removeprefix("http://") + "/"


def trio_run_with_timeout(fn: Callable[[], Any], seconds: float) -> bool:
    """Run an async function in a fresh trio loop; False if it did not finish within `seconds`."""
    finished = []

    async def main() -> None:
        with trio.move_on_after(seconds):
            await fn()
            finished.append(True)

    trio.run(main)
    return bool(finished)
