"""The node's view of the chain: building and importing blocks on top of the LevelDB store."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from consensus.validity import InvalidHeader, check_header, check_slot_author, randao_message
from node.genesis import ChainSpec
from node.storage import ChainStore, GatheredWrites, RootUpdate
from node.turns import Turns
from runtime.codec import CodecError
from runtime.crypto import Keypair
from runtime.executive import BlockOutcome, CheckedExtrinsic, InvalidTransaction, drain
from runtime.modules import session
from runtime.state import Overlay
from runtime.types import MAX_BLOCK_SIZE, Block, Event, Header, extrinsics_root

log = logging.getLogger("arena.chain")

SIGNATURE_CACHE_LIMIT = 200_000
# A block must reach every peer in one gossip message: p2p's default `max_block_message` is
# 1,000,000 bytes and the pubsub frame (1 MiB) also carries key, topic and peer record, so the
# encoded block is kept under this. Over it, a block travelled only by sync (issue 17).
MAX_GOSSIP_BLOCK_BYTES = 960_000
HEADER_ALLOWANCE = 512  # an encoded header with its list framing is ~330 bytes
ITEM_OVERHEAD = 5       # msgpack bin32 header, the largest an extrinsic in the list can take
# Authoring stops taking extrinsics after this fraction of the slot, so the block is built,
# gossiped and imported by every peer well within its slot (otherwise the next author builds
# on a stale parent and the chain forks).
BUILD_BUDGET_FRACTION = 0.3
# A batched import (sync) writes at least every this many blocks: bounds the memory the staged
# writes take and the work a crash can lose (re-synced from peers after a restart).
IMPORT_BATCH_BLOCKS = 64
# Every peer must also *import* the block within its slot, on its own share of the CPU: an author
# takes at most as many extrinsics as this node imports in this fraction of the slot, by the
# import times it measured (issue 17: blocks of 2,000-3,000 transfers took peers longer than a
# slot to import under load, the next author built on a stale parent and the chain forked).
IMPORT_BUDGET_FRACTION = 0.25
MIN_BLOCK_EXTRINSICS = 64   # never below this, so a slow moment cannot stall the chain
IMPORT_SAMPLE_MIN = 32      # blocks with fewer extrinsics say little about the cost of one


class BlockError(ValueError):
    """A block that cannot be imported, with the reason."""


class UnknownParent(BlockError):
    """The block's parent is not known yet: sync first."""


class StaleBlock(BlockError):
    """A block that is valid as far as we know but of no use here: already known, or on a branch
    that our finalized block excludes. Honest peers send these under delay; never penalised."""


class ImportCost:
    """Wall-clock seconds this node takes to import one extrinsic (execute, state root, commit),
    a moving average over recent imports; wall time, so a node that gets half a core counts double."""

    def __init__(self, weight: float = 0.3) -> None:
        self.weight = weight
        self.per_extrinsic_s: float | None = None

    def record(self, seconds: float, extrinsics: int) -> None:
        if extrinsics < IMPORT_SAMPLE_MIN:
            return
        sample = seconds / extrinsics
        old = self.per_extrinsic_s
        self.per_extrinsic_s = sample if old is None else old + self.weight * (sample - old)

    def capacity(self, budget_s: float) -> int | None:
        """Extrinsics this node imports in `budget_s`, or None before any measurement."""
        if not self.per_extrinsic_s:
            return None
        return max(MIN_BLOCK_EXTRINSICS, int(budget_s / self.per_extrinsic_s))


@dataclass(frozen=True)
class _Assembly:
    """A block's contents applied on the best state, before its state root and seal."""
    header: Header
    included: list[bytes]
    rejected: list[tuple[bytes, InvalidTransaction]]
    changes: dict[bytes, bytes | None]
    events: list[Event]
    update: RootUpdate


@dataclass(frozen=True)
class Imported:
    block: Block
    events: list[Event]


