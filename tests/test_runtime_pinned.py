"""Today's consensus results, pinned: a fixed genesis and fixed keys build 25 blocks of transfers
and other calls, and the block hashes, state root, events and pool checks must equal the values
the code gave before the hot-path work of issue 17 (runtime speed-ups must not change a result).

The pinned genesis is a copy of genesis.json taken then, so an edit of the dev genesis does not
move these values. The PINNED_* constants were obtained by running this test's `build_history`
on commit cf5999d (before any change) and printing them. A deliberate consensus change (a new
storage item, a new event field) moves them too: then recompute them and say so in the commit.
"""
from __future__ import annotations

from pathlib import Path

from node.chain import Chain
from node.genesis import load_chain_spec
from node.storage import ChainStore
from runtime.codec import encode
from runtime.crypto import Keypair, blake2b_256
from runtime.executive import InvalidTransaction
from runtime.modules import balances
from runtime.types import Call, Era, sign_extrinsic

GENESIS = Path(__file__).resolve().parent / "pinned_genesis.json"
BLOCKS = 25  # crosses the epoch boundary at block 20 (session, rewards hooks)
DEVS = [Keypair.from_dev_name(n) for n in ("alice", "bob", "charlie", "dave", "eve", "ferdie")]
RECEIVERS = [Keypair.from_dev_name(f"pinned-receiver-{i}").public_key for i in range(7)]
POOR = Keypair.from_dev_name("pinned-poor")
PINNED_SPEC_VERSION = 1  # extrinsics sign the spec version: the history is built under the one it was pinned with

PINNED_BLOCK_HASHES = "a1a99f153b6e73547edd652bc1b42f4b395c29cdd2a0b0b97601b3d7334f8d25"
PINNED_STATE_ROOT = "6d36932d54d1b73a9ff6dff21864945e514e4e0975d0bda769d9648a55d9e685"
PINNED_EVENTS = "c278a3776704c8645484eac4d0b020acd32846312a230d85c5fbec9c585a4255"
PINNED_CHECKS = "d597d9d0332089128275b101b977eb43e56d53db6dfa551bb53537333875141d"
PINNED_REJECTED = "7f4a20d01df46945f59364268aa88511f43e556e70b5d082de2b971e8b4e7dc4"


