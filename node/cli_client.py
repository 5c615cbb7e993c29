"""`arena tx call`, `arena query storage`, `arena query metadata`: any call or storage item, built from metadata.

These commands know nothing of the runtime's Python: node/client.py reads the node's typed metadata
and converts the JSON arguments by their declared types. The CLI's conventions apply inside the
JSON too: accounts may be key names (`"bob"`, `"//val2"`, a keystore name), Balance values may be
ARENA strings (`"1.5"`) or base units (`1500000000` or `"1500000000u"`).

    arena tx call balances transfer '{"dest": "bob", "amount": "1.5"}' --from alice
    arena tx call staking heartbeat '[[1, "cpu", 4096]]' --from bob --wait finalized
    arena query storage balances Account '"bob"'
    arena query metadata staking
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from node.client import ArenaClient, ClientError
from node.keystore import resolve_account, resolve_key
from node.rpc_client import DEFAULT_RPC

AmountParser = Callable[[str], int]


def _resolver(parse_amount: AmountParser) -> Callable[[Any, str], Any]:
    def resolve(value: Any, type_name: str) -> Any:
        if type_name == "AccountId" and isinstance(value, str) and not value.startswith("0x"):
            return resolve_account(value)
        if type_name == "Balance" and isinstance(value, str):
            try:
                return parse_amount(value)
            except argparse.ArgumentTypeError as exc:
                raise ClientError(str(exc)) from None
        return value
    return resolve


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


def cmd_call(args: argparse.Namespace, parse_amount: AmountParser, with_arena: Callable[[str], str]) -> int:
    client = ArenaClient(args.rpc, resolve=_resolver(parse_amount))
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


def cmd_storage(args: argparse.Namespace, parse_amount: AmountParser) -> int:
    client = ArenaClient(args.rpc, resolve=_resolver(parse_amount))
    try:
        value = client.query(args.module, args.item, _json_arg(args.key, "KEY"))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(value, indent=2))
    return 0


def cmd_metadata(args: argparse.Namespace) -> int:
    meta = ArenaClient(args.rpc).metadata
    if args.module:
        if args.module not in meta["modules"]:
            print(f"error: no module {args.module!r} (modules: {', '.join(sorted(meta['modules']))})", file=sys.stderr)
            return 1
        print(json.dumps(meta["modules"][args.module], indent=2))
    else:
        print(json.dumps(meta, indent=2))
    return 0


def add_commands(tx_sub: argparse._SubParsersAction, query_sub: argparse._SubParsersAction,
                 parse_amount: AmountParser, with_arena: Callable[[str], str]) -> None:
    """Add `tx call` and `query storage|metadata` (cli.py passes its amount parser and formatter: one unit convention)."""
    call = tx_sub.add_parser("call", help="any call, built from the node's metadata: MODULE FUNCTION [ARGS as JSON]")
    call.add_argument("module")
    call.add_argument("function")
    call.add_argument("args", nargs="?", help="JSON list in declared order or object by argument name")
    call.add_argument("--from", dest="sender", required=True, help="signing key: dev name, //NAME, key file or keystore name")
    call.add_argument("--tip", type=parse_amount, default=0, help="ARENA (or base units with 'u')")
    call.add_argument("--wait", choices=("inBlock", "finalized"), default="inBlock")
    call.add_argument("--rpc", default=DEFAULT_RPC)
    call.set_defaults(func=lambda a: cmd_call(a, parse_amount, with_arena))
    storage = query_sub.add_parser("storage", help="a storage item decoded by its declared type: MODULE ITEM [KEY as JSON]")
    storage.add_argument("module")
    storage.add_argument("item")
    storage.add_argument("key", nargs="?", help="JSON, e.g. '\"bob\"' or '{\"account\": \"bob\", \"role\": \"trainer\"}'")
    storage.add_argument("--rpc", default=DEFAULT_RPC)
    storage.set_defaults(func=lambda a: cmd_storage(a, parse_amount))
    metadata = query_sub.add_parser("metadata", help="the node's typed metadata (state_getMetadata), or one module's")
    metadata.add_argument("module", nargs="?")
    metadata.add_argument("--rpc", default=DEFAULT_RPC)
    metadata.set_defaults(func=cmd_metadata)

