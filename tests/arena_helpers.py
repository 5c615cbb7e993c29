"""Names the node-level tests share with the runtime module tests (defined in tests/runtime_harness.py).

The chain-backed harness that lived here (LevelDB, genesis.json, a patched `commit_block`) is gone:
runtime modules are tested on `tests.runtime_harness.RuntimeHarness`, in memory.
"""
from tests.runtime_harness import (
    KEYS,
    UNIT,
    Failure,
    commit_hash,
    fails_with,
    failures,
    fake_cid,
    model_hash,
    named,
    only_fee_and_nonce_changed,
)

__all__ = ["KEYS", "UNIT", "Failure", "commit_hash", "fails_with", "failures", "fake_cid", "model_hash", "named",
           "only_fee_and_nonce_changed"]
