"""Banning must never crash a node: a few hundred bans of real libp2p peers while they churn.

py-libp2p 0.8.1's `Pubsub.add_to_blacklist` schedules `_teardown_if_connected`, which awaits a
stream reset and then does `del self.peers[peer]`; when the disconnect that goes with a ban
removes the peer first, that `KeyError` escaped a library task and took the whole node down.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2p.host import NetworkService
from tests.p2p_helpers import make_service, run_trio, wait_until

pytestmark = pytest.mark.integration

ATTACKERS = 12
ROUNDS = 25  # 12 x 25 = 300 bans


def test_hundreds_of_bans_under_churn_do_not_crash_the_node(tmp_path: Path) -> None:
    bans = 0

    async def churn(victim: NetworkService, attacker: NetworkService) -> None:
        nonlocal bans
        pubsub = victim.gossip.pubsub
        round_index = 0
        for _attempt in range(ROUNDS * 4):  # a dial that races the last teardown is retried, up to a bound
            if round_index == ROUNDS:
                break
            await wait_until(
                lambda: not victim.peer_manager.is_banned(attacker.peer_id)
                and not attacker.peer_manager.is_banned(victim.peer_id),
                "ban expiry",
                timeout=10,
            )
            try:
                await attacker.connect(victim.listen_multiaddr)
            except Exception:  # noqa: BLE001 - a dial racing the previous teardown may fail; retry
                await trio.sleep(0.05)
                continue
            # Ban at varying moments: before, during and after pubsub registered the peer.
            if round_index % 3 == 0:
                with trio.move_on_after(2):
                    while attacker.host.get_id() not in pubsub.peers:
                        await trio.sleep(0.005)
            elif round_index % 3 == 1:
                await trio.sleep(0.001 * (round_index % 7))
            victim.peer_manager.ban(attacker.peer_id, reason="churn test", seconds=0.05)
            bans += 1
            round_index += 1
            if round_index % 2 == 0:
                attacker.peer_manager.ban(victim.peer_id, reason="churn test", seconds=0.05)  # both sides at once
            await wait_until(lambda: attacker.peer_id not in victim.peers(), "banned peer dropped", timeout=10)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            victim = make_service(tmp_path, "victim", redial_initial_s=0.05)
            await nursery.start(victim.run)
            attackers = [make_service(tmp_path, f"a{i}") for i in range(ATTACKERS)]
            for attacker in attackers:
                await nursery.start(attacker.run)
            async with trio.open_nursery() as churners:
                for attacker in attackers:
                    churners.start_soon(churn, victim, attacker)
            # The victim is alive and well: an honest peer still connects and is served.
            honest = make_service(tmp_path, "honest")
            await nursery.start(honest.run)
            victim.set_status_handler(lambda: b"alive")
            await honest.connect(victim.listen_multiaddr)
            assert await honest.request_status(victim.peer_id) == b"alive"
            # Expired bans are lifted in pubsub too (no stale blacklist entries).
            await wait_until(lambda: not victim.gossip.pubsub.blacklisted_peers, "pubsub blacklist emptied", timeout=10)
            nursery.cancel_scope.cancel()

    run_trio(scenario, timeout=120)
    assert bans >= ATTACKERS * ROUNDS * 0.9
