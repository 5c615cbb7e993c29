"""Hostile and odd peers at the p2p layer, on real libp2p hosts on 127.0.0.1.

Replayed gossip is not relayed, a silent peer delays no status round, a foreign peer (one that
does not speak Arena's protocols) is asked once, and dead connections are dropped and redialed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.host.ping import ID as PING_PROTOCOL

from p2p.batcher import encode_batch
from p2p.config import NetworkConfig
from p2p.gossip import Topic, Verdict
from p2p.host import _build_host, load_or_create_node_key
from p2p.reqresp import RequestTimeout, UnsupportedProtocol
from tests.p2p_helpers import GENESIS, make_service, run_trio, start_line, wait_subscribed, wait_until


def _counting_validator(seen: list[bytes]):
    def validate(peer: str, payload: object) -> Verdict:
        seen.append(payload if isinstance(payload, bytes) else b"|".join(payload))  # type: ignore[arg-type]
        return Verdict.ACCEPT

    return validate


def test_replayed_votes_and_batches_are_not_relayed(tmp_path: Path) -> None:
    """A replays B's messages to B in fresh envelopes: B neither validates nor relays them to C."""

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b, c = await start_line(nursery, tmp_path)
            at_b: list[bytes] = []
            at_c: list[bytes] = []
            for topic in (Topic.VOTES, Topic.EXTRINSICS):
                b.set_validator(topic, _counting_validator(at_b))
                c.set_validator(topic, _counting_validator(at_c))
            vote = b"vote-1" + bytes(100)
            batch = encode_batch([b"xt-1", b"xt-2"])
            await a.publish(Topic.VOTES, vote)
            await a.publish(Topic.EXTRINSICS, batch)
            await wait_until(lambda: len(at_c) == 2, "originals at C")
            # The same payloads again: new seqno, so a new GossipSub message id every time.
            for _ in range(20):
                await a.publish(Topic.VOTES, vote)
                await a.publish(Topic.EXTRINSICS, batch)
                await a.publish(Topic.EXTRINSICS, encode_batch([b"xt-2", b"xt-1"]))  # reshuffled
            marker = b"vote-2"
            await a.publish(Topic.VOTES, marker)
            await wait_until(lambda: marker in at_c, "a fresh vote still flows")
            assert at_b.count(vote) == 1 and at_c.count(vote) == 1
            assert len(at_c) == 3 and len(at_b) == 3
            assert b.gossip.replays_ignored >= 60
            assert b.peer_manager.score(a.peer_id) == 0  # a replay is not proof of malice
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_one_flooding_peer_holds_a_bounded_share_of_delivery(tmp_path: Path) -> None:
    """B's handler is stuck; A floods. B buffers at most max_pending_per_peer of A's messages."""

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2, max_pending_per_peer=50)
            release = trio.Event()

            async def stuck(peer: str, data: bytes) -> None:
                await release.wait()

            b.subscribe(Topic.BLOCKS, stuck)
            for index in range(300):
                await a.publish(Topic.BLOCKS, index.to_bytes(4, "big") + bytes(1000))
            await wait_until(lambda: b.gossip.dropped_deliveries >= 300 - 51, "drops beyond the share")
            assert b.gossip.pending_bytes <= 51 * 1004
            assert not b.peer_manager.is_banned(a.peer_id)
            release.set()
            await wait_until(lambda: b.gossip.pending_bytes == 0, "buffer drained")
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_silent_peer_does_not_stall_a_status_round(tmp_path: Path) -> None:
    async def hang(stream: object) -> None:
        await trio.sleep(60)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            node = make_service(tmp_path, "node")
            await nursery.start(node.run)
            silent = make_service(tmp_path, "silent")
            honest = make_service(tmp_path, "honest")
            for peer in (silent, honest):
                await nursery.start(peer.run)
                await peer.connect(node.listen_multiaddr)
            silent.host.set_stream_handler(silent.reqresp.status_protocol, hang)
            honest.set_status_handler(lambda: b"honest ok")
            results = await node.status_of_peers([silent.peer_id, honest.peer_id], timeout_s=5)
            # Completion order: the honest answer came first although the silent peer was asked first.
            assert list(results) == [honest.peer_id, silent.peer_id]
            assert results[honest.peer_id] == b"honest ok"
            assert isinstance(results[silent.peer_id], RequestTimeout)
            assert node.peer_manager.score(silent.peer_id) == 0  # slow is not invalid
            # Next round: the silent peer is skipped for a while (backoff), the honest one is asked.
            again = await node.status_of_peers([silent.peer_id, honest.peer_id], timeout_s=5)
            assert again == {honest.peer_id: b"honest ok"}
            nursery.cancel_scope.cancel()

    run_trio(scenario, timeout=60)


def test_foreign_peer_is_probed_once_and_logged_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An IPFS-like peer (libp2p, no Arena protocols): one stream attempt, one log line, no penalty."""

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            node = make_service(tmp_path, "node")
            await nursery.start(node.run)
            config = NetworkConfig(key_path=tmp_path / "foreign.key", genesis_hash=GENESIS)
            foreign = _build_host(load_or_create_node_key(config.key_path), config)
            async with foreign.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                address = f"{foreign.get_addrs()[0]}/p2p/{foreign.get_id().to_base58()}"
                foreign_id = await node.connect(address)
                attempts: list[object] = []
                new_stream = node.host.new_stream

                async def counting_new_stream(peer_id, protocols):  # type: ignore[no-untyped-def]
                    if peer_id.to_base58() == foreign_id and node.reqresp.status_protocol in protocols:
                        attempts.append(protocols)
                    return await new_stream(peer_id, protocols)

                node.host.new_stream = counting_new_stream  # type: ignore[method-assign]
                caplog.clear()
                with caplog.at_level(logging.INFO):
                    for _ in range(5):
                        with pytest.raises(UnsupportedProtocol):
                            await node.request_status(foreign_id)
                    assert await node.status_of_peers() == {}
                assert len(attempts) == 1
                assert node.is_foreign(foreign_id) and foreign_id not in node.arena_peers()
                assert foreign_id in node.peers()  # still connected: it may serve content
                lines = [r for r in caplog.records if foreign_id in r.getMessage()]
                assert len(lines) == 1 and "peer_not_arena" in lines[0].getMessage(), [r.getMessage() for r in lines]
                assert node.peer_manager.score(foreign_id) == 0
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_dead_connection_is_detected_by_ping_and_redialed(tmp_path: Path) -> None:
    """The bootnode stops answering on an open connection; keepalive drops it and the node redials."""

    async def swallow(stream: object) -> None:
        await trio.sleep(60)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            boot = make_service(tmp_path, "boot")
            await nursery.start(boot.run)
            node = make_service(
                tmp_path, "node", (boot.listen_multiaddr,), ping_interval_s=0.3, ping_timeout_s=0.5, redial_max_s=0.5,
            )
            await nursery.start(node.run)
            await wait_subscribed(node, boot, Topic.VOTES)
            assert node.keepalive_drops == 0
            boot.host.set_stream_handler(PING_PROTOCOL, swallow)  # the connection looks open, nothing answers
            await wait_until(lambda: node.keepalive_drops >= 1, "dead connection dropped", timeout=20)
            boot.host.set_stream_handler(PING_PROTOCOL, _echo_ping)
            await wait_until(lambda: boot.peer_id in node.peers(), "redialed", timeout=20)
            nursery.cancel_scope.cancel()

    run_trio(scenario, timeout=60)


async def _echo_ping(stream) -> None:  # type: ignore[no-untyped-def]
    from libp2p.host.ping import handle_ping

    await handle_ping(stream)
