"""Gossip over real libp2p hosts on 127.0.0.1: A - B - C in a line."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import trio

from p2p.batcher import encode_batch
from p2p.gossip import MessageTooLarge, Topic, Verdict
from tests.p2p_helpers import run_trio, start_line, wait_until


def collector(store: list[tuple[str, bytes]]):
    async def handler(peer: str, data: bytes) -> None:
        store.append((peer, data))

    return handler


def test_message_from_a_reaches_c_and_not_the_publisher(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, _b, c = await start_line(nursery, tmp_path)
            got_a: list[tuple[str, bytes]] = []
            got_c: list[tuple[str, bytes]] = []
            a.subscribe(Topic.BLOCKS, collector(got_a))
            c.subscribe(Topic.BLOCKS, collector(got_c))
            await a.publish(Topic.BLOCKS, b"block-1")
            await wait_until(lambda: got_c, "block at C")
            assert got_c == [(a.peer_id, b"block-1")]
            await trio.sleep(0.2)
            assert got_a == []  # a publisher never receives its own message
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_burst_of_2000_delivered_exactly_once(tmp_path: Path) -> None:
    count = 2000

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b, c = await start_line(nursery, tmp_path)
            got_b: list[tuple[str, bytes]] = []
            got_c: list[tuple[str, bytes]] = []
            b.subscribe(Topic.VOTES, collector(got_b))
            c.subscribe(Topic.VOTES, collector(got_c))
            for index in range(count):
                await a.publish(Topic.VOTES, index.to_bytes(4, "big") + bytes(200))
            await wait_until(lambda: len(got_c) >= count and len(got_b) >= count, "burst delivery", timeout=120)
            await trio.sleep(0.2)
            for got in (got_b, got_c):
                seen = Counter(data[:4] for _, data in got)
                assert len(got) == count and len(seen) == count and max(seen.values()) == 1
            assert b.gossip.dropped_deliveries == c.gossip.dropped_deliveries == 0
            nursery.cancel_scope.cancel()

    run_trio(scenario, timeout=150)


def _verdict(peer: str, data: bytes) -> Verdict:
    return Verdict.REJECT if data.startswith(b"bad") else Verdict.ACCEPT


async def _verdict_after_work(peer: str, data: bytes) -> Verdict:
    """An async validator (block import awaits its execution in a worker thread)."""
    await trio.to_thread.run_sync(time.sleep, 0.05)
    return _verdict(peer, data)


@pytest.mark.parametrize("validator", [_verdict, _verdict_after_work], ids=["sync", "async"])
def test_reject_stops_forwarding_and_penalises(tmp_path: Path, validator) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b, c = await start_line(nursery, tmp_path)
            got_b: list[tuple[str, bytes]] = []
            got_c: list[tuple[str, bytes]] = []
            b.subscribe(Topic.BLOCKS, collector(got_b))
            c.subscribe(Topic.BLOCKS, collector(got_c))
            b.set_validator(Topic.BLOCKS, validator)
            await a.publish(Topic.BLOCKS, b"bad block")
            await wait_until(lambda: b.peer_manager.score(a.peer_id) < 0, "penalty at B")
            await a.publish(Topic.BLOCKS, b"good block")
            await wait_until(lambda: got_c, "good block at C")
            assert [data for _, data in got_c] == [b"good block"]  # the bad one never passed B
            assert [data for _, data in got_b] == [b"good block"]
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_oversize_rejected_before_publishing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            (a,) = await start_line(nursery, tmp_path, count=1, max_vote_message=1000)
            with pytest.raises(MessageTooLarge, match="votes message is 1001 bytes, limit is 1000"):
                await a.publish(Topic.VOTES, bytes(1001))
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_oversize_from_peer_is_dropped_and_penalised(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            got_b: list[tuple[str, bytes]] = []
            b.subscribe(Topic.VOTES, collector(got_b))
            # A's own limit is bypassed to play a misbehaving peer; B's limit applies.
            await a.gossip.pubsub.publish(a.gossip.topic_name(Topic.VOTES), bytes(a.config.limits.max_vote_message + 1))
            await wait_until(lambda: b.peer_manager.score(a.peer_id) < 0, "oversize penalty at B")
            assert got_b == []
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_extrinsic_batches_and_garbage(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            batches: list[tuple[str, list[bytes]]] = []
            seen_by_validator: list[list[bytes]] = []

            def validate(peer: str, batch: list[bytes]) -> Verdict:
                seen_by_validator.append(batch)
                return Verdict.ACCEPT

            b.set_validator(Topic.EXTRINSICS, validate)
            b.subscribe(Topic.EXTRINSICS, collector(batches))  # type: ignore[arg-type]
            for index in range(300):
                await a.submit_extrinsic(b"xt-%d" % index)
            await wait_until(lambda: sum(len(batch) for _, batch in batches) >= 300, "300 extrinsics at B")
            received = [xt for _, batch in batches for xt in batch]
            assert received == [b"xt-%d" % i for i in range(300)]
            assert len(batches) < 30  # batched, not one message each
            assert seen_by_validator[0] == batches[0][1]
            # garbage on the extrinsics topic: penalised, never delivered
            await a.gossip.pubsub.publish(a.gossip.topic_name(Topic.EXTRINSICS), b"\xc1 not msgpack")
            await wait_until(lambda: b.peer_manager.score(a.peer_id) < 0, "garbage penalty at B")
            await a.publish(Topic.EXTRINSICS, encode_batch([b"after"]))
            await wait_until(lambda: batches[-1][1] == [b"after"], "batch after garbage")
            nursery.cancel_scope.cancel()

    run_trio(scenario)
