"""The finality gadget: GRANDPA-style rounds of prevotes and precommits (docs/consensus.md).

An authority set votes in numbered rounds. In round r every voter
1. prevotes for the head of its best chain that contains E(r-1), the estimate of round r-1;
2. precommits for g(prevotes), the highest block that > 2/3 of the weight prevoted for (or for a
   descendant of), once g(prevotes) descends from E(r-1);
3. moves on to round r+1 once round r is *completable*: > 2/3 have precommitted and either
   E(r) < g(prevotes) or no child of g(prevotes) can still reach > 2/3 of the precommits.
A block is final when > 2/3 of the weight precommitted for it or a descendant *in one round*;
those precommits are its justification. E(r) is the highest ancestor of g(prevotes) that may
still gather > 2/3 of the precommits, counting unseen voters and up to f further equivocations
as possibly for it. Two prevotes or two precommits by one voter in one round for different
blocks are an equivocation: the evidence is reported on chain and slashed.

This module is pure: no clock, no I/O, no network. The node and the model-based checker in
tests/ drive the same `Voter` with votes, block-tree queries and the time.

One file because the wire types, the round rules, the voter loop and the justification check
(about 600 lines) are one protocol, read against one description, and the safety argument spans
all four.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from runtime.codec import CodecError, decode, encode
from runtime.crypto import Keypair, verify
from runtime.modules.session import grandpa_vote_message

PREVOTE = 0
PRECOMMIT = 1
STAGES = (PREVOTE, PRECOMMIT)
MAX_ANCESTRY = 512        # blocks walked from a vote target down to a round base
MAX_FUTURE_ROUNDS = 16    # rounds ahead of ours whose votes we keep (catch-up)
MAX_PENDING_PER_ROUND = 256
MAX_JUSTIFICATION_HEADERS = 1024

BlockRef = tuple[int, bytes]     # (number, hash)


class FinalityError(ValueError):
    """A vote or justification that does not verify, with the reason."""


def threshold_of(total: int) -> int:
    """The smallest weight that is more than 2/3 of `total`."""
    return 2 * total // 3 + 1


@dataclass(frozen=True)
class SignedVote:
    set_id: int
    round: int
    stage: int
    number: int
    block_hash: bytes
    voter: bytes
    signature: bytes

    @property
    def target(self) -> BlockRef:
        return (self.number, self.block_hash)

    def to_list(self) -> list:
        return [self.set_id, self.round, self.stage, self.number, self.block_hash, self.voter, self.signature]

    def encode(self) -> bytes:
        return encode(self.to_list())

    @classmethod
    def from_list(cls, fields: object) -> SignedVote:
        if not isinstance(fields, list) or len(fields) != 7:
            raise FinalityError("a vote is [set_id, round, stage, number, block_hash, voter, signature]")
        set_id, rnd, stage, number, block_hash, voter, signature = fields
        if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**64 for x in (set_id, rnd, number)):
            raise FinalityError("vote set_id, round and number must be integers in [0, 2^64)")
        if stage not in STAGES or isinstance(stage, bool):
            raise FinalityError("vote stage must be 0 (prevote) or 1 (precommit)")
        if not (isinstance(block_hash, bytes) and len(block_hash) == 32 and isinstance(voter, bytes)
                and len(voter) == 32 and isinstance(signature, bytes) and len(signature) == 64):
            raise FinalityError("vote hash and voter must be 32 bytes, signature 64 bytes")
        return cls(set_id, rnd, stage, number, block_hash, voter, signature)

    @classmethod
    def decode(cls, data: bytes) -> SignedVote:
        try:
            fields = decode(data, max_size=1024)
        except CodecError as exc:
            raise FinalityError(f"vote does not decode: {exc}") from exc
        return cls.from_list(fields)

    def verify(self) -> bool:
        message = grandpa_vote_message(self.set_id, self.round, self.stage, self.number, self.block_hash)
        return verify(self.voter, message, self.signature)


def sign_vote(key: Keypair, set_id: int, round_number: int, stage: int, target: BlockRef) -> SignedVote:
    number, block_hash = target
    signature = key.sign(grandpa_vote_message(set_id, round_number, stage, number, block_hash))
    return SignedVote(set_id, round_number, stage, number, block_hash, key.public_key, signature)


@dataclass(frozen=True)
class Equivocation:
    """Two votes by one voter in one round and stage for different blocks."""
    first: SignedVote
    second: SignedVote


class BlockTree(Protocol):
    """What the voter needs to know about blocks."""

    def knows(self, block_hash: bytes) -> bool:
        """Whether the block's header is known (imported or stored)."""

    def parent_of(self, block_hash: bytes) -> BlockRef | None:
        """(number, hash) of the parent of a known block; None if unknown (or genesis)."""

    def best_containing(self, base: BlockRef) -> BlockRef:
        """The head of the best chain that contains `base`, cut at the set's voting limit."""


