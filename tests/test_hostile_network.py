"""A real 4-node network under attack by real py-libp2p peers with no stake (issue 11).

Attackers (each its own identity, connected to node-0): one floods every topic with garbage, one
with oversize messages, one with extrinsics signed for another chain (wrong genesis), one replays
real votes and extrinsic batches it received, in fresh envelopes. The nodes keep finalizing; the
first three are banned, and nobody else (a replay is not proof of malice: it is dropped, not
punished); node-0's memory stays bounded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from p2p.batcher import encode_batch
from p2p.config import NetworkConfig
from p2p.gossip import Topic
from p2p.host import NetworkService
from runtime.crypto import Keypair
from runtime.executive import SPEC_VERSION
from runtime.types import Call, sign_extrinsic
from tests.helpers import BOB
from tests.netutil import Net
from tests.p2p_helpers import wait_until

pytestmark = pytest.mark.integration

FLOOD = 40  # messages per topic per attacker; a few already earn a ban


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _attacker(tmp_path: Path, name: str, genesis_hash: bytes) -> NetworkService:
    return NetworkService(NetworkConfig(key_path=tmp_path / f"{name}.key", genesis_hash=genesis_hash))


def test_hostile_peers_are_banned_and_the_network_keeps_finalizing(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        net.up()
        net.wait(lambda: min(net.finalized_numbers(range(4))) >= 3, 90, "4 nodes finalize")
        genesis_hash = bytes.fromhex(net.client(0).call("system_properties")["genesisHash"].removeprefix("0x"))
        victim = net.slots[0]
        rss_before = _rss_kib(net.pid(0))
        names = ("garbage", "oversize", "wrong-genesis", "replayer")

        async def attack() -> dict[str, str]:
            async with trio.open_nursery() as nursery:
                attackers = {name: _attacker(tmp_path, name, genesis_hash) for name in names}
                for service in attackers.values():
                    await nursery.start(service.run)
                    await service.connect(victim.multiaddr)
                    for topic in Topic:
                        await wait_until(lambda s=service, t=topic: victim.peer_id in s.gossip.topic_peers(t),
                                         f"{topic} mesh", timeout=20)
                replayer = attackers["replayer"]
                votes: list[bytes] = []
                batches: list[bytes] = []

                async def keep_vote(origin: str, data: bytes) -> None:
                    votes.append(data)

                async def keep_batch(origin: str, items: list[bytes]) -> None:
                    batches.append(encode_batch(items))

                replayer.subscribe(Topic.VOTES, keep_vote)
                replayer.subscribe(Topic.EXTRINSICS, keep_batch)
                # submitted to the victim itself: it publishes the batch to its mesh, the replayer among
                # them (a node forwards a peer's batch only if it takes something new from it)
                await trio.to_thread.run_sync(
                    lambda: net.client(0).submit_and_wait(Keypair.from_dev_name("eve"), "balances", "transfer",
                                                          [BOB.public_key, 7], timeout=30))
                await wait_until(lambda: len(votes) >= 4 and batches, "real votes and a batch to replay", timeout=30)

                garbage, oversize, wrong = attackers["garbage"], attackers["oversize"], attackers["wrong-genesis"]
                other_genesis = bytes(32)
                mallory = Keypair.from_dev_name("mallory")
                for index in range(FLOOD):
                    for topic in Topic:
                        await garbage.gossip.pubsub.publish(garbage.gossip.topic_name(topic), os.urandom(200 + index))
                        size = garbage.gossip.max_message_size(topic) + 1 + index
                        await oversize.gossip.pubsub.publish(oversize.gossip.topic_name(topic), bytes(size))
                    forged = sign_extrinsic(mallory, Call("balances", "transfer", [BOB.public_key, 1]), index,
                                            other_genesis, SPEC_VERSION)
                    await wrong.gossip.pubsub.publish(wrong.gossip.topic_name(Topic.EXTRINSICS), encode_batch([forged]))
                    for payload in votes[:4]:
                        await replayer.gossip.pubsub.publish(replayer.gossip.topic_name(Topic.VOTES), payload)
                    await replayer.gossip.pubsub.publish(replayer.gossip.topic_name(Topic.EXTRINSICS), batches[0])
                    await trio.sleep(0.01)
                ids = {name: service.peer_id for name, service in attackers.items()}
                await wait_until(lambda: all(victim.peer_id not in attackers[n].peers() for n in names[:3]),
                                 "the three invalid-data attackers are dropped", timeout=30)
                assert victim.peer_id in replayer.peers()  # replays are dropped, not punished
                nursery.cancel_scope.cancel()
            return ids

        ids = trio.run(attack)
        after = max(net.finalized_numbers(range(4)))
        net.wait(lambda: min(net.finalized_numbers(range(4))) >= after + 3, 60, "finality continues after the attack")
        rss_after = _rss_kib(net.pid(0))
        log = (net.base / "node-0.log").read_text(errors="replace")
        banned = set(re.findall(r"peer_banned peer=(\S+)", log))
        assert banned == {ids["garbage"], ids["oversize"], ids["wrong-genesis"]}, (banned, ids)
        for i in range(4):
            text = (net.base / f"node-{i}.log").read_text(errors="replace")
            assert "Traceback" not in text, f"node-{i} logged a traceback:\n{text[-3000:]}"
            assert all(slot.peer_id not in banned for slot in net.slots)
        assert all((net.health(i) or {}).get("peers", 0) >= 3 for i in range(4))
        print(f"node-0 RSS {rss_before} KiB before the attack, {rss_after} KiB after")
        # Bounded memory: the flood is ~1,000 messages, up to 1 MB each; node-0 keeps none of them.
        assert rss_after - rss_before < 150 * 1024, f"node-0 RSS grew from {rss_before} KiB to {rss_after} KiB"
    finally:
        net.down()
