"""The genesis file: parsing, the genesis state and the genesis block."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.executive import Runtime
from runtime.merkle import BucketTree, bucket_hash, bucket_of
from runtime.registry import MODULES
from runtime.types import Block, Header, extrinsics_root

DEFAULT_GENESIS = Path(__file__).resolve().parent.parent / "genesis.json"


class GenesisError(ValueError):
    """A genesis file that cannot be used."""


@dataclass(frozen=True)
class ChainSpec:
    """The parsed genesis file plus the genesis block and state it defines."""

    config: dict
    genesis_block: Block
    genesis_state: dict[bytes, bytes | None]

    @property
    def genesis_hash(self) -> bytes:
        return self.genesis_block.hash

    @property
    def name(self) -> str:
        return str(self.config.get("name", "Arena"))

    @property
    def slot_duration_ms(self) -> int:
        return int(self.config.get("slot_duration_ms", 1000))

    def runtime(self) -> Runtime:
        return Runtime(MODULES, self.genesis_hash)


def state_root_of(state: dict[bytes, bytes | None]) -> bytes:
    """The Merkle root of a complete state given as a dict."""
    buckets: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in state.items():
        if value is not None:
            buckets.setdefault(bucket_of(key), []).append((key, value))
    hashes = {b: bucket_hash(sorted(entries)) for b, entries in buckets.items()}
    root, _ = BucketTree().updated(hashes)
    return root


def load_chain_spec(path: str | Path | None = None) -> ChainSpec:
    """Parse a genesis file (a chain spec) and build its genesis block."""
    path = Path(path) if path else DEFAULT_GENESIS
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise GenesisError(f"genesis file {path} not found") from exc
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not valid JSON: {exc}") from exc
    return chain_spec_from_config(config, str(path))


def chain_spec_from_config(config: dict, source: str = "chain spec") -> ChainSpec:
    """Build the genesis state and block a chain spec's contents define."""
    if not isinstance(config, dict) or not isinstance(config.get("modules", {}), dict):
        raise GenesisError(f"{source}: a chain spec is a JSON object with a `modules` object")
    try:
        state = Runtime(MODULES).build_genesis(config)
    except (KeyError, ValueError, TypeError) as exc:
        raise GenesisError(f"{source}: {exc}") from exc
    header = Header(
        parent_hash=bytes(32), number=0, slot=0, timestamp_ms=int(config.get("timestamp_ms", 0)),
        author=bytes(32), randao_reveal=bytes(64), state_root=state_root_of(state),
        extrinsics_root=extrinsics_root([]), seal=b"",
    )
    return ChainSpec(config, Block(header, []), state)
