"""The finality gadget on a node: the GRANDPA voter (consensus/grandpa.py) over this node's chain.

- `ChainTree` answers the voter's block-tree questions from the store, and cuts votes at the
  first block that changes the authority set (the old set finalizes that block, then hands over).
- `FinalityGadget` owns the voter of the current set: it persists the voter's state before any
  vote leaves the node (no double vote after a crash), turns finalized rounds into stored
  justifications, verifies justifications from peers against the set *of the justified block*,
  and starts the next set's voter when a set change becomes final.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

from consensus.grandpa import (
    MAX_ANCESTRY,
    BlockRef,
    FinalityError,
    Justification,
    Output,
    SignedVote,
    Timing,
    Voter,
    VoterState,
    verify_justification,
    walk_to,
)
from node.chain import Chain
from runtime.codec import CodecError, decode, encode
from runtime.crypto import Keypair
from runtime.modules import session
from runtime.types import Header

log = logging.getLogger("arena.finality")

CACHE_LIMIT = 8192
META_KEY = b"grandpa"

Weights = dict[bytes, int]


def header_link(raw: bytes) -> tuple[bytes, BlockRef]:
    """(hash, parent ref) of an encoded header carried in a justification."""
    header = Header.decode(raw)
    if header.number == 0:
        raise ValueError("a justification cannot carry the genesis header")
    return header.hash, (header.number - 1, header.parent_hash)


class ChainTree:
    """The voter's view of the block tree: every block this node has stored (best chain and forks)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.store = chain.store
        self._parents: OrderedDict[bytes, BlockRef | None] = OrderedDict()
        self._set_changes: OrderedDict[bytes, tuple[int, Weights] | None] = OrderedDict()

    def _header(self, block_hash: bytes) -> BlockRef | None | bool:
        cached = self._parents.get(block_hash, False)
        if cached is not False:
            return cached
        header = self.store.get_header(block_hash)
        if header is None:
            return False    # unknown: not cached, it may arrive later
        parent = None if header.number == 0 else (header.number - 1, header.parent_hash)
        self._parents[block_hash] = parent
        if len(self._parents) > CACHE_LIMIT:
            self._parents.popitem(last=False)
        return parent

    def knows(self, block_hash: bytes) -> bool:
        return self._header(block_hash) is not False

    def parent_of(self, block_hash: bytes) -> BlockRef | None:
        found = self._header(block_hash)
        return None if found is False or found is True else found

    def set_change(self, block_hash: bytes) -> tuple[int, Weights] | None:
        """The new authority set a block enacts (its NewAuthorities event), if any."""
        if block_hash in self._set_changes:
            return self._set_changes[block_hash]
        change = None
        # decoding a full block's events (thousands) was ~2.5 % of a node's profile at 1,500 tx/s;
        # a set change is rare, and its event name is in the encoded bytes when it is there
        mentioned = self.store.events_mention(block_hash, "NewAuthorities")
        for event in self.store.events(block_hash) if mentioned else []:
            if event.module == "session" and event.name == "NewAuthorities":
                set_id, authorities = event.data
                change = (int(set_id), {bytes(a): int(s) for a, s in authorities})
        self._set_changes[block_hash] = change
        if len(self._set_changes) > CACHE_LIMIT:
            self._set_changes.popitem(last=False)
        return change

    def first_set_change(self, above: BlockRef, upto: BlockRef) -> BlockRef | None:
        """The lowest best-chain block in (above, upto] that changes the authority set."""
        for number in range(above[0] + 1, min(upto[0], above[0] + MAX_ANCESTRY) + 1):
            block_hash = self.store.canonical_hash(number)
            if block_hash is None:
                return None
            if self.set_change(block_hash) is not None:
                return (number, block_hash)
        return None

    def best_containing(self, base: BlockRef) -> BlockRef:
        """Our best block if the best chain contains `base`, cut at the first set change above
        the finalized block (the current set may not vote past it); `base` itself otherwise."""
        if self.store.canonical_hash(base[0]) != base[1]:
            return base
        best = self.chain.best
        target: BlockRef = (best.number, best.hash)
        finalized = self.chain.finalized
        limit = self.first_set_change((finalized.number, finalized.hash), target)
        if limit is not None and limit[0] < target[0]:
            target = limit
        return target if target[0] >= base[0] else base


