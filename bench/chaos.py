"""`make chaos`: finality under faults, bounded in time (about 8 minutes on 2 cores).

1. The model-based checker (tests/finality_sim.py) over CHAOS_SCHEDULES adversarial schedules
   (default 10,000) on two processes: conflicts (must be 0) and schedules without liveness after
   the synchronous period (must be 0).
2. The fault harness (tests/fault_harness.py) on 4 real node processes whose links pass through
   delaying, lossy, cuttable proxies, phase by phase: baseline; 400±300 ms + 5 % loss;
   800±700 ms + 10 % loss; a 2|2 partition for 30 s and heal; a 3|1 partition and heal; one-way
   link drops around a fork; final heal. Printed per phase: finalized and best blocks/min on the
   slowest node of those that can still make progress (all; 0-2 when 3 is cut off; 1-3 when
   nobody reaches 0), conflicts, bans between honest nodes, and recovery times.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

from tests.fault_harness import FaultNet, finality_latencies
from tests.finality_sim import run_schedule


def _check(seed: int) -> tuple[int, bool, bool]:
    verdict = run_schedule(seed)
    return seed, bool(verdict["conflicts"]), bool(verdict["live"])


def model_checker(count: int) -> dict:
    start = time.monotonic()
    with Pool(2) as pool:
        results = pool.map(_check, range(count), chunksize=50)
    conflicts = [s for s, c, _ in results if c]
    stuck = [s for s, _, live in results if not live]
    return {"schedules": count, "conflicts": conflicts, "not_live": stuck, "seconds": time.monotonic() - start}


def _heads(net: FaultNet, nodes: list[int]) -> tuple[int, int]:
    """(lowest finalized, lowest best) among `nodes`."""
    health = [net.health(i) or {} for i in nodes]
    return min(h.get("finalized", 0) for h in health), min(h.get("best", 0) for h in health)


def phase(net: FaultNet, name: str, seconds: float, rows: list, nodes: list[int] | None = None) -> None:
    """Blocks per minute on the slowest of `nodes` (default all: those that should keep going)."""
    nodes = list(range(net.count)) if nodes is None else nodes
    fin0, best0 = _heads(net, nodes)
    time.sleep(seconds)
    fin1, best1 = _heads(net, nodes)
    rows.append((name, (fin1 - fin0) * 60 / seconds, (best1 - best0) * 60 / seconds, ""))
    print(f"  {name}: finalized {fin0}->{fin1}, best {best0}->{best1}", flush=True)


def real_network(slot_ms: int) -> dict:
    net = FaultNet(Path(tempfile.mkdtemp(prefix="arena-chaos-")), count=4, slot_ms=slot_ms)
    rows: list[tuple[str, float, float, str]] = []
    out: dict = {"rows": rows, "base": str(net.base)}
    try:
        net.start()
        net.wait_finality_past(2, 60)
        latencies = finality_latencies(net, 30)
        out["p50"] = statistics.median(latencies) if latencies else None
        out["p99"] = sorted(latencies)[int(0.99 * (len(latencies) - 1))] if latencies else None
        phase(net, "baseline", 30, rows)
        net.set_all(400, 300, 0.05)
        phase(net, "400±300 ms + 5 % loss", 45, rows)
        net.set_all(800, 700, 0.10)
        phase(net, "800±700 ms + 10 % loss", 45, rows)
        net.heal()
        net.partition({0, 1}, {2, 3})
        phase(net, "2|2 partition (30 s)", 30, rows)
        before = max(net.finalized_numbers())
        net.heal()
        healed = net.wait_finality_past(before, 60)
        rows.append(("heal after 2|2: s to finality", healed if healed is not None else float("nan"), 0.0, "aim ≤ 10 s"))
        net.partition({0, 1, 2}, {3})
        phase(net, "3|1 partition (node 3 cut off), nodes 0-2", 20, rows, [0, 1, 2])
        before = max(net.finalized_numbers())
        net.heal()
        caught = net.wait_finality_past(before, 60)
        rows.append(("heal after 3|1: s until node 3 final", caught if caught is not None else float("nan"), 0.0, ""))
        # one-way drops around a fork: 0 hears nobody, 3 is heard by nobody (the issue-10 shape)
        for other in (1, 2, 3):
            net.cut_one_way(other, 0)
            net.cut_one_way(3, other)
        phase(net, "one-way drops (→0, 3→), nodes 1-3", 20, rows, [1, 2, 3])
        net.heal()
        before = max(net.finalized_numbers())
        recovered = net.wait_finality_past(before, 60)
        rows.append(("final heal: s to finality", recovered if recovered is not None else float("nan"), 0.0, ""))
        out["conflicts"] = net.conflicts()
        out["bans"] = net.honest_bans()
    finally:
        net.stop()
    return out


def main() -> int:
    count = int(os.environ.get("CHAOS_SCHEDULES", "10000"))
    slot_ms = int(os.environ.get("CHAOS_SLOT_MS", "1000"))
    print(f"model-based checker: {count} schedules on 2 processes ...", flush=True)
    model = model_checker(count)
    print(f"real processes: 4 authorities, {slot_ms} ms slots, links through fault proxies ...", flush=True)
    real = real_network(slot_ms)
    healthy = real["rows"][0][1] if real["rows"] else 0.0
    print()
    print("| measure | value | limit / aim |")
    print("|---|---|---|")
    print(f"| model checker: schedules | {model['schedules']} ({model['seconds']:.0f} s) | ≥ 10,000 |")
    print(f"| model checker: conflicting finality | {len(model['conflicts'])} | 0 |")
    print(f"| model checker: not live after sync period | {len(model['not_live'])} | 0 |")
    print(f"| real: finality latency p50 / p99 (healthy) | {real.get('p50') or float('nan'):.2f} s / "
          f"{real.get('p99') or float('nan'):.2f} s | p50 ≤ 2 s; slot {slot_ms / 1000:.1f} s |")
    for name, fin_rate, best_rate, aim in real["rows"]:
        if best_rate:
            share = f"{100 * fin_rate / healthy:.0f} % of healthy" if healthy else ""
            print(f"| real: {name}: finalized / best blocks per min | {fin_rate:.0f} / {best_rate:.0f} | {share} "
                  f"(raw limit {60_000 // slot_ms}/min) |")
        else:
            print(f"| real: {name} | {fin_rate:.1f} | {aim} |")
    print(f"| real: conflicting finalized heights | {len(real.get('conflicts', []))} | 0 |")
    print(f"| real: bans between honest nodes | {real.get('bans')} | 0 |")
    failed = model["conflicts"] or model["not_live"] or real.get("conflicts") or real.get("bans")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
