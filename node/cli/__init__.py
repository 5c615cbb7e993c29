"""The `arena` command line: one parser built from one module per command group.

    common.py     amounts in ARENA, accounts, inclusion reports, logging (shared by every group)
    chainspec.py  arena key …, arena chain-spec …
    node.py       arena node
    client.py     arena tx …, arena query …
    ipfs.py       arena ipfs …
    network.py    arena localnet …
    tasks.py      arena task …
    stake.py      arena stake …
    worker.py     arena worker …
    model.py      arena model … (llm.py: model chat, model publish)

Each group has a `register(subparsers)` that adds its commands with `func` set to their handler;
`main` parses, runs the handler and turns the errors a user can cause into one `error:` line.
"""
from __future__ import annotations

import argparse
import sys

from node.cli import chainspec, client, ipfs, model, network, node, stake, tasks, worker
from node.cli.common import with_arena
from node.keystore import KeyError_
from node.rpc_client import RpcClientError
from runtime.crypto import CryptoError

# the order of `arena --help`
REGISTER = (chainspec.register_key, node.register, client.register_tx, client.register_query, ipfs.register,
            network.register, tasks.register, stake.register, worker.register, model.register,
            chainspec.register_chain_spec)


def build_parser() -> argparse.ArgumentParser:
    """The `arena` parser with every command group."""
    parser = argparse.ArgumentParser(prog="arena", description="Arena: a blockchain node for decentralised AI training")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTER:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `arena` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RpcClientError as exc:
        print(f"error: {with_arena(str(exc))}", file=sys.stderr)
        return 1
    except (KeyError_, CryptoError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
