"""`arena key …` and `arena chain-spec …`: the account keys and the chain spec of a network of your own.

    arena key generate --name validator-1 [--encrypt]
    arena chain-spec new --name "My Arena" --id my_arena \\
        --authority 5F...=1000 --authority 5G... --endow 5F...=1000000 \\
        --set system.epoch_length=50 --output my-arena.json
    arena key insert --base-path /var/lib/arena --key validator-1.json --chain my-arena.json
    arena node --chain my-arena.json --base-path /var/lib/arena ...

Genesis amounts (`--authority ADDRESS=STAKE`, `--endow ADDRESS=AMOUNT`) are ARENA like every amount
flag (or base units with a 'u' suffix); the spec file holds base units.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from node import keystore
from node.chainspec import (
    DEFAULT_AUTHORITY_STAKE,
    Authority,
    ChainSpecError,
    authority_addresses,
    insert_authority_key,
    new_chain_spec,
    parse_setting,
    write_spec,
)
from node.cli.common import address_of, parse_amount, with_arena
from node.keystore import KeyError_, resolve_key, write_key
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT

# ---------------------------------------------------------------- key


def new_passphrase() -> str:
    """The passphrase for a new encrypted key: ARENA_KEY_PASSPHRASE, or asked twice on a terminal."""
    given = os.environ.get(keystore.PASSPHRASE_ENV)
    if given is None:
        if not sys.stdin.isatty():
            raise KeyError_(f"--encrypt needs a passphrase: set {keystore.PASSPHRASE_ENV} or run on a terminal")
        given = getpass.getpass("passphrase for the new key: ")
        if getpass.getpass("repeat it: ") != given:
            raise KeyError_("the two passphrases differ; nothing was written")
    if len(given) < 8:
        raise KeyError_("a passphrase needs at least 8 characters; nothing was written")
    return given


def cmd_key(args: argparse.Namespace) -> int:
    """`key generate` writes a new key file (never over an existing one); `key inspect` shows a key's address."""
    if args.key_command == "generate":
        keypair = Keypair.generate()
        path = Path(args.output) if args.output else keystore.DEFAULT_KEYSTORE / f"{args.name}.json"
        if path.exists():
            print(f"error: a key named {args.name!r} already exists at {path}; choose another --name or --output "
                  f"(the existing key is left as it is)", file=sys.stderr)
            return 1
        passphrase = new_passphrase() if args.encrypt else None
        write_key(path, keypair, args.name, passphrase)
        print(json.dumps({"name": args.name, "address": keypair.address, "publicKey": "0x" + keypair.public_key.hex(),
                          "file": str(path)}, indent=2))
        return 0
    keypair = resolve_key(args.key)
    print(json.dumps({"address": keypair.address, "publicKey": "0x" + keypair.public_key.hex()}, indent=2))
    return 0


def cmd_key_insert(args: argparse.Namespace) -> int:
    """Put an authority key into a node's keystore; warn when the chain spec does not list it."""
    from node.genesis import GenesisError, load_chain_spec

    try:
        keypair = resolve_key(args.key)
        path = insert_authority_key(Path(args.base_path), keypair, force=args.force)
        if args.chain and keypair.address not in authority_addresses(load_chain_spec(args.chain).config):
            print(f"warning: {keypair.address} is not a genesis authority of {args.chain}; the node authors "
                  "nothing until the account bonds as an authority and is elected", file=sys.stderr)
    except (ChainSpecError, GenesisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"address": keypair.address, "file": str(path)}, indent=2))
    return 0


# ---------------------------------------------------------------- chain-spec


