"""Gossip delivery rates beside raw libp2p stream throughput, measured in one run on 127.0.0.1.

`python -m bench.p2p_raw` prints one row per figure; `run()` returns them. Takes < 60 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2p.config import NetworkConfig, NetworkLimits
from p2p.gossip import Topic
from p2p.host import NetworkService

GENESIS = bytes.fromhex("be" * 32)
RAW_PROTOCOL = TProtocol("/arena/bench/raw/1")
RAW_BYTES = 64 * 1024 * 1024
RAW_CHUNK = 256 * 1024
BURST = 2000
BATCHED = 20000
ITEM = 1024


async def _wait(predicate: Any, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


async def _pair(nursery: trio.Nursery, tmp: Path) -> tuple[NetworkService, NetworkService]:
    limits = NetworkLimits()
    a = NetworkService(NetworkConfig(key_path=tmp / "a.key", genesis_hash=GENESIS, limits=limits))
    await nursery.start(a.run)
    b = NetworkService(NetworkConfig(key_path=tmp / "b.key", genesis_hash=GENESIS, bootnodes=(a.listen_multiaddr,), limits=limits))
    await nursery.start(b.run)
    for topic in Topic:
        await _wait(lambda t=topic: b.peer_id in a.gossip.topic_peers(t) and a.peer_id in b.gossip.topic_peers(t), 10)
    return a, b


async def _raw_stream(a: NetworkService, b: NetworkService) -> float:
    received = 0
    done = trio.Event()

    async def sink(stream: INetStream) -> None:
        nonlocal received
        while received < RAW_BYTES:
            chunk = await stream.read(RAW_CHUNK)
            if not chunk:
                break
            received += len(chunk)
        done.set()
        await stream.close()

    b.host.set_stream_handler(RAW_PROTOCOL, sink)
    stream = await a.host.new_stream(ID.from_base58(b.peer_id), [RAW_PROTOCOL])
    payload = bytes(RAW_CHUNK)
    started = time.perf_counter()
    for _ in range(RAW_BYTES // RAW_CHUNK):
        await stream.write(payload)
    with trio.fail_after(30):
        await done.wait()
    elapsed = time.perf_counter() - started
    await stream.close()
    return RAW_BYTES / elapsed / 1e6


async def _gossip_burst(a: NetworkService, b: NetworkService) -> float:
    got = 0

    async def count(peer: str, data: bytes) -> None:
        nonlocal got
        got += 1

    b.subscribe(Topic.BLOCKS, count)
    started = time.perf_counter()
    for index in range(BURST):
        await a.publish(Topic.BLOCKS, index.to_bytes(4, "big") + bytes(ITEM - 4))
    await _wait(lambda: got >= BURST, 30)
    return BURST / (time.perf_counter() - started)


async def _gossip_batched(a: NetworkService, b: NetworkService) -> float:
    got = 0

    async def count(peer: str, batch: list[bytes]) -> None:
        nonlocal got
        got += len(batch)

    b.subscribe(Topic.EXTRINSICS, count)
    started = time.perf_counter()
    for index in range(BATCHED):
        await a.submit_extrinsic(index.to_bytes(4, "big") + bytes(ITEM - 4))
    await _wait(lambda: got >= BATCHED, 30)
    return BATCHED / (time.perf_counter() - started)


async def _measure() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            a, b = await _pair(nursery, Path(tmp))
            raw_mb_s = await _raw_stream(a, b)
            burst = await _gossip_burst(a, b)
            batched = await _gossip_batched(a, b)
            nursery.cancel_scope.cancel()
    raw_items = raw_mb_s * 1e6 / ITEM
    return [
        {"figure": "gossip burst delivered to subscriber, 1 KiB messages", "value": burst,
         "unit": "msgs/s", "limit_name": "raw stream as 1 KiB items/s", "limit": raw_items},
        {"figure": "gossip burst delivered, 1 KiB extrinsics batched", "value": batched,
         "unit": "extrinsics/s", "limit_name": "raw stream as 1 KiB items/s", "limit": raw_items},
        {"figure": "gossip batched payload throughput", "value": batched * ITEM / 1e6,
         "unit": "MB/s", "limit_name": "raw stream throughput MB/s", "limit": raw_mb_s},
    ]


def run() -> list[dict[str, Any]]:
    """Measure and return the rows."""
    return trio.run(_measure)


if __name__ == "__main__":
    for row in run():
        print(f"{row['figure']:<62} {row['value']:>12.1f} {row['unit']:<13} "
              f"({row['limit_name']}: {row['limit']:.1f})")
