"""Free equivocation spam (issue 11, finding 2): a real py-libp2p peer with no stake publishes pairs
of conflicting headers and pairs of conflicting finality votes signed by throwaway keys. Only an
authority can equivocate: the nodes file no report (so no authority pays fees for one), nothing
is slashed, no fork block of a non-authority is stored, the sender is banned as the source of
invalid blocks, and finality goes on."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from consensus.grandpa import PREVOTE, sign_vote
from consensus.validity import randao_message
from p2p.config import NetworkConfig
from p2p.gossip import Topic
from p2p.host import NetworkService
from runtime.crypto import Keypair
from runtime.types import Block, Header, extrinsics_root
from tests.netutil import Net
from tests.p2p_helpers import wait_until

pytestmark = pytest.mark.integration

PAIRS = 30


def _header(key: Keypair, parent_hash: bytes, number: int, slot: int, ts: int, salt: int) -> Header:
    unsealed = Header(parent_hash, number, slot, ts + salt, key.public_key, key.sign(randao_message(slot)),
                      bytes([salt % 256]) * 32, extrinsics_root([]))
    return unsealed.with_seal(key.sign(unsealed.signing_payload()))


def test_equivocations_by_keys_without_stake_cost_the_sender_not_us(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        net.up()
        net.wait(lambda: min(net.finalized_numbers(range(4))) >= 3, 90, "4 nodes finalize")
        c = net.client(0)
        genesis_hash = bytes.fromhex(c.call("system_properties")["genesisHash"].removeprefix("0x"))
        victim = net.slots[0]

        async def attack() -> str:
            spammer = NetworkService(NetworkConfig(key_path=tmp_path / "spam.key", genesis_hash=genesis_hash))
            async with trio.open_nursery() as nursery:
                await nursery.start(spammer.run)
                await spammer.connect(victim.multiaddr)
                for topic in (Topic.BLOCKS, Topic.VOTES):
                    await wait_until(lambda t=topic: victim.peer_id in spammer.gossip.topic_peers(t), f"{topic} mesh",
                                     timeout=20)
                for i in range(PAIRS):
                    best = await trio.to_thread.run_sync(lambda: c.call("chain_getHeader"))
                    parent = bytes.fromhex(best["hash"].removeprefix("0x"))
                    key = Keypair(bytes([i + 1]) * 32)           # a throwaway key, no stake anywhere
                    slot, ts = best["slot"] + 1, best["timestamp"] + 1000
                    for salt in (1, 2):                           # two headers, one slot: "equivocation"
                        block = Block(_header(key, parent, best["number"] + 1, slot, ts, salt), [])
                        await spammer.gossip.pubsub.publish(spammer.gossip.topic_name(Topic.BLOCKS), block.encode())
                    for target in ((best["number"], parent), (0, genesis_hash)):   # two prevotes, one round
                        vote = sign_vote(key, 0, 1, PREVOTE, target)
                        await spammer.gossip.pubsub.publish(spammer.gossip.topic_name(Topic.VOTES), vote.encode())
                    await trio.sleep(0.05)
                peer_id = spammer.peer_id
                await wait_until(lambda: victim.peer_id not in spammer.peers(), "the spammer is dropped", timeout=30)
                nursery.cancel_scope.cancel()
            return peer_id

        spammer_id = trio.run(attack)
        after = max(net.finalized_numbers(range(4)))
        net.wait(lambda: min(net.finalized_numbers(range(4))) >= after + 3, 60, "finality continues")
        for i in range(4):
            log = (net.base / f"node-{i}.log").read_text(errors="replace")
            assert "equivocation by" not in log, f"node-{i} filed a report against a key without stake"
            assert "Traceback" not in log
        assert spammer_id in set(re.findall(r"peer_banned peer=(\S+)", (net.base / "node-0.log").read_text()))
        for n in range(1, c.call("chain_getHeader")["number"] + 1):
            events = c.call("arena_events", c.call("chain_getBlockHash", n))
            assert not [e for e in events if e["name"] == "EquivocationSlashed"]
    finally:
        net.down()