def cmd_chain_spec(args: argparse.Namespace) -> int:
    """`chain-spec inspect` prints a spec's identity; `chain-spec new` writes a new network's spec."""
    from node.genesis import GenesisError, load_chain_spec

    try:
        if args.spec_command == "inspect":
            spec = load_chain_spec(args.spec)
            print(json.dumps({"name": spec.name, "id": spec.config.get("id"), "genesisHash": "0x" + spec.genesis_hash.hex(),
                              "authorities": authority_addresses(spec.config),
                              "bootnodes": spec.config.get("bootnodes", []),
                              "slotDurationMs": spec.slot_duration_ms}, indent=2))
            return 0
        return _new_chain_spec(args)
    except (ChainSpecError, GenesisError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {with_arena(str(exc))}", file=sys.stderr)
        return 1


def genesis_pair(text: str, what: str, default: int | None = None) -> tuple[str, int]:
    """'ADDRESS[=AMOUNT]' → (SS58 address, base units): any account name the CLI takes, an amount in ARENA."""
    account, sep, amount = text.partition("=")
    if not sep and default is None:
        raise ValueError(f"{what} {text!r} must be ADDRESS=AMOUNT, e.g. alice=1000 (ARENA)")
    try:
        units = parse_amount(amount) if sep else int(default or 0)
        return address_of(account), units
    except (argparse.ArgumentTypeError, KeyError_) as exc:  # the user's text, shown as given
        raise ValueError(f"{what} {text!r}: {exc}") from None


def _new_chain_spec(args: argparse.Namespace) -> int:
    """Write `--output`: the template with the given authorities, balances and settings, and a fresh genesis hash."""
    from node.genesis import DEFAULT_GENESIS, chain_spec_from_config, load_chain_spec

    template = json.loads(Path(args.template or DEFAULT_GENESIS).read_text())
    authorities = [Authority(*genesis_pair(a, "--authority", DEFAULT_AUTHORITY_STAKE)) for a in args.authority or []]
    endowed = [genesis_pair(e, "--endow") for e in args.endow or []]
    config = new_chain_spec(
        template, name=args.name, chain_id=args.id, authorities=authorities, endowed=endowed,
        settings=[parse_setting(s) for s in args.set or []], slot_duration_ms=args.slot_ms,
        bootnodes=[b for value in args.bootnode or [] for b in value.split(",") if b],
    )
    spec = chain_spec_from_config(config, "new chain spec")
    dev = load_chain_spec(DEFAULT_GENESIS)
    if spec.genesis_hash == dev.genesis_hash:  # cannot happen with a random salt; checked anyway
        raise ChainSpecError("the new spec has the dev chain's genesis hash")
    output = Path(args.output)
    if output.exists() and not args.force:
        raise ChainSpecError(f"{output} exists; pass --force to overwrite it (a new salt means a new chain)")
    write_spec(output, config)
    print(json.dumps({"file": str(output), "name": spec.name, "id": args.id,
                      "genesisHash": "0x" + spec.genesis_hash.hex(), "authorities": [a.address for a in authorities]},
                     indent=2))
    return 0


# ---------------------------------------------------------------- parser


def register_key(sub: argparse._SubParsersAction) -> None:
    """Add `arena key generate|inspect|insert`."""
    key = sub.add_parser("key", help="generate or inspect account keys")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    gen = key_sub.add_parser("generate", help="create a new key file")
    gen.add_argument("--name", default="default")
    gen.add_argument("--output", help=f"key file path (default {keystore.DEFAULT_KEYSTORE}/NAME.json)")
    gen.add_argument("--encrypt", action="store_true",
                     help="encrypt the seed with a passphrase (scrypt + secretbox; ARENA_KEY_PASSPHRASE or a prompt)")
    inspect = key_sub.add_parser("inspect", help="show a key's address")
    inspect.add_argument("key", help="dev name, //NAME, key file or keystore name")
    key.set_defaults(func=cmd_key)
    insert = key_sub.add_parser("insert", help="put an authority key into a node's keystore (BASE_PATH/keystore)")
    insert.add_argument("--base-path", required=True, help="the node's data directory")
    insert.add_argument("--key", required=True, help="key file, keystore name, dev name or //NAME")
    insert.add_argument("--chain", help="chain spec: warn if the key is not one of its authorities")
    insert.add_argument("--force", action="store_true", help="replace a different key already there")
    insert.set_defaults(func=cmd_key_insert)


def register_chain_spec(sub: argparse._SubParsersAction) -> None:
    """Add `arena chain-spec new|inspect`."""
    spec = sub.add_parser("chain-spec", help="write or inspect the chain spec of a new network")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True)
    new = spec_sub.add_parser("new", help="a spec for a new network, with a fresh genesis hash")
    new.add_argument("--name", required=True, help="human-readable chain name (system_chain)")
    new.add_argument("--id", required=True, help="short machine id, e.g. my_arena")
    new.add_argument("--authority", action="append", metavar="ADDRESS[=STAKE]",
                     help=f"genesis authority and its bond in ARENA (repeatable; default "
                          f"{DEFAULT_AUTHORITY_STAKE // UNIT})")
    new.add_argument("--endow", action="append", metavar="ADDRESS=AMOUNT", help="genesis balance in ARENA (repeatable)")
    new.add_argument("--set", action="append", metavar="MODULE.PARAM=JSON",
                     help="override a module parameter of the template, e.g. system.epoch_length=50")
    new.add_argument("--slot-ms", type=int, help="slot duration in milliseconds (default: the template's)")
    new.add_argument("--bootnode", action="append", metavar="MULTIADDR", help="bootnode written into the spec")
    new.add_argument("--template", help="spec to start from (default: the repository's genesis.json)")
    new.add_argument("--output", "-o", required=True)
    new.add_argument("--force", action="store_true", help="overwrite --output")
    inspect = spec_sub.add_parser("inspect", help="genesis hash, authorities and bootnodes of a spec")
    inspect.add_argument("spec")
    spec.set_defaults(func=cmd_chain_spec)
