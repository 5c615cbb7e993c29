"""Networked consensus for one node: gossip validation, sync, slot authoring, finality voting.

Blocks are fully imported inside the gossip validator, so a block is forwarded only if this node
found it valid. Votes are verified and tallied; finality advances when > 2/3 of authority stake
votes at or above a best-chain block. Equivocations seen here are reported on chain.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

import trio
import trio.lowlevel

from consensus.finality import (
    Equivocation,
    Vote,
    VoteError,
    VoteTracker,
    encode_justification,
    sign_vote,
    verify_justification,
)
from consensus.slots import SlotError, current_slot, now_ms, slot_author
from node.chain import BlockError, UnknownParent
from node.txpool import PoolError
from p2p import NetworkService, Penalty, RequestError, Topic, Verdict
from runtime.codec import CodecError, decode, encode
from runtime.crypto import ss58_encode, verify
from runtime.modules import session
from runtime.state import Overlay
from runtime.types import Block, Header

if TYPE_CHECKING:
    from node.service import ArenaNode

log = logging.getLogger("arena.consensus")

SYNC_CHUNK = 256
MAX_ORPHANS = 256
FUTURE_SLOT_TOLERANCE = 2


class ConsensusService:
    """Everything a networked node does on top of its chain and pool."""

    def __init__(self, node: ArenaNode, network: NetworkService, equivocate: bool = False) -> None:
        self.node = node
        self.chain = node.chain
        self.store = node.store
        self.network = network
        self.key = node.config.author_key
        self.slot_ms = node.spec.slot_duration_ms
        self.tracker = VoteTracker()
        self.equivocate = equivocate
        self.peer_status: dict[str, tuple[int, bytes, int]] = {}
        self.orphans: OrderedDict[bytes, Block] = OrderedDict()
        self.seen_slots: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
        self.reported: set[tuple[int, bytes, int]] = set()
        self.sync_wakeup = trio.Event()
        self.chain.author_check = self.check_author
        self.chain.reorg_listeners.append(self._on_reorg)
        network.set_validator(Topic.BLOCKS, self.validate_block)
        network.subscribe(Topic.BLOCKS, self._ignore)
        network.set_validator(Topic.VOTES, self.validate_vote)
        network.subscribe(Topic.VOTES, self._ignore)
        network.set_validator(Topic.EXTRINSICS, self.validate_extrinsics)
        network.subscribe(Topic.EXTRINSICS, self._ignore)
        network.set_status_handler(self.status)
        network.set_blocks_by_range_handler(self.blocks_by_range)

    async def _ignore(self, origin: str, payload: object) -> None:
        """Work happens in the validators (they run before forwarding)."""

    # ------------------------------------------------------------ consensus rules

    def session_of(self, state: Overlay) -> tuple[list[list], bytes, int]:
        return (session.Authorities.get(state), session.EpochRandomness.get(state), session.SetId.get(state))

    def expected_author(self, parent_state: Overlay, slot: int) -> bytes:
        """The slot author chosen by the parent state's epoch authority set and randomness."""
        authorities, randomness, _ = self.session_of(parent_state)
        try:
            return slot_author(authorities, randomness, slot)
        except SlotError as exc:
            raise BlockError(str(exc)) from exc

    def check_author(self, header: Header, parent_state: Overlay) -> None:
        """The header's author must be the slot author chosen by the parent state's epoch data."""
        expected = self.expected_author(parent_state, header.slot)
        if header.author != expected:
            raise BlockError(f"slot {header.slot} belongs to {ss58_encode(expected)}, not {ss58_encode(header.author)}")

    # ------------------------------------------------------------ gossip validators

    def validate_block(self, peer: str, data: bytes) -> Verdict:
        try:
            block = Block.decode(data)
        except (CodecError, ValueError):
            return Verdict.REJECT
        header = block.header
        if not verify(header.author, header.signing_payload(), header.seal):
            return Verdict.REJECT
        if header.slot > current_slot(self.slot_ms) + FUTURE_SLOT_TOLERANCE:
            return Verdict.REJECT
        self._watch_equivocation(header)
        if self.store.has_block(block.hash):
            return Verdict.IGNORE
        try:
            self.chain.import_block(block)
        except UnknownParent:
            self._keep_orphan(block)
            self.sync_wakeup.set()
            return Verdict.IGNORE
        except BlockError as exc:
            log.info("rejected block #%d from %s: %s", header.number, peer[:12], exc)
            return Verdict.REJECT
        self._after_import()
        self._adopt_orphans(block.hash)
        return Verdict.ACCEPT

    def validate_vote(self, peer: str, data: bytes) -> Verdict:
        try:
            vote = Vote.decode(data)
        except VoteError:
            return Verdict.REJECT
        authorities, _, set_id = self.session_of(self.chain.state())
        if vote.set_id != set_id:
            return Verdict.IGNORE
        if vote.voter not in {bytes(a) for a, _ in authorities}:
            return Verdict.REJECT
        if vote.round > current_slot(self.slot_ms) + FUTURE_SLOT_TOLERANCE or not vote.verify():
            return Verdict.REJECT
        self._track_vote(vote, set_id)
        return Verdict.ACCEPT

    def validate_extrinsics(self, peer: str, batch: list[bytes]) -> Verdict:
        bad = 0
        for encoded in batch:
            try:
                self.node.pool.submit(encoded)
            except PoolError as exc:
                if exc.kind in ("BadFormat", "BadSignature"):
                    bad += 1
        return Verdict.REJECT if batch and bad == len(batch) else Verdict.ACCEPT

    # ------------------------------------------------------------ equivocation

    def _watch_equivocation(self, header: Header) -> None:
        key = (header.author, header.slot)
        encoded = header.encode()
        earlier = self.seen_slots.get(key)
        if earlier is None:
            self.seen_slots[key] = encoded
            while len(self.seen_slots) > 4096:
                self.seen_slots.popitem(last=False)
        elif earlier != encoded:
            self._report(session.KIND_BLOCK, header.author, header.slot, earlier, encoded)

    def _report(self, kind: int, offender: bytes, round_number: int, first: bytes, second: bytes) -> None:
        if (kind, offender, round_number) in self.reported or self.key is None:
            return
        self.reported.add((kind, offender, round_number))
        log.warning("equivocation by %s (kind %d, round %d): reporting", ss58_encode(offender), kind, round_number)
        try:
            nonce = self.node.pool.next_nonce(self.key.public_key, self.node.account_nonce(self.key.public_key))
            encoded = self.node.sign_local(self.key, "session", "report_equivocation", [kind, first, second], nonce)
            self.node.submit_extrinsic(encoded)
        except PoolError as exc:
            log.info("equivocation report not submitted: %s", exc)

    # ------------------------------------------------------------ finality

    def _track_vote(self, vote: Vote, set_id: int) -> None:
        if self.tracker.set_id != set_id:
            self.tracker.reset(set_id)
        evidence = self.tracker.add(vote)
        if isinstance(evidence, Equivocation):
            self._report(session.KIND_VOTE, vote.voter, vote.round, evidence.first.encode(), evidence.second.encode())
        self.try_finalize()

    def try_finalize(self) -> None:
        authorities, _, set_id = self.session_of(self.chain.state())
        if self.tracker.set_id != set_id:
            self.tracker.reset(set_id)
            return
        stakes = {bytes(a): int(s) for a, s in authorities}
        found = self.tracker.finalizable(stakes, lambda n, h: self.store.canonical_hash(n) == h)
        if found is None:
            return
        number, votes = found
        block_hash = self.store.canonical_hash(number)
        if block_hash and self.chain.finalize(block_hash, encode_justification(votes)):
            log.info("finalized #%d 0x%s", number, block_hash.hex()[:16])
            self.node.notify_finalized(block_hash)

    async def vote_loop(self) -> None:
        """Halfway through every slot, authorities vote for their best block."""
        while True:
            slot = current_slot(self.slot_ms)
            await trio.sleep(max(0.0, ((slot + 1) * self.slot_ms + self.slot_ms // 2 - now_ms()) / 1000))
            if self.key is None:
                continue
            authorities, _, set_id = self.session_of(self.chain.state())
            if self.key.public_key not in {bytes(a) for a, _ in authorities}:
                continue
            best = self.chain.best
            vote = sign_vote(self.key, set_id, slot + 1, best.number, best.hash)
            self._track_vote(vote, set_id)
            await self._publish(Topic.VOTES, vote.encode())

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
                if self.expected_author(self.chain.state(), slot) != self.key.public_key:
                    continue
            except BlockError:
                continue
            block, _, rejected = self.chain.build_block(self.key, slot, slot * self.slot_ms, self.node.pool.ready())
            for _, exc in rejected:
                if exc.kind != "Future":
                    log.debug("dropping extrinsic: %s", exc)
            self._after_import()
            self._watch_equivocation(block.header)
            await self._publish(Topic.BLOCKS, block.encode())
            if self.equivocate:
                await self._publish_equivocation(block)

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
        self.node.revalidate_pool()
        self.try_finalize()

    async def _publish(self, topic: Topic, data: bytes) -> None:
        try:
            await self.network.publish(topic, data)
        except Exception as exc:  # noqa: BLE001 - publishing is best effort; sync repairs what gossip misses
            log.debug("publish on %s failed: %s", topic, exc)

    def _on_reorg(self, retracted: list[Block], enacted: list[Block]) -> None:
        for block in retracted:
            for encoded in block.extrinsics:
                try:
                    self.node.pool.submit(encoded)
                except PoolError:
                    pass

    # ------------------------------------------------------------ orphans and sync

    def _keep_orphan(self, block: Block) -> None:
        self.orphans[block.hash] = block
        while len(self.orphans) > MAX_ORPHANS:
            self.orphans.popitem(last=False)

    def _adopt_orphans(self, parent_hash: bytes) -> None:
        ready = [b for b in self.orphans.values() if b.header.parent_hash == parent_hash]
        for block in ready:
            self.orphans.pop(block.hash, None)
            try:
                self.chain.import_block(block)
                self._adopt_orphans(block.hash)
            except BlockError:
                pass

    def status(self) -> bytes:
        best, finalized = self.chain.best, self.chain.finalized
        return encode([self.node.spec.genesis_hash, best.number, best.hash, finalized.number, finalized.hash])

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
        """Ask peers for their status; fetch and import what they have beyond our best block."""
        while True:
            for peer in self.network.peers():
                try:
                    await self._sync_with(peer)
                except (RequestError, CodecError, ValueError) as exc:
                    log.debug("sync with %s failed: %s", peer[:12], exc)
            self.sync_wakeup = trio.Event()
            with trio.move_on_after(1.0):
                await self.sync_wakeup.wait()

    async def _sync_with(self, peer: str) -> None:
        fields = decode(await self.network.request_status(peer))
        genesis, best_number, best_hash, fin_number, _ = fields
        if genesis != self.node.spec.genesis_hash:
            self.network.penalize(peer, Penalty.PROTOCOL_VIOLATION)
            return
        self.peer_status[peer] = (best_number, best_hash, fin_number)
        while best_number > self.chain.best.number or (
            best_number == self.chain.best.number and not self.store.has_block(best_hash) and best_number > 0
        ):
            start = self.chain.best.number + 1
            items = await self.network.request_blocks(peer, start, SYNC_CHUNK)
            if not items:
                return
            first = Block.decode(decode(items[0])[0])
            if not self.store.has_block(first.header.parent_hash):
                # we are on another fork: fetch from just above our finalized block instead
                start = self.chain.finalized.number + 1
                items = await self.network.request_blocks(peer, start, SYNC_CHUNK)
            progressed = False
            for item in items:
                raw, justification = decode(item)
                block = Block.decode(raw)
                if self.store.has_block(block.hash):
                    continue
                try:
                    self.chain.import_block(block)
                    progressed = True
                except BlockError as exc:
                    log.info("sync: block #%d from %s rejected: %s", block.header.number, peer[:12], exc)
                    self.network.penalize(peer, Penalty.INVALID_BLOCK)
                    return
                if justification:
                    self._apply_justification(block, justification)
            self.node.revalidate_pool()
            self.try_finalize()
            if not progressed:
                return
            await trio.lowlevel.checkpoint()

    def _apply_justification(self, block: Block, justification: bytes) -> None:
        authorities, _, set_id = self.session_of(self.chain.state())
        stakes = {bytes(a): int(s) for a, s in authorities}

        def on_chain_or_unknown(number: int, block_hash: bytes) -> bool:
            known = self.store.canonical_hash(number)
            return known is None or known == block_hash

        try:
            verify_justification(justification, block.header.number, stakes, set_id, on_chain_or_unknown)
        except VoteError as exc:
            log.info("ignoring bad justification for #%d: %s", block.header.number, exc)
            return
        if self.chain.finalize(block.hash, justification):
            self.node.notify_finalized(block.hash)

    # ------------------------------------------------------------ run

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.network.run)
            nursery.start_soon(self.sync_loop)
            nursery.start_soon(self.author_loop)
            nursery.start_soon(self.vote_loop)
            task_status.started()

    def peer_info(self) -> list[dict]:
        out = []
        for peer in self.network.peers():
            status = self.peer_status.get(peer)
            out.append({"peerId": peer, "bestNumber": status[0] if status else None,
                        "bestHash": "0x" + status[1].hex() if status else None,
                        "finalizedNumber": status[2] if status else None})
        return out
