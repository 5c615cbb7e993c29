"""Account key files and the dev accounts.

A key file is JSON `{"name", "address", "seed"}` (seed = 32-byte ed25519 seed as hex), mode 0600.
`resolve_key` accepts a dev name (alice, bob, charlie, dave, eve, ferdie), `//NAME` (the dev
key derived from any name, as Substrate's `//Alice`), a key file path, or the name of a key in the
keystore directory. `resolve_account` accepts all of those and SS58 addresses or 0x public keys,
wherever the CLI wants an account.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from runtime.crypto import CryptoError, Keypair, parse_account

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


def resolve_key(spec: str, keystore: Path | None = None) -> Keypair:
    """A dev name, //NAME, a key file path, or a keystore entry name (in `keystore`, default DEFAULT_KEYSTORE)."""
    keystore = keystore or DEFAULT_KEYSTORE
    if spec.startswith("//") and len(spec) > 2:
        return Keypair.from_dev_name(spec[2:])
    if spec.lower() in DEV_NAMES:
        return Keypair.from_dev_name(spec)
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return read_key(path)
    candidate = keystore / f"{spec}.json"
    if candidate.exists():
        return read_key(candidate)
    raise KeyError_(f"no key {spec!r}: not a dev name ({', '.join(DEV_NAMES)}), a key file, or a key in {keystore}")


def resolve_account(spec: str, keystore: Path | None = None) -> bytes:
    """The 32-byte account an SS58 address, 0x public key, dev name, //NAME, key file or keystore name stands for."""
    keystore = keystore or DEFAULT_KEYSTORE
    try:
        return parse_account(spec)
    except CryptoError as bad_address:
        try:
            return resolve_key(spec, keystore).public_key
        except KeyError_:
            raise KeyError_(f"{spec!r} is not an account: not an SS58 address or 0x public key ({bad_address}), "
                            f"not a dev name ({', '.join(DEV_NAMES)}) or //NAME, not a key file, "
                            f"and not a key in {keystore}") from None
