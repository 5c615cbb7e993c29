"""The runtime's own cost of a transfer, in-process: check (with its signature) and apply.

Runs `bench.network.runtime_costs` (the figure the network sweep prints as its runtime bound)
three times on fresh dev chains of 1,024 funded senders, timed twice each: by the wall clock, as
the sweep does, and by this process's CPU time, which holds still when other work shares the
cores. Prints the runtime bound (cores / (4 nodes × (check + apply))) beside the ed25519
verification rate measured in the same run. Then the path of a transfer through one node with
its pool (`node_path`): admitted as a gossiped transfer, built into a block by an author, imported
by the node, and the pool revalidated, by CPU time per transfer beside one ed25519 verification.
`--profile` adds a cProfile of one check loop and one block build, top items by own time.

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
from node.chain import Chain
from node.genesis import load_chain_spec
from node.storage import ChainStore
from node.txpool import TxPool
from node.views import PoolHandle
from runtime.crypto import Keypair

RUNS = 3
SENDERS = 1024
PATH_BLOCKS = 4
PATH_BLOCK_TXS = 2500


def measure(genesis: Path, keys: list[Keypair], workdir: Path, cpu: bool) -> tuple[float, float]:
    """runtime_costs timed by the wall clock, or by this process's CPU time."""
    return network.runtime_costs(genesis, keys, workdir, time.process_time if cpu else time.perf_counter)


def node_path(genesis: Path, keys: list[Keypair], workdir: Path) -> dict[str, float]:
    """CPU seconds per transfer of each stage a transfer passes through on one node, as in a
    4-node network at its ceiling: a peer's pool admits it from gossip (signature verified once),
    an author builds it into a block (from its own pool, signature cached), the peer imports the
    block and revalidates its pool. PATH_BLOCKS blocks of PATH_BLOCK_TXS transfers."""
    spec = load_chain_spec(genesis)

    def node(name: str) -> tuple[Chain, PoolHandle]:
        chain = Chain(spec, ChainStore(str(workdir / name)))
        pool = PoolHandle(TxPool(chain.check_for_pool), chain)
        chain.listeners.append(pool.on_import)
        return chain, pool

    (author, author_pool), (peer, peer_pool) = node("author"), node("peer")
    total = PATH_BLOCKS * PATH_BLOCK_TXS
    queues = network.presign(spec, keys, -(-total // len(keys)))  # the network sweep's transfers
    in_order = [queue[nonce] for nonce in range(len(queues[0])) for queue in queues][:total]
    spent = dict.fromkeys(("admit", "build", "import", "revalidate"), 0.0)
    for number in range(1, PATH_BLOCKS + 1):
        xts = in_order[(number - 1) * PATH_BLOCK_TXS:number * PATH_BLOCK_TXS]
        for x in xts:
            author_pool.admit(x)
        start = time.process_time()
        for x in xts:
            peer_pool.admit(x)
        spent["admit"] += time.process_time() - start
        start = time.process_time()
        block, _, _ = author.build_block(keys[0], number, spec.config["timestamp_ms"] + number * 1000,
                                         author_pool.ready(), budget_s=60.0, max_extrinsics=PATH_BLOCK_TXS)
        spent["build"] += time.process_time() - start
        author_pool.revalidate()
        if len(block.extrinsics) != PATH_BLOCK_TXS:
            raise RuntimeError(f"built {len(block.extrinsics)} of {PATH_BLOCK_TXS} transfers ({author.last_build_stop})")
        start = time.process_time()
        peer.import_block(block)
        spent["import"] += time.process_time() - start
        start = time.process_time()
        peer_pool.revalidate()
        spent["revalidate"] += time.process_time() - start
    if len(peer_pool):
        raise RuntimeError(f"{len(peer_pool)} transfers left in the peer's pool after their blocks")
    author.store.close()
    peer.store.close()
    return {stage: seconds / (PATH_BLOCKS * PATH_BLOCK_TXS) for stage, seconds in spent.items()}


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
        workdir = base / "node-path"
        workdir.mkdir()
        stages = node_path(genesis, keys, workdir)
        verify_us = 1e6 / verify_one
        for stage, seconds in stages.items():
            rows.append(row(f"one node, {stage} (CPU per transfer)", seconds * 1e6, "us",
                            "one ed25519 verification, 1 thread", verify_us))
        share = (stages["admit"] + stages["revalidate"] + (stages["build"] + (network.NODES - 1) * stages["import"])
                 / network.NODES)
        rows.append(row(f"one node of {network.NODES}, runtime path per transfer (author's share included)",
                        share * 1e6, "us", "one ed25519 verification, 1 thread", verify_us))
        if with_profile:
            workdir = base / "profile"
            workdir.mkdir()
            profile(genesis, keys, workdir)
    return rows


if __name__ == "__main__":
    print_rows(run("--profile" in sys.argv))
