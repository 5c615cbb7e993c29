"""Per-message costs of py-libp2p that Arena removes (issue 17), on real hosts on 127.0.0.1.

The sender's signed peer record rides on every pubsub RPC; it is verified once per peer (and
again only when it changes), not on every RPC. Messages are not signed by the library (every
payload carries its own signature); their id binds the payload, so a forged (origin, seqno)
cannot shadow another message. A yamux receiver returns window credit as go-yamux does (once
half the window is read), not with a WINDOW_UPDATE frame after every read. IDONTWANT goes out
only for large messages (blocks under load), not for every vote and extrinsic batch.
"""

from __future__ import annotations

from pathlib import Path

import libp2p.pubsub.utils as library_utils
import libp2p.stream_muxer.yamux.yamux as library_yamux
import pytest
import trio
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2

from p2p.gossip import Topic, Verdict, message_id
from tests.p2p_helpers import run_trio, start_line, wait_until


def collecting(service, *topics: Topic) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The payloads `service` accepts on `topics`, in arrival order (a validator that keeps them)."""
    got: list[bytes] = []

    def validate(peer: str, payload: object) -> Verdict:
        assert isinstance(payload, bytes)
        got.append(payload)
        return Verdict.ACCEPT

    for topic in topics:
        service.set_validator(topic, validate)
    return got


def sixty_votes_in_separate_rpcs(tmp_path: Path, counted: list) -> int:
    """How many entries `counted` gains while A sends B 60 votes, each in an RPC of its own."""
    gained = 0

    async def scenario() -> None:
        nonlocal gained
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            got = collecting(b, Topic.VOTES)
            before = len(counted)
            for index in range(60):
                await a.publish(Topic.VOTES, b"vote-%d" % index)
                await trio.sleep(0.01)  # separate RPCs, each read on its own with the sender record
            await wait_until(lambda: len(got) == 60, "all votes at B")
            gained = len(counted) - before
            nursery.cancel_scope.cancel()

    run_trio(scenario)
    return gained


def test_peer_records_are_verified_once_per_peer_not_per_rpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verified: list[bytes] = []
    library_check = library_utils.consume_envelope

    def counting(data: bytes, domain: str):  # the library's ed25519 check of a peer record
        verified.append(data)
        return library_check(data, domain)

    monkeypatch.setattr(library_utils, "consume_envelope", counting)
    # Without the cache: one ed25519 verification per RPC (>= 60 here).
    assert sixty_votes_in_separate_rpcs(tmp_path, verified) < 10


def test_small_messages_do_not_each_cost_a_window_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    updates: list[int] = []
    library_update = library_yamux.YamuxStream.send_window_update

    async def counting(self: library_yamux.YamuxStream, increment: int, skip_lock: bool = False) -> None:
        updates.append(increment)
        await library_update(self, increment, skip_lock)

    monkeypatch.setattr(library_yamux.YamuxStream, "send_window_update", counting)
    # The library's own stream sends one per read or so (558 here).
    sent = sixty_votes_in_separate_rpcs(tmp_path, updates)
    assert sent < 10, sent


def test_idontwant_only_for_large_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    announced: list[int] = []
    library_emit = GossipSub.emit_idontwant

    async def counting(self: GossipSub, msg_ids: list[bytes], to_peer: object) -> None:
        announced.append(len(msg_ids))
        await library_emit(self, msg_ids, to_peer)  # type: ignore[arg-type]

    monkeypatch.setattr(GossipSub, "emit_idontwant", counting)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            got = collecting(b, Topic.VOTES, Topic.BLOCKS)
            for index in range(60):
                await a.publish(Topic.VOTES, b"vote-%d" % index)
            await wait_until(lambda: len(got) == 60, "all votes at B")
            assert announced == []  # the library announces every one (>= 60 here)
            await a.publish(Topic.BLOCKS, bytes(100 * 1024))
            await wait_until(lambda: len(got) == 61, "the block at B")
            await wait_until(lambda: len(announced) >= 1, "an IDONTWANT for the block")
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_message_id_binds_the_payload() -> None:
    first = rpc_pb2.Message(data=b"real", from_id=b"peer", seqno=(7).to_bytes(8, "big"))
    forged = rpc_pb2.Message(data=b"other", from_id=b"peer", seqno=(7).to_bytes(8, "big"))
    assert message_id(first) != message_id(forged)
    assert message_id(first) == message_id(rpc_pb2.Message(data=b"real", from_id=b"peer", seqno=(7).to_bytes(8, "big")))


def test_a_garbage_pubsub_frame_ends_one_stream_not_the_node(tmp_path: Path) -> None:
    """A peer writes a frame that is not a protobuf RPC on its pubsub stream: py-libp2p let the
    DecodeError take the whole node down; here only that stream ends and gossip goes on."""
    import multiaddr
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V12
    from libp2p.utils.varint import encode_uvarint

    from p2p.config import NetworkConfig
    from p2p.host import _build_host, load_or_create_node_key
    from tests.p2p_helpers import GENESIS

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            got = collecting(b, Topic.VOTES)
            config = NetworkConfig(key_path=tmp_path / "raw.key", genesis_hash=GENESIS)
            raw = _build_host(load_or_create_node_key(config.key_path), config)
            async with raw.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                await raw.connect(_info(b))
                stream = await raw.new_stream(b.host.get_id(), [PROTOCOL_ID_V12])
                garbage = b"\x0a\xff\xff\xff\xff\x0f" + bytes(40)  # field 1, length far past the end
                await stream.write(encode_uvarint(len(garbage)) + garbage)
                await wait_until(lambda: b.gossip.pubsub.broken_streams == 1, "garbage stream dropped")
            await a.publish(Topic.VOTES, b"still-flowing")
            await wait_until(lambda: b"still-flowing" in got, "gossip after the garbage")
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def _info(service):  # type: ignore[no-untyped-def]
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr
    return info_from_p2p_addr(multiaddr.Multiaddr(service.listen_multiaddr))


def test_concurrent_writers_on_one_pubsub_stream_do_not_interleave(tmp_path: Path) -> None:
    """GossipSub writes to a peer's stream from several tasks; large RPCs span several yamux
    frames, so without one writer at a time the peer reads garbage."""

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            got = collecting(b, Topic.BLOCKS)
            pubsub = a.gossip.pubsub
            stream = pubsub.peers[b.host.get_id()]
            name = a.gossip.topic_name(Topic.BLOCKS)

            def rpc(fill: int) -> rpc_pb2.RPC:
                msg = rpc_pb2.Message(data=bytes([fill]) * 600_000, topicIDs=[name], from_id=a.host.get_id().to_bytes(),
                                      seqno=fill.to_bytes(8, "big"))
                return rpc_pb2.RPC(publish=[msg])

            async with trio.open_nursery() as writers:
                for fill in (1, 2, 3):
                    writers.start_soon(pubsub.write_msg, stream, rpc(fill))
            await wait_until(lambda: len(got) == 3 or b.gossip.pubsub.broken_streams > 0, "three blocks or a broken stream")
            assert b.gossip.pubsub.broken_streams == 0
            assert sorted(p[0] for p in got) == [1, 2, 3]
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_a_busy_peer_whose_pings_are_late_is_not_dropped(tmp_path: Path) -> None:
    """Pongs queued behind a loaded peer's traffic are late, but its gossip keeps arriving: the
    connection is alive and keeps its queued blocks and votes (keepalive dropped such
    connections under load, and finality stalled)."""
    from libp2p.host.ping import ID as PING_PROTOCOL

    from tests.p2p_helpers import make_service, wait_subscribed

    async def swallow(stream: object) -> None:
        await trio.sleep(60)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            boot = make_service(tmp_path, "boot")
            await nursery.start(boot.run)
            node = make_service(tmp_path, "node", (boot.listen_multiaddr,), ping_interval_s=0.3, ping_timeout_s=0.3)
            await nursery.start(node.run)
            await wait_subscribed(node, boot, Topic.VOTES)
            await wait_subscribed(boot, node, Topic.VOTES)
            node.set_validator(Topic.VOTES, lambda peer, payload: Verdict.ACCEPT)
            boot.host.set_stream_handler(PING_PROTOCOL, swallow)  # pings go unanswered
            for index in range(40):  # ~4 s: more than enough missed pings to drop the connection
                await boot.publish(Topic.VOTES, b"busy-%d" % index)
                await trio.sleep(0.1)
            assert node.keepalive_drops == 0 and boot.peer_id in node.peers()
            nursery.cancel_scope.cancel()

    run_trio(scenario, timeout=60)
