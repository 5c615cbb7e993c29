"""Finality safety: the model-based checker over adversarial schedules, the issue-10 schedule as a
named regression, justifications that only verify for the block they prove, and equivocation
evidence that only convicts staked authorities."""
from __future__ import annotations

import os

import pytest

from consensus.grandpa import (
    PRECOMMIT,
    PREVOTE,
    FinalityError,
    Justification,
    Round,
    Timing,
    Voter,
    sign_vote,
    verify_justification,
)
from node.finality import FinalityGadget, header_link
from runtime.crypto import Keypair
from runtime.modules import session
from tests.finality_sim import GENESIS, SimTree, World, run_schedule
from tests.helpers import ALICE, BOB, CHARLIE, make_chain

SCHEDULES = int(os.environ.get("ARENA_FINALITY_SCHEDULES", "500"))
DAVE = Keypair.from_dev_name("dave")
EVE = Keypair.from_dev_name("eve")


# ------------------------------------------------------------------ the model-based checker

@pytest.mark.parametrize("chunk", range(10))
def test_adversarial_schedules_never_finalize_conflicting_blocks(chunk):
    """N = 4..10 voters with unequal stakes, < 1/3 byzantine (equivocate, withhold, vote for
    conflicting forks, tell each node what it wants to hear), delays up to 2.5 s, loss up to
    40 %, duplicates, partitions and crash-restarts, then a synchronous period."""
    per_chunk = SCHEDULES // 10
    for seed in range(chunk * per_chunk, (chunk + 1) * per_chunk):
        verdict = run_schedule(seed)
        assert not verdict["conflicts"], f"seed {seed}: conflicting finality {verdict['conflicts'][:1]}"
        assert verdict["live"], f"seed {seed}: finality did not advance after the synchronous period: {verdict}"


# ------------------------------------------------------------------ the schedule of issue 10

class Net:
    """Four equal voters over hand-delivered messages."""

    def __init__(self, voter_cls: type[Voter] = Voter) -> None:
        self.world = World()
        self.keys = [Keypair.from_dev_name(n) for n in ("alice", "bob", "charlie", "dave")]
        weights = {k.public_key: 1 for k in self.keys}
        self.trees = [SimTree(self.world) for _ in self.keys]
        timing = Timing(round_min_ms=500, precommit_wait_ms=250, rebroadcast_ms=1000)
        self.voters = [voter_cls(t, 0, weights, GENESIS, key=k, timing=timing) for t, k in zip(self.trees, self.keys, strict=True)]
        self.outbox: list[list] = [[] for _ in self.keys]
        self.finalized: list[list] = [[] for _ in self.keys]
        self.now = 0

    def tick(self, who: list[int], ms: int = 100) -> None:
        self.now += ms
        for i in who:
            out = self.voters[i].tick(self.now)
            self.outbox[i].extend(out.votes)
            for block, _, _ in out.finalized:
                self.finalized[i].append(block)
                self.trees[i].finalize(block)

    def deliver(self, src: int, dst: list[int], stage: int | None = None) -> None:
        for vote in self.outbox[src]:
            if stage is None or vote.stage == stage:
                for d in dst:
                    if d != src:
                        self.voters[d].on_vote(vote)

    def conflicts(self) -> list:
        blocks = [b for log in self.finalized for b in log]
        return [(a, b) for a in blocks for b in blocks if not self.world.comparable(a, b)]


class EagerVoter(Voter):
    """A gadget without the round rules: moves on after its timer whether or not the round is
    completable, and prevotes its best block whatever the last round's estimate was."""

    def tick(self, now_ms: int):  # type: ignore[no-untyped-def]
        out = super().tick(now_ms)
        if self.started_ms is not None and now_ms - self.started_ms >= 2000:
            self._enter(self.current + 1, self.tree.best, now_ms, out)
        return out

    def _vote(self, rnd, now_ms, out):  # type: ignore[no-untyped-def]
        if self.key is None:
            return
        if PREVOTE not in self.cast:
            self._cast(rnd, PREVOTE, self.tree.best, out)
        if PRECOMMIT not in self.cast:
            g = rnd.ghost(self.tree)
            if g is not None and now_ms - (self.started_ms or 0) >= self.timing.precommit_wait_ms:
                self._cast(rnd, PRECOMMIT, g, out)


