"""`arena stake …`: bond for a role, delegate, unbond, heartbeat, and read stakes, roles and history."""
from __future__ import annotations

import argparse
import json

from node.cli.common import address_of, fmt_amount, parse_amount, print_inclusion
from node.keystore import resolve_account, resolve_key
from node.rpc_client import DEFAULT_RPC, RpcClient
from runtime.modules.staking import ROLES

ACCOUNT_HELP = "SS58 address, 0x key, dev name, //NAME or keystore name"


def cmd_stake(args: argparse.Namespace) -> int:
    """Run one `arena stake` command: the reads print, the others sign a staking call."""
    client = RpcClient(args.rpc)
    if args.stake_command == "show":
        print(json.dumps(client.call("arena_stakes", address_of(args.address)), indent=2))
        return 0
    if args.stake_command == "roles":
        return _roles(client, args)
    if args.stake_command == "history":
        return _history(client, args)
    return _send(client, args)


def _roles(client: RpcClient, args: argparse.Namespace) -> int:
    """Every role's minimum bond and members, with their bonds and liveness."""
    roles = client.call("arena_roles")
    if args.json:
        print(json.dumps(roles, indent=2))
        return 0
    for role, info in roles.items():
        print(f"{role} (minimum bond {fmt_amount(info['minStake'])}): {len(info['members'])} member(s)")
        for m in info["members"]:
            print(f"  {m['address']}  {fmt_amount(m['bonded']):>22}  {'live' if m['live'] else 'no heartbeat'}")
    return 0


def _history(client: RpcClient, args: argparse.Namespace) -> int:
    """An account's record per role (or one role): tasks, ranks, rewards, slashes, reputation, recent tasks."""
    address = address_of(args.address)
    records = [client.call("arena_history", address, args.role)] if args.role else \
        list(client.call("arena_history", address).values())
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    for r in records:
        if not r["tasksJoined"] and not args.role:
            continue
        print(f"{r['role']}: {r['tasksJoined']} task(s), {r['completed']} completed, {r['missedDeadlines']} missed, "
              f"best rank {r['bestRank'] or '-'}, rewards {fmt_amount(r['rewards'])}, slashed {fmt_amount(r['slashed'])}, "
              f"reputation {r['reputationPpb'] / 1e7:.1f}%")
        for t in r["recent"]:
            print(f"  task {t['taskId']}: rank {t['rank'] or '-'} consensus {t['consensusScore']} "
                  f"agreement {t['agreementPpb'] / 1e7:.2f}% reward {fmt_amount(t['reward'])}")
    return 0


def _send(client: RpcClient, args: argparse.Namespace) -> int:
    """bond, unbond, delegate, undelegate, withdraw or heartbeat, signed by --from."""
    key = resolve_key(args.sender)
    command = args.stake_command
    if command in ("bond", "unbond"):
        call, call_args = command, [args.role, args.amount]
    elif command in ("delegate", "undelegate"):
        call, call_args = command, [resolve_account(args.target), args.amount]
    elif command == "withdraw":
        call, call_args = "withdraw_unbonded", []
    else:  # heartbeat
        # one argument: the capabilities list [available, device kind, memory MiB]
        call, call_args = "heartbeat", [[0 if args.unavailable else 1, args.device, args.memory_mib]]
    return print_inclusion(client.submit_and_wait(key, "staking", call, call_args))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `stake` command group to the `arena` parser."""
    stake = subparsers.add_parser("stake", help="bond, delegate, unbond and heartbeat")
    stake_sub = stake.add_subparsers(dest="stake_command", required=True)
    bond = stake_sub.add_parser("bond", help="staking.bond: stake for a role")
    unbond = stake_sub.add_parser("unbond", help="staking.unbond: start unbonding part of a role's bond")
    for p in (bond, unbond):
        p.add_argument("role", choices=ROLES)
        p.add_argument("amount", type=parse_amount, help="ARENA (or base units with 'u')")
    delegate = stake_sub.add_parser("delegate", help="staking.delegate: back an account that holds a role")
    undelegate = stake_sub.add_parser("undelegate", help="staking.undelegate")
    for p in (delegate, undelegate):
        p.add_argument("target", help=f"the operator: {ACCOUNT_HELP}")
        p.add_argument("amount", type=parse_amount, help="ARENA (or base units with 'u')")
    withdraw = stake_sub.add_parser("withdraw", help="staking.withdraw_unbonded: release unlocked funds")
    heartbeat = stake_sub.add_parser("heartbeat", help="staking.heartbeat: declare availability and hardware")
    heartbeat.add_argument("--device", default="cpu", help="device kind, e.g. cpu or cuda:H100")
    heartbeat.add_argument("--memory-mib", type=int, default=4096)
    heartbeat.add_argument("--unavailable", action="store_true")
    show_stake = stake_sub.add_parser("show", help="bonds, delegations, unlocking funds and heartbeat of an account")
    show_stake.add_argument("address", help=ACCOUNT_HELP)
    roles = stake_sub.add_parser("roles", help="members of every role with their bonds and liveness")
    history = stake_sub.add_parser("history", help="an account's history and reputation per role")
    history.add_argument("address", help=ACCOUNT_HELP)
    history.add_argument("--role", choices=ROLES)
    for p in (roles, history):
        p.add_argument("--json", action="store_true", help="print the RPC JSON")
    for p in (bond, unbond, delegate, undelegate, withdraw, heartbeat):
        p.add_argument("--from", dest="sender", required=True, help="signing key: dev name, //NAME, key file or keystore name")
    for p in (bond, unbond, delegate, undelegate, withdraw, heartbeat, show_stake, roles, history):
        p.add_argument("--rpc", default=DEFAULT_RPC)
    stake.set_defaults(func=cmd_stake)
