"""Peer scoring and bans: misbehaving peers lose score, and below a threshold they are banned.

Memory is bounded: at most `max_tracked_peers` scores and `max_banned_peers` bans are kept
(least recently touched entries are forgotten first). Scores decay towards zero with a
half-life, so an honest peer that once sent something odd recovers.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from p2p.config import NetworkLimits

logger = logging.getLogger("arena.p2p.peers")


class Penalty(enum.Enum):
    """Why a peer is penalised; the cost in score points is `PENALTY_COST[reason]`."""

    INVALID_MESSAGE = "invalid_message"  # a gossip validator returned REJECT
    GARBAGE = "garbage"  # undecodable gossip payload
    OVERSIZE = "oversize"  # message above the topic's size limit
    BAD_REQUEST = "bad_request"  # malformed request/response request
    BAD_RESPONSE = "bad_response"  # malformed or over-limit reply to our request
    TIMEOUT = "timeout"  # kept for callers; p2p never raises it (slow is not invalid, see docs/networking.md)
    INVALID_CONTENT = "invalid_content"  # content exchange: block failed its hash check
    INVALID_BLOCK = "invalid_block"  # sync: block failed import
    PROTOCOL_VIOLATION = "protocol_violation"  # any other misbehaviour, described in free text


PENALTY_COST: dict[Penalty, float] = {
    Penalty.INVALID_MESSAGE: 25.0,
    Penalty.GARBAGE: 25.0,
    Penalty.OVERSIZE: 50.0,
    Penalty.BAD_REQUEST: 25.0,
    Penalty.BAD_RESPONSE: 25.0,
    Penalty.TIMEOUT: 5.0,
    Penalty.INVALID_CONTENT: 25.0,
    Penalty.INVALID_BLOCK: 50.0,
    Penalty.PROTOCOL_VIOLATION: 25.0,
}


def peer_key(peer_id: object) -> str:
    """Base58 text of a peer id given as `str` or a libp2p `ID`."""
    to_base58 = getattr(peer_id, "to_base58", None)
    return to_base58() if callable(to_base58) else str(peer_id)


def parse_reason(reason: Penalty | str) -> tuple[Penalty, str]:
    """A `Penalty` and a detail text; free text (e.g. "malformed bitswap request: …") is a protocol violation."""
    if isinstance(reason, Penalty):
        return reason, ""
    try:
        return Penalty(reason.lower()), ""
    except ValueError:
        return Penalty.PROTOCOL_VIOLATION, reason[:200]


class PeerManager:
    """Tracks peer scores and bans; `on_ban(peer_id)` is called once per new ban."""

    def __init__(
        self,
        limits: NetworkLimits,
        on_ban: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._on_ban = on_ban
        self._clock = clock
        self._scores: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (score, at)
        self._bans: OrderedDict[str, float] = OrderedDict()  # peer -> expiry

    def set_on_ban(self, on_ban: Callable[[str], None]) -> None:
        """Register the callback that disconnects a freshly banned peer."""
        self._on_ban = on_ban

    def score(self, peer_id: object) -> float:
        """Current (decayed) score of a peer; 0 for an unknown peer."""
        peer_id = peer_key(peer_id)
        entry = self._scores.get(peer_id)
        if entry is None:
            return 0.0
        value, at = entry
        elapsed = max(0.0, self._clock() - at)
        return value * 0.5 ** (elapsed / self._limits.score_half_life_s)

    def penalize(self, peer_id: object, reason: Penalty | str, amount: float | None = None) -> float:
        """Lower a peer's score for `reason`; ban it when the score falls below the threshold.

        `peer_id` is base58 text or a libp2p `ID`; `reason` a `Penalty`, its value, or free text.
        Returns the new score. Other components (content exchange, sync) call this too.
        """
        peer_id = peer_key(peer_id)
        reason, detail = parse_reason(reason)
        cost = PENALTY_COST[reason] if amount is None else amount
        new_score = self.score(peer_id) - cost
        self._scores[peer_id] = (new_score, self._clock())
        self._scores.move_to_end(peer_id)
        while len(self._scores) > self._limits.max_tracked_peers:
            self._scores.popitem(last=False)
        logger.warning(
            "peer_penalized peer=%s reason=%s cost=%.1f score=%.1f detail=%r",
            peer_id, reason.name, cost, new_score, detail,
        )
        if new_score <= self._limits.ban_threshold and not self.is_banned(peer_id):
            self.ban(peer_id, reason=reason.name)
        return new_score

    def ban(self, peer_id: str, reason: str, seconds: float | None = None) -> None:
        """Ban a peer for `seconds` (default from limits) and ask the host to disconnect it."""
        duration = self._limits.ban_seconds if seconds is None else seconds
        self._bans[peer_id] = self._clock() + duration
        self._bans.move_to_end(peer_id)
        while len(self._bans) > self._limits.max_banned_peers:
            self._bans.popitem(last=False)
        self._scores.pop(peer_id, None)  # the ban is the punishment; start from zero afterwards
        logger.warning("peer_banned peer=%s reason=%s seconds=%.0f", peer_id, reason, duration)
        if self._on_ban is not None:
            self._on_ban(peer_id)

    def is_banned(self, peer_id: object) -> bool:
        """True while the peer's ban has not expired."""
        peer_id = peer_key(peer_id)
        expiry = self._bans.get(peer_id)
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._bans[peer_id]
            return False
        return True

    def expire_bans(self) -> list[str]:
        """Drop expired bans; return the peers that are allowed back."""
        now = self._clock()
        expired = [peer for peer, expiry in self._bans.items() if now >= expiry]
        for peer in expired:
            del self._bans[peer]
            logger.info("peer_unbanned peer=%s", peer)
        return expired

    def banned_peers(self) -> list[str]:
        """Peers currently banned."""
        return [peer for peer in list(self._bans) if self.is_banned(peer)]