def build_history(tmp: Path) -> tuple[Chain, list, list, list]:
    """Author BLOCKS blocks; returns the chain, its blocks, the pool checks seen and the rejections."""
    spec = load_chain_spec(GENESIS)
    chain = Chain(spec, ChainStore(str(tmp / "author")))
    chain.runtime.spec_version = PINNED_SPEC_VERSION
    nonces = {k.public_key: 0 for k in DEVS + [POOR]}
    checks: list = []
    rejected_all: list = []

    def xt(key: Keypair, module: str, function: str, args: list, tip: int = 0, mortal: bool = False) -> bytes:
        nonce = nonces[key.public_key]
        nonces[key.public_key] += 1
        era, birth = Era(0, 0), None
        if mortal:
            best = chain.best
            era, birth = Era(best.number, 16), best.hash
        return sign_extrinsic(key, Call(module, function, args), nonce, spec.genesis_hash,
                              chain.runtime.spec_version, era, tip, birth)

    for b in range(1, BLOCKS + 1):
        batch = []
        for i in range(8):  # plain transfers, some tipped, some mortal
            sender = DEVS[(b + i) % len(DEVS)]
            batch.append(xt(sender, "balances", "transfer", [RECEIVERS[(b * 8 + i) % 7], 1_000 + b * 10 + i],
                            tip=(i % 3) * 5, mortal=i % 4 == 1))
        if b == 1:  # a poor account: enough for a few fees, not for its transfer below
            batch.append(xt(DEVS[0], "balances", "transfer", [POOR.public_key, 50_000_000]))
        if b == 3:
            batch.append(xt(POOR, "balances", "transfer", [RECEIVERS[0], 10**12]))  # fails: InsufficientBalance
            batch.append(xt(DEVS[1], "balances", "transfer", [DEVS[1].public_key, 5]))  # fails: SelfTransfer
            batch.append(xt(DEVS[2], "system", "remark", [b"pinned remark"]))
        if b == 4:
            batch.append(xt(DEVS[4], "staking", "bond", ["validator", 20_000_000_000]))
            batch.append(xt(DEVS[5], "staking", "delegate", [DEVS[4].public_key, 2_000_000_000]))
            batch.append(xt(DEVS[5], "staking", "bond", ["wizard", 1]))  # rejected: BadArguments
            nonces[DEVS[5].public_key] -= 1
        if b == 6:
            batch.append(xt(DEVS[4], "staking", "unbond", ["validator", 5_000_000_000]))
            stale = sign_extrinsic(DEVS[0], Call("balances", "transfer", [RECEIVERS[1], 1]), 0,
                                   spec.genesis_hash, chain.runtime.spec_version)
            batch.append(stale)  # rejected: Stale
        for encoded in batch:
            try:
                checked = chain.check_for_pool(encoded)
                checks.append([checked.hash, checked.fee, checked.nonce_gap, checked.call.weight])
            except InvalidTransaction as exc:
                checks.append([exc.kind, exc.message])
        _block, _events, rejected = chain.build_block(DEVS[0], 1_000 + b, spec.config["timestamp_ms"] + b * 1000, batch)
        rejected_all += [[blake2b_256(x), exc.kind, exc.message] for x, exc in rejected]
    blocks = [chain.store.get_block(chain.store.canonical_hash(n)) for n in range(1, BLOCKS + 1)]
    return chain, blocks, checks, rejected_all


def digest(value: object) -> str:
    return blake2b_256(encode(value)).hex()


def summary(chain: Chain, blocks: list) -> tuple[str, str, str]:
    events = [[e.to_list() for e in chain.store.events(b.hash)] for b in blocks]
    return digest([b.hash for b in blocks]), chain.best.state_root.hex(), digest(events)


def test_pinned_history_is_unchanged(tmp_path):
    author, blocks, checks, rejected = build_history(tmp_path)
    try:
        hashes, root, events = summary(author, blocks)
        # sanity: the history exercises what it claims to
        names = {e.name for b in blocks for e in author.store.events(b.hash)}
        assert {"Transfer", "ExtrinsicSuccess", "ExtrinsicFailed", "Remarked", "Bonded", "Delegated", "Unbonded"} <= names
        assert {kind for _, kind, _ in rejected} == {"BadArguments", "Stale"}
        assert balances.free_balance(author_ctx(author), POOR.public_key) > 0
        assert (hashes, root, events, digest(checks), digest(rejected)) == (
            PINNED_BLOCK_HASHES, PINNED_STATE_ROOT, PINNED_EVENTS, PINNED_CHECKS, PINNED_REJECTED)
    finally:
        author.store.close()
    # an importing node (execute_block, empty signature cache) reaches the same results
    importer = Chain(load_chain_spec(GENESIS), ChainStore(str(tmp_path / "importer")))
    importer.runtime.spec_version = PINNED_SPEC_VERSION
    try:
        for block in blocks:
            importer.import_block(block)
        assert summary(importer, blocks) == (PINNED_BLOCK_HASHES, PINNED_STATE_ROOT, PINNED_EVENTS)
    finally:
        importer.store.close()


def author_ctx(chain: Chain):
    from runtime.module import Context
    return Context(chain.state(), chain.best.number, 0, bytes(32))


if __name__ == "__main__":  # prints the values to pin
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        c, bl, ch, rj = build_history(Path(tmp))
        print(*summary(c, bl), digest(ch), digest(rj), sep="\n")
        print(len(ch), [r[1] for r in rj])
        c.store.close()
