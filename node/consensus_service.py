"""Networked consensus for one node: gossip validation, sync, slot authoring, finality voting.

Blocks are fully imported inside the gossip validator, so a block is forwarded only if this node
found it valid. Finality messages (GRANDPA votes and the justifications of finalized rounds) feed
the finality gadget (node/finality.py). Peers are penalised only for data that is provably
invalid (bad signature, invalid state transition, malformed); a late fork block, a block with an
unknown parent, or one that conflicts only with our own finality is ignored, never penalised.
Equivocations of staked authorities seen here are reported on chain.

One file because gossip, sync and authoring all import into one chain through the same orphan
pool, equivocation watch and finality step, and their order against each other is the point.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Generator

import trio
import trio.lowlevel

from consensus.grandpa import PREVOTE, FinalityError, Justification, SignedVote, Timing, sign_vote
from consensus.slots import current_slot, now_ms
from consensus.validity import InvalidHeader, expected_author
from node.chain import IMPORT_BATCH_BLOCKS, BlockError, Chain, StaleBlock, UnknownParent
from node.finality import FinalityGadget, decode_finality_message
from node.sync import RangeItem, check_range, checked_ranges
from node.turns import Turns
from node.txpool import PoolError
from node.views import ExtrinsicSigner, FinalizedListener, PoolHandle
from p2p import NetworkService, Penalty, RequestError, Topic, Verdict
from runtime.codec import CodecError, decode, encode
from runtime.crypto import Keypair, ss58_encode, verify
from runtime.modules import session
from runtime.types import Block, Header

log = logging.getLogger("arena.consensus")

SYNC_CHUNK = 256
MAX_ORPHANS = 64
MAX_ORPHAN_BYTES = 16 * 1024 * 1024
MAX_REPORTED = 4096
FUTURE_SLOT_TOLERANCE = 2
FINALITY_TICK_S = 0.1
# An author whose best block is older than the previous slot, whose author has been authoring
# lately, waits up to this fraction of its slot for that block before building beside it: under
# load a block can finish importing here after the next slot began, and building on its parent
# then forks the chain (issue 17: forks at every height, GRANDPA rounds split between branches).
PREVIOUS_BLOCK_WAIT_FRACTION = 0.3
LIVE_AUTHOR_SLOTS = 8


class ConsensusService:
    """Everything a networked node does on top of its chain and pool.

    It writes the chain (imports, authors, finalizes) and reads the network; it reaches the rest of
    the node only through the pool handle and `on_finalized`. As a `NetworkView` it also answers
    the RPC's peer and sync questions."""

    def __init__(self, chain: Chain, network: NetworkService, pool: PoolHandle, on_finalized: FinalizedListener,
                 key: Keypair | None = None, equivocate: bool = False) -> None:
        self.chain = chain
        self.store = chain.store
        self.network = network
        self.pool = pool
        self.on_finalized = on_finalized
        self.key = key
        # the node's own equivocation reports are signed with its authoring key
        self.signer = None if key is None else ExtrinsicSigner(key, chain.spec.genesis_hash, chain.runtime.spec_version)
        self.slot_ms = chain.spec.slot_duration_ms
        self.finality = FinalityGadget(self.chain, self.key, finality_timing(self.slot_ms))
        self.equivocate = equivocate
        self.peer_status: dict[str, tuple[int, bytes, int]] = {}
        self.orphans: OrderedDict[bytes, Block] = OrderedDict()
        self.importing: set[bytes] = set()  # gossiped blocks whose import is under way
        self.orphan_bytes = 0
        self._orphan_sizes: dict[bytes, int] = {}
        self._pending_votes: list[SignedVote] = []
        self._pending_justifications: list[Justification] = []
        self.seen_slots: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        self.last_authored_slot: dict[bytes, int] = {}  # slot leader -> newest slot we saw it author
        self.reported: OrderedDict[tuple, None] = OrderedDict()
        self.sync_wakeup = trio.Event()
        self.revalidation_due = trio.Event()
        self.ahead_peers: OrderedDict[str, None] = OrderedDict()
        self.chain.check_slot_authors = True
        self.chain.reorg_listeners.append(self._on_reorg)
        network.set_validator(Topic.BLOCKS, self.validate_block)
        network.subscribe(Topic.BLOCKS, self._ignore)
        network.set_validator(Topic.VOTES, self.validate_finality)
        network.subscribe(Topic.VOTES, self._ignore)
        network.set_validator(Topic.EXTRINSICS, self.validate_extrinsics)
        network.subscribe(Topic.EXTRINSICS, self._ignore)
        network.set_status_handler(self.status)
        network.set_blocks_by_range_handler(self.blocks_by_range)

    async def _ignore(self, origin: str, payload: object) -> None:
        """Work happens in the validators (they run before forwarding)."""

    # ------------------------------------------------------------ gossip validators

    async def validate_block(self, peer: str, data: bytes) -> Verdict:
        """Import a gossiped block before it is forwarded, in turns of the event loop
        (`Chain.import_block_in_turns`), so RPC and gossip are served meanwhile."""
        try:
            block = Block.decode(data)
        except (CodecError, ValueError):
            return Verdict.REJECT
        header = block.header
        if not verify(header.author, header.signing_payload(), header.seal):
            return Verdict.REJECT
        if header.slot > current_slot(self.slot_ms) + FUTURE_SLOT_TOLERANCE:
            return Verdict.IGNORE      # our clock may be behind theirs: not provably invalid
        self._watch_equivocation(header)
        if self.store.has_block(block.hash) or block.hash in self.importing:
            return Verdict.IGNORE      # known, or being imported from another peer's copy
        self.importing.add(block.hash)
        try:
            await self.chain.import_block_in_turns(block)
        except UnknownParent:
            self._keep_orphan(block, len(data))
            self._ahead_of_us(peer)
            return Verdict.IGNORE
        except StaleBlock as exc:
            log.debug("ignored block #%d from %s: %s", header.number, peer[:12], exc)
            return Verdict.IGNORE
        except BlockError as exc:
            log.info("rejected block #%d from %s: %s", header.number, peer[:12], exc)
            return Verdict.REJECT
        finally:
            self.importing.discard(block.hash)
        self._after_import()
        self._adopt_orphans(block.hash)
        return Verdict.ACCEPT

    def validate_finality(self, peer: str, data: bytes) -> Verdict:
        """Votes and justifications: provably invalid ones are rejected, stale or foreign-set ones ignored."""
        try:
            message = decode_finality_message(data)
        except FinalityError:
            return Verdict.REJECT
        if isinstance(message, Justification):
            return self._gossiped_justification(peer, message, data)
        vote = message
        gadget = self.finality
        if vote.set_id != gadget.set_id:
            return Verdict.IGNORE
        if vote.voter not in gadget.weights:
            return Verdict.REJECT
        if not gadget.voter.accepts(vote) or not gadget.voter.is_new(vote):
            return Verdict.IGNORE
        if not vote.verify():
            return Verdict.REJECT
        out = gadget.on_vote(vote)
        for evidence in out.equivocations:
            self._report(session.KIND_VOTE, vote.voter, (vote.set_id, vote.round),
                         evidence.first.encode(), evidence.second.encode())
        self._finality_step()
        return Verdict.ACCEPT

    def _ahead_of_us(self, peer: str) -> None:
        """`peer` just showed us a chain we cannot follow yet: ask it for its status at once, even
        if it was silent before (a partition or a restart ended; don't wait out the backoff)."""
        self.ahead_peers[peer] = None
        while len(self.ahead_peers) > 64:
            self.ahead_peers.popitem(last=False)
        self.sync_wakeup.set()

    def _gossiped_justification(self, peer: str, justification: Justification, data: bytes) -> Verdict:
        try:
            advanced = self.finality.import_justification(data)
        except FinalityError as exc:
            log.info("rejected justification for #%d: %s", justification.target[0], exc)
            return Verdict.REJECT
        if not advanced:
            if not self.finality.tree.knows(justification.target[1]):
                self._ahead_of_us(peer)
            return Verdict.IGNORE
        self._after_finality()
        return Verdict.ACCEPT

    async def validate_extrinsics(self, peer: str, batch: list[bytes]) -> Verdict:
        """Admit a gossiped batch; forward it only if this node took something new from it.

        A batch refused whole — the node is overloaded ("pool full, retry"), or it held every
        extrinsic already — is not forwarded: passing on work a loaded node could not take only
        moves the load to its peers, ahead of their blocks and votes. All invalid: the sender pays.
        Admitted in turns (node/turns.py: a batch of ~1,000 held the event loop ~150 ms)."""
        bad, admitted = await Turns().run(self._admission(batch))
        if batch and bad == len(batch):
            return Verdict.REJECT
        return Verdict.ACCEPT if admitted else Verdict.IGNORE

    def _admission(self, batch: list[bytes]) -> Generator[None, None, tuple[int, int]]:
        """Admit a batch to the pool, a step per extrinsic; returns (invalid, admitted) counts."""
        bad = admitted = 0
        for encoded in batch:
            try:
                self.pool.admit(encoded)
                admitted += 1
            except PoolError as exc:
                if exc.kind in ("BadFormat", "BadSignature"):
                    bad += 1
            yield
        return bad, admitted

    # ------------------------------------------------------------ equivocation

    def _is_slot_leader(self, header: Header) -> bool:
        """Whether the header's author owns its slot by our best state's epoch data: only a slot's
        rightful author can equivocate; anyone else's second header is just an invalid block."""
        try:
            return expected_author(self.chain.state(), header.slot) == header.author
        except InvalidHeader:
            return False

    def _watch_equivocation(self, header: Header) -> None:
        if not self._is_slot_leader(header):
            return
        self.last_authored_slot[header.author] = max(header.slot, self.last_authored_slot.get(header.author, 0))
        key = (header.author, header.slot)
        encoded = header.encode()
        earlier = self.seen_slots.get(key)
        if earlier is None:
            self.seen_slots[key] = encoded
            while len(self.seen_slots) > 4096:
                self.seen_slots.popitem(last=False)
        elif earlier != encoded:
            self._report(session.KIND_BLOCK, header.author, header.slot, earlier, encoded)

    def _report(self, kind: int, offender: bytes, round_number: object, first: bytes, second: bytes) -> None:
        offence = (kind, offender, round_number)
        if offence in self.reported or self.signer is None:
            return
        self.reported[offence] = None
        while len(self.reported) > MAX_REPORTED:
            self.reported.popitem(last=False)
        log.warning("equivocation by %s (kind %d, round %s): reporting", ss58_encode(offender), kind, round_number)
        try:
            nonce = self.pool.next_nonce(self.signer.account)
            encoded = self.signer.sign("session", "report_equivocation", [kind, first, second], nonce)
            self.pool.submit(encoded, overload_exempt=True)
        except PoolError as exc:
            log.info("equivocation report not submitted: %s", exc)

    # ------------------------------------------------------------ finality

    def _finality_step(self) -> list[SignedVote]:
        """Run the voter once; returns the votes to publish (already persisted as cast)."""
        before = self.chain.finalized.number
        out, made = self.finality.tick(now_ms())
        self._pending_votes.extend(out.votes)
        self._pending_justifications.extend(made)
        if self.chain.finalized.number > before:
            self._after_finality()
        return out.votes

    def _after_finality(self) -> None:
        self.on_finalized(self.chain.finalized.hash)

    async def finality_loop(self) -> None:
        """Drive the voter: rounds advance on votes and on time; votes and justifications go out."""
        while True:
            self._finality_step()
            votes, self._pending_votes = self._pending_votes, []
            justifications, self._pending_justifications = self._pending_justifications, []
            for vote in votes:
                await self._publish(Topic.VOTES, vote.encode())
                if self.equivocate and self.key is not None and vote.voter == self.key.public_key and vote.stage == PREVOTE:
                    await self._publish_vote_equivocation(vote)
            for justification in justifications:
                await self._publish(Topic.VOTES, justification.encode())
            await trio.sleep(FINALITY_TICK_S)

    async def _publish_vote_equivocation(self, vote: SignedVote) -> None:
        """Test-only misbehaviour: a second prevote in the same round, for the target's parent."""
        assert self.key is not None
        parent = self.finality.tree.parent_of(vote.block_hash)
        if parent is None:
            return
        twin = sign_vote(self.key, vote.set_id, vote.round, vote.stage, parent)
        log.warning("test equivocation: a second prevote in round %d", vote.round)
        await self._publish(Topic.VOTES, twin.encode())

    # ------------------------------------------------------------ authoring

    async def author_loop(self) -> None:
        """At each slot start, author a block if this node's key owns the slot."""
        last = current_slot(self.slot_ms)
        while True:
            slot = current_slot(self.slot_ms)
            if slot <= last:
                await trio.sleep(((slot + 1) * self.slot_ms - now_ms()) / 1000 + 0.005)
                continue
            last = slot
            if self.key is None or self.is_syncing():
                continue
            try:
                if expected_author(self.chain.state(), slot) != self.key.public_key:
                    continue
            except InvalidHeader:
                continue
            if self._awaits_previous_block(slot):
                with trio.move_on_after(self.slot_ms * PREVIOUS_BLOCK_WAIT_FRACTION / 1000):
                    while self._awaits_previous_block(slot):
                        await trio.sleep(0.01)
            # A block under import decides our parent: wait for it (at most a slot; an import is
            # bounded by the block's size) rather than author beside it.
            with trio.move_on_after(self.slot_ms / 1000):
                while self.importing:
                    await trio.sleep(0.005)
            block, _, rejected = await self.chain.build_block_in_turns(
                self.key, slot, slot * self.slot_ms, self.pool.ready())
            for _, exc in rejected:
                if exc.kind != "Future":
                    log.debug("dropping extrinsic: %s", exc)
            self._after_import()
            self._watch_equivocation(block.header)
            await self._publish(Topic.BLOCKS, block.encode())
            if self.equivocate:
                await self._publish_equivocation(block)

    def _awaits_previous_block(self, slot: int) -> bool:
        """Whether authoring `slot` should wait a moment for the previous slot's block: our best block
        is older than that slot and its author has authored within LIVE_AUTHOR_SLOTS (so its block
        is most likely on its way; an author that went silent is not waited for)."""
        previous = slot - 1
        if self.chain.best.slot >= previous:
            return False
        try:
            author = expected_author(self.chain.state(), previous)
        except InvalidHeader:
            return False
        if self.key is not None and author == self.key.public_key:
            return False  # our own slot: we know whether we authored it
        seen = self.last_authored_slot.get(author)
        return seen is not None and previous - seen <= LIVE_AUTHOR_SLOTS

    async def _publish_equivocation(self, block: Block) -> None:
        """Test-only misbehaviour: a second, different block for the same slot."""
        assert self.key is not None
        h = block.header
        twin = Header(h.parent_hash, h.number, h.slot, h.timestamp_ms + 1, h.author, h.randao_reveal,
                      h.state_root, h.extrinsics_root)
        twin = twin.with_seal(self.key.sign(twin.signing_payload()))
        log.warning("test equivocation: publishing a second block for slot %d", h.slot)
        await self._publish(Topic.BLOCKS, Block(twin, block.extrinsics).encode())

    def _after_import(self) -> None:
        self.revalidation_due.set()  # revalidate_loop rechecks the pool in steps
        self._finality_step()

    async def revalidate_loop(self) -> None:
        """Recheck the pool after new best blocks, in turns of the event loop (node/turns.py):
        done at once it held the loop 100-200 ms per block at 2,000 tx/s (issue 17)."""
        while True:
            await self.revalidation_due.wait()
            self.revalidation_due = trio.Event()
            await self.pool.revalidate_in_steps()

    async def _publish(self, topic: Topic, data: bytes) -> None:
        try:
            await self.network.publish(topic, data)
        except Exception as exc:  # noqa: BLE001 - publishing is best effort; sync repairs what gossip misses
            log.debug("publish on %s failed: %s", topic, exc)

    def _on_reorg(self, retracted: list[Block], enacted: list[Block]) -> None:
        for block in retracted:
            for encoded in block.extrinsics:
                try:
                    self.pool.admit(encoded, overload_exempt=True)   # retracted: must not be lost
                except PoolError:
                    pass

    # ------------------------------------------------------------ orphans and sync

    def _keep_orphan(self, block: Block, size: int) -> None:
        """Blocks whose parent we lack, bounded by count and bytes (oldest dropped first)."""
        if block.hash in self.orphans or size > MAX_ORPHAN_BYTES // 4:
            return
        self.orphans[block.hash] = block
        self.orphan_bytes += size
        self._orphan_sizes[block.hash] = size
        while len(self.orphans) > MAX_ORPHANS or self.orphan_bytes > MAX_ORPHAN_BYTES:
            dropped, _ = self.orphans.popitem(last=False)
            self.orphan_bytes -= self._orphan_sizes.pop(dropped, 0)

    def _adopt_orphans(self, parent_hash: bytes) -> None:
        ready = [b for b in self.orphans.values() if b.header.parent_hash == parent_hash]
        for block in ready:
            self.orphans.pop(block.hash, None)
            self.orphan_bytes -= self._orphan_sizes.pop(block.hash, 0)
            try:
                self.chain.import_block(block)
                self._adopt_orphans(block.hash)
            except BlockError:
                pass

    def status(self) -> bytes:
        best, finalized = self.chain.best, self.chain.finalized
        return encode([self.chain.spec.genesis_hash, best.number, best.hash, finalized.number, finalized.hash])

    def blocks_by_range(self, start: int, count: int) -> list[bytes]:
        out = []
        for number in range(start, start + min(count, SYNC_CHUNK)):
            block_hash = self.store.canonical_hash(number)
            if block_hash is None:
                break
            raw = self.store.get_block_bytes(block_hash)
            out.append(encode([raw, self.store.justification(block_hash) or b""]))
        return out

    def is_syncing(self) -> bool:
        best = self.chain.best.number
        return any(n > best + 2 for n, _, _ in self.peer_status.values())

    async def sync_loop(self) -> None:
        """Ask peers for their status (all at once, bounded); fetch blocks and justifications we lack."""
        while True:
            statuses = await self.network.status_of_peers(self.network.peers())
            ahead, self.ahead_peers = list(self.ahead_peers), OrderedDict()
            for peer in ahead:
                if peer not in statuses and peer in self.network.peers():
                    try:
                        statuses[peer] = await self.network.request_status(peer, timeout_s=2.0)
                    except RequestError as exc:
                        statuses[peer] = exc
            for peer, status in statuses.items():
                if isinstance(status, Exception):
                    log.debug("status of %s failed: %s", peer[:12], status)
                    continue
                try:
                    await self._sync_with(peer, status)
                except (RequestError, CodecError, ValueError) as exc:
                    log.debug("sync with %s failed: %s", peer[:12], exc)
            self.sync_wakeup = trio.Event()
            with trio.move_on_after(1.0):
                await self.sync_wakeup.wait()

    async def _sync_with(self, peer: str, status: bytes) -> None:
        fields = decode(status)
        if not isinstance(fields, list) or len(fields) != 5:
            self.network.penalize(peer, Penalty.PROTOCOL_VIOLATION)
            return
        genesis, best_number, best_hash, fin_number, _ = fields
        if genesis != self.chain.spec.genesis_hash:
            self.network.penalize(peer, Penalty.PROTOCOL_VIOLATION)
            return
        self.peer_status[peer] = (best_number, best_hash, fin_number)
        if best_number > self.chain.best.number or (
            best_number == self.chain.best.number and not self.store.has_block(best_hash) and best_number > 0
        ):
            await self._fetch_and_import(peer, best_number)
        # finality that the peer has and we lack: its justifications for blocks we may already hold
        while fin_number > self.chain.finalized.number:
            before = self.chain.finalized.number
            items = await self.network.request_blocks(peer, before + 1, min(SYNC_CHUNK, fin_number - before))
            await self._import_range(peer, await check_range(items))
            if self.chain.finalized.number == before:
                break

    async def _fetch_and_import(self, peer: str, best_number: int) -> None:
        """Import the peer's blocks above our best; the next ranges are checked and fetched meanwhile (node.sync)."""
        async def fetch(first: int) -> list[bytes]:
            return await self.network.request_blocks(peer, first, SYNC_CHUNK)

        start = self.chain.best.number + 1
        items = await check_range(await fetch(start))
        if items and not self.store.has_block(items[0].block.header.parent_hash):
            # we are on another fork: fetch from just above our finalized block instead
            start = self.chain.finalized.number + 1
            items = await check_range(await fetch(start))
        if not items:
            return
        failed: Exception | None = None
        first_best = self.chain.best.number
        async with checked_ranges(fetch, start + len(items), best_number) as ranges:
            if await self._import_range(peer, items):
                async for checked in ranges:
                    if isinstance(checked, Exception):
                        failed = checked  # raised below, outside the pipeline's nursery, as sync_loop expects
                        break
                    if not await self._import_range(peer, checked):
                        break
        if self.chain.best.number > first_best + 1:
            log.info("synced #%d..#%d from %s", first_best + 1, self.chain.best.number, peer[:12])
        if failed is not None:
            raise failed

    async def _import_range(self, peer: str, items: list[RangeItem]) -> bool:
        """Import blocks and their justifications; False when nothing moved forward."""
        progressed = False
        self.chain.verified_seals.update(item.block.hash for item in items if item.seals_ok)
        for start in range(0, len(items), IMPORT_BATCH_BLOCKS):
            if start:
                await trio.lowlevel.checkpoint()  # RPC and gossip get the loop between slices of a range
            with self.chain.batched_import():  # one atomic write per slice, on disk before the loop moves on
                moved, outcome = self._import_slice(peer, items[start:start + IMPORT_BATCH_BLOCKS])
            progressed |= moved
            if outcome == "rejected":
                return False
            if outcome == "stop":
                break
        self._after_import()
        return progressed

    def _import_slice(self, peer: str, items: list[RangeItem]) -> tuple[bool, str]:
        """Import part of a range (no await: see Chain.batched_import); (progressed, "more"/"stop"/"rejected")."""
        progressed = False
        for item in items:
            block, justification = item.block, item.justification
            if not self.store.has_block(block.hash):
                try:
                    self.chain.import_block(block)
                    progressed = True
                except StaleBlock:
                    continue
                except UnknownParent:
                    return progressed, "stop"
                except BlockError as exc:
                    log.info("sync: block #%d from %s rejected: %s", block.header.number, peer[:12], exc)
                    self.network.penalize(peer, Penalty.INVALID_BLOCK)
                    return progressed, "rejected"
            if justification:
                try:
                    if self.finality.import_justification(justification, block.hash):
                        progressed = True
                        self._after_finality()
                except FinalityError as exc:
                    log.info("sync: justification for #%d from %s ignored: %s", block.header.number, peer[:12], exc)
        return progressed, "more"

    # ------------------------------------------------------------ run

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Sync, authoring and finality loops (the network itself runs beside this, in the node's nursery)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.sync_loop)
            nursery.start_soon(self.author_loop)
            nursery.start_soon(self.finality_loop)
            nursery.start_soon(self.revalidate_loop)
            task_status.started()

    # ------------------------------------------------------------ NetworkView (system_* RPC)

    def peer_count(self) -> int:
        return len(self.network.peers())

    def local_peer(self) -> dict | None:
        return {"peerId": self.network.peer_id, "listen": self.network.listen_multiaddr}

    def should_have_peers(self) -> bool:
        return True

    def peer_info(self) -> list[dict]:
        out = []
        for peer in self.network.peers():
            status = self.peer_status.get(peer)
            out.append({"peerId": peer, "bestNumber": status[0] if status else None,
                        "bestHash": "0x" + status[1].hex() if status else None,
                        "finalizedNumber": status[2] if status else None})
        return out


def finality_timing(slot_ms: int) -> Timing:
    """Rounds of at least half a slot; precommit early once all have prevoted, else after a quarter."""
    return Timing(round_min_ms=max(100, slot_ms // 2), precommit_wait_ms=max(50, slot_ms // 4),
                  rebroadcast_ms=max(1000, 2 * slot_ms))
