"""An in-memory runtime for module tests (FRAME's mock runtime): genesis config → blocks of signed calls.

No LevelDB, no genesis.json, no node: the runtime's modules are built from a genesis config written
here in Python (`dev_genesis`, the parameters of the local dev network) into a dict of storage, and
`RuntimeHarness.block(...)` applies one block of signed calls through the executive
(initialize_block → apply_extrinsic → finalize_block) and keeps its net writes for `changed_keys`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from consensus.validity import randao_message
from runtime.codec import encode
from runtime.crypto import Keypair, blake2b_256
from runtime.executive import CheckedExtrinsic, InvalidTransaction, Runtime
from runtime.merkle import BucketTree, bucket_hash, bucket_of
from runtime.module import Context
from runtime.modules import balances, system, tasks, treasury
from runtime.registry import MODULES
from runtime.state import Overlay
from runtime.types import Call, Era, Event, Header, extrinsics_root, sign_extrinsic

UNIT = 10**9
KEYS = {name: Keypair.from_dev_name(name) for name in ("alice", "bob", "charlie", "dave", "eve", "ferdie")}
AUTHORITIES = ("alice", "bob", "charlie", "dave")


def dev_genesis() -> dict:
    """The local dev network's genesis config: six funded dev accounts, four bonded authorities."""
    address = {name: key.address for name, key in KEYS.items()}
    return {
        "name": "Arena Runtime Test",
        "timestamp_ms": 1_764_000_000_000,
        "slot_duration_ms": 1000,
        "modules": {
            "system": {
                "fees": {"base": 1_000_000, "per_byte": 1000, "per_weight": 10},
                "max_block_weight": 200_000_000,
                "epoch_length": 20,
                "randomness_seed": "arena-local-genesis",
            },
            "session": {
                "max_authorities": 16,
                "slash_ppb": 100_000_000,
                "authorities": [[address[n], 1000 * UNIT] for n in AUTHORITIES],
            },
            "staking": {
                "min_stake": {"authority": 100 * UNIT, "validator": 10 * UNIT, "trainer": 10 * UNIT, "host": 10 * UNIT},
                "unbonding_period": 30,
                "slash_treasury_ppb": 500_000_000,
                "min_delegation": UNIT,
                "bonds": [[address[n], "authority", 1000 * UNIT] for n in AUTHORITIES],
            },
            "rewards": {
                "emission_per_epoch": 10_000 * UNIT,
                "beta_ppb": 1_000_000_000,
                "gamma_ppb": 100_000_000,
                "rho_ppb": 500_000_000,
                "epsilon_ppb": 500_000_000,
                "sigma_ppb": 100_000_000,
                "kappa_ppb": 500_000_000,
                "alpha_ppb": 1_000_000_000,
                "slash_no_commit_ppb": 10_000_000,
                "slash_no_reveal_ppb": 20_000_000,
                "max_validator_share_ppb": 333_333_333,
            },
            "tasks": {
                "kinds": ["digits_classifier", "char_lm", "custom_csv", "custom_text"],
                "max_trainers": 16,
                "max_validators": 16,
                "max_window_blocks": 7200,
                "min_reward_pool": UNIT,
                "max_active_tasks": 32,
                "max_tasks_per_creator": 4,
                "max_min_stake": 50 * UNIT,
                "min_validators_for_emission": 3,
            },
            "marketplace": {
                "usage_shares_ppb": [["host", 500_000_000], ["trainer", 250_000_000],
                                     ["validators", 150_000_000], ["treasury", 100_000_000]],
                "usage_emission_per_period": UNIT,
                "period_blocks": 20,
                "withdraw_delay": 60,
                "max_vouchers_per_report": 64,
            },
            "balances": {"accounts": [[address[n], 1_000_000 * UNIT] for n in KEYS]},
        },
    }


def genesis_with(**sections: dict) -> dict:
    """`dev_genesis()` with some modules' parameters replaced: genesis_with(tasks={"max_trainers": 2})."""
    config = copy.deepcopy(dev_genesis())
    for module, overrides in sections.items():
        config["modules"][module].update(overrides)
    return config


