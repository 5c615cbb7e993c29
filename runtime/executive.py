"""The executive: applies a block to the state in named steps.

    initialize_block → apply_extrinsic (each) → finalize_block

Every extrinsic is checked (format, call, arguments, era, nonce, fee, signature) before it may
touch state; the fee is charged before dispatch and stays charged when the call fails, while the
call's own writes are rolled back.
"""
from __future__ import annotations

import logging
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from runtime.codec import CodecError
from runtime.crypto import blake2b_256, verify
from runtime.module import CallInfo, Context, DispatchError, Module
from runtime.modules import balances, system, treasury
from runtime.state import Backend, Overlay
from runtime.types import (
    MAX_EXTRINSIC_SIZE,
    PHASE_FINALIZATION,
    PHASE_INITIALIZATION,
    Block,
    Event,
    Extrinsic,
    Header,
    signing_payload,
)

SPEC_VERSION = 2  # 2: issue 12 rules (model commit-reveal, seat credits, staking.Exposed, usage emission cap)
MAX_ERA_PERIOD = system.BLOCK_HASH_HISTORY
DECODE_CACHE_SIZE = 16_384  # decoded extrinsics (~1 KiB each) kept from pool admission to block application; the pool holds ≤ 12,000
_SCALARS = frozenset({int, bytes, str, bool, type(None)})

log = logging.getLogger("arena.runtime")
T = TypeVar("T")


class InvalidTransaction(Exception):
    """An extrinsic that may not be included; `kind` and `code` are shown to RPC users."""

    CODES = {
        "BadFormat": 1001, "BadSignature": 1002, "Stale": 1003, "Future": 1004, "BadEra": 1005,
        "Payment": 1006, "UnknownCall": 1007, "BadArguments": 1008, "ExhaustsResources": 1009,
    }

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.code = self.CODES[kind]
        self.message = message


def _fee(fees: system.FeeSchedule, length: int, weight: int) -> int:
    """What an extrinsic of `length` bytes and `weight` pays under `fees` (tip not included)."""
    return fees.base_fee + fees.byte_fee * length + fees.weight_fee * weight


def invalid(kind: str, message: str) -> InvalidTransaction:
    return InvalidTransaction(kind, message)


@dataclass(frozen=True)
class CheckedExtrinsic:
    """An extrinsic that passed every check against some state; `nonce_gap` > 0 means future."""

    extrinsic: Extrinsic
    encoded: bytes
    hash: bytes
    call: CallInfo
    fee: int
    nonce_gap: int

    @property
    def sender(self) -> bytes:
        return self.extrinsic.signer


@dataclass
class BlockBuilder:
    """A block being applied: its context and the events so far."""

    ctx: Context
    header: Header
    weight: int = 0
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class BlockOutcome:
    changes: dict[bytes, bytes | None]
    events: list[Event]