class FinalityGadget:
    """The current authority set's voter on this node, its persistence, and justifications."""

    def __init__(self, chain: Chain, key: Keypair | None, timing: Timing | None = None) -> None:
        self.chain = chain
        self.store = chain.store
        self.tree = ChainTree(chain)
        self.key = key
        self.timing = timing or Timing()
        set_id, weights, state = self._load()
        self.voter = self._new_voter(set_id, weights, state)

    # ------------------------------------------------------------ persistence

    def _load(self) -> tuple[int, Weights, VoterState | None]:
        raw = self.store.get_meta(META_KEY)
        if raw is not None:
            set_id, authorities, state = decode(raw)
            return set_id, {bytes(a): s for a, s in authorities}, VoterState.from_list(state) if state else None
        # A fresh database: the set of the finalized (= genesis) state.
        state = self.chain.state()
        authorities = session.Authorities.get(state)
        return session.SetId.get(state), {bytes(a): int(s) for a, s in authorities}, None

    def _save(self) -> None:
        voter = self.voter
        record = [voter.set_id, sorted([a, w] for a, w in voter.weights.items()), voter.state.to_list()]
        self.store.put_meta(META_KEY, encode(record))

    def _new_voter(self, set_id: int, weights: Weights, state: VoterState | None) -> Voter:
        finalized = self.chain.finalized
        return Voter(self.tree, set_id, weights, (finalized.number, finalized.hash), self.key, self.timing, state)

    @property
    def set_id(self) -> int:
        return self.voter.set_id

    @property
    def weights(self) -> Weights:
        return self.voter.weights

    # ------------------------------------------------------------ votes and rounds

    def on_vote(self, vote: SignedVote) -> Output:
        return self.voter.on_vote(vote)

    def tick(self, now_ms: int) -> tuple[Output, list[Justification]]:
        """One step of the voter: finalizes what its rounds prove, persists before votes go out."""
        out = self.voter.tick(now_ms)
        made: list[Justification] = []
        for block, round_number, precommits in out.finalized:
            justification = self._justification(block, round_number, precommits)
            if self._finalize(block, justification.encode()):
                made.append(justification)
        if out.state_changed:
            self._save()
        return out, made

    def _justification(self, block: BlockRef, round_number: int, precommits: list[SignedVote]) -> Justification:
        ancestry: dict[bytes, bytes] = {}
        for vote in precommits:
            path = walk_to(self.tree.parent_of, vote.target, block) or []
            for block_hash in path[:-1]:
                if block_hash not in ancestry:
                    header = self.store.get_header(block_hash)
                    if header is not None:
                        ancestry[block_hash] = header.encode()
        return Justification(self.voter.set_id, round_number, block, precommits, list(ancestry.values()))

    # ------------------------------------------------------------ finalizing

    def _finalize(self, block: BlockRef, justification: bytes) -> bool:
        old = self.chain.finalized
        if not self.chain.finalize(block[1], justification):
            return False
        log.info("finalized #%d 0x%s", block[0], block[1].hex()[:16])
        self.voter.on_finalized(block)
        self._hand_over((old.number, old.hash), block)
        return True

    def _hand_over(self, old: BlockRef, new: BlockRef) -> None:
        """A set change that became final starts the new set's voter from the finalized block."""
        change = None
        for number in range(old[0] + 1, new[0] + 1):
            block_hash = self.store.canonical_hash(number)
            found = self.tree.set_change(block_hash) if block_hash is not None else None
            if found is not None:
                change = found
        if change is not None and change[0] != self.voter.set_id:
            set_id, weights = change
            log.info("authority set %d takes over finality at #%d", set_id, new[0])
            self.voter = self._new_voter(set_id, weights, None)
            self._save()

    def import_justification(self, data: bytes, block_hash: bytes | None = None) -> bool:
        """Verify a justification from a peer and finalize its block; True if finality advanced.

        Raises FinalityError when it does not verify against the current set; a justification
        of another set or for an unknown block is ignored (False) — it may be valid later."""
        justification = Justification.decode(data)
        target = justification.target
        if block_hash is not None and target[1] != block_hash:
            raise FinalityError("justification is for another block")
        finalized = self.chain.finalized
        if target[0] <= finalized.number or not self.tree.knows(target[1]):
            return False
        if justification.set_id != self.voter.set_id:
            return False
        if walk_to(self.tree.parent_of, target, (finalized.number, finalized.hash)) is None:
            raise FinalityError(f"justified block #{target[0]} does not descend from our finalized block")
        # The current set may finalize at most up to the first set change above our finalized block.
        change = self._first_change_on_branch((finalized.number, finalized.hash), target)
        if change is not None and change[0] < target[0]:
            return False
        verify_justification(justification, target, self.voter.set_id, self.voter.weights,
                             self.tree.parent_of, header_link)
        return self._finalize(target, data)

    def _first_change_on_branch(self, floor: BlockRef, target: BlockRef) -> BlockRef | None:
        path = walk_to(self.tree.parent_of, target, floor) or []
        for offset, block_hash in reversed(list(enumerate(path[:-1]))):
            if self.tree.set_change(block_hash) is not None:
                return (target[0] - offset, block_hash)
        return None


def decode_finality_message(data: bytes) -> SignedVote | Justification:
    """The finality topic carries votes (7 fields) and justifications of finalized rounds (6 fields)."""
    try:
        fields = decode(data)
    except CodecError as exc:
        raise FinalityError(f"finality message does not decode: {exc}") from exc
    if isinstance(fields, list) and len(fields) == 7:
        return SignedVote.from_list(fields)
    if isinstance(fields, list) and len(fields) == 6:
        return Justification.decode(data)
    raise FinalityError("a finality message is a vote or a justification")
