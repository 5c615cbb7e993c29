"""System: block number, recent block hashes, account nonces, the randomness beacon, fees."""
from __future__ import annotations

from dataclasses import dataclass

from runtime.crypto import blake2b_256
from runtime.module import Bytes, Context, Module, Record, RecordValue, StorageMap, StorageValue, call

BLOCK_HASH_HISTORY = 2400  # mortal eras may not outlive this many blocks

Number = StorageValue("system", "Number", 0)
ParentHash = StorageValue("system", "ParentHash", bytes(32))
Timestamp = StorageValue("system", "Timestamp", 0)
BlockHash = StorageMap("system", "BlockHash", None)
AccountNonce = StorageMap("system", "AccountNonce", 0)
Randomness = StorageValue("system", "Randomness", bytes(32))


@dataclass(frozen=True)
class FeeSchedule(Record):
    """What an extrinsic pays (base + per byte + per unit of weight) and the block's weight limit."""

    base_fee: int
    byte_fee: int
    weight_fee: int
    max_block_weight: int


FeeParams = RecordValue("system", "FeeParams", FeeSchedule(0, 0, 0, 10**12))
EpochLength = StorageValue("system", "EpochLength", 20)  # blocks per epoch


def nonce_of(ctx: Context, who: bytes) -> int:
    return AccountNonce.get(ctx.state, who)


def epoch_length(ctx: Context) -> int:
    return EpochLength.get(ctx.state)


def current_epoch(ctx: Context) -> int:
    """Epoch of the block being applied: block number // epoch length."""
    return ctx.block_number // EpochLength.get(ctx.state)


def is_epoch_start(ctx: Context) -> bool:
    return ctx.block_number % EpochLength.get(ctx.state) == 0


def randomness(ctx: Context, subject: bytes) -> bytes:
    """Beacon output for a subject: blake2b(beacon ‖ subject); the beacon is mixed every block."""
    return blake2b_256(Randomness.get(ctx.state) + subject)


def start_block(ctx: Context, parent_hash: bytes, randao_reveal: bytes) -> None:
    """Record the new block's number, parent and time, and mix the author's reveal into the beacon."""
    Number.put(ctx.state, ctx.block_number)
    ParentHash.put(ctx.state, parent_hash)
    Timestamp.put(ctx.state, ctx.timestamp_ms)
    BlockHash.put(ctx.state, ctx.block_number - 1, parent_hash)
    if ctx.block_number > BLOCK_HASH_HISTORY:
        BlockHash.remove(ctx.state, ctx.block_number - 1 - BLOCK_HASH_HISTORY)
    Randomness.put(ctx.state, blake2b_256(Randomness.get(ctx.state) + blake2b_256(randao_reveal)))


class System(Module):
    """Chain bookkeeping every block needs."""

    name = "system"
    storage = (Number, ParentHash, Timestamp, BlockHash, AccountNonce, Randomness, FeeParams, EpochLength)
    events = {
        "ExtrinsicSuccess": ["weight", "fee"],
        "ExtrinsicFailed": ["module", "error", "message", "fee"],
        "Remarked": ["who", "hash"],
    }

    @call(weight=1_000)
    @staticmethod
    def remark(ctx: Context, data: Bytes) -> None:
        """Put arbitrary bytes on chain; emits their hash."""
        ctx.deposit_event("system", "Remarked", ctx.origin, blake2b_256(data))

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        fees = config.get("fees", {})
        FeeParams.put(ctx.state, FeeSchedule(
            int(fees.get("base", 0)), int(fees.get("per_byte", 0)),
            int(fees.get("per_weight", 0)), int(config.get("max_block_weight", 10**12)),
        ))
        EpochLength.put(ctx.state, int(config.get("epoch_length", 20)))
        seed = config.get("randomness_seed", "arena")
        Randomness.put(ctx.state, blake2b_256(str(seed).encode()))
