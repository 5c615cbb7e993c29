"""Helpers for p2p tests: real hosts on 127.0.0.1, run in-process under trio, bounded in time."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from p2p.config import NetworkConfig, NetworkLimits
from p2p.gossip import Topic
from p2p.host import NetworkService

GENESIS = bytes.fromhex("ab" * 32)


def run_trio(test: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    """Run an async test under trio with a hard deadline."""

    async def bounded() -> None:
        with trio.fail_after(timeout):
            await test()

    trio.run(bounded)


def make_service(tmp_path: Path, name: str, bootnodes: tuple[str, ...] = (), port: int = 0, **limits: Any) -> NetworkService:
    """A NetworkService with its key in `tmp_path/<name>.key`."""
    config = NetworkConfig(
        key_path=tmp_path / f"{name}.key",
        genesis_hash=GENESIS,
        listen_port=port,
        bootnodes=bootnodes,
        limits=NetworkLimits(**limits),
    )
    return NetworkService(config)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` every 10 ms; fail with `what` after `timeout` seconds."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def wait_subscribed(node: NetworkService, peer: NetworkService, topic: Topic) -> None:
    """Wait until `node` knows that `peer` is subscribed to `topic`."""
    await wait_until(lambda: peer.peer_id in node.gossip.topic_peers(topic), f"{peer.peer_id} on {topic} at {node.peer_id}")


async def start_line(nursery: trio.Nursery, tmp_path: Path, count: int = 3, **limits: Any) -> list[NetworkService]:
    """Start `count` nodes in a line (each bootnodes to the previous) and wait for gossip meshes."""
    nodes: list[NetworkService] = []
    for index in range(count):
        boot = (nodes[-1].listen_multiaddr,) if nodes else ()
        node = make_service(tmp_path, f"n{index}", boot, **limits)
        await nursery.start(node.run)
        nodes.append(node)
    for left, right in itertools.pairwise(nodes):
        for topic in Topic:
            await wait_subscribed(left, right, topic)
            await wait_subscribed(right, left, topic)
    return nodes
