"""The finality gadget: signed votes for best blocks; > 2/3 of authority stake finalizes.

Every authority signs, once per round (= slot), a vote for its best block:
    vote = [set_id, round, number, block_hash, voter, signature]
    signature = ed25519(voter, encode(["arena/vote", set_id, round, number, block_hash]))
Each node keeps each voter's latest vote. A best-chain block at height n is final when the
voters whose latest vote targets a best-chain block at height ≥ n hold more than 2/3 of the
authority stake; the justification stored with it is that set of votes. Two votes by one voter
in one round for different blocks are an equivocation: the evidence goes on chain and is slashed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runtime.codec import CodecError, decode, encode
from runtime.crypto import Keypair, verify
from runtime.modules.session import vote_message

MAX_ROUNDS_KEPT = 64


class VoteError(ValueError):
    """A vote or justification that does not verify."""


@dataclass(frozen=True)
class Vote:
    set_id: int
    round: int
    number: int
    block_hash: bytes
    voter: bytes
    signature: bytes

    def encode(self) -> bytes:
        return encode([self.set_id, self.round, self.number, self.block_hash, self.voter, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> Vote:
        try:
            fields = decode(data, max_size=1024)
        except CodecError as exc:
            raise VoteError(f"vote does not decode: {exc}") from exc
        if not isinstance(fields, list) or len(fields) != 6:
            raise VoteError("a vote is [set_id, round, number, block_hash, voter, signature]")
        set_id, rnd, number, block_hash, voter, signature = fields
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (set_id, rnd, number)):
            raise VoteError("vote set_id, round and number must be non-negative integers")
        if not (isinstance(block_hash, bytes) and len(block_hash) == 32 and isinstance(voter, bytes)
                and len(voter) == 32 and isinstance(signature, bytes) and len(signature) == 64):
            raise VoteError("vote hash and voter must be 32 bytes, signature 64 bytes")
        return cls(set_id, rnd, number, block_hash, voter, signature)

    def verify(self) -> bool:
        return verify(self.voter, vote_message(self.set_id, self.round, self.number, self.block_hash), self.signature)


def sign_vote(key: Keypair, set_id: int, round_number: int, number: int, block_hash: bytes) -> Vote:
    signature = key.sign(vote_message(set_id, round_number, number, block_hash))
    return Vote(set_id, round_number, number, block_hash, key.public_key, signature)


@dataclass(frozen=True)
class Equivocation:
    first: Vote
    second: Vote


class VoteTracker:
    """Latest vote per voter for the current authority set, and equivocation detection."""

    def __init__(self) -> None:
        self.set_id = -1
        self.latest: dict[bytes, Vote] = {}
        self._by_round: dict[tuple[bytes, int], Vote] = {}

    def reset(self, set_id: int) -> None:
        self.set_id = set_id
        self.latest.clear()
        self._by_round.clear()

    def add(self, vote: Vote) -> Equivocation | None:
        """Record a verified vote of the current set; returns evidence if it conflicts with an earlier one."""
        if vote.set_id != self.set_id:
            return None
        key = (vote.voter, vote.round)
        earlier = self._by_round.get(key)
        if earlier is not None and earlier.block_hash != vote.block_hash:
            return Equivocation(earlier, vote)
        self._by_round[key] = vote
        if len(self._by_round) > MAX_ROUNDS_KEPT * 64:
            newest = max(r for _, r in self._by_round)
            self._by_round = {k: v for k, v in self._by_round.items() if k[1] > newest - MAX_ROUNDS_KEPT}
        current = self.latest.get(vote.voter)
        if current is None or vote.round > current.round:
            self.latest[vote.voter] = vote
        return None

    def finalizable(
        self, stakes: dict[bytes, int], is_canonical: Callable[[int, bytes], bool]
    ) -> tuple[int, list[Vote]] | None:
        """The highest height with > 2/3 of stake voting at or above it on the best chain, and those votes."""
        total = sum(stakes.values())
        votes = sorted(
            (v for v in self.latest.values() if stakes.get(v.voter, 0) > 0 and is_canonical(v.number, v.block_hash)),
            key=lambda v: -v.number,
        )
        weight = 0
        for i, vote in enumerate(votes):
            weight += stakes[vote.voter]
            if 3 * weight > 2 * total:
                return vote.number, votes[: i + 1]
        return None


def encode_justification(votes: list[Vote]) -> bytes:
    return encode([v.encode() for v in votes])


def verify_justification(
    data: bytes, number: int, stakes: dict[bytes, int], set_id: int,
    is_descendant: Callable[[int, bytes], bool],
) -> None:
    """Raise VoteError unless `data` holds valid votes of > 2/3 of `stakes` for the block at `number` or above."""
    try:
        raw_votes = decode(data)
    except CodecError as exc:
        raise VoteError(f"justification does not decode: {exc}") from exc
    if not isinstance(raw_votes, list):
        raise VoteError("justification must be a list of votes")
    seen: set[bytes] = set()
    weight = 0
    for raw in raw_votes:
        vote = Vote.decode(raw) if isinstance(raw, bytes) else None
        if vote is None or vote.voter in seen or vote.set_id != set_id or vote.voter not in stakes:
            raise VoteError("justification holds a duplicate, foreign or malformed vote")
        if vote.number < number or not is_descendant(vote.number, vote.block_hash):
            raise VoteError("justification vote is not for the block or a descendant")
        if not vote.verify():
            raise VoteError("justification vote signature does not verify")
        seen.add(vote.voter)
        weight += stakes[vote.voter]
    if 3 * weight <= 2 * sum(stakes.values()):
        raise VoteError("justification votes hold no more than 2/3 of authority stake")