def play_issue_10_schedule(voter_cls: type[Voter]) -> Net:
    """A authors X; X reaches B and C, not D; A, B, C vote X and only B's and C's votes reach A, so
    A finalizes X. D, without X, authors Y and Y2 on the same parent; B and C see the longer Y→Y2."""
    net = Net(voter_cls)
    A, B, C, D = range(4)
    x = net.world.new_block(GENESIS, A, 1)
    for i in (A, B, C):
        net.trees[i].receive(x)
    net.tick([A, B, C, D])                      # prevotes: A, B, C for X; D for genesis
    for src in (A, B, C):
        net.deliver(src, [A, B, C], PREVOTE)
    for _ in range(5):
        net.tick([A, B, C, D])                  # precommits for X
    net.deliver(B, [A], PRECOMMIT)
    net.deliver(C, [A], PRECOMMIT)
    net.tick([A])
    assert x in net.finalized[A], "A finalizes X with B's and C's precommits"
    y = net.world.new_block(GENESIS, D, 2)
    y2 = net.world.new_block(y, D, 3)
    for i in (B, C, D):
        net.trees[i].receive(y)
        net.trees[i].receive(y2)
    for _ in range(100):                        # ten seconds in which A is cut off from B, C and D
        net.outbox = [[] for _ in range(4)]
        net.tick([B, C, D])
        for src in (B, C, D):
            net.deliver(src, [B, C, D])
    return net


def test_issue_10_schedule_never_finalizes_both_forks():
    net = play_issue_10_schedule(Voter)
    assert net.conflicts() == []
    # heal: everyone hears everyone; X is final everywhere, Y never
    x = net.finalized[0][0]
    for tree in net.trees:                      # sync: every node gets every block
        for block_hash, (number, _) in list(net.world.blocks.items())[1:]:
            tree.receive((number, block_hash))
    for _ in range(60):
        net.outbox = [[] for _ in range(4)]
        net.tick([0, 1, 2, 3])
        for src in range(4):
            net.deliver(src, [0, 1, 2, 3])
    assert net.conflicts() == []
    for i in range(4):
        assert net.trees[i].finalized[0] >= 1 and net.world.comparable(net.trees[i].finalized, x)


def test_the_schedule_does_conflict_without_the_round_rules():
    """The regression test can fail: a gadget that ignores completability and the estimate
    finalizes Y2 with B, C and D after A finalized X (the bug of issue 10, in a new form)."""
    net = play_issue_10_schedule(EagerVoter)
    assert net.conflicts(), "without the round rules the schedule must produce conflicting finality"


# ------------------------------------------------------------------ rounds and equivocation

def test_two_prevotes_in_one_round_are_evidence_and_the_runtime_slashes_only_authorities(tmp_path):
    chain = make_chain(tmp_path / "db")
    try:
        g = (0, chain.best.hash)
        a, _, _ = chain.build_block(ALICE, 1, chain.spec.config["timestamp_ms"] + 1000, [])
        weights = {k.public_key: 1 for k in (ALICE, BOB, CHARLIE, DAVE)}
        rnd = Round(1, g, weights)
        from node.finality import ChainTree
        tree = ChainTree(chain)
        first = sign_vote(BOB, 0, 1, PREVOTE, g)
        assert rnd.add(first, tree) is None
        evidence = rnd.add(sign_vote(BOB, 0, 1, PREVOTE, (1, a.hash)), tree)
        assert evidence is not None and evidence.first == first
        assert rnd.add(sign_vote(BOB, 0, 1, PRECOMMIT, g), tree) is None      # another stage: no offence
        assert session._check_vote_evidence(evidence.first.encode(), evidence.second.encode())[0] == BOB.public_key
        # a throwaway key's double vote proves nothing against anyone with stake
        junk = sign_vote(EVE, 0, 1, PREVOTE, g), sign_vote(EVE, 0, 1, PREVOTE, (1, a.hash))
        from runtime.module import Context
        ctx = Context(chain.state(), block_number=2, timestamp_ms=0, author=ALICE.public_key)
        assert EVE.public_key not in session._set_members(ctx, 0)
        assert BOB.public_key in session._set_members(ctx, 0)
        with pytest.raises(session.InvalidEvidence):
            session.Session.report_equivocation(ctx, session.KIND_VOTE, junk[0].encode(), junk[1].encode())
    finally:
        chain.store.close()


# ------------------------------------------------------------------ justifications on real chains