def walk_to(parent_of: Callable[[bytes], BlockRef | None], block: BlockRef, floor: BlockRef) -> list[bytes] | None:
    """Hashes from `block` down to `floor` (both included) if `block` descends from `floor`, else None."""
    number, block_hash = block
    floor_number, floor_hash = floor
    if number < floor_number or number - floor_number > MAX_ANCESTRY:
        return None
    path = [block_hash]
    while number > floor_number:
        parent = parent_of(block_hash)
        if parent is None:
            return None
        number, block_hash = parent
        path.append(block_hash)
    return path if block_hash == floor_hash else None


def descends(tree: BlockTree, ancestor: BlockRef, block: BlockRef) -> bool:
    return walk_to(tree.parent_of, block, ancestor) is not None


@dataclass
class _Tally:
    """Cumulative weight per block (at or above the round base) and the tree those blocks form."""
    weight: dict[bytes, int] = field(default_factory=dict)
    number: dict[bytes, int] = field(default_factory=dict)
    children: dict[bytes, set[bytes]] = field(default_factory=dict)


class Round:
    """The votes of one round, imported once their blocks are known, and the rules over them."""

    def __init__(self, number: int, base: BlockRef, weights: dict[bytes, int]) -> None:
        self.number = number
        self.base = base
        self.weights = weights
        self.total = sum(weights.values())
        self.threshold = threshold_of(self.total)
        # per stage: voter -> distinct votes seen (at most two: the second proves an equivocation)
        self.seen: tuple[dict[bytes, list[SignedVote]], dict[bytes, list[SignedVote]]] = ({}, {})
        # per stage: voter -> votes whose blocks are known (imported); a vote for an unknown block
        # counts as not yet seen, so it can still be for anything.
        self.imported: tuple[dict[bytes, list[SignedVote]], dict[bytes, list[SignedVote]]] = ({}, {})
        self.pending: list[SignedVote] = []
        self._version = 0   # bumped on every change of the votes; keys the tally cache
        self._tallies: dict[tuple[int, bool], tuple[int, _Tally]] = {}

    # ------------------------------------------------------------ adding votes

    def holds(self, vote: SignedVote) -> bool:
        """Whether this round has recorded this voter's vote for this target in this stage (a replay)."""
        return any(v.target == vote.target for v in self.seen[vote.stage].get(vote.voter, ()))

    def add(self, vote: SignedVote, tree: BlockTree) -> Equivocation | None:
        """Record a verified vote of this round; returns evidence when it equivocates."""
        if self.holds(vote):
            return None
        seen = self.seen[vote.stage].setdefault(vote.voter, [])
        if len(seen) >= 2:
            return None
        seen.append(vote)
        self._version += 1
        self._import(vote, tree)
        return Equivocation(seen[0], vote) if len(seen) == 2 else None

    def _import(self, vote: SignedVote, tree: BlockTree) -> None:
        if not tree.knows(vote.block_hash):
            if len(self.pending) < MAX_PENDING_PER_ROUND:
                self.pending.append(vote)
            return
        self.imported[vote.stage].setdefault(vote.voter, []).append(vote)
        self._version += 1

    def retry_pending(self, tree: BlockTree) -> bool:
        """Import votes whose blocks have arrived; True if any was."""
        waiting, self.pending = self.pending, []
        for vote in waiting:
            self._import(vote, tree)
        return len(self.pending) < len(waiting)

    def has_voted(self, voter: bytes, stage: int) -> bool:
        return voter in self.seen[stage]

    def vote_of(self, voter: bytes, stage: int) -> SignedVote | None:
        votes = self.seen[stage].get(voter)
        return votes[0] if votes else None

    # ------------------------------------------------------------ weights

    def equivocators(self, stage: int) -> set[bytes]:
        return {v for v, votes in self.seen[stage].items() if len(votes) >= 2}

    def _eq_weight(self, stage: int) -> int:
        return sum(self.weights.get(v, 0) for v in self.equivocators(stage))

    def voted_weight(self, stage: int) -> int:
        """Weight of voters with an imported vote or a proven equivocation in this stage."""
        voters = set(self.imported[stage]) | self.equivocators(stage)
        return sum(self.weights.get(v, 0) for v in voters)

    def _tally(self, stage: int, tree: BlockTree, skip_equivocators: bool) -> _Tally:
        """Weight on each block at or above the base: voters whose vote is for it or a descendant.

        Cached until the votes change: the ancestry of a known block never changes."""
        cached = self._tallies.get((stage, skip_equivocators))
        if cached is not None and cached[0] == self._version:
            return cached[1]
        tally = self._compute_tally(stage, tree, skip_equivocators)
        self._tallies[(stage, skip_equivocators)] = (self._version, tally)
        return tally

    def _compute_tally(self, stage: int, tree: BlockTree, skip_equivocators: bool) -> _Tally:
        tally = _Tally()
        skip = self.equivocators(stage) if skip_equivocators else set()
        for voter, votes in self.imported[stage].items():
            if voter in skip:
                continue
            supported: set[bytes] = set()
            for vote in votes:
                path = walk_to(tree.parent_of, vote.target, self.base)
                if path is None:
                    continue
                for offset, block_hash in enumerate(path):
                    if block_hash in supported:
                        break
                    supported.add(block_hash)
                    tally.number[block_hash] = vote.number - offset
                    if offset > 0:
                        tally.children.setdefault(block_hash, set()).add(path[offset - 1])
            for block_hash in supported:
                tally.weight[block_hash] = tally.weight.get(block_hash, 0) + self.weights.get(voter, 0)
        return tally

    def _ghost_of(self, tally: _Tally, extra: int) -> BlockRef | None:
        """Descend from the base while one child holds > 2/3 (with `extra` counted everywhere)."""
        base_hash = self.base[1]
        if tally.weight.get(base_hash, 0) + extra < self.threshold:
            return None
        node = base_hash
        while True:
            heavy = [c for c in tally.children.get(node, ()) if tally.weight[c] + extra >= self.threshold]
            if not heavy:
                return (tally.number.get(node, self.base[0]), node)
            node = max(heavy, key=lambda c: (tally.weight[c], c))

    def ghost(self, tree: BlockTree) -> BlockRef | None:
        """g(prevotes): the highest block with > 2/3 of prevotes on it or its descendants."""
        return self._ghost_of(self._tally(PREVOTE, tree, True), self._eq_weight(PREVOTE))

    def finalized(self, tree: BlockTree) -> BlockRef | None:
        """The highest block that > 2/3 of the weight precommitted for (or for a descendant of)."""
        return self._ghost_of(self._tally(PRECOMMIT, tree, False), 0)

    def _possible(self, tree: BlockTree) -> Callable[[bytes], bool]:
        """Whether precommits may still reach > 2/3 on a block: unseen voters and up to f more
        equivocations (f = total - threshold) might yet be for it."""
        tally = self._tally(PRECOMMIT, tree, True)
        eq = self._eq_weight(PRECOMMIT)
        unseen = self.total - self.voted_weight(PRECOMMIT)
        allowance = max(0, (self.total - self.threshold) - eq)
        slack = eq + unseen + allowance
        return lambda block_hash: tally.weight.get(block_hash, 0) + slack >= self.threshold

    def estimate(self, tree: BlockTree) -> BlockRef | None:
        """E(r): the highest ancestor of g(prevotes) that may still be finalized in this round."""
        g = self.ghost(tree)
        if g is None:
            return None
        possible = self._possible(tree)
        path = walk_to(tree.parent_of, g, self.base) or [self.base[1]]
        for offset, block_hash in enumerate(path):
            if possible(block_hash):
                return (g[0] - offset, block_hash)
        return None

    def completable(self, tree: BlockTree) -> bool:
        """> 2/3 precommitted and the estimate can no longer move above g(prevotes)'s children."""
        g = self.ghost(tree)
        if g is None or self.voted_weight(PRECOMMIT) < self.threshold:
            return False
        e = self.estimate(tree)
        if e is None:
            return False
        if e != g:
            return True
        possible = self._possible(tree)
        if possible(b"\xff" * 32):   # a child nobody has precommitted for yet
            return False
        tally = self._tally(PRECOMMIT, tree, True)
        return not any(possible(c) for c in tally.children.get(g[1], ()))

    def justification(self, target: BlockRef, tree: BlockTree) -> list[SignedVote]:
        """One precommit per voter for `target` or a descendant."""
        out = []
        for votes in self.imported[PRECOMMIT].values():
            for vote in votes:
                if walk_to(tree.parent_of, vote.target, target) is not None:
                    out.append(vote)
                    break
        return out