class Chain:
    """Block production and import for one node; single-threaded (the node's trio thread).

    `import_block_in_turns` and `build_block_in_turns` execute a block a few milliseconds at a
    time and give the event loop a turn in between (RPC, gossip and pool admission are served
    meanwhile); the work only reads the store, and its outcome is committed only if the best
    state did not change in the meantime, else the block is imported or built again at once."""

    def __init__(self, spec: ChainSpec, store: ChainStore) -> None:
        self.spec = spec
        self.store = store
        self.runtime = spec.runtime()
        self.verified_signatures: set[bytes] = set()
        # hashes of headers whose seal and randao reveal were verified ahead (sync, off the loop)
        self.verified_seals: set[bytes] = set()
        self.listeners: list[Callable[[Imported], None]] = []
        self.reorg_listeners: list[Callable[[list[Block], list[Block]], None]] = []
        # Slot authorship is checked against the parent state (consensus.validity); off in dev
        # mode, where one dev key authors every slot.
        self.check_slot_authors = False
        self.last_build_stop = ""  # why the last authored block stopped taking extrinsics
        # imports of a batched run held back until their blocks are on disk (None: not batching)
        self._unwritten: list[Imported] | None = None
        self.import_cost = ImportCost()
        store.init_genesis(spec.genesis_block, spec.genesis_state)

    # ------------------------------------------------------------ reads

    @property
    def best(self) -> Header:
        return self.store.best_header()

    def state(self) -> Overlay:
        """A scratch view of the best state (writes are discarded)."""
        return Overlay(self.store.get_state)

    def check_for_pool(self, encoded: bytes) -> CheckedExtrinsic:
        """Check an extrinsic as if for the next block on top of the best block."""
        best = self.best
        self._bound_cache()
        return self.runtime.check_extrinsic(
            self.state(), encoded, best.number + 1, {best.number: best.hash}, self.verified_signatures
        )

    def block_capacity(self) -> int | None:
        """Most extrinsics an authored block takes: what this node imports in IMPORT_BUDGET_FRACTION
        of a slot at its measured import speed (None before it imported a block of any size)."""
        return self.import_cost.capacity(self.spec.slot_duration_ms * IMPORT_BUDGET_FRACTION / 1000)

    def _bound_cache(self) -> None:
        if len(self.verified_signatures) > SIGNATURE_CACHE_LIMIT:
            self.verified_signatures.clear()
        if len(self.verified_seals) > SIGNATURE_CACHE_LIMIT:
            self.verified_seals.clear()

    # ------------------------------------------------------------ building

    def build_block(
        self, author: Keypair, slot: int, timestamp_ms: int, candidates: Iterable[bytes],
        budget_s: float | None = None, max_bytes: int = MAX_GOSSIP_BLOCK_BYTES,
        max_extrinsics: int | None = None,
    ) -> tuple[Block, list[Event], list[tuple[bytes, InvalidTransaction]]]:
        """Author a block on the best block from `candidates` (in priority order) and import it.

        Bounded three times: the encoded block stays under `max_bytes` (it fits one gossip
        message), no extrinsic is started after `budget_s` seconds (default: BUILD_BUDGET_FRACTION
        of the slot), and it takes at most `max_extrinsics` (default: `block_capacity()`, what
        peers import in time). What is left stays in the pool for the next block.
        """
        assembly = drain(self._assembly(author, slot, timestamp_ms, candidates, budget_s, max_bytes,
                                         max_extrinsics, time.perf_counter))
        return self._seal_and_commit(author, assembly)

    async def build_block_in_turns(
        self, author: Keypair, slot: int, timestamp_ms: int, candidates: list[bytes],
    ) -> tuple[Block, list[Event], list[tuple[bytes, InvalidTransaction]]]:
        """`build_block`, giving the event loop a turn every TURN_S of work; if the best state
        changed meanwhile, the block is built again at once on the new best block. The time
        budget counts this build's own work, not the turns it gave away."""
        version = self.store.state_version
        turns = Turns(chain=True)
        assembly = await turns.run(self._assembly(author, slot, timestamp_ms, candidates, None,
                                                   MAX_GOSSIP_BLOCK_BYTES, None, turns.busy))
        block = self._sealed(author, assembly)
        gathered = await turns.run(self.store.gather_block_writes(block, assembly.changes, assembly.update,
                                                                  assembly.events))
        if self.store.state_version != version:
            return self.build_block(author, slot, timestamp_ms, candidates)
        return self._commit_built(block, assembly, gathered)

    def _assembly(
        self, author: Keypair, slot: int, timestamp_ms: int, candidates: Iterable[bytes],
        budget_s: float | None, max_bytes: int, max_extrinsics: int | None, clock: Callable[[], float],
    ) -> Generator[None, None, _Assembly]:
        """Apply candidates on the best state until a bound is met, one per step, then compute the
        state root; only reads the store. `clock` measures the time budget."""
        started = clock()
        if budget_s is None:
            budget_s = self.spec.slot_duration_ms * BUILD_BUDGET_FRACTION / 1000
        deadline = started + budget_s
        if max_extrinsics is None:
            max_extrinsics = self.block_capacity()
        parent = self.best
        header = Header(
            parent_hash=parent.hash, number=parent.number + 1, slot=slot, timestamp_ms=timestamp_ms,
            author=author.public_key, randao_reveal=author.sign(randao_message(slot)),
            state_root=bytes(32), extrinsics_root=bytes(32),
        )
        state = Overlay(self.store.get_state, cache_reads=True)  # the store does not change while building
        builder = self.runtime.initialize_block(state, header)
        included: list[bytes] = []
        rejected: list[tuple[bytes, InvalidTransaction]] = []
        size = HEADER_ALLOWANCE
        limit = min(max_bytes, MAX_BLOCK_SIZE)
        self.last_build_stop = "candidates"
        for count, encoded in enumerate(candidates):
            if max_extrinsics is not None and len(included) >= max_extrinsics:
                self.last_build_stop = "capacity"
                break
            if size + len(encoded) + ITEM_OVERHEAD > limit:
                self.last_build_stop = "size"
                break
            if not count & 31 and clock() > deadline:
                self.last_build_stop = "time"
                break
            try:
                self.runtime.apply_extrinsic(builder, encoded, len(included), self.verified_signatures)
            except InvalidTransaction as exc:
                rejected.append((encoded, exc))
                if exc.kind == "ExhaustsResources":
                    break
                continue
            included.append(encoded)
            size += len(encoded) + ITEM_OVERHEAD
            yield
        events = self.runtime.finalize_block(builder)
        changes = state.changes()
        update = yield from self.store.compute_root_in_steps(changes)
        return _Assembly(header, included, rejected, changes, events, update)

    def _sealed(self, author: Keypair, assembly: _Assembly) -> Block:
        """The assembled block with its state root and seal."""
        header, update = assembly.header, assembly.update
        unsealed = Header(
            header.parent_hash, header.number, header.slot, header.timestamp_ms, header.author,
            header.randao_reveal, update.root, extrinsics_root(assembly.included),
        )
        return Block(unsealed.with_seal(author.sign(unsealed.signing_payload())), assembly.included)

    def _seal_and_commit(
        self, author: Keypair, assembly: _Assembly,
    ) -> tuple[Block, list[Event], list[tuple[bytes, InvalidTransaction]]]:
        """The assembled block, sealed and committed as the best block."""
        block = self._sealed(author, assembly)
        return self._commit_built(block, assembly, drain(self.store.gather_block_writes(
            block, assembly.changes, assembly.update, assembly.events)))

    def _commit_built(
        self, block: Block, assembly: _Assembly, gathered: GatheredWrites,
    ) -> tuple[Block, list[Event], list[tuple[bytes, InvalidTransaction]]]:
        """Write a block this node built (its writes gathered on the current best state) and announce it."""
        self.flush_import()
        self.store.commit_gathered(gathered)
        self._notify(Imported(block, assembly.events))
        return block, assembly.events, assembly.rejected

    # ------------------------------------------------------------ importing

    def import_block(self, block: Block) -> Imported | None:
        """Import a block: extend the best chain, keep it as a fork, or reorg to it if it is longer.

        Returns the import when the block became best (possibly after a reorg), None when it was
        kept as a shorter fork. Raises UnknownParent or BlockError.
        """
        header = block.header
        parent, best = self._checked_parent(block)
        if parent is best:
            return self._execute_and_commit(block, batched=True)  # staged only inside batched_import
        self.flush_import()  # a fork or a reorg writes directly: the batched run goes to disk first
        if self.check_slot_authors and header.author not in self._authority_accounts():
            # A fork block is stored before it is executed (and its slot checked): only authorities
            # may make us store one, so a key with no stake cannot fill our disk with forks.
            raise BlockError(f"author {header.author.hex()[:16]} of fork block #{header.number} is not an authority")
        self.store.store_block(block)
        if header.number > self.best.number:
            return self._reorg_to(block)
        log.info("kept fork block #%d 0x%s", header.number, block.hash.hex()[:16])
        return None

    async def import_block_in_turns(self, block: Block) -> Imported | None:
        """`import_block`, executing a block that extends the best block TURN_S at a time with
        turns of the event loop in between, so RPC, gossip and pool admission are served while
        it runs (issue 17: a block of 4,000 transfers held the loop ~250 ms).

        Its outcome is committed only if the best state did not change meanwhile; if it did, the
        block is imported again at once (`import_block`), so what is committed was always
        executed on the state it extends. Forks, reorgs and batched runs (sync) take
        `import_block` directly."""
        header = block.header
        if self._unwritten is not None or header.parent_hash != self.store.best_hash():
            return self.import_block(block)
        self._checked_parent(block)
        self._check_slot(header)
        self._bound_cache()
        version = self.store.state_version
        turns = Turns(chain=True)
        try:
            outcome, update = await turns.run(self._execution(block))
            self._check_root(block, update)
            gathered = await turns.run(self.store.gather_block_writes(block, outcome.changes, update, outcome.events))
        except BlockError:
            if self.store.state_version != version:
                return self.import_block(block)
            raise
        if self.store.state_version != version:
            return self.import_block(block)
        return self._commit(block, outcome, update, time.perf_counter() - turns.busy(), gathered=gathered)

    def _checked_parent(self, block: Block) -> tuple[Header, Header]:
        """The block's parent header and the best header, after the checks that need no execution:
        not known yet, parent known, header valid on its parent, above the finalized block."""
        header = block.header
        block_hash = header.hash
        if self.store.has_block(block_hash):
            raise StaleBlock(f"block #{header.number} 0x{block_hash.hex()[:16]} is already known")
        best = self.best
        parent = best if header.parent_hash == self.store.best_hash() else self.store.get_header(header.parent_hash)
        if parent is None:
            raise UnknownParent(f"unknown parent 0x{header.parent_hash.hex()} of block #{header.number}")
        try:
            check_header(header, parent, extrinsics_root(block.extrinsics), block_hash in self.verified_seals)
        except InvalidHeader as exc:
            raise BlockError(str(exc)) from exc
        finalized = self.finalized
        if header.number <= finalized.number:
            raise StaleBlock(f"block #{header.number} conflicts with finalized block #{finalized.number}")
        return parent, best

    def _authority_accounts(self) -> set[bytes]:
        """Accounts of the current and previous authority sets, by the best state."""
        state = self.state()
        return {bytes(a) for a, _ in session.Authorities.get(state)} | {
            bytes(a) for a, _ in session.PreviousAuthorities.get(state)}

    @property
    def finalized(self) -> Header:
        return self.store.finalized_header()

    def _execute_and_commit(self, block: Block, batched: bool = False) -> Imported:
        header = block.header
        self._check_slot(header)
        self._bound_cache()
        started = time.perf_counter()
        outcome, update = drain(self._execution(block))
        return self._commit(block, outcome, update, started, batched)

    def _execution(self, block: Block) -> Generator[None, None, tuple[BlockOutcome, RootUpdate]]:
        """Execute the block on the best state and compute its state root, one step at a time;
        only reads the store."""
        try:
            outcome = yield from self.runtime.execute_block_in_steps(
                self.store.get_state, block, self.verified_signatures)
        except (InvalidTransaction, CodecError) as exc:
            raise BlockError(f"block #{block.header.number} carries an invalid extrinsic: {exc}") from exc
        update = yield from self.store.compute_root_in_steps(outcome.changes)
        return outcome, update

    def _check_slot(self, header: Header) -> None:
        if self.check_slot_authors:
            try:
                check_slot_author(header, self.state())
            except InvalidHeader as exc:
                raise BlockError(str(exc)) from exc

    @staticmethod
    def _check_root(block: Block, update: RootUpdate) -> None:
        header = block.header
        if update.root != header.state_root:
            raise BlockError(
                f"state root mismatch at #{header.number}: header 0x{header.state_root.hex()}, computed 0x{update.root.hex()}"
            )

    def _commit(
        self, block: Block, outcome: BlockOutcome, update: RootUpdate, started: float, batched: bool = False,
        gathered: GatheredWrites | None = None,
    ) -> Imported:
        """Check the state root against the header and make the block best (`started`: when its
        import began, by `time.perf_counter`, for the import cost; `gathered`: its writes, gathered
        in turns on the current best state)."""
        self._check_root(block, update)
        imported = Imported(block, outcome.events)
        if batched and self._unwritten is not None:
            self.store.commit_block(block, outcome.changes, update, outcome.events, staged=True)
            self._unwritten.append(imported)
            if len(self._unwritten) >= IMPORT_BATCH_BLOCKS:
                self.flush_import()
            return imported
        self.flush_import()
        if gathered is not None:
            self.store.commit_gathered(gathered)
        else:
            self.store.commit_block(block, outcome.changes, update, outcome.events)
        self.import_cost.record(time.perf_counter() - started, len(block.extrinsics))
        self._notify(imported)
        return imported

    # ------------------------------------------------------------ batched import (sync)

    @contextmanager
    def batched_import(self) -> Iterator[None]:
        """Blocks imported in this block extend the best chain with one atomic write per run.

        Each block is still fully checked, executed and its state root compared; it becomes best
        in memory at once, and its writes join a run that is written in one LevelDB WriteBatch
        when the block ends, every IMPORT_BATCH_BLOCKS blocks, or before any other write (a fork
        block, a revert, finality). Listeners hear of each block, in order, once it is on disk.
        Hold no `await` inside: other tasks must never see blocks that are not yet written.
        """
        if self._unwritten is not None:
            yield  # nested: the outer block writes
            return
        self._unwritten = []
        try:
            yield
        finally:
            try:
                self.flush_import()
            finally:
                self._unwritten = None

    def flush_import(self) -> None:
        """Write the blocks of the batched run so far, then tell the listeners about them.

        If the write fails, the store is back at its last written block and the unwritten
        blocks are forgotten (sync fetches them again); the error propagates."""
        if not self._unwritten:
            return
        unwritten, self._unwritten = self._unwritten, []
        self.store.flush()
        for imported in unwritten:
            self._notify(imported)

    def _reorg_to(self, target: Block) -> Imported:
        """Switch the best chain to the longer fork ending in `target`, or stay put if it is invalid."""
        route: list[Block] = []
        cursor: Block | None = target
        while cursor is not None and self.store.canonical_hash(cursor.header.number) != cursor.hash:
            route.append(cursor)
            cursor = self.store.get_block(cursor.header.parent_hash)
        if cursor is None:
            raise BlockError("fork does not connect to the best chain")
        ancestor = cursor.header
        if ancestor.number < self.finalized.number:
            raise StaleBlock(f"fork leaves the chain below finalized block #{self.finalized.number}")
        retracted: list[Block] = []
        while self.store.best_hash() != ancestor.hash:
            retracted.append(self.store.revert_best())
        log.info("reorg: retracting %d blocks to #%d, enacting %d", len(retracted), ancestor.number, len(route))
        last: Imported | None = None
        try:
            for block in reversed(route):
                last = self._execute_and_commit(block)
        except BlockError:
            while self.store.best_hash() != ancestor.hash:
                self.store.revert_best()
            for block in reversed(retracted):
                self._execute_and_commit(block)
            raise
        enacted = list(reversed(route))
        for listener in self.reorg_listeners:
            listener(retracted, enacted)  # retracted newest first, enacted oldest first
        assert last is not None
        return last

    def finalize(self, block_hash: bytes, justification: bytes | None = None) -> bool:
        """Mark a block final (never moves backwards); True if finality advanced.

        A justified block off the best chain wins over local preference: the node reorgs to it
        first (fork choice is the longest chain containing the highest finalized block)."""
        self.flush_import()  # finality is written only after the blocks it covers
        header = self.store.get_header(block_hash)
        if header is None or header.number <= self.finalized.number:
            return False
        if self.store.canonical_hash(header.number) != block_hash:
            block = self.store.get_block(block_hash)
            if block is None:
                return False
            try:
                self._reorg_to(block)
            except BlockError as exc:
                log.warning("cannot switch to justified block #%d: %s", header.number, exc)
                return False
        self.store.set_finalized(block_hash, justification)
        return True

    def _notify(self, imported: Imported) -> None:
        for listener in self.listeners:
            try:
                listener(imported)
            except Exception:  # a listener's bug must not undo an import
                log.exception("block listener failed")

