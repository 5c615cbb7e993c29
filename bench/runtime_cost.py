"""The runtime's own cost of a transfer, in-process: check (with its signature) and apply.

Runs `bench.network.runtime_costs` (the figure the network sweep prints as its runtime bound)
three times on fresh dev chains of 1,024 funded senders, timed twice each: by the wall clock, as
the sweep does, and by this process's CPU time, which holds still when other work shares the
cores. Prints the runtime bound (cores / (4 nodes × (check + apply))) beside the ed25519
verification rate measured in the same run. `--profile` adds a cProfile of one check loop and
one block build, top items by own time.

    python -m bench.runtime_cost [--profile]
"""
from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import network
from bench.common import print_rows, row
from runtime.crypto import Keypair

RUNS = 3
SENDERS = 1024


def measure(genesis: Path, keys: list[Keypair], workdir: Path, cpu: bool) -> tuple[float, float]:
    """runtime_costs timed by the wall clock, or by this process's CPU time."""
    return network.runtime_costs(genesis, keys, workdir, time.process_time if cpu else time.perf_counter)


def profile(genesis: Path, keys: list[Keypair], workdir: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    network.runtime_costs(genesis, keys, workdir)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def run(with_profile: bool = False) -> list[dict]:
    keys = [Keypair.from_dev_name(f"bench-{i}") for i in range(SENDERS)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        genesis = network.bench_genesis(base, keys)
        verify_one, verify_all = network.verification_rates()
        for index in range(RUNS):
            for cpu in (False, True):
                workdir = base / f"run-{index}-{'cpu' if cpu else 'wall'}"
                workdir.mkdir()
                check, apply = measure(genesis, keys, workdir, cpu)
                clock = "CPU" if cpu else "wall"
                bound = network.CORES / (network.NODES * (check + apply))
                rows.append(row(f"run {index + 1} ({clock}): check {check * 1e6:.1f} + apply {apply * 1e6:.1f} us",
                                bound, "tx/s", f"ed25519/s, {network.CORES} threads / {network.NODES} nodes",
                                verify_all / network.NODES))
        print(f"load average {os.getloadavg()[0]:.2f}; ed25519 {verify_one:.0f}/s on one thread, "
              f"{verify_all:.0f}/s on {network.CORES}", flush=True)
        if with_profile:
            workdir = base / "profile"
            workdir.mkdir()
            profile(genesis, keys, workdir)
    return rows


if __name__ == "__main__":
    print_rows(run("--profile" in sys.argv))