# ------------------------------------------------------------------ the voter


@dataclass(frozen=True)
class Timing:
    round_min_ms: int = 500        # no round is shorter (bounds vote traffic when all is quick)
    precommit_wait_ms: int = 250   # precommit early only once every voter has prevoted
    rebroadcast_ms: int = 2000     # resend our votes of the last two rounds (gossip may have lost them)


@dataclass
class VoterState:
    """What must survive a restart so that an honest voter never votes twice in a round."""
    set_id: int
    round: int
    last_estimate: BlockRef
    cast: dict[int, SignedVote]     # stage -> our vote in `round` (resent after a restart)
    previous: list[SignedVote] = field(default_factory=list)   # our votes in `round - 1` (likewise)

    def to_list(self) -> list:
        return [self.set_id, self.round, list(self.last_estimate), [v.to_list() for _, v in sorted(self.cast.items())],
                [v.to_list() for v in self.previous]]

    @classmethod
    def from_list(cls, value: list) -> VoterState:
        set_id, rnd, estimate, cast, previous = value
        votes = [SignedVote.from_list(v) for v in cast]
        return cls(set_id, rnd, (estimate[0], estimate[1]), {v.stage: v for v in votes},
                   [SignedVote.from_list(v) for v in previous])


@dataclass
class Output:
    """What one step of the voter asks its host to do."""
    votes: list[SignedVote] = field(default_factory=list)            # sign-and-broadcast (already signed)
    finalized: list[tuple[BlockRef, int, list[SignedVote]]] = field(default_factory=list)  # (block, round, precommits)
    equivocations: list[Equivocation] = field(default_factory=list)
    state_changed: bool = False                                         # persist `Voter.state` before sending


