"""`arena chain-spec new|inspect` and `arena key insert`: start a network of your own.

    arena chain-spec new --name "My Arena" --id my_arena \\
        --authority 5F...=1000000000000 --authority 5G... --endow 5F...=1000000000000000 \\
        --set system.epoch_length=50 --output my-arena.json
    arena key insert --base-path /var/lib/arena --key validator-1.json --chain my-arena.json
    arena node --chain my-arena.json --base-path /var/lib/arena ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node.chainspec import (
    DEFAULT_AUTHORITY_STAKE,
    Authority,
    ChainSpecError,
    authority_addresses,
    insert_authority_key,
    new_chain_spec,
    parse_pair,
    parse_setting,
    write_spec,
)


def cmd_chain_spec(args: argparse.Namespace) -> int:
    from node.genesis import DEFAULT_GENESIS, GenesisError, chain_spec_from_config, load_chain_spec

    try:
        if args.spec_command == "inspect":
            spec = load_chain_spec(args.spec)
            print(json.dumps({"name": spec.name, "id": spec.config.get("id"), "genesisHash": "0x" + spec.genesis_hash.hex(),
                              "authorities": authority_addresses(spec.config),
                              "bootnodes": spec.config.get("bootnodes", []),
                              "slotDurationMs": spec.slot_duration_ms}, indent=2))
            return 0
        template = json.loads(Path(args.template or DEFAULT_GENESIS).read_text())
        authorities = [Authority(*parse_pair(a, "--authority", DEFAULT_AUTHORITY_STAKE)) for a in args.authority or []]
        endowed = [parse_pair(e, "--endow") for e in args.endow or []]
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
    except (ChainSpecError, GenesisError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"file": str(output), "name": spec.name, "id": args.id,
                      "genesisHash": "0x" + spec.genesis_hash.hex(), "authorities": [a.address for a in authorities]},
                     indent=2))
    return 0


def cmd_key_insert(args: argparse.Namespace) -> int:
    from node.cli_worker import parse_key
    from node.genesis import GenesisError, load_chain_spec

    try:
        keypair = parse_key(args.key)
        path = insert_authority_key(Path(args.base_path), keypair, force=args.force)
        if args.chain and keypair.address not in authority_addresses(load_chain_spec(args.chain).config):
            print(f"warning: {keypair.address} is not a genesis authority of {args.chain}; the node authors "
                  "nothing until the account bonds as an authority and is elected", file=sys.stderr)
    except (ChainSpecError, GenesisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"address": keypair.address, "file": str(path)}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `arena chain-spec` and `arena key insert`."""
    spec = sub.add_parser("chain-spec", help="write or inspect the chain spec of a new network")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True)
    new = spec_sub.add_parser("new", help="a spec for a new network, with a fresh genesis hash")
    new.add_argument("--name", required=True, help="human-readable chain name (system_chain)")
    new.add_argument("--id", required=True, help="short machine id, e.g. my_arena")
    new.add_argument("--authority", action="append", metavar="ADDRESS[=STAKE]",
                     help=f"genesis authority and its bond in base units (repeatable; default {DEFAULT_AUTHORITY_STAKE})")
    new.add_argument("--endow", action="append", metavar="ADDRESS=AMOUNT", help="genesis balance in base units (repeatable)")
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


def register_key_insert(key_sub: argparse._SubParsersAction) -> None:
    """`arena key insert` (under the `key` group defined in node/cli.py)."""
    insert = key_sub.add_parser("insert", help="put an authority key into a node's keystore (BASE_PATH/keystore)")
    insert.add_argument("--base-path", required=True, help="the node's data directory")
    insert.add_argument("--key", required=True, help="key file, keystore name, dev name or //NAME")
    insert.add_argument("--chain", help="chain spec: warn if the key is not one of its authorities")
    insert.add_argument("--force", action="store_true", help="replace a different key already there")
    insert.set_defaults(func=cmd_key_insert)
