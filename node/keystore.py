"""Account key files and the dev accounts.

A key file is JSON `{"name", "address", "seed"}` (seed = 32-byte ed25519 seed as hex), mode 0600.
`resolve_key` accepts a dev name (alice, bob, charlie, dave, eve, ferdie), a key file path, or
the name of a key in the keystore directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from runtime.crypto import Keypair

DEV_NAMES = ("alice", "bob", "charlie", "dave", "eve", "ferdie")
DEFAULT_KEYSTORE = Path(os.environ.get("ARENA_KEYSTORE", Path.home() / ".arena" / "keys"))


class KeyError_(ValueError):
    """A key that cannot be found or read."""


def write_key(path: Path, keypair: Keypair, name: str) -> None:
    """Write a key file readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"name": name, "address": keypair.address, "seed": keypair.seed.hex()}, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data + "\n")


def read_key(path: Path) -> Keypair:
    try:
        data = json.loads(path.read_text())
        return Keypair(bytes.fromhex(data["seed"]))
    except FileNotFoundError as exc:
        raise KeyError_(f"key file {path} not found") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyError_(f"key file {path} is not a valid Arena key file: {exc}") from exc


def resolve_key(spec: str, keystore: Path = DEFAULT_KEYSTORE) -> Keypair:
    """A dev name, a key file path, or a keystore entry name."""
    if spec.lower() in DEV_NAMES:
        return Keypair.from_dev_name(spec)
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return read_key(path)
    candidate = keystore / f"{spec}.json"
    if candidate.exists():
        return read_key(candidate)
    raise KeyError_(f"no key {spec!r}: not a dev name ({', '.join(DEV_NAMES)}), a key file, or a key in {keystore}")