def drain(steps: Generator[None, None, T]) -> T:
    """Run a stepwise computation (a generator of steps) to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


class Runtime:
    """A set of modules and the rules for applying extrinsics and blocks to their state."""

    def __init__(self, modules: Iterable[type[Module]], genesis_hash: bytes = bytes(32)) -> None:
        self.modules: dict[str, type[Module]] = {m.name: m for m in modules}
        self.calls: dict[tuple[str, str], CallInfo] = {
            (m.name, fname): info for m in self.modules.values() for fname, info in m.calls().items()
        }
        self.genesis_hash = genesis_hash
        self.spec_version = SPEC_VERSION
        self._decoded: dict[bytes, tuple[Extrinsic, bytes, CallInfo]] = {}

    # ------------------------------------------------------------ genesis

    def build_genesis(self, config: dict) -> dict[bytes, bytes | None]:
        """The genesis state from the genesis file's `modules` section."""
        state = Overlay(lambda key: None)
        ctx = Context(state, block_number=0, timestamp_ms=int(config.get("timestamp_ms", 0)), author=bytes(32))
        sections = config.get("modules", {})
        for module in self.modules.values():
            module.genesis(ctx, sections.get(module.name, {}))
        return state.changes()

    # ------------------------------------------------------------ checks

    def check_extrinsic(
        self,
        state: Overlay,
        encoded: bytes,
        block_number: int,
        block_hashes: dict[int, bytes] | None = None,
        verified: set[bytes] | None = None,
    ) -> CheckedExtrinsic:
        """Every check an extrinsic must pass to be included in block `block_number`.

        `block_hashes` supplies hashes not yet in state (the current head, for the pool);
        `verified` is a cache of (extrinsic hash + birth hash) whose signature is known to be good.
        """
        return self._check(state, encoded, block_number, block_hashes or {}, verified)[0]

    def _check(
        self, state: Overlay, encoded: bytes, block_number: int, block_hashes: dict[int, bytes],
        verified: set[bytes] | None,
    ) -> tuple[CheckedExtrinsic, system.FeeSchedule]:
        """check_extrinsic, also returning the fee schedule it read (apply needs its weight limit)."""
        xt, xt_hash, info = self._decode(encoded)
        birth_hash = self._check_era(state, xt, block_number, block_hashes)
        account_nonce = system.AccountNonce.get(state, xt.signer)
        if xt.nonce < account_nonce:
            raise invalid("Stale", f"nonce {xt.nonce} is stale, account is at {account_nonce}")
        fees = system.FeeParams.get(state)
        fee = _fee(fees, len(encoded), info.weight)
        if xt.nonce == account_nonce:
            free = balances.Account.get(state, xt.signer)[0]
            if free < fee + xt.tip:
                raise invalid("Payment", f"fee {fee} + tip {xt.tip} exceeds free balance {free}")
        # the signature covers the era's birth hash: the same bytes can verify on one fork and not
        # on another, so a cached verification is keyed by both
        verified_key = xt_hash + birth_hash
        if verified is None or verified_key not in verified:
            payload = signing_payload(xt.call, xt.nonce, xt.era, xt.tip, self.genesis_hash, self.spec_version, birth_hash)
            if not verify(xt.signer, payload, xt.signature):
                raise invalid(
                    "BadSignature",
                    f"signature does not verify for chain genesis 0x{self.genesis_hash.hex()} spec {self.spec_version} "
                    f"(wrong key, wrong genesis hash, wrong spec version or wrong era birth hash)",
                )
            if verified is not None:
                verified.add(verified_key)
        return CheckedExtrinsic(xt, encoded, xt_hash, info, fee, xt.nonce - account_nonce), fees

    def _decode(self, encoded: bytes) -> tuple[Extrinsic, bytes, CallInfo]:
        """The checks that depend on the bytes alone (size, format, call, arguments), and the hash.

        An extrinsic is checked at pool admission and again when a block applies it: the second
        time the result comes from a bounded cache. Only extrinsics whose arguments are all
        immutable scalars are cached, since the decoded value is then shared by both uses.
        """
        cacheable = type(encoded) is bytes
        cached = self._decoded.get(encoded) if cacheable else None
        if cached is not None:
            return cached
        if len(encoded) > MAX_EXTRINSIC_SIZE:
            raise invalid("ExhaustsResources", f"extrinsic is {len(encoded)} bytes, limit is {MAX_EXTRINSIC_SIZE}")
        try:
            xt = Extrinsic.decode(encoded)
        except CodecError as exc:
            raise invalid("BadFormat", str(exc)) from exc
        info = self.calls.get((xt.call.module, xt.call.function))
        if info is None:
            if xt.call.module not in self.modules:
                raise invalid("UnknownCall", f"unknown module {xt.call.module!r}")
            known = sorted(f for m, f in self.calls if m == xt.call.module)
            raise invalid("UnknownCall", f"module {xt.call.module!r} has no call {xt.call.function!r} (calls: {', '.join(known)})")
        self._check_args(xt, info)
        result = (xt, blake2b_256(encoded), info)
        if cacheable and all(type(arg) in _SCALARS for arg in xt.call.args):
            if len(self._decoded) >= DECODE_CACHE_SIZE:
                self._decoded.clear()  # bounded; clear() is atomic should another thread check too
            self._decoded[encoded] = result
        return result

    def _check_args(self, xt: Extrinsic, info: CallInfo) -> None:
        name = f"{xt.call.module}.{xt.call.function}"
        if len(xt.call.args) != len(info.args):
            raise invalid("BadArguments", f"{name} takes {len(info.args)} arguments ({', '.join(a for a, _ in info.args)}), got {len(xt.call.args)}")
        for value, (arg_name, check) in zip(xt.call.args, info.args):
            if not check.check(value):
                raise invalid("BadArguments", f"{name} argument {arg_name!r} must be {check.type_name}, got {type(value).__name__}")

    def _check_era(self, state: Overlay, xt: Extrinsic, block_number: int, extra: dict[int, bytes]) -> bytes:
        era = xt.era
        if era.period == 0:
            if era.birth != 0:
                raise invalid("BadEra", "an immortal era (period 0) must have birth 0")
            return self.genesis_hash
        if era.period > MAX_ERA_PERIOD:
            raise invalid("BadEra", f"era period {era.period} exceeds the maximum {MAX_ERA_PERIOD}")
        if not era.is_alive(block_number):
            raise invalid("BadEra", f"era [{era.birth}, {era.birth + era.period}) has expired or not begun at block {block_number}")
        if era.birth == 0:
            return self.genesis_hash
        birth_hash = extra.get(era.birth) or system.BlockHash.get(state, era.birth)
        if birth_hash is None:
            raise invalid("BadEra", f"birth block {era.birth} is unknown")
        return birth_hash

    def fee(self, state: Overlay, length: int, weight: int) -> int:
        return _fee(system.FeeParams.get(state), length, weight)

    # ------------------------------------------------------------ blocks

    def initialize_block(self, state: Overlay, header: Header) -> BlockBuilder:
        """Start applying `header`'s block: system bookkeeping, then every module's on_initialize."""
        ctx = Context(state, header.number, header.timestamp_ms, header.author, phase=PHASE_INITIALIZATION)
        system.start_block(ctx, header.parent_hash, header.randao_reveal)
        for module in self.modules.values():
            module.on_initialize(ctx)
        return BlockBuilder(ctx, header)

    def apply_extrinsic(
        self, builder: BlockBuilder, encoded: bytes, index: int, verified: set[bytes] | None = None
    ) -> CheckedExtrinsic:
        """Check, charge and dispatch one extrinsic; raises InvalidTransaction if it may not be included."""
        ctx = builder.ctx
        state = ctx.state
        checked, fees = self._check(state, encoded, ctx.block_number, {}, verified)
        if checked.nonce_gap:
            raise invalid("Future", f"nonce {checked.extrinsic.nonce} is ahead of the account")
        if builder.weight + checked.call.weight > fees.max_block_weight:
            raise invalid("ExhaustsResources", "block weight limit reached")
        xt = checked.extrinsic
        ctx.phase = index
        ctx.origin = xt.signer
        # Fee and nonce first: they stay even when the call fails.
        balances.withdraw(ctx, xt.signer, checked.fee + xt.tip)
        balances.deposit(ctx, treasury.TREASURY_ACCOUNT, checked.fee)
        if xt.tip:
            balances.deposit(ctx, ctx.author, xt.tip)
        system.AccountNonce.put(state, xt.signer, xt.nonce + 1)
        events_before = len(ctx.events)
        state.begin()
        try:
            checked.call.function(ctx, *xt.call.args)
        except DispatchError as err:
            state.rollback()
            del ctx.events[events_before:]
            ctx.deposit_event("system", "ExtrinsicFailed", err.module, err.name, err.message, checked.fee)
        except Exception as err:  # a runtime bug must not halt the chain; every node fails the same way
            state.rollback()
            del ctx.events[events_before:]
            log.exception("call %s.%s raised", xt.call.module, xt.call.function)
            ctx.deposit_event("system", "ExtrinsicFailed", "system", "InternalError", f"{type(err).__name__}: {err}", checked.fee)
        else:
            state.commit()
            ctx.deposit_event("system", "ExtrinsicSuccess", checked.call.weight, checked.fee)
        ctx.origin = None
        builder.weight += checked.call.weight
        return checked

    def finalize_block(self, builder: BlockBuilder) -> list[Event]:
        """Run every module's on_finalize; returns the block's events."""
        ctx = builder.ctx
        ctx.phase = PHASE_FINALIZATION
        for module in self.modules.values():
            module.on_finalize(ctx)
        return ctx.events

    def execute_block(self, backend: Backend, block: Block, verified: set[bytes] | None = None) -> BlockOutcome:
        """Apply a whole block on top of `backend`; raises InvalidTransaction for a bad extrinsic."""
        return drain(self.execute_block_in_steps(backend, block, verified))

    def execute_block_in_steps(
        self, backend: Backend, block: Block, verified: set[bytes] | None = None,
    ) -> Generator[None, None, BlockOutcome]:
        """`execute_block` one extrinsic per step (the node gives its event loop a turn between
        steps); the outcome is the generator's return value."""
        state = Overlay(backend, cache_reads=True)
        builder = self.initialize_block(state, block.header)
        for index, encoded in enumerate(block.extrinsics):
            self.apply_extrinsic(builder, encoded, index, verified)
            yield
        events = self.finalize_block(builder)
        return BlockOutcome(state.changes(), events)