def _state_root(storage: dict[bytes, bytes]) -> bytes:
    buckets: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in storage.items():
        buckets.setdefault(bucket_of(key), []).append((key, value))
    root, _ = BucketTree().updated({b: bucket_hash(sorted(entries)) for b, entries in buckets.items()})
    return root



class RuntimeHarness:
    """The runtime's modules on a dict of storage; `block(calls)` applies one block and returns its events.

    Blocks are authored by alice, one slot apart; headers carry no state root (nothing here needs one).
    """

    def __init__(self, config: dict | None = None, author: Keypair = KEYS["alice"]) -> None:
        self.config = config if config is not None else dev_genesis()
        self.author = author
        genesis = Runtime(MODULES).build_genesis(self.config)
        self.storage: dict[bytes, bytes] = {k: v for k, v in genesis.items() if v is not None}
        self.best = Header(
            parent_hash=bytes(32), number=0, slot=0, timestamp_ms=int(self.config.get("timestamp_ms", 0)),
            author=bytes(32), randao_reveal=bytes(64), state_root=_state_root(self.storage),
            extrinsics_root=extrinsics_root([]), seal=b"",
        )
        self.genesis_hash = self.best.hash
        self.runtime = Runtime(MODULES, self.genesis_hash)
        self.verified: set[bytes] = set()
        self.last_changes: dict[bytes, bytes | None] = {}
        self.last_before: dict[bytes, bytes | None] = {}

    # ------------------------------------------------------------ reads

    @property
    def number(self) -> int:
        return self.best.number

    def state(self) -> Overlay:
        """A scratch view of the current state (writes are discarded)."""
        return Overlay(self.storage.get)

    def ctx(self) -> Context:
        return Context(self.state(), self.best.number, self.best.timestamp_ms, self.best.author)

    def free(self, who: bytes) -> int:
        return balances.free_balance(self.ctx(), who)

    def reserved(self, who: bytes) -> int:
        return balances.reserved_balance(self.ctx(), who)

    def changed_keys(self) -> set[bytes]:
        """Keys whose value the last block really changed."""
        return {k for k, v in self.last_changes.items() if self.last_before.get(k) != v}

    # ------------------------------------------------------------ extrinsics

    def sign(self, key: Keypair, module: str, function: str, args: list, nonce: int, tip: int = 0,
             era: Era = Era(0, 0), birth_hash: bytes | None = None, genesis_hash: bytes | None = None) -> bytes:
        return sign_extrinsic(key, Call(module, function, args), nonce, genesis_hash or self.genesis_hash,
                              self.runtime.spec_version, era, tip, birth_hash or self.genesis_hash)

    def check(self, encoded: bytes) -> CheckedExtrinsic:
        """The transaction pool's check: valid for the next block on top of the current one."""
        best = self.best
        return self.runtime.check_extrinsic(self.state(), encoded, best.number + 1, {best.number: best.hash}, self.verified)

    # ------------------------------------------------------------ blocks

    def snapshot(self) -> tuple[dict[bytes, bytes], Header]:
        """The current storage and best header, for `restore` (to play a block that is then withheld)."""
        return dict(self.storage), self.best

    def restore(self, snapshot: tuple[dict[bytes, bytes], Header]) -> None:
        self.storage, self.best = dict(snapshot[0]), snapshot[1]

    def block(self, *calls: tuple[Keypair, str, str, list], author: Keypair | None = None,
              skip_slots: int = 0) -> list[Event]:
        """Apply one block with the given (key, module, function, args) calls, in order; all must be included.

        `author` signs the block's randomness reveal (default: the harness author); `skip_slots`
        leaves that many slots empty before it, as when the slots' authors withheld their blocks.
        """
        state = self.state()
        used: dict[bytes, int] = {}
        encoded = []
        for key, module, function, args in calls:
            nonce = system.AccountNonce.get(state, key.public_key) + used.get(key.public_key, 0)
            used[key.public_key] = used.get(key.public_key, 0) + 1
            encoded.append(self.sign(key, module, function, args, nonce))
        return self.apply(encoded, author, skip_slots)

    def apply(self, encoded: list[bytes], author: Keypair | None = None, skip_slots: int = 0) -> list[Event]:
        """Apply one block of already signed extrinsics; every one must be includable."""
        parent = self.best
        slot = parent.slot + 1 + skip_slots
        author = author or self.author
        header = Header(
            parent_hash=parent.hash, number=parent.number + 1, slot=slot,
            timestamp_ms=self.config["timestamp_ms"] + slot * 1000, author=author.public_key,
            randao_reveal=author.sign(randao_message(slot)), state_root=bytes(32),
            extrinsics_root=extrinsics_root(encoded),
        )
        state = self.state()
        builder = self.runtime.initialize_block(state, header)
        rejected: list[InvalidTransaction] = []
        for index, xt in enumerate(encoded):
            try:
                self.runtime.apply_extrinsic(builder, xt, index, self.verified)
            except InvalidTransaction as exc:
                rejected.append(exc)
        assert not rejected, [str(e) for e in rejected]
        events = self.runtime.finalize_block(builder)
        changes = state.changes()
        self.last_before = {k: self.storage.get(k) for k in changes}
        self.last_changes = changes
        for key, value in changes.items():
            if value is None:
                self.storage.pop(key, None)
            else:
                self.storage[key] = value
        self.best = header
        return events

    def empty_blocks(self, count: int) -> list[Event]:
        events: list[Event] = []
        for _ in range(count):
            events += self.block()
        return events

    def until(self, number: int) -> list[Event]:
        """Build empty blocks until the best block is `number`."""
        return self.empty_blocks(max(0, number - self.number))


