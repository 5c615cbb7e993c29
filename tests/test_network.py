"""Real 4-node networks on 127.0.0.1: finality, crash and restart, stalls, sync, equivocation."""
import pytest

from tests.helpers import BOB, Keypair
from tests.netutil import Net

pytestmark = pytest.mark.integration


@pytest.fixture()
def net(tmp_path):
    network = Net(tmp_path)
    yield network
    network.down()


def agree_on_finalized(net, nodes):
    try:
        chains = [net.finalized_chain(i) for i in nodes]
    except Exception as exc:
        raise AssertionError(f"cannot read finalized chains: {exc}\n{net.logs(4000)}") from exc
    for a in chains:
        for b in chains:
            for n in set(a) & set(b):
                assert a[n] == b[n], f"conflicting finalized blocks at #{n}"


def test_finality_crash_restart_and_stall(net):
    net.up()
    net.wait(lambda: min(net.finalized_numbers(range(4))) >= 5, 60, "4 nodes finalize")
    # a transfer submitted to one node is included and seen by all
    c3 = net.client(3)
    eve = Keypair.from_dev_name("eve")
    result = c3.submit_and_wait(eve, "balances", "transfer", [BOB.public_key, 99], timeout=30)
    assert result["status"] == "inBlock"

    # SIGKILL one authority: 3 of 4 > 2/3 keeps finality going
    net.kill(3)
    before = max(net.finalized_numbers(range(3)))
    net.wait(lambda: min(net.finalized_numbers(range(3))) >= before + 5, 60, "finality with 3 of 4")
    # the killed node catches up after restart
    net.up()
    target = max(net.finalized_numbers(range(3)))
    net.wait(lambda: net.finalized_numbers([3])[0] >= target, 60, "restarted node catches up")

    # 2 of 4 down: finality stalls
    net.kill(2)
    net.kill(3)
    import time
    time.sleep(3)
    stalled = max(net.finalized_numbers([0, 1]))
    time.sleep(4)
    assert max(net.finalized_numbers([0, 1])) <= stalled + 1, "finality must stall with 2 of 4 authorities"
    best = net.health(0)["best"]
    assert best > stalled, "blocks are still authored while finality stalls"
    # ...and resumes when they return
    net.up()
    net.wait(lambda: min(net.finalized_numbers(range(4))) >= stalled + 4, 90, "finality resumes")
    agree_on_finalized(net, range(4))


def test_late_joiner_syncs_100_blocks(tmp_path):
    net = Net(tmp_path, count=4, slot_ms=250)
    try:
        net.up()
        # stop node 3 right away, let the others build 100+ blocks, then bring it back empty-handed
        net.kill(3)
        import shutil
        net.wait(lambda: (net.health(0) or {}).get("best", 0) >= 110, 120, "100+ blocks")
        shutil.rmtree(net.base / "node-3" / "db")
        net.up()
        head = net.health(0)["best"]
        net.wait(lambda: (net.health(3) or {}).get("best", 0) >= head, 60, "late joiner reaches the head")
        agree_on_finalized(net, range(4))
    finally:
        net.down()


def test_equivocating_authority_is_reported_and_slashed(tmp_path):
    net = Net(tmp_path, extra={1: ["--test-equivocate"]})
    try:
        net.up()
        bob = BOB.address

        def slashed(kind):
            def find():
                c = net.client(0)
                for n in range(1, c.call("chain_getHeader")["number"] + 1):
                    for e in c.call("arena_events", c.call("chain_getBlockHash", n)):
                        if e["name"] == "EquivocationSlashed" and e["data"][1] == kind:
                            return e
                return None
            return find
        block = net.wait(slashed(0), 60, "block equivocation (two headers, one slot) slashed on chain")
        assert block["data"][0] == bob and block["data"][3] > 0
        vote = net.wait(slashed(1), 60, "vote equivocation (two prevotes, one round) slashed on chain")
        assert vote["data"][0] == bob and vote["data"][3] > 0
        # finality carries on: the equivocator's weight counts for everything, not against anyone
        before = max(net.finalized_numbers(range(4)))
        net.wait(lambda: min(net.finalized_numbers(range(4))) > before, 30, "finality continues")
    finally:
        net.down()
