"""The node's core RPC methods: author_*, chain_*, state_*, system_* and the arena_* basics.

Each group takes only what it reads: the chain view, the pool handle or the network view (node/views.py).
`account_param` and `best_context` are shared with the other RPC namespaces.
"""
from __future__ import annotations

from typing import Any

from node.jsonfmt import block_json, event_json, header_json, hexify, unhex
from node.rpc import RpcError, RpcServer
from node.txpool import PoolError
from node.views import ChainView, NetworkView, PoolHandle, StoreReader
from runtime.crypto import CryptoError, blake2b_256, parse_account, ss58_encode
from runtime.executive import SPEC_VERSION, Runtime
from runtime.module import Context
from runtime.modules import balances, system
from runtime.types import Block, Event

UNKNOWN_BLOCK = 4001
STATE_UNAVAILABLE = 4002
VERSION = "0.1.0"


def account_param(text: Any) -> bytes:
    if not isinstance(text, str):
        raise RpcError(-32602, "account must be an SS58 address or 0x-hex public key")
    try:
        return parse_account(text)
    except CryptoError as exc:
        raise RpcError(-32602, f"bad account: {exc}") from exc


def best_context(chain: ChainView) -> Context:
    """A read context at the best block (its state, number, timestamp and author)."""
    best = chain.best
    return Context(chain.state(), best.number, best.timestamp_ms, best.author)


def token_properties(chain: ChainView) -> dict:
    """Address format, token and genesis hash: `system_properties` and the metadata's `properties`."""
    token = chain.spec.config.get("token", {})
    return {"ss58Format": 42, "tokenSymbol": token.get("symbol", "ARENA"),
            "tokenDecimals": token.get("decimals", balances.DECIMALS), "genesisHash": hexify(chain.spec.genesis_hash)}


def field_names(runtime: Runtime, event: Event) -> list[str] | None:
    """The declared field names of an event, for its JSON form."""
    module = runtime.modules.get(event.module)
    return module.events.get(event.name) if module is not None else None


def block_at(store: StoreReader, at: str | None) -> Block:
    """The block `at` names (0x-hash), or the best block when `at` is None."""
    block_hash = store.best_hash() if at is None else unhex(at, "block hash")
    block = store.get_block(block_hash)
    if block is None:
        raise RpcError(UNKNOWN_BLOCK, f"block {at} is not known to this node")
    return block


def register_core_api(rpc: RpcServer, chain: ChainView, pool: PoolHandle, network: NetworkView) -> None:
    """Register the Substrate-named methods and the account/event helpers."""
    register_author(rpc, pool)
    register_chain_and_state(rpc, chain)
    register_system(rpc, chain, pool, network)
    register_arena_basics(rpc, chain, pool)


def register_author(rpc: RpcServer, pool: PoolHandle) -> None:
    """author_submitExtrinsic and author_pendingExtrinsics."""

    @rpc.method("author_submitExtrinsic")
    def submit_extrinsic(extrinsic: str) -> str:
        encoded = unhex(extrinsic, "extrinsic")
        try:
            checked = pool.submit(encoded)
        except PoolError as exc:
            raise RpcError(exc.code, f"{exc.kind}: {exc.message}", {"kind": exc.kind}) from exc
        return hexify(checked.hash)

    @rpc.method("author_pendingExtrinsics")
    def pending_extrinsics() -> list[str]:
        return [hexify(x) for x in pool.pending()]


