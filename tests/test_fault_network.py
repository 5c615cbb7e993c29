"""The short fault run on real processes (`make chaos` runs the long one): 4 authorities whose
links pass through delaying, lossy, cuttable proxies never finalize conflicting blocks, never ban
each other, keep finalizing under delay, stall in a 2|2 partition and resume after it heals."""
import time

import pytest

from tests.fault_harness import FaultNet

pytestmark = pytest.mark.integration


def test_delay_loss_and_partition_on_real_nodes(tmp_path):
    net = FaultNet(tmp_path, count=4, slot_ms=500)
    try:
        net.start()
        assert net.wait_finality_past(2, 60) is not None, net.log(0)[-3000:]
        net.set_all(delay_ms=400, jitter_ms=300, loss=0.05)
        before = min(net.finalized_numbers())
        time.sleep(15)
        assert min(net.finalized_numbers()) > before, "finality must advance under 400±300 ms and 5 % loss"
        net.heal()
        net.partition({0, 1}, {2, 3})
        time.sleep(3)
        stalled = max(net.finalized_numbers())
        time.sleep(6)
        assert max(net.finalized_numbers()) <= stalled + 1, "no side of a 2|2 partition holds > 2/3"
        net.heal()
        assert net.wait_finality_past(max(net.finalized_numbers()), 60) is not None, "finality resumes after heal"
        assert net.conflicts() == []
        assert net.honest_bans() == 0
    finally:
        net.stop()