class Voter:
    """One node's participation in the rounds of one authority set (a voter, or an observer without a key)."""

    def __init__(
        self, tree: BlockTree, set_id: int, weights: dict[bytes, int], base: BlockRef,
        key: Keypair | None = None, timing: Timing | None = None, state: VoterState | None = None,
    ) -> None:
        self.tree = tree
        self.set_id = set_id
        self.weights = dict(weights)
        self.key = key if key is not None and key.public_key in weights else None
        self.timing = timing or Timing()
        self.finalized_ref = base
        self.rounds: dict[int, Round] = {}
        self.cast: dict[int, SignedVote] = {}
        if state is not None and state.set_id == set_id:
            self.current, self.last_estimate = state.round, state.last_estimate
            for vote in state.cast.values():
                self.cast[vote.stage] = vote
                self._round(vote.round).add(vote, tree)
            for vote in state.previous:
                self._round(vote.round).add(vote, tree)
        else:
            self.current, self.last_estimate = 1, base
        self.started_ms: int | None = None
        self.rebroadcast_at_ms: int | None = None

    @property
    def state(self) -> VoterState:
        previous = self.rounds.get(self.current - 1)
        own = [previous.vote_of(self.key.public_key, stage) for stage in STAGES] if previous and self.key else []
        return VoterState(self.set_id, self.current, self.last_estimate, dict(self.cast), [v for v in own if v])

    def _round(self, number: int) -> Round:
        found = self.rounds.get(number)
        if found is None:
            found = self.rounds[number] = Round(number, self.finalized_ref, self.weights)
        return found

    # ------------------------------------------------------------ inputs

    def accepts(self, vote: SignedVote) -> bool:
        """Whether a vote is of this set, by one of its voters, for a round we still track."""
        return (vote.set_id == self.set_id and vote.voter in self.weights
                and self.current - 2 <= vote.round)

    def is_new(self, vote: SignedVote) -> bool:
        """Whether a vote is one we have not recorded yet (replays are not verified or forwarded again)."""
        rnd = self.rounds.get(vote.round)
        return rnd is None or not rnd.holds(vote)

    def on_vote(self, vote: SignedVote) -> Output:
        """Record a vote whose signature the caller has verified."""
        out = Output()
        if not self.accepts(vote):
            return out
        if vote.round > self.current and vote.round not in self.rounds:
            self._make_room_for_future_round()
        evidence = self._round(vote.round).add(vote, self.tree)
        if evidence is not None:
            out.equivocations.append(evidence)
        return out

    def _make_room_for_future_round(self) -> None:
        future = [r for r in self.rounds.values() if r.number > self.current]
        if len(future) >= MAX_FUTURE_ROUNDS:
            lightest = min(future, key=lambda r: (r.voted_weight(PREVOTE) + r.voted_weight(PRECOMMIT), -r.number))
            del self.rounds[lightest.number]

    def on_finalized(self, block: BlockRef) -> None:
        """The chain finalized `block` (from a justification or our own rounds): new rounds start there."""
        if block[0] > self.finalized_ref[0]:
            self.finalized_ref = block

    # ------------------------------------------------------------ the round loop

    def tick(self, now_ms: int) -> Output:
        out = Output()
        for rnd in self.rounds.values():
            rnd.retry_pending(self.tree)
        if self.started_ms is None:
            self.started_ms = now_ms
        self._catch_up(now_ms, out)
        self._follow_previous_estimate()
        current = self._round(self.current)
        self._vote(current, now_ms, out)
        self._finalize(out)
        if now_ms - self.started_ms >= self.timing.round_min_ms and current.completable(self.tree):
            estimate = current.estimate(self.tree)
            assert estimate is not None   # completable implies an estimate
            self._enter(self.current + 1, estimate, now_ms, out)
            self._vote(self._round(self.current), now_ms, out)
        self._rebroadcast(now_ms, out)
        return out

    def _rebroadcast(self, now_ms: int, out: Output) -> None:
        """When no vote went out for a while, resend ours of the current round and every vote we
        hold of the previous one: a voter left behind (restarted, partitioned, lost messages)
        sees that round completable and catches up (GRANDPA's catch-up, by gossip)."""
        if out.votes:
            self.rebroadcast_at_ms = now_ms + self.timing.rebroadcast_ms
            return
        if self.rebroadcast_at_ms is not None and now_ms < self.rebroadcast_at_ms:
            return
        self.rebroadcast_at_ms = now_ms + self.timing.rebroadcast_ms
        previous = self.rounds.get(self.current - 1)
        if previous is not None and previous.completable(self.tree):
            for stage in STAGES:
                out.votes.extend(votes[0] for votes in previous.seen[stage].values())
        for rnd in (previous, self.rounds.get(self.current)):
            if rnd is None or self.key is None:
                continue
            for stage in STAGES:
                vote = rnd.vote_of(self.key.public_key, stage)
                if vote is not None and vote not in out.votes:
                    out.votes.append(vote)

    def _follow_previous_estimate(self) -> None:
        """E(r-1) is our *current* view of the previous round: later precommits can lower it,
        which is what lets voters that saw different estimates agree again (any completable view
        of a round bounds everything finalized in it, docs/consensus.md)."""
        previous = self.rounds.get(self.current - 1)
        if previous is None or not previous.completable(self.tree):
            return
        estimate = previous.estimate(self.tree)
        if estimate is not None and estimate != self.last_estimate:
            self.last_estimate = estimate

    def _vote(self, rnd: Round, now_ms: int, out: Output) -> None:
        if self.key is None:
            return
        if PREVOTE not in self.cast:
            target = self.tree.best_containing(self.last_estimate)
            self._cast(rnd, PREVOTE, target, out)
        if PRECOMMIT not in self.cast:
            everyone = rnd.voted_weight(PREVOTE) == rnd.total
            started = now_ms if self.started_ms is None else self.started_ms
            if not everyone and now_ms - started < self.timing.precommit_wait_ms:
                return
            g = rnd.ghost(self.tree)
            if g is not None and descends(self.tree, self.last_estimate, g):
                self._cast(rnd, PRECOMMIT, g, out)

    def _cast(self, rnd: Round, stage: int, target: BlockRef, out: Output) -> None:
        assert self.key is not None
        vote = sign_vote(self.key, self.set_id, rnd.number, stage, target)
        self.cast[stage] = vote
        rnd.add(vote, self.tree)
        out.votes.append(vote)
        out.state_changed = True

    def _enter(self, number: int, estimate: BlockRef, now_ms: int, out: Output) -> None:
        self.current = number
        self.last_estimate = estimate
        self.cast = {}
        self.started_ms = now_ms
        for old in [n for n in self.rounds if n < number - 2]:
            del self.rounds[old]
        out.state_changed = True

    def _catch_up(self, now_ms: int, out: Output) -> None:
        """Jump to the round after the highest round ahead of ours that we see as completable."""
        for number in sorted((n for n in self.rounds if n > self.current), reverse=True):
            rnd = self.rounds[number]
            if rnd.completable(self.tree):
                estimate = rnd.estimate(self.tree)
                assert estimate is not None
                self._enter(number + 1, estimate, now_ms, out)
                return

    def _finalize(self, out: Output) -> None:
        for number in sorted(self.rounds):
            rnd = self.rounds[number]
            block = rnd.finalized(self.tree)
            if block is not None and block[0] > self.finalized_ref[0]:
                out.finalized.append((block, number, rnd.justification(block, self.tree)))
                self.finalized_ref = block


