"""Peer scoring, bans, node identity persistence and bootnode reconnection."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import multiaddr
import pytest
import trio

from p2p.config import NetworkConfig, NetworkConfigError, NetworkLimits
from p2p.gossip import Topic, Verdict
from p2p.host import NetworkService
from p2p.peers import PeerManager, Penalty
from tests.p2p_helpers import GENESIS, make_service, run_trio, start_line, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_scores_decay_bans_expire_and_memory_is_bounded() -> None:
    clock = FakeClock()
    banned: list[str] = []
    limits = NetworkLimits(max_tracked_peers=3, max_banned_peers=2, ban_seconds=60, score_half_life_s=10)
    manager = PeerManager(limits, on_ban=banned.append, clock=clock)
    manager.penalize("p1", Penalty.INVALID_MESSAGE)
    clock.now = 10.0
    assert manager.score("p1") == pytest.approx(-12.5)
    for _ in range(8):
        manager.penalize("p2", "garbage")
    assert banned == ["p2"] and manager.is_banned("p2")
    assert manager.penalize("p7", "malformed bitswap request: bad varint") == -25.0  # free text accepted
    for peer in ("p3", "p4", "p5", "p6"):
        manager.penalize(peer, Penalty.TIMEOUT)
    assert manager.score("p1") == 0.0  # evicted: at most 3 scores tracked
    for peer in ("b1", "b2", "b3"):
        manager.ban(peer, reason="test")
    assert manager.banned_peers() == ["b2", "b3"]  # at most 2 bans tracked
    clock.now = 100.0
    assert sorted(manager.expire_bans()) == ["b2", "b3"] and not manager.is_banned("b3")


def test_node_key_persists_across_restarts_with_mode_0600(tmp_path: Path) -> None:
    first = make_service(tmp_path, "node")
    second = make_service(tmp_path, "node")
    assert first.peer_id == second.peer_id
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600
    assert make_service(tmp_path, "other").peer_id != first.peer_id


def test_config_refuses_non_loopback_bootnodes(tmp_path: Path) -> None:
    with pytest.raises(NetworkConfigError, match="outside allowed_cidrs"):
        NetworkConfig(
            key_path=tmp_path / "k",
            genesis_hash=GENESIS,
            bootnodes=["/ip4/10.0.0.1/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"],
        )
    with pytest.raises(NetworkConfigError, match="/p2p/"):
        NetworkConfig(key_path=tmp_path / "k", genesis_hash=GENESIS, bootnodes=["/ip4/127.0.0.1/tcp/1"])


def test_repeated_invalid_messages_ban_and_disconnect(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            b.set_validator(Topic.BLOCKS, lambda peer, data: Verdict.REJECT)
            for index in range(4):
                await a.publish(Topic.BLOCKS, b"bad %d" % index)
            await wait_until(lambda: b.peer_manager.is_banned(a.peer_id), "ban of A at B")
            await wait_until(lambda: a.peer_id not in b.peers(), "B drops A")
            # B's bootnode keeper must not re-dial a banned peer, and A is refused if it dials.
            await trio.sleep(1.0)
            assert a.peer_id not in b.peers()
            with pytest.raises(Exception):  # noqa: B017 - refused or dropped, either is fine
                await b.connect(a.listen_multiaddr)
            nursery.cancel_scope.cancel()

    run_trio(scenario)


async def run_until_cancelled(service: NetworkService, scope: trio.CancelScope, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run `service` inside `scope`, so a test can stop just this node."""
    with scope:
        await service.run(task_status=task_status)


def test_bootnode_reconnects_after_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            boot = make_service(tmp_path, "boot")
            boot_scope = trio.CancelScope()
            await nursery.start(run_until_cancelled, boot, boot_scope)
            address = boot.listen_multiaddr
            node = make_service(tmp_path, "node", (address,), redial_max_s=0.5)
            await nursery.start(node.run)
            await wait_until(lambda: boot.peer_id in node.peers(), "first connection")
            boot_scope.cancel()
            await wait_until(lambda: boot.peer_id not in node.peers(), "disconnect noticed")
            port = int(address.split("/tcp/")[1].split("/")[0])
            restarted = make_service(tmp_path, "boot", port=port)
            assert restarted.peer_id == boot.peer_id
            await nursery.start(restarted.run)
            await wait_until(lambda: node.peer_id in restarted.peers(), "reconnect after restart")
            got: list[bytes] = []

            async def keep(peer: str, data: bytes) -> None:
                got.append(data)

            restarted.subscribe(Topic.VOTES, keep)
            await wait_until(lambda: node.peer_id in restarted.gossip.topic_peers(Topic.VOTES), "resubscribed")
            await wait_until(lambda: restarted.peer_id in node.gossip.topic_peers(Topic.VOTES), "resubscribed back")
            await node.publish(Topic.VOTES, b"vote after restart")
            await wait_until(lambda: got == [b"vote after restart"], "gossip after reconnect")
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_a_failed_dial_does_not_block_the_next_one_for_a_minute(tmp_path: Path) -> None:
    """py-libp2p refuses to dial a peer for 60 s after one dial to it failed (its negative cache).
    Our own backoff (`redial_initial_s` .. `redial_max_s`) decides when to dial again, so a peer that
    was down for one dial is reachable on the next one, and a healed partition is noticed within
    seconds, not a minute later."""

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            with socket.socket() as probe:  # a loopback port with nothing listening on it yet
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            boot = make_service(tmp_path, "boot", port=port)
            address = f"/ip4/127.0.0.1/tcp/{port}/p2p/{boot.peer_id}"
            node = make_service(tmp_path, "node")
            await nursery.start(node.run)
            with pytest.raises(Exception):  # noqa: B017 - any dial failure: the peer is not up yet
                await node.connect(address)
            await nursery.start(boot.run)
            assert await node.connect(address) == boot.peer_id
            await wait_until(lambda: boot.peer_id in node.peers(), "connected after the failed dial")
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_plaintext_peer_cannot_connect(tmp_path: Path) -> None:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            (node,) = await start_line(nursery, tmp_path, count=1)
            key_pair = create_new_key_pair()
            intruder = new_host(key_pair=key_pair, sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)})
            async with intruder.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                with pytest.raises(Exception), trio.fail_after(10):  # noqa: B017 - any refusal
                    await intruder.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.listen_multiaddr)))
            assert node.peers() == []
            nursery.cancel_scope.cancel()

    run_trio(scenario)
