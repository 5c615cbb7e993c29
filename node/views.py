"""The narrow handles that the composition root (node/service.py) hands to RPC and consensus.

No part of the node calls back into the node. The RPC namespaces get a read-only `ChainView`, a
`PoolHandle` (submit, nonces, pending) and a `NetworkView` (peers, sync); the dashboard namespace a
`NodeView` (chain view, content store, settings); the consensus service gets the chain itself (it
is the chain's writer), the pool handle, an `ExtrinsicSigner` for its own reports and a
`FinalizedListener`. These types import nothing of the parts that use them, so
no import circle runs through them.
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from node.turns import Turns
from node.txpool import TxPool
from p2p.content.abc import ContentStore
from runtime.crypto import Keypair, blake2b_256
from runtime.executive import CheckedExtrinsic, Runtime, drain
from runtime.modules import system
from runtime.state import Overlay
from runtime.types import Block, Call, Event, Header, sign_extrinsic

if TYPE_CHECKING:
    from node.chain import Imported
    from node.genesis import ChainSpec
    from runtime.merkle import ReadProof

FinalizedListener = Callable[[bytes], None]
"""Called with the hash of each newly finalized block (finality may skip blocks)."""


class StoreReader(Protocol):
    """What readers may ask of the chain store: blocks, headers, events, state (no writes)."""

    @property
    def state_root(self) -> bytes: ...
    def get_state(self, key: bytes) -> bytes | None: ...
    def read_proof(self, keys: list[bytes]) -> list[ReadProof]: ...
    def get_block(self, block_hash: bytes) -> Block | None: ...
    def get_header(self, block_hash: bytes) -> Header | None: ...
    def best_header(self) -> Header: ...
    def best_hash(self) -> bytes: ...
    def canonical_hash(self, number: int) -> bytes | None: ...
    def finalized_hash(self) -> bytes: ...
    def justification(self, block_hash: bytes) -> bytes | None: ...
    def events(self, block_hash: bytes) -> list[Event]: ...
    def extrinsic_location(self, xt_hash: bytes) -> tuple[bytes, int] | None: ...


class ChainView(Protocol):
    """The chain as RPC reads it: spec, runtime, best and finalized heads, best state, the store."""

    @property
    def spec(self) -> ChainSpec: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def store(self) -> StoreReader: ...
    @property
    def best(self) -> Header: ...
    @property
    def finalized(self) -> Header: ...
    def state(self) -> Overlay: ...


class NetworkView(Protocol):
    """Peers and sync status as `system_*` reports them."""

    def peer_count(self) -> int: ...
    def peer_info(self) -> list[dict]: ...
    def is_syncing(self) -> bool: ...
    def local_peer(self) -> dict | None: ...
    def should_have_peers(self) -> bool: ...


class NodeSettings(Protocol):
    """The node's settings a namespace may read (node.service.NodeConfig has them)."""

    @property
    def dev(self) -> bool: ...
    @property
    def author_key(self) -> Keypair | None: ...
    @property
    def rpc_port(self) -> int: ...
    @property
    def base_path(self) -> Path: ...


class NodeView(Protocol):
    """For a namespace that needs more than the chain: the chain view, the content store, the settings."""

    @property
    def chain(self) -> ChainView: ...
    @property
    def content(self) -> ContentStore: ...
    @property
    def config(self) -> NodeSettings: ...


class NoNetwork:
    """The network of a dev node: none (it authors alone and expects no peers)."""

    def peer_count(self) -> int:
        return 0

    def peer_info(self) -> list[dict]:
        return []

    def is_syncing(self) -> bool:
        return False

    def local_peer(self) -> dict | None:
        return None

    def should_have_peers(self) -> bool:
        return False