# ------------------------------------------------------------------ justifications


@dataclass(frozen=True)
class Justification:
    """> 2/3 of a set's precommits of one round for a block or its descendants, with the headers
    that link each precommitted block down to the justified one."""
    set_id: int
    round: int
    target: BlockRef
    precommits: list[SignedVote]
    ancestry: list[bytes]            # encoded headers

    def encode(self) -> bytes:
        return encode([self.set_id, self.round, self.target[0], self.target[1],
                       [v.to_list() for v in self.precommits], self.ancestry])

    @classmethod
    def decode(cls, data: bytes) -> Justification:
        try:
            fields = decode(data)
        except CodecError as exc:
            raise FinalityError(f"justification does not decode: {exc}") from exc
        if not isinstance(fields, list) or len(fields) != 6:
            raise FinalityError("a justification is [set_id, round, number, hash, precommits, ancestry]")
        set_id, rnd, number, block_hash, precommits, ancestry = fields
        if not (isinstance(set_id, int) and isinstance(rnd, int) and isinstance(number, int)
                and isinstance(block_hash, bytes) and len(block_hash) == 32):
            raise FinalityError("justification set_id, round, number or hash is malformed")
        if not (isinstance(precommits, list) and isinstance(ancestry, list)
                and len(ancestry) <= MAX_JUSTIFICATION_HEADERS and all(isinstance(h, bytes) for h in ancestry)):
            raise FinalityError("justification precommits or ancestry are malformed")
        return cls(set_id, rnd, (number, block_hash), [SignedVote.from_list(v) for v in precommits], ancestry)


