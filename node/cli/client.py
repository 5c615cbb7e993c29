"""`arena tx …` and `arena query …`: sign and submit calls, read chain state.

`tx transfer|remark` and `query balance|block` are the everyday shortcuts. `tx call`, `query storage`
and `query metadata` reach any call or storage item: node/client.py reads the node's typed metadata
and converts the JSON arguments by their declared types. The CLI's conventions apply inside the
JSON too: accounts may be key names (`"bob"`, `"//val2"`, a keystore name), Balance values may be
ARENA strings (`"1.5"`) or base units (`1500000000` or `"1500000000u"`).

    arena tx transfer --from alice --to bob --amount 1.5
    arena tx call balances transfer '{"dest": "bob", "amount": "1.5"}' --from alice
    arena tx call staking heartbeat '[[1, "cpu", 4096]]' --from bob --wait finalized
    arena query balance bob
    arena query storage balances Account '"bob"'
    arena query metadata staking
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from node.cli.common import address_of, fmt_amount, parse_amount, print_inclusion, with_arena
from node.client import ArenaClient, ClientError
from node.keystore import resolve_account, resolve_key
from node.rpc_client import DEFAULT_RPC, RpcClient

ACCOUNT_HELP = "SS58 address, 0x key, dev name, //NAME or keystore name"


def cmd_tx(args: argparse.Namespace) -> int:
    """`tx transfer` and `tx remark`: sign, submit, wait for inclusion."""
    client = RpcClient(args.rpc)
    key = resolve_key(args.sender)
    if args.tx_command == "transfer":
        dest = resolve_account(args.to)
        result = client.submit_and_wait(key, "balances", "transfer", [dest, args.amount], tip=args.tip)
    else:  # remark
        result = client.submit_and_wait(key, "system", "remark", [args.data.encode()], tip=args.tip)
    return print_inclusion(result)


def cmd_query(args: argparse.Namespace) -> int:
    """`query balance` (with the free balance in ARENA) and `query block` (by number or hash, with its events)."""
    client = RpcClient(args.rpc)
    if args.query_command == "balance":
        account = client.call("arena_account", address_of(args.address))
        account["freeFormatted"] = fmt_amount(account["free"])
        print(json.dumps(account, indent=2))
    elif args.query_command == "block":
        at = args.block
        if at is not None and not at.startswith("0x"):
            at = client.call("chain_getBlockHash", int(at))
            if at is None:
                print(f"no block #{args.block} on the best chain", file=sys.stderr)
                return 1
        block = client.call("chain_getBlock", at)
        block["events"] = client.call("arena_events", block["block"]["header"]["hash"])
        print(json.dumps(block, indent=2))
    return 0


# ---------------------------------------------------------------- any call or storage item, from metadata


def _resolve_argument(value: Any, type_name: str) -> Any:
    """The CLI's conventions inside JSON arguments: key names for accounts, ARENA strings for balances."""
    if type_name == "AccountId" and isinstance(value, str) and not value.startswith("0x"):
        return resolve_account(value)
    if type_name == "Balance" and isinstance(value, str):
        try:
            return parse_amount(value)
        except argparse.ArgumentTypeError as exc:
            raise ClientError(str(exc)) from None
    return value


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text, parse_constant=lambda name: _not_json(name, what))
    except ValueError as exc:
        raise ValueError(f"{what} must be JSON (e.g. '{{\"dest\": \"bob\", \"amount\": \"1.5\"}}' or '[\"bob\", 5]'): "
                         f"{exc}") from None


def _not_json(name: str, what: str) -> Any:
    raise ValueError(f"{what}: {name} is not a number a call can carry")


def cmd_call(args: argparse.Namespace) -> int:
    """`tx call`: compose the call from metadata, show its fee, submit and watch it."""
    client = ArenaClient(args.rpc, resolve=_resolve_argument)
    try:
        call_args = _json_arg(args.args, "ARGS")
        call = client.compose_call(args.module, args.function, call_args if call_args is not None else [])
        extrinsic = client.create_signed_extrinsic(call, resolve_key(args.sender), tip=args.tip)
        fee = client.query_fee(extrinsic)
        receipt = client.submit_and_watch(extrinsic, wait_for=args.wait)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'finalized' if receipt.finalized else 'included'} in block {receipt.block_hash} "
          f"(fee {fee['partialFee']} base units, tip {fee['tip']})")
    for event in receipt.events:
        print(f"  event {event['module']}.{event['name']} {json.dumps(event.get('fields', event['data']))}")
    if receipt.error:
        print(f"call failed: {receipt.error.get('error')}: {with_arena(str(receipt.error.get('message')))}",
              file=sys.stderr)
        return 1
    return 0


