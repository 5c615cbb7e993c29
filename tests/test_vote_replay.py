"""A replayed finality vote is recognised once, by the round that recorded it (consensus/grandpa.py):
the gossip validator asks `Voter.is_new` before verifying a signature, and `Round.add` uses the same
`Round.holds`, so a replay is neither verified again nor forwarded, while a second vote of the same
voter for another block (equivocation evidence) still gets through."""
from __future__ import annotations

from consensus.grandpa import PRECOMMIT, PREVOTE, Voter, sign_vote
from tests.finality_sim import GENESIS, SimTree, World
from tests.helpers import ALICE, BOB, CHARLIE


def test_a_replayed_vote_is_not_new_but_a_conflicting_one_is():
    world = World()
    tree = SimTree(world)
    block = world.new_block(GENESIS, author=0, salt=1)
    tree.receive(block)
    voter = Voter(tree, 0, {k.public_key: 1 for k in (ALICE, BOB, CHARLIE)}, GENESIS)
    first = sign_vote(BOB, 0, 1, PREVOTE, GENESIS)
    assert voter.is_new(first)                       # no round 1 yet
    assert voter.on_vote(first).equivocations == []
    assert not voter.is_new(first)                   # the replay
    assert not voter.is_new(sign_vote(BOB, 0, 1, PREVOTE, GENESIS))  # same vote, signed again: still a replay
    other_block = sign_vote(BOB, 0, 1, PREVOTE, block)
    other_stage = sign_vote(BOB, 0, 1, PRECOMMIT, GENESIS)
    other_round = sign_vote(BOB, 0, 2, PREVOTE, GENESIS)
    other_voter = sign_vote(CHARLIE, 0, 1, PREVOTE, GENESIS)
    assert all(voter.is_new(v) for v in (other_block, other_stage, other_round, other_voter))
    evidence = voter.on_vote(other_block).equivocations
    assert [(e.first, e.second) for e in evidence] == [(first, other_block)]
    assert not voter.is_new(other_block)
    assert voter.on_vote(other_block).equivocations == []   # a replayed equivocation is reported once