def verify_justification(
    justification: Justification, target: BlockRef, set_id: int, weights: dict[bytes, int],
    parent_of: Callable[[bytes], BlockRef | None], header_link: Callable[[bytes], tuple[bytes, BlockRef]],
) -> None:
    """Raise FinalityError unless `justification` proves `target` final for the set (`set_id`, `weights`).

    Every precommit must be of one round of that set, signed by a distinct voter, and for the
    target or a block proven to descend from it by known blocks (`parent_of`) or by the headers
    carried in the justification (`header_link` turns one into (its hash, its parent ref)).
    """
    if justification.set_id != set_id:
        raise FinalityError(f"justification is by authority set {justification.set_id}, expected {set_id}")
    if justification.target != target:
        raise FinalityError("justification is for another block")
    carried: dict[bytes, BlockRef] = {}
    for raw in justification.ancestry:
        try:
            block_hash, parent = header_link(raw)
        except (CodecError, ValueError) as exc:
            raise FinalityError(f"justification header does not decode: {exc}") from exc
        carried[block_hash] = parent

    def linked_parent(block_hash: bytes) -> BlockRef | None:
        return carried.get(block_hash) or parent_of(block_hash)

    seen: set[bytes] = set()
    weight = 0
    for vote in justification.precommits:
        if vote.stage != PRECOMMIT or vote.set_id != set_id or vote.round != justification.round:
            raise FinalityError("justification holds a vote that is not a precommit of its round and set")
        if vote.voter in seen or vote.voter not in weights:
            raise FinalityError("justification holds a duplicate vote or a vote by a non-voter")
        if walk_to(linked_parent, vote.target, target) is None:
            raise FinalityError("justification precommit is not for the block or a proven descendant")
        if not vote.verify():
            raise FinalityError("justification precommit signature does not verify")
        seen.add(vote.voter)
        weight += weights[vote.voter]
    if weight < threshold_of(sum(weights.values())):
        raise FinalityError("justification precommits hold no more than 2/3 of the set's weight")