class PoolHandle:
    """The transaction pool as its users see it: submit (then gossip), nonces, pending, ready.

    It also keeps the pool in step with the chain: `on_import` notes the senders of imported
    blocks and `revalidate` rechecks those senders' pending extrinsics against the new best state;
    `unfinalized_extrinsics` counts what the best chain carries above the finalized block (the
    pool's backlog bound)."""

    def __init__(self, pool: TxPool, chain: ChainView, gossip: Callable[[bytes], None] | None = None) -> None:
        self.pool = pool
        self.chain = chain
        self.gossip = gossip
        self._touched_senders: set[bytes] = set()
        self._included: list[Block] = []  # blocks imported since the last revalidation
        self._block_sizes: dict[bytes, tuple[int, int]] = {}   # block hash -> (number, extrinsics)
        self._unfinalized: tuple[bytes, bytes, int] | None = None  # (best, finalized, count) cached

    def __len__(self) -> int:
        return len(self.pool)

    def submit(self, encoded: bytes, overload_exempt: bool = False) -> CheckedExtrinsic:
        """Add a local extrinsic to the pool and gossip it; `overload_exempt` for the node's own
        extrinsics that must not be lost to admission control (equivocation reports)."""
        checked = self.pool.submit(encoded, overload_exempt=overload_exempt)
        if self.gossip is not None:
            self.gossip(encoded)
        return checked

    def admit(self, encoded: bytes, overload_exempt: bool = False) -> CheckedExtrinsic:
        """Add an extrinsic that came from the network or a retracted block (no gossip: it is out
        there); the backlog bound that meters new work at the RPC is wider for it."""
        return self.pool.submit(encoded, overload_exempt=overload_exempt, gossiped=True)

    def next_nonce(self, who: bytes) -> int:
        """The nonce `who`'s next extrinsic needs: the best state's nonce plus what is pending."""
        return self.pool.next_nonce(who, system.AccountNonce.get(self.chain.state(), who))

    def pending(self) -> list[bytes]:
        return self.pool.pending()

    def ready(self) -> list[bytes]:
        return self.pool.ready()

    def contains(self, xt_hash: bytes) -> bool:
        return self.pool.contains(xt_hash)

    def on_import(self, imported: Imported) -> None:
        block = imported.block
        self._block_sizes[block.hash] = (block.header.number, len(block.extrinsics))
        self._included.append(block)
        if len(self._included) > 64:  # no revalidation for a while (a sync): revalidation still drops them
            del self._included[0]
        for encoded in block.extrinsics:
            # canonical encoding: fixarray(4), bin8(32) signer — bytes 3..35 are the signer
            self._touched_senders.add(encoded[3:35])

    UNFINALIZED_WALK = 64  # blocks: finality further behind is refused by the finality-lag bound

    def unfinalized_extrinsics(self) -> int:
        """Extrinsics in the best chain's blocks above the finalized block (0 for a block this node
        never saw imported; at most the UNFINALIZED_WALK newest, so a long finality stall costs no
        long walk), computed once per (best, finalized) pair."""
        store = self.chain.store
        best, finalized = store.best_hash(), store.finalized_hash()
        cached = self._unfinalized
        if cached is not None and cached[0] == best and cached[1] == finalized:
            return cached[2]
        final_number = self.chain.finalized.number
        count = 0
        cursor: Header | None = store.get_header(best)
        # blocks at or below this are never counted again (finalized, or beyond the walk)
        forget_below = max(final_number, (cursor.number if cursor else 0) - self.UNFINALIZED_WALK)
        walked = 0
        while cursor is not None and cursor.number > final_number and walked < self.UNFINALIZED_WALK:
            walked += 1
            count += self._block_sizes.get(cursor.hash, (0, 0))[1]
            cursor = store.get_header(cursor.parent_hash)
        if len(self._block_sizes) > 4 * self.UNFINALIZED_WALK:  # forget what is never counted again
            self._block_sizes = {h: v for h, v in self._block_sizes.items() if v[0] > forget_below}
        self._unfinalized = (best, finalized, count)
        return count

    def revalidate(self) -> None:
        """Recheck the pool against the new best state: senders seen in new blocks, or all now and then."""
        drain(self.revalidation())

    async def revalidate_in_steps(self) -> None:
        """`revalidate` in turns of the event loop (node/turns.py)."""
        await Turns().run(self.revalidation())

    def revalidation(self) -> Generator[None, None, None]:
        touched, self._touched_senders = self._touched_senders, set()
        included, self._included = self._included, []
        store = self.chain.store
        for block in included:
            # what a best-chain block carries is spent: dropped here by hash rather than rechecked
            # one by one as stale (a failing check each, ~half the revalidation at 1,500 tx/s);
            # a fork block's extrinsics stay, and a reorg readmits a retracted block's
            if store.canonical_hash(block.header.number) == block.hash:
                for encoded in block.extrinsics:
                    self.pool.remove(blake2b_256(encoded))
        yield from self.pool.revalidation(touched)


@dataclass(frozen=True)
class ExtrinsicSigner:
    """Signs extrinsics for this chain with one of the node's own keys, immortal era (its reports)."""

    key: Keypair
    genesis_hash: bytes
    spec_version: int

    @property
    def account(self) -> bytes:
        return self.key.public_key

    def sign(self, module: str, function: str, args: list, nonce: int) -> bytes:
        return sign_extrinsic(self.key, Call(module, function, args), nonce, self.genesis_hash, self.spec_version)
