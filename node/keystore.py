"""Account key files and the dev accounts.

A key file is JSON `{"name", "address", "seed"}` (seed = 32-byte ed25519 seed as hex), mode 0600,
or, encrypted with a passphrase, `{"name", "address", "encrypted": {kdf "scrypt", salt, opslimit,
memlimit, cipher "xsalsa20poly1305", ciphertext}}` (pynacl's scrypt and SecretBox; the seed never
touches the disk in clear). The passphrase comes from `ARENA_KEY_PASSPHRASE` or, on a terminal,
a prompt.
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


PASSPHRASE_ENV = "ARENA_KEY_PASSPHRASE"


def write_key(path: Path, keypair: Keypair, name: str, passphrase: str | None = None) -> None:
    """Write a key file readable only by its owner; encrypted when a passphrase is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict = {"name": name, "address": keypair.address}
    if passphrase:
        record["encrypted"] = _encrypt_seed(keypair.seed, passphrase)
    else:
        record["seed"] = keypair.seed.hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(record, indent=2) + "\n")


def _encrypt_seed(seed: bytes, passphrase: str) -> dict:
    import nacl.pwhash
    import nacl.secret
    import nacl.utils

    scrypt = nacl.pwhash.scrypt
    salt = nacl.utils.random(scrypt.SALTBYTES)
    ops, mem = scrypt.OPSLIMIT_INTERACTIVE, scrypt.MEMLIMIT_INTERACTIVE
    box = nacl.secret.SecretBox(scrypt.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, ops, mem))
    return {"kdf": "scrypt", "salt": salt.hex(), "opslimit": ops, "memlimit": mem, "cipher": "xsalsa20poly1305",
            "ciphertext": box.encrypt(seed).hex()}


def _decrypt_seed(path: Path, sealed: dict, passphrase: str | None) -> bytes:
    import nacl.exceptions
    import nacl.pwhash
    import nacl.secret

    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        import getpass
        import sys

        if not sys.stdin.isatty():
            raise KeyError_(f"key file {path} is encrypted: set {PASSPHRASE_ENV} or run on a terminal to be asked")
        passphrase = getpass.getpass(f"passphrase for {path}: ")
    if sealed.get("kdf") != "scrypt" or sealed.get("cipher") != "xsalsa20poly1305":
        raise KeyError_(f"key file {path} uses an unknown encryption ({sealed.get('kdf')}, {sealed.get('cipher')})")
    key = nacl.pwhash.scrypt.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), bytes.fromhex(sealed["salt"]),
                                 int(sealed["opslimit"]), int(sealed["memlimit"]))
    try:
        return nacl.secret.SecretBox(key).decrypt(bytes.fromhex(sealed["ciphertext"]))
    except nacl.exceptions.CryptoError:
        raise KeyError_(f"wrong passphrase for key file {path}") from None


def read_key(path: Path, passphrase: str | None = None) -> Keypair:
    """The key in a key file (asking for the passphrase of an encrypted one, see the module docstring)."""
    try:
        data = json.loads(path.read_text())
        if "encrypted" in data:
            return Keypair(_decrypt_seed(path, data["encrypted"], passphrase))
        return Keypair(bytes.fromhex(data["seed"]))
    except FileNotFoundError as exc:
        raise KeyError_(f"key file {path} not found") from exc
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, KeyError_):
            raise
        raise KeyError_(f"key file {path} is not a valid Arena key file: {exc}") from exc


def key_file_account(path: Path) -> bytes:
    """The account of a key file from its address field (no passphrase needed)."""
    try:
        return parse_account(json.loads(path.read_text())["address"])
    except FileNotFoundError as exc:
        raise KeyError_(f"key file {path} not found") from exc
    except (ValueError, KeyError, TypeError, CryptoError) as exc:
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
        path, candidate = Path(spec), keystore / f"{spec}.json"
        if not spec.startswith("//") and spec.lower() not in DEV_NAMES:
            if path.suffix == ".json" or path.exists():
                return key_file_account(path)
            if candidate.exists():
                return key_file_account(candidate)
        try:
            return resolve_key(spec, keystore).public_key
        except KeyError_:
            raise KeyError_(f"{spec!r} is not an account: not an SS58 address or 0x public key ({bad_address}), "
                            f"not a dev name ({', '.join(DEV_NAMES)}) or //NAME, not a key file, "
                            f"and not a key in {keystore}") from None
