"""A model-based safety checker for the finality gadget.

N simulated authorities with unequal stakes run the real `consensus.grandpa.Voter` in-process
over an adversarial network: every message (block, vote, justification) is delayed, reordered,
duplicated or dropped by a seeded scheduler, links are cut by partitions, and up to f byzantine
voters (< 1/3 of the stake) equivocate, withhold their votes or vote for conflicting forks.
Honest nodes author on their best chain (the longest chain containing their finalized block);
byzantine authors fork deliberately. After the adversarial phase comes a synchronous phase
(every message delivered within 100 ms, blocks re-synced). After each schedule:
- safety: no two honest nodes ever finalized conflicting blocks;
- liveness: every honest node finalized a block above everything finalized before the
  synchronous phase began.
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from consensus.grandpa import (
    PRECOMMIT,
    PREVOTE,
    BlockRef,
    SignedVote,
    Timing,
    Voter,
    sign_vote,
    threshold_of,
)
from runtime.crypto import Keypair, blake2b_256

GENESIS: BlockRef = (0, bytes(32))
SLOT_MS = 1000
TICK_MS = 200


class World:
    """Every block ever authored: hash -> (number, parent hash)."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, tuple[int, bytes]] = {GENESIS[1]: (0, b"")}

    def new_block(self, parent: BlockRef, author: int, salt: int) -> BlockRef:
        number = parent[0] + 1
        block_hash = blake2b_256(parent[1] + number.to_bytes(8, "big") + bytes([author]) + salt.to_bytes(8, "big"))
        self.blocks[block_hash] = (number, parent[1])
        return (number, block_hash)

    def ancestor_at(self, block: BlockRef, number: int) -> bytes:
        n, h = block
        while n > number:
            h = self.blocks[h][1]
            n -= 1
        return h

    def comparable(self, a: BlockRef, b: BlockRef) -> bool:
        low, high = sorted((a, b))
        return self.ancestor_at(high, low[0]) == low[1]