def _forked_chains(tmp_path):
    """Chain `a` holds X (alice, slot 1) and the fork Y (bob, slot 2) → Y2 (charlie, slot 3)."""
    a, b = make_chain(tmp_path / "a"), make_chain(tmp_path / "b")
    ts = a.spec.config["timestamp_ms"]
    x, _, _ = a.build_block(ALICE, 1, ts + 1000, [])
    y, _, _ = b.build_block(BOB, 2, ts + 2000, [])
    y2, _, _ = b.build_block(CHARLIE, 3, ts + 3000, [])
    a.import_block(y)
    a.import_block(y2)       # longer: a reorgs to Y2
    return a, b, x, y, y2


def _justify(set_id, rnd, target, voted, keys, ancestry=()):
    votes = [sign_vote(k, set_id, rnd, PRECOMMIT, voted) for k in keys]
    return Justification(set_id, rnd, target, votes, [h.encode() for h in ancestry])


def test_orphan_with_votes_for_the_other_fork_is_not_finalized(tmp_path):
    """A peer with no key serves a fresh node an orphaned block with a justification made of
    honest votes for the other fork: it does not verify, nothing is finalized."""
    a, b, x, y, y2 = _forked_chains(tmp_path)
    fresh = make_chain(tmp_path / "fresh")
    try:
        fresh.import_block(x)
        gadget = FinalityGadget(fresh, None)
        honest = _justify(0, 3, (1, x.hash), (2, y2.hash), [ALICE, BOB, CHARLIE])
        with pytest.raises(FinalityError, match="descendant"):
            gadget.import_justification(honest.encode(), x.hash)
        assert fresh.finalized.number == 0
        # the same votes with headers that "prove" a link: the headers hash to Y's chain, not X's
        forged = _justify(0, 3, (1, x.hash), (2, y2.hash), [ALICE, BOB, CHARLIE], [y2.header, y.header])
        with pytest.raises(FinalityError):
            gadget.import_justification(forged.encode(), x.hash)
        assert fresh.finalized.number == 0
    finally:
        for c in (a, b, fresh):
            c.store.close()


def test_valid_justification_with_ancestry_finalizes_and_wins_fork_choice(tmp_path):
    a, b, x, y, y2 = _forked_chains(tmp_path)
    fresh = make_chain(tmp_path / "fresh")
    try:
        fresh.import_block(x)
        fresh.import_block(y)             # kept as a fork: same height as X
        assert fresh.best.hash == x.hash
        gadget = FinalityGadget(fresh, None)
        # precommits for Y2 (not known to `fresh`) justify Y with Y2's header carried along
        just = _justify(0, 7, (1, y.hash), (2, y2.hash), [ALICE, BOB, CHARLIE], [y2.header])
        weights = gadget.weights
        verify_justification(just, (1, y.hash), 0, weights, gadget.tree.parent_of, header_link)
        assert gadget.import_justification(just.encode(), y.hash)
        assert fresh.finalized.hash == y.hash and fresh.best.hash == y.hash      # reorged to the justified fork
        # two thirds is not enough; a vote of a foreign set or a non-voter is refused
        with pytest.raises(FinalityError, match="2/3"):
            verify_justification(_justify(0, 7, (1, y.hash), (1, y.hash), [ALICE, BOB]), (1, y.hash), 0,
                                 weights, gadget.tree.parent_of, header_link)
        with pytest.raises(FinalityError, match="non-voter"):
            verify_justification(_justify(0, 7, (1, y.hash), (1, y.hash), [ALICE, BOB, EVE]), (1, y.hash), 0,
                                 weights, gadget.tree.parent_of, header_link)
        with pytest.raises(FinalityError, match="set"):
            verify_justification(_justify(1, 7, (1, y.hash), (1, y.hash), [ALICE, BOB, CHARLIE]), (1, y.hash), 0,
                                 weights, gadget.tree.parent_of, header_link)
    finally:
        for c in (a, b, fresh):
            c.store.close()


def test_voter_state_survives_a_restart_and_never_votes_twice(tmp_path):
    chain = make_chain(tmp_path / "db")
    try:
        gadget = FinalityGadget(chain, ALICE)
        out, _ = gadget.tick(1_000)
        (prevote,) = [v for v in out.votes if v.stage == PREVOTE]
        chain.build_block(BOB, 1, chain.spec.config["timestamp_ms"] + 1000, [])   # best moves on
        again = FinalityGadget(chain, ALICE)                                       # "restart"
        out, _ = again.tick(1_100)
        assert [v for v in out.votes if v.stage == PREVOTE and v.round == prevote.round] in ([], [prevote])
        assert again.voter.cast[PREVOTE] == prevote
    finally:
        chain.store.close()