def register_chain_and_state(rpc: RpcServer, chain: ChainView) -> None:
    """chain_* (blocks, headers, hashes, finalized head) and state_* (storage, read proofs)."""
    store = chain.store

    def best_state_only(at: str | None) -> None:
        if at is not None and unhex(at, "block hash") != store.best_hash():
            raise RpcError(STATE_UNAVAILABLE, "this node keeps the state of its best block only; omit `at` or pass the best hash")

    @rpc.method("chain_getBlock")
    def get_block(at: str | None = None) -> dict:
        block = block_at(store, at)
        justification = store.justification(block.hash)
        return {"block": block_json(block), "justification": hexify(justification) if justification else None}

    @rpc.method("chain_getHeader")
    def get_header(at: str | None = None) -> dict:
        return header_json(block_at(store, at).header)

    @rpc.method("chain_getBlockHash")
    def get_block_hash(number: int | None = None) -> str | None:
        if number is None:
            return hexify(store.best_hash())
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 2**64:
            raise RpcError(-32602, f"block number must be an integer from 0 to 2**64-1, got {number!r:.40}")
        found = store.canonical_hash(number)
        return hexify(found) if found else None

    @rpc.method("chain_getFinalizedHead")
    def finalized_head() -> str:
        return hexify(store.finalized_hash())

    @rpc.method("state_getStorage")
    def get_storage(key: str, at: str | None = None) -> str | None:
        best_state_only(at)
        value = store.get_state(unhex(key, "storage key"))
        return hexify(value) if value is not None else None

    @rpc.method("state_getReadProof")
    def read_proof(keys: list, at: str | None = None) -> dict:
        best_state_only(at)
        if not isinstance(keys, list) or not keys or len(keys) > 64:
            raise RpcError(-32602, "keys must be a list of 1 to 64 hex storage keys")
        proofs = store.read_proof([unhex(k, "storage key") for k in keys])
        return {"at": hexify(store.best_hash()), "stateRoot": hexify(store.state_root),
                "proof": [hexify(p.encode()) for p in proofs]}


def register_system(rpc: RpcServer, chain: ChainView, pool: PoolHandle, network: NetworkView) -> None:
    """system_*: chain name and properties, health, peers, the next nonce of an account."""
    store = chain.store

    @rpc.method("system_chain")
    def system_chain() -> str:
        return chain.spec.name

    @rpc.method("system_name")
    def system_name() -> str:
        return "arena"

    @rpc.method("system_version")
    def system_version() -> str:
        return VERSION

    @rpc.method("system_properties")
    def system_properties() -> dict:
        return {**token_properties(chain), "specVersion": SPEC_VERSION, "slotDurationMs": chain.spec.slot_duration_ms,
                "epochLength": system.EpochLength.get(chain.state())}

    @rpc.method("system_health")
    def system_health() -> dict:
        peers = network.peer_count()
        return {"peers": peers, "isSyncing": network.is_syncing(), "shouldHavePeers": network.should_have_peers(),
                "best": store.best_header().number,
                "finalized": chain.finalized.number}

    @rpc.method("system_peers")
    def system_peers() -> list:
        return network.peer_info()

    @rpc.method("system_localPeer")
    def local_peer() -> dict | None:
        return network.local_peer()

    @rpc.method("system_accountNextIndex")
    def next_index(address: str) -> int:
        who = account_param(address)
        return pool.next_nonce(who)


def register_arena_basics(rpc: RpcServer, chain: ChainView, pool: PoolHandle) -> None:
    """arena_account, arena_events, arena_extrinsic, arena_metadata, arena_hash."""
    store = chain.store

    @rpc.method("arena_account")
    def account(address: str) -> dict:
        who = account_param(address)
        state = chain.state()
        free, reserved = balances.Account.get(state, who)
        return {"address": ss58_encode(who), "free": free, "reserved": reserved,
                "nonce": system.AccountNonce.get(state, who)}

    @rpc.method("arena_events")
    def events(at: str | None = None) -> list:
        return [event_json(e, field_names(chain.runtime, e)) for e in store.events(block_at(store, at).hash)]

    @rpc.method("arena_extrinsic")
    def extrinsic(xt_hash: str) -> dict | None:
        digest = unhex(xt_hash, "extrinsic hash")
        found = store.extrinsic_location(digest)
        if found is None:
            return {"status": "pending"} if pool.contains(digest) else None
        block_hash, index = found
        block = store.get_block(block_hash)
        number = block.header.number if block else None
        return {"status": "inBlock", "blockHash": hexify(block_hash), "blockNumber": number, "index": index,
                "events": [event_json(e, field_names(chain.runtime, e)) for e in store.events(block_hash) if e.phase == index]}

    @rpc.method("arena_metadata")
    def metadata() -> dict:
        modules = {}
        for name, module in chain.runtime.modules.items():
            calls = {fname: {"weight": info.weight, "args": [[a, c.type_name] for a, c in info.args],
                             "doc": (info.function.__doc__ or "").strip()}
                     for (mname, fname), info in chain.runtime.calls.items() if mname == name}
            modules[name] = {"calls": calls, "events": module.events,
                             "errors": {e.__name__: (e.__doc__ or "").strip() for e in module.errors}}
        return {"specVersion": SPEC_VERSION, "modules": modules}

    @rpc.method("arena_hash")
    def hash_bytes(data: str) -> str:
        return hexify(blake2b_256(unhex(data, "data")))


