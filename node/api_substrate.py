"""Substrate-compatible RPC where the concept carries over, and the typed metadata.

`rpc_methods`, `state_getRuntimeVersion`, `state_getMetadata` (JSON, node/metadata.py),
`payment_queryInfo`, and the WebSocket subscriptions `author_submitAndWatchExtrinsic`
(statuses "ready" / "future", {"inBlock": hash}, {"finalized": hash}, "dropped") and
`state_subscribeStorage` ({"block": hash, "changes": [[key, value | null]]}).
docs/rpc.md ("Substrate compatibility") lists what differs from Substrate.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from node.api import VERSION, token_properties
from node.jsonfmt import hexify, unhex
from node.metadata import build_metadata
from node.rpc import Notifier, RpcError, RpcServer
from node.txpool import PoolError
from node.views import ChainView, PoolHandle, StoreReader
from runtime.codec import CodecError
from runtime.executive import SPEC_VERSION
from runtime.types import Extrinsic

MAX_WATCHED_KEYS = 64
TRANSACTION_VERSION = 2  # 2: tasks.commit_model added, tasks.submit_model became its reveal (issue 12)
METADATA_API_VERSION = 1


class _Watches:
    """Extrinsic and storage watchers fed by the node's head and finality notifications."""

    def __init__(self, rpc: RpcServer, store: StoreReader, pool: PoolHandle) -> None:
        self.rpc = rpc
        self.store = store
        self.pool = pool
        self.extrinsics: dict[int, tuple[bytes, Notifier, list[bytes | None]]] = {}  # id -> (hash, channel, [block])
        self.storage: dict[int, tuple[list[bytes], Notifier, dict[bytes, bytes | None]]] = {}
        self._ids = 0
        self._hooked = False

    def hook(self) -> None:
        """Attach to the head subscriptions once (they are registered after this module)."""
        if self._hooked:
            return
        self._hooked = True
        self.rpc.subscriptions["chain_subscribeNewHeads"][1](_Callback(self.on_head))
        self.rpc.subscriptions["chain_subscribeFinalizedHeads"][1](_Callback(self.on_finalized))

    def add_extrinsic(self, xt_hash: bytes, channel: Notifier) -> Callable[[], None]:
        self.hook()
        self._ids += 1
        watch_id = self._ids
        self.extrinsics[watch_id] = (xt_hash, channel, [None])
        return lambda: self.extrinsics.pop(watch_id, None) and None

    def add_storage(self, keys: list[bytes], channel: Notifier) -> Callable[[], None]:
        self.hook()
        self._ids += 1
        watch_id = self._ids
        store = self.store
        values = {k: store.get_state(k) for k in keys}
        channel.send_nowait({"block": hexify(store.best_hash()),
                             "changes": [[hexify(k), hexify(v) if v is not None else None] for k, v in values.items()]})
        self.storage[watch_id] = (keys, channel, values)
        return lambda: self.storage.pop(watch_id, None) and None

    def on_head(self, header: dict) -> None:
        store = self.store
        for watch_id, (xt_hash, channel, reported) in list(self.extrinsics.items()):
            found = store.extrinsic_location(xt_hash)
            if found is not None and found[0] != reported[0]:
                reported[0] = found[0]
                channel.send_nowait({"inBlock": hexify(found[0])})
            elif found is None and reported[0] is None and not self.pool.contains(xt_hash):
                channel.send_nowait("dropped")
                self.extrinsics.pop(watch_id, None)
        for keys, channel, values in self.storage.values():
            changes = []
            for key in keys:
                value = store.get_state(key)
                if value != values[key]:
                    values[key] = value
                    changes.append([hexify(key), hexify(value) if value is not None else None])
            if changes:
                channel.send_nowait({"block": header["hash"], "changes": changes})

    def on_finalized(self, header: dict) -> None:
        store = self.store
        for watch_id, (_, channel, reported) in list(self.extrinsics.items()):
            block_hash = reported[0]
            if block_hash is None:
                continue
            block = store.get_header(block_hash)
            if block is not None and block.number <= header["number"] and store.canonical_hash(block.number) == block_hash:
                channel.send_nowait({"finalized": hexify(block_hash)})
                self.extrinsics.pop(watch_id, None)


