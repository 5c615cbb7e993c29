"""Block import throughput: signed transfers applied per second on one core.

Pre-builds blocks of transfers on one chain, then imports them into a fresh chain with an empty
signature cache (every signature verified), and prints the rate beside the single-core ed25519
verification rate measured in the same run.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_rows, rate, row
from node.chain import Chain
from node.genesis import load_chain_spec
from node.storage import ChainStore
from runtime.crypto import Keypair
from runtime.executive import SPEC_VERSION
from runtime.types import Call, sign_extrinsic

BLOCKS = int(os.environ.get("BENCH_IMPORT_BLOCKS", "5"))
TXS_PER_BLOCK = int(os.environ.get("BENCH_IMPORT_TXS", "2000"))
SENDERS = ["alice", "bob", "charlie", "dave", "eve", "ferdie"]


def verification_rate() -> float:
    key = nacl.signing.SigningKey.generate()
    message = b"m" * 120
    signature = key.sign(message).signature
    verify_key = key.verify_key

    def batch() -> int:
        for _ in range(500):
            verify_key.verify(message, signature)
        return 500
    return rate(batch)


def build_blocks(workdir: Path) -> list:
    spec = load_chain_spec()
    chain = Chain(spec, ChainStore(str(workdir / "author")))
    keys = [Keypair.from_dev_name(n) for n in SENDERS]
    receivers = [Keypair.from_dev_name(f"receiver-{i}").public_key for i in range(500)]
    nonces = [0] * len(keys)
    blocks = []
    for b in range(BLOCKS):
        xts = []
        for i in range(TXS_PER_BLOCK):
            k = i % len(keys)
            call = Call("balances", "transfer", [receivers[(b * TXS_PER_BLOCK + i) % len(receivers)], 1000 + i])
            xts.append(sign_extrinsic(keys[k], call, nonces[k], spec.genesis_hash, SPEC_VERSION))
            nonces[k] += 1
        # setup, not the measured part: full blocks whatever the build time or the capacity measured so far
        block, _, rejected = chain.build_block(keys[0], b + 1, spec.config["timestamp_ms"] + (b + 1) * 1000, xts,
                                               budget_s=3600.0, max_extrinsics=TXS_PER_BLOCK)
        assert not rejected and len(block.extrinsics) == TXS_PER_BLOCK, rejected[:1]
        blocks.append(block)
    chain.store.close()
    return blocks


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        blocks = build_blocks(workdir)
        chain = Chain(load_chain_spec(), ChainStore(str(workdir / "importer")))
        start = time.perf_counter()
        for block in blocks:
            chain.import_block(block)
        elapsed = time.perf_counter() - start
        chain.store.close()
    txs = BLOCKS * TXS_PER_BLOCK
    verify_rate = verification_rate()
    return [
        row(f"import: signed transfers/s ({BLOCKS} blocks x {TXS_PER_BLOCK})", txs / elapsed, "tx/s",
            "ed25519 verifications/s, 1 core", verify_rate),
    ]


if __name__ == "__main__":
    print_rows(run())