class SimTree:
    """One node's view of the world: the blocks it has received (parents first)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.known: dict[bytes, int] = {GENESIS[1]: 0}
        self.orphans: dict[bytes, BlockRef] = {}
        self.best: BlockRef = GENESIS
        self.finalized: BlockRef = GENESIS

    def knows(self, block_hash: bytes) -> bool:
        return block_hash in self.known

    def parent_of(self, block_hash: bytes) -> BlockRef | None:
        if block_hash not in self.known or block_hash == GENESIS[1]:
            return None
        number, parent = self.world.blocks[block_hash]
        return (number - 1, parent)

    def _descends(self, ancestor: BlockRef, block: BlockRef) -> bool:
        return block[0] >= ancestor[0] and self.world.ancestor_at(block, ancestor[0]) == ancestor[1]

    def best_containing(self, base: BlockRef) -> BlockRef:
        if self._descends(base, self.best):
            return self.best
        tips = [(n, h) for h, n in self.known.items() if n >= base[0] and self._descends(base, (n, h))]
        return max(tips, key=lambda t: t[0]) if tips else base

    def receive(self, block: BlockRef) -> bool:
        """Add a block (or keep it until its parent arrives); True if anything new became known."""
        if block[1] in self.known:
            return False
        parent = self.world.blocks[block[1]][1]
        if parent not in self.known:
            self.orphans[block[1]] = block
            return False
        self.known[block[1]] = block[0]
        if block[0] > self.best[0] and self._descends(self.finalized, block):
            self.best = block
        for orphan in [o for o in self.orphans.values() if self.world.blocks[o[1]][1] == block[1]]:
            del self.orphans[orphan[1]]
            self.receive(orphan)
        return True

    def finalize(self, block: BlockRef) -> None:
        if block[0] <= self.finalized[0]:
            return
        self.finalized = block
        if not self._descends(block, self.best):
            self.best = self.best_containing(block)


@dataclass
class Node:
    index: int
    key: Keypair
    byzantine: str | None           # None (honest), "equivocate", "withhold", "conflict", "split"
    tree: SimTree
    voter: Voter
    finalized_log: list[BlockRef] = field(default_factory=list)
    justification: tuple | None = None     # the latest (block, round, precommits) this node finalized by


@dataclass
class Schedule:
    seed: int
    n: int
    weights: list[int]
    byzantine: dict[int, str]
    drop: float
    dup: float
    max_delay_ms: int
    partitions: list[tuple[int, int, frozenset[int]]]   # (start, end, one side of the cut)
    crashes: list[tuple[int, int, int]]                  # (start, end, node): down, then restarted
    async_ms: int
    sync_ms: int


def random_schedule(seed: int, async_ms: int = 8000, sync_ms: int = 8000) -> Schedule:
    rng = random.Random(seed)
    n = rng.randint(4, 10)
    weights = [rng.randint(1, 10) for _ in range(n)]
    total = sum(weights)
    byzantine: dict[int, str] = {}
    for i in rng.sample(range(n), n):
        if rng.random() < 0.6 and 3 * (sum(weights[j] for j in byzantine) + weights[i]) < total:
            byzantine[i] = rng.choice(["equivocate", "withhold", "conflict", "split"])
    partitions = []
    for _ in range(rng.randint(0, 3)):
        start = rng.randrange(0, async_ms)
        side = frozenset(rng.sample(range(n), rng.randint(1, n - 1)))
        partitions.append((start, min(async_ms, start + rng.randint(500, 5000)), side))
    crashes = []
    for _ in range(rng.randint(0, 2)):
        start = rng.randrange(0, async_ms)
        crashes.append((start, min(async_ms, start + rng.randint(500, 4000)), rng.randrange(n)))
    return Schedule(seed, n, weights, byzantine, drop=rng.choice([0.0, 0.05, 0.2, 0.4]),
                    dup=rng.choice([0.0, 0.1]), max_delay_ms=rng.choice([50, 300, 1000, 2500]),
                    partitions=partitions, crashes=crashes, async_ms=async_ms, sync_ms=sync_ms)


class Simulation:
    def __init__(self, schedule: Schedule) -> None:
        self.s = schedule
        self.rng = random.Random(schedule.seed * 7919 + 1)
        self.world = World()
        keys = [Keypair(blake2b_256(b"sim" + schedule.seed.to_bytes(8, "big") + bytes([i]))) for i in range(schedule.n)]
        self.weights = {k.public_key: w for k, w in zip(keys, schedule.weights, strict=True)}
        timing = Timing(round_min_ms=500, precommit_wait_ms=250)
        self.nodes = []
        for i, key in enumerate(keys):
            tree = SimTree(self.world)
            voter = Voter(tree, 0, self.weights, GENESIS, key=key, timing=timing)
            self.nodes.append(Node(i, key, schedule.byzantine.get(i), tree, voter))
        self.queue: list[tuple[int, int, int, str, object]] = []
        self.seq = 0
        self.now = 0
        self.salt = 0
        self.restarted: list[tuple[int, int, int]] = []

    # ------------------------------------------------------------ network

    @property
    def synchronous(self) -> bool:
        return self.now >= self.s.async_ms

    def _cut(self, a: int, b: int) -> bool:
        return any(start <= self.now < end and ((a in side) != (b in side)) for start, end, side in self.s.partitions)

    def down(self, index: int) -> bool:
        return any(start <= self.now < end and node == index for start, end, node in self.s.crashes)

    def restart(self, node: Node) -> None:
        """A crashed node comes back with its chain and its persisted voter state, nothing else."""
        old = node.voter
        node.voter = Voter(node.tree, old.set_id, old.weights, node.tree.finalized, key=node.key,
                           timing=old.timing, state=old.state)

    def send(self, src: int, dst: int, kind: str, payload: object) -> None:
        if src == dst or self.down(src):
            return
        if self.synchronous:
            delays = [self.rng.randint(1, 100)]
        else:
            if self._cut(src, dst) or self.rng.random() < self.s.drop:
                return
            delays = [self.rng.randint(1, self.s.max_delay_ms)]
            if self.rng.random() < self.s.dup:
                delays.append(self.rng.randint(1, self.s.max_delay_ms))
        for delay in delays:
            self.seq += 1
            heapq.heappush(self.queue, (self.now + delay, self.seq, dst, kind, payload))

    def broadcast(self, src: int, kind: str, payload: object) -> None:
        for dst in range(self.s.n):
            self.send(src, dst, kind, payload)

    # ------------------------------------------------------------ node behaviour

    def deliver(self, node: Node, kind: str, payload: object) -> None:
        if kind == "block":
            assert isinstance(payload, tuple)
            node.tree.receive(payload)
        elif kind == "vote" and node.byzantine is None:
            assert isinstance(payload, SignedVote)
            node.voter.on_vote(payload)
        elif kind == "justification" and node.byzantine is None:
            block, rnd, votes = payload  # type: ignore[misc]
            if node.tree.knows(block[1]) and block[0] > node.tree.finalized[0]:
                self._check_justification(block, rnd, votes)
                self._finalize(node, block)
                node.justification = payload  # type: ignore[assignment]

    def _check_justification(self, block: BlockRef, rnd: int, votes: list[SignedVote]) -> None:
        weight = 0
        for vote in votes:
            assert vote.stage == PRECOMMIT and vote.round == rnd
            assert self.world.comparable(vote.target, block) and vote.number >= block[0]
            weight += self.weights[vote.voter]
        assert weight >= threshold_of(sum(self.weights.values()))

    def _finalize(self, node: Node, block: BlockRef) -> None:
        node.tree.finalize(block)
        node.voter.on_finalized(block)
        node.finalized_log.append(block)

    def author(self, slot: int) -> None:
        leader = self.rng.choices(range(self.s.n), weights=self.s.weights)[0]
        node = self.nodes[leader]
        self.salt += 1
        if node.byzantine is None:
            block = self.world.new_block(node.tree.best, leader, self.salt)
            node.tree.receive(block)
            self.broadcast(leader, "block", block)
            return
        # byzantine authors fork: two blocks on random known parents, each to part of the network
        parents = list(node.tree.known.items())
        for _ in range(2):
            number_hash = self.rng.choice(parents)
            self.salt += 1
            block = self.world.new_block((number_hash[1], number_hash[0]), leader, self.salt)
            node.tree.receive(block)
            for dst in self.rng.sample(range(self.s.n), self.rng.randint(1, self.s.n)):
                self.send(leader, dst, "block", block)

    def byzantine_votes(self, node: Node) -> None:
        if node.byzantine == "withhold":
            return
        rounds = {n.voter.current for n in self.nodes if n.byzantine is None}
        if node.byzantine == "split":
            # tell every honest node what it wants to hear: a vote for its own best block
            for rnd in sorted(rounds):
                for dst in self.nodes:
                    if dst.byzantine is None and dst.tree.best[1] in node.tree.known:
                        for stage in (PREVOTE, PRECOMMIT):
                            self.send(node.index, dst.index, "vote", sign_vote(node.key, 0, rnd, stage, dst.tree.best))
            return
        known = [(n, h) for h, n in node.tree.known.items()]
        for rnd in sorted(rounds):
            for stage in (PREVOTE, PRECOMMIT):
                targets = [self.rng.choice(known)]
                if node.byzantine == "equivocate":
                    targets.append(self.rng.choice(known))
                for target in targets:
                    vote = sign_vote(node.key, 0, rnd, stage, target)
                    for dst in self.rng.sample(range(self.s.n), self.rng.randint(1, self.s.n)):
                        self.send(node.index, dst, "vote", vote)

    def honest_step(self, node: Node) -> None:
        out = node.voter.tick(self.now)
        for vote in out.votes:
            self.broadcast(node.index, "vote", vote)
        for block, rnd, votes in out.finalized:
            self._check_justification(block, rnd, votes)
            self._finalize(node, block)
            node.justification = (block, rnd, votes)
            self.broadcast(node.index, "justification", node.justification)

    def _restarting(self) -> list[int]:
        """Nodes whose crash ended since the last step (restarted exactly once)."""
        due = [c for c in self.s.crashes if c[1] <= self.now and c not in self.restarted]
        self.restarted.extend(due)
        return [node for _, _, node in due]

    def resync(self) -> None:
        """What the sync protocol does: blocks and finality of reachable honest peers reach everyone."""
        for node in self.nodes:
            if self.down(node.index):
                continue
            for other in self.nodes:
                if self.down(other.index) or other is node or other.byzantine is not None or (not self.synchronous and self._cut(node.index, other.index)):
                    continue
                for block_hash, number in list(other.tree.known.items()):
                    if block_hash not in node.tree.known:
                        node.tree.receive((number, block_hash))
                if node.byzantine is None and other.justification and other.justification[0][0] > node.tree.finalized[0]:
                    self.send(other.index, node.index, "justification", other.justification)

    # ------------------------------------------------------------ run

    def run(self) -> dict:
        end = self.s.async_ms + self.s.sync_ms
        finalized_at_sync: int | None = None
        next_tick, next_slot, next_sync = 0, 0, 1000
        while self.now < end:
            self.now = min(next_tick, next_slot, next_sync, self.queue[0][0] if self.queue else end)
            if finalized_at_sync is None and self.synchronous:
                finalized_at_sync = max(n.tree.finalized[0] for n in self.nodes if n.byzantine is None)
            while self.queue and self.queue[0][0] <= self.now:
                _, _, dst, kind, payload = heapq.heappop(self.queue)
                if not self.down(dst):
                    self.deliver(self.nodes[dst], kind, payload)
            for index in self._restarting():
                self.restart(self.nodes[index])
            if self.now >= next_slot:
                self.author(next_slot // SLOT_MS)
                next_slot += SLOT_MS
            if self.now >= next_sync:
                self.resync()
                next_sync += 1000
            if self.now >= next_tick:
                for node in self.nodes:
                    if self.down(node.index):
                        continue
                    if node.byzantine is None:
                        self.honest_step(node)
                    elif self.rng.random() < 0.5:
                        self.byzantine_votes(node)
                next_tick += TICK_MS
        return self.verdict(finalized_at_sync or 0)

    def verdict(self, finalized_at_sync: int) -> dict:
        honest = [n for n in self.nodes if n.byzantine is None]
        finalized = [(n.index, b) for n in honest for b in n.finalized_log]
        conflicts = []
        for i, (na, a) in enumerate(finalized):
            for nb, b in finalized[i + 1:]:
                if not self.world.comparable(a, b):
                    conflicts.append((na, a, nb, b))
        return {
            "conflicts": conflicts,
            "live": all(n.tree.finalized[0] > finalized_at_sync for n in honest),
            "finalized": [n.tree.finalized[0] for n in honest],
            "finalized_at_sync": finalized_at_sync,
            "best": max(n.tree.best[0] for n in honest),
        }


def run_schedule(seed: int, **kwargs: int) -> dict:
    return Simulation(random_schedule(seed, **kwargs)).run()