def cmd_storage(args: argparse.Namespace) -> int:
    """`query storage`: one storage item, decoded by its declared type."""
    client = ArenaClient(args.rpc, resolve=_resolve_argument)
    try:
        value = client.query(args.module, args.item, _json_arg(args.key, "KEY"))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(value, indent=2))
    return 0


def cmd_metadata(args: argparse.Namespace) -> int:
    """`query metadata`: the node's typed metadata, or one module's."""
    meta = ArenaClient(args.rpc).metadata
    if args.module:
        if args.module not in meta["modules"]:
            print(f"error: no module {args.module!r} (modules: {', '.join(sorted(meta['modules']))})", file=sys.stderr)
            return 1
        print(json.dumps(meta["modules"][args.module], indent=2))
    else:
        print(json.dumps(meta, indent=2))
    return 0


# ---------------------------------------------------------------- parser


def register_tx(sub: argparse._SubParsersAction) -> None:
    """Add `arena tx transfer|remark|call`."""
    tx = sub.add_parser("tx", help="sign and submit an extrinsic, wait for inclusion")
    tx_sub = tx.add_subparsers(dest="tx_command", required=True)
    transfer = tx_sub.add_parser("transfer", help="balances.transfer")
    transfer.add_argument("--to", required=True, help=f"destination: {ACCOUNT_HELP}")
    transfer.add_argument("--amount", required=True, type=parse_amount,
                          help="ARENA (e.g. 1.5; 1 ARENA = 10^9 units) or base units with 'u'")
    remark = tx_sub.add_parser("remark", help="system.remark")
    remark.add_argument("--data", required=True)
    for p in (transfer, remark):
        p.add_argument("--from", dest="sender", required=True, help="signing key: dev name, key file or keystore name")
        p.add_argument("--tip", type=parse_amount, default=0, help="ARENA (or base units with 'u')")
        p.add_argument("--rpc", default=DEFAULT_RPC)
    tx.set_defaults(func=cmd_tx)
    call = tx_sub.add_parser("call", help="any call, built from the node's metadata: MODULE FUNCTION [ARGS as JSON]")
    call.add_argument("module")
    call.add_argument("function")
    call.add_argument("args", nargs="?", help="JSON list in declared order or object by argument name")
    call.add_argument("--from", dest="sender", required=True, help="signing key: dev name, //NAME, key file or keystore name")
    call.add_argument("--tip", type=parse_amount, default=0, help="ARENA (or base units with 'u')")
    call.add_argument("--wait", choices=("inBlock", "finalized"), default="inBlock")
    call.add_argument("--rpc", default=DEFAULT_RPC)
    call.set_defaults(func=cmd_call)


def register_query(sub: argparse._SubParsersAction) -> None:
    """Add `arena query balance|block|storage|metadata`."""
    query = sub.add_parser("query", help="read chain state")
    query_sub = query.add_subparsers(dest="query_command", required=True)
    balance = query_sub.add_parser("balance", help="free/reserved balance and nonce of an account")
    balance.add_argument("address", help=ACCOUNT_HELP)
    block = query_sub.add_parser("block", help="a block by number or hash (default: best)")
    block.add_argument("block", nargs="?")
    for p in (balance, block):
        p.add_argument("--rpc", default=DEFAULT_RPC)
    query.set_defaults(func=cmd_query)
    storage = query_sub.add_parser("storage", help="a storage item decoded by its declared type: MODULE ITEM [KEY as JSON]")
    storage.add_argument("module")
    storage.add_argument("item")
    storage.add_argument("key", nargs="?", help="JSON, e.g. '\"bob\"' or '{\"account\": \"bob\", \"role\": \"trainer\"}'")
    storage.add_argument("--rpc", default=DEFAULT_RPC)
    storage.set_defaults(func=cmd_storage)
    metadata = query_sub.add_parser("metadata", help="the node's typed metadata (state_getMetadata), or one module's")
    metadata.add_argument("module", nargs="?")
    metadata.add_argument("--rpc", default=DEFAULT_RPC)
    metadata.set_defaults(func=cmd_metadata)