# ---------------------------------------------------------------- helpers for module tests


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


def model_hash(task_id: int, trainer: bytes, model_cid: str) -> bytes:
    """A trainer's model commitment (tasks.model_commitment)."""
    return blake2b_256(encode([task_id, trainer, model_cid]))


def submit_models(h, task_id: int, models: dict) -> list[Event]:
    """Commit every trainer's model in one block, then reveal them all in the next (model_reveal phase).

    `models` maps a started trainer's key to its model CID; every call must succeed."""
    events = h.block(*[(k, "tasks", "commit_model", [task_id, model_hash(task_id, k.public_key, cid)])
                       for k, cid in models.items()])
    task = tasks.get_task(h.ctx(), task_id)
    if len(tasks._model_committed(h.ctx(), task)) < len(task.trainers):  # the window runs out before the reveal
        events += h.until(task.phase_end - 1)
    events += h.block(*[(k, "tasks", "submit_model", [task_id, cid]) for k, cid in models.items()])
    assert not failures(events), failures(events)
    return events


@dataclass
class Failure:
    module: str
    error: str
    message: str


def failures(events: list[Event]) -> list[Failure]:
    return [Failure(*e.data[:3]) for e in events if e.module == "system" and e.name == "ExtrinsicFailed"]


def named(events: list[Event], module: str, name: str) -> list[Event]:
    return [e for e in events if e.module == module and e.name == name]


def only_fee_and_nonce_changed(h, sender: Keypair) -> None:
    """The last block changed nothing but system bookkeeping and the sender's / treasury's balance."""
    allowed = {balances.Account.key(sender.public_key), balances.Account.key(treasury.TREASURY_ACCOUNT)}
    extra = {k for k in h.changed_keys() if not k.startswith(b"system:") and k not in allowed}
    assert not extra, sorted(extra)


def fails_with(h, key: Keypair, module: str, function: str, args: list, error: str) -> Failure:
    """Apply one call alone in a block; it must fail with `error` and change nothing but fee and nonce."""
    if (h.number + 1) % system.epoch_length(h.ctx()) == 0:
        h.block()  # epoch starts mint emission and rotate the session: keep them out of the check
    events = h.block((key, module, function, args))
    found = failures(events)
    assert [f.error for f in found] == [error], found
    only_fee_and_nonce_changed(h, key)
    return found[0]