class _Callback:
    """A Notifier that calls a function (the node's head channels accept any `send_nowait`)."""

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn

    def send_nowait(self, payload: Any) -> None:
        self.fn(payload)


def register(rpc: RpcServer, chain: ChainView, pool: PoolHandle) -> None:
    """Register the Substrate-compatible methods and subscriptions."""
    watches = _Watches(rpc, chain.store, pool)

    @rpc.method("rpc_methods")
    def rpc_methods() -> dict:
        return {"version": 1, "methods": sorted([*rpc.methods, *rpc.subscriptions])}

    @rpc.method("state_getRuntimeVersion")
    def runtime_version(at: str | None = None) -> dict:
        return {"specName": "arena", "implName": "arena-node", "authoringVersion": 1, "specVersion": SPEC_VERSION,
                "implVersion": 0, "transactionVersion": TRANSACTION_VERSION, "stateVersion": 0,
                "apis": [["arena_metadata_json", METADATA_API_VERSION]], "nodeVersion": VERSION}

    @rpc.method("state_getMetadata")
    def metadata(at: str | None = None) -> dict:
        return build_metadata(chain.runtime, chain.state(), SPEC_VERSION, token_properties(chain))

    @rpc.method("payment_queryInfo")
    def query_info(extrinsic: str, at: str | None = None) -> dict:
        """Fee of an encoded extrinsic at the best state (signature and nonce are not checked)."""
        encoded = unhex(extrinsic, "extrinsic")
        try:
            xt = Extrinsic.decode(encoded)
        except CodecError as exc:
            raise RpcError(-32602, f"payment_queryInfo: not an extrinsic: {exc}") from exc
        info = chain.runtime.calls.get((xt.call.module, xt.call.function))
        if info is None:
            raise RpcError(-32602, f"payment_queryInfo: unknown call {xt.call.module}.{xt.call.function}")
        fee = chain.runtime.fee(chain.state(), len(encoded), info.weight)
        return {"weight": info.weight, "class": "normal", "partialFee": fee, "tip": xt.tip,
                "total": fee + xt.tip, "length": len(encoded)}

    def watch_extrinsic(channel: Notifier, params: list) -> Callable[[], None]:
        if len(params) != 1:
            raise RpcError(-32602, "author_submitAndWatchExtrinsic: params must be [0x-hex extrinsic]")
        try:
            encoded = unhex(params[0], "extrinsic")
            checked = pool.submit(encoded)
        except ValueError as exc:
            raise RpcError(-32602, f"author_submitAndWatchExtrinsic: {exc}") from exc
        except PoolError as exc:
            raise RpcError(exc.code, f"{exc.kind}: {exc.message}", {"kind": exc.kind}) from exc
        channel.send_nowait("future" if checked.nonce_gap else "ready")
        return watches.add_extrinsic(checked.hash, channel)

    def watch_storage(channel: Notifier, params: list) -> Callable[[], None]:
        keys = params[0] if params else None
        if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_WATCHED_KEYS:
            raise RpcError(-32602, f"state_subscribeStorage: params must be [[1 to {MAX_WATCHED_KEYS} 0x-hex keys]]")
        try:
            raw = [unhex(k, "storage key") for k in keys]
        except ValueError as exc:
            raise RpcError(-32602, f"state_subscribeStorage: {exc}") from exc
        return watches.add_storage(raw, channel)

    rpc.subscription_with_params("author_submitAndWatchExtrinsic", "author_unwatchExtrinsic",
                                 "author_extrinsicUpdate", watch_extrinsic)
    rpc.subscription_with_params("state_subscribeStorage", "state_unsubscribeStorage", "state_storage",
                                 watch_storage)

