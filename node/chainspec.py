"""Chain specs for new networks (`arena chain-spec new`) and authority keys in a node's keystore.

A chain spec is a genesis file: the repository's `genesis.json` is the dev chain's. A new spec
starts from a template, replaces its authorities, endowed accounts and any module parameters,
and draws a fresh random genesis salt (the `system.randomness_seed`), so that its genesis hash
differs from every other network's and an extrinsic signed for one chain is invalid on another.
"""
from __future__ import annotations

import copy
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.crypto import Keypair

# `arena key insert` writes a node's authority key here, under its base path
AUTHORITY_KEY_FILE = "authority.json"
DEFAULT_AUTHORITY_STAKE = 1_000_000_000_000  # 1,000 ARENA


class ChainSpecError(ValueError):
    """A chain spec cannot be built as asked; the message says which input to change."""


@dataclass(frozen=True)
class Authority:
    address: str
    stake: int


def parse_setting(text: str) -> tuple[str, str, Any]:
    """'module.param=VALUE' (VALUE is JSON, or a bare string) → (module, param, value)."""
    path, sep, raw = text.partition("=")
    module, dot, param = path.partition(".")
    if not sep or not dot or not module or not param:
        raise ChainSpecError(f"--set {text!r} must be MODULE.PARAM=VALUE, e.g. system.epoch_length=50")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return module, param, value


def new_chain_spec(
    template: dict,
    *,
    name: str,
    chain_id: str,
    authorities: list[Authority],
    endowed: list[tuple[str, int]],
    settings: list[tuple[str, str, Any]] = (),  # type: ignore[assignment]
    slot_duration_ms: int | None = None,
    bootnodes: list[str] = (),  # type: ignore[assignment]
    salt: bytes | None = None,
) -> dict:
    """A chain spec for a new network: `template` with these authorities, balances and parameters."""
    if not authorities:
        raise ChainSpecError("a network needs at least one authority (--authority ADDRESS[=STAKE])")
    seen = [a.address for a in authorities]
    if len(set(seen)) != len(seen):
        raise ChainSpecError("an authority is listed twice")
    spec = copy.deepcopy(template)
    modules = spec.setdefault("modules", {})
    for module, param, value in settings:
        if module not in modules:
            raise ChainSpecError(f"--set {module}.{param}: no module {module!r} (modules: {', '.join(sorted(modules))})")
        if param not in modules[module]:
            known = ", ".join(sorted(modules[module]))
            raise ChainSpecError(f"--set {module}.{param}: module {module} has no parameter {param!r} (has: {known})")
        modules[module][param] = value
    minimum = int(modules.get("staking", {}).get("min_stake", {}).get("authority", 0))
    for authority in authorities:
        if authority.stake < minimum:
            raise ChainSpecError(f"authority {authority.address} stakes {authority.stake}, below the "
                                 f"authority minimum {minimum} (staking.min_stake.authority)")
    max_authorities = int(modules.get("session", {}).get("max_authorities", len(authorities)))
    if len(authorities) > max_authorities:
        raise ChainSpecError(f"{len(authorities)} authorities, but session.max_authorities is {max_authorities}; "
                             f"raise it with --set session.max_authorities={len(authorities)}")
    spec["name"] = name
    spec["id"] = chain_id
    spec.pop("dev_accounts", None)
    if slot_duration_ms is not None:
        if slot_duration_ms < 100:
            raise ChainSpecError(f"slot duration {slot_duration_ms} ms is below 100 ms")
        spec["slot_duration_ms"] = slot_duration_ms
    spec["bootnodes"] = list(bootnodes)
    modules.setdefault("session", {})["authorities"] = [[a.address, a.stake] for a in authorities]
    modules.setdefault("staking", {})["bonds"] = [[a.address, "authority", a.stake] for a in authorities]
    modules.setdefault("balances", {})["accounts"] = [[address, amount] for address, amount in endowed]
    salt = salt if salt is not None else secrets.token_bytes(16)
    modules.setdefault("system", {})["randomness_seed"] = f"{chain_id}/{salt.hex()}"
    return spec


def authority_addresses(spec_config: dict) -> list[str]:
    """The genesis authorities of a chain spec."""
    return [entry[0] for entry in spec_config.get("modules", {}).get("session", {}).get("authorities", [])]


def finality_shortfall(spec_config: dict, running: list[str]) -> str | None:
    """Why a network running only the `running` authority keys cannot finalize, or None if it can."""
    entries = spec_config.get("modules", {}).get("session", {}).get("authorities", [])
    total = sum(int(stake) for _, stake in entries)
    present = sum(int(stake) for address, stake in entries if address in running)
    if total and 3 * present > 2 * total:
        return None
    return (f"the nodes hold {present} of {total} authority stake ({len(set(running) & {a for a, _ in entries})} of "
            f"{len(entries)} authorities); finality needs more than 2/3, so blocks will never be finalized")


def write_spec(path: Path, spec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    tmp.replace(path)


def insert_authority_key(base_path: Path, keypair: Keypair, force: bool = False) -> Path:
    """Store an authority key in `base_path/keystore/` (mode 0600), where `arena node` finds it."""
    from node.keystore import read_key, write_key

    path = base_path / "keystore" / AUTHORITY_KEY_FILE
    if path.exists():
        existing = read_key(path)
        if existing.public_key == keypair.public_key:
            return path
        if not force:
            raise ChainSpecError(f"{path} already holds the key of {existing.address}; pass --force to replace it")
        os.unlink(path)
    write_key(path, keypair, "authority")
    os.chmod(path.parent, 0o700)
    return path
