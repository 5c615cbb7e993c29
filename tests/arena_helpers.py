"""In-process harness for the staking / tasks / rewards tests: blocks of signed calls on a dev chain."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.codec import encode
from runtime.crypto import Keypair, blake2b_256
from runtime.module import Context
from runtime.modules import balances, system
from runtime.types import Event
from tests.helpers import ALICE, make_chain, sign

UNIT = 10**9
KEYS = {name: Keypair.from_dev_name(name) for name in ("alice", "bob", "charlie", "dave", "eve", "ferdie")}


def fake_cid(label: str) -> str:
    """A syntactically valid CIDv0 (Qm + 44 base58 chars) derived from a label."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    digest = int.from_bytes(blake2b_256(label.encode()), "big")
    chars = []
    for _ in range(44):
        digest, r = divmod(digest, 58)
        chars.append(alphabet[r])
    return "Qm" + "".join(chars)


def commit_hash(task_id: int, validator: bytes, scores: list, salt: bytes) -> bytes:
    return blake2b_256(encode([task_id, validator, scores, salt]))


@dataclass
class Failure:
    module: str
    error: str
    message: str


class Harness:
    """A dev chain plus helpers: `block(calls)` builds one block and returns its events."""

    def __init__(self, path: Path, genesis: Path | None = None) -> None:
        self.chain = make_chain(path, genesis)
        self.last_changes: dict[bytes, bytes | None] = {}
        self.last_before: dict[bytes, bytes | None] = {}
        store = self.chain.store
        original = store.commit_block

        def capture(block, changes, update, events):  # record each block's net writes and prior values
            self.last_before = {k: store.get_state(k) for k in changes}
            self.last_changes = dict(changes)
            original(block, changes, update, events)

        store.commit_block = capture  # type: ignore[method-assign]

    def close(self) -> None:
        self.chain.store.close()

    @property
    def number(self) -> int:
        return self.chain.best.number

    def ctx(self) -> Context:
        best = self.chain.best
        return Context(self.chain.state(), best.number, best.timestamp_ms, best.author)

    def block(self, *calls: tuple[Keypair, str, str, list]) -> list[Event]:
        """Apply one block with the given (key, module, function, args) calls, in order."""
        state = self.chain.state()
        used: dict[bytes, int] = {}
        encoded = []
        for key, module, function, args in calls:
            nonce = system.AccountNonce.get(state, key.public_key) + used.get(key.public_key, 0)
            used[key.public_key] = used.get(key.public_key, 0) + 1
            encoded.append(sign(self.chain, key, module, function, args, nonce))
        slot = self.chain.best.slot + 1
        block, events, rejected = self.chain.build_block(ALICE, slot, self.chain.spec.config["timestamp_ms"] + slot * 1000, encoded)
        assert not rejected, [str(e) for _, e in rejected]
        assert len(block.extrinsics) == len(calls)
        return events

    def empty_blocks(self, count: int) -> list[Event]:
        events: list[Event] = []
        for _ in range(count):
            events += self.block()
        return events

    def until(self, number: int) -> list[Event]:
        """Build empty blocks until the best block is `number`."""
        return self.empty_blocks(max(0, number - self.number))

    def free(self, who: bytes) -> int:
        return balances.free_balance(self.ctx(), who)

    def reserved(self, who: bytes) -> int:
        return balances.reserved_balance(self.ctx(), who)

    def changed_keys(self) -> set[bytes]:
        """Keys whose value the last block really changed."""
        return {k for k, v in self.last_changes.items() if self.last_before.get(k) != v}


def failures(events: list[Event]) -> list[Failure]:
    return [Failure(*e.data[:3]) for e in events if e.module == "system" and e.name == "ExtrinsicFailed"]


def named(events: list[Event], module: str, name: str) -> list[Event]:
    return [e for e in events if e.module == module and e.name == name]


def only_fee_and_nonce_changed(h: Harness, sender: Keypair) -> None:
    """The last block changed nothing but system bookkeeping and the sender's / treasury's balance."""
    from runtime.modules import treasury
    allowed = {balances.Account.key(sender.public_key), balances.Account.key(treasury.TREASURY_ACCOUNT)}
    extra = {k for k in h.changed_keys() if not k.startswith(b"system:") and k not in allowed}
    assert not extra, sorted(extra)


def fails_with(h: Harness, key: Keypair, module: str, function: str, args: list, error: str) -> Failure:
    """Apply one call alone in a block; it must fail with `error` and change nothing but fee and nonce."""
    if (h.number + 1) % system.epoch_length(h.ctx()) == 0:
        h.block()  # epoch starts mint emission and rotate the session: keep them out of the check
    events = h.block((key, module, function, args))
    found = failures(events)
    assert [f.error for f in found] == [error], found
    only_fee_and_nonce_changed(h, key)
    return found[0]
