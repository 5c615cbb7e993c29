"""`arena task create|list|show|timeline|selection`: publish training tasks and follow them to their leaderboard."""
from __future__ import annotations

import argparse
import json
import sys

from node.cli.common import fmt_amount, parse_amount, print_inclusion
from node.keystore import resolve_key
from node.rpc_client import DEFAULT_RPC, RpcClient


def cmd_task(args: argparse.Namespace) -> int:
    """Run one `arena task` command against the node at --rpc."""
    handler = {"create": _task_create, "list": _task_list, "show": _task_show, "timeline": _task_timeline,
               "selection": _task_selection}[args.task_command]
    return handler(RpcClient(args.rpc), args)


def _task_create(client: RpcClient, args: argparse.Namespace) -> int:
    """tasks.create, then the new task's id."""
    params = [args.kind, args.trainers, args.validators, args.min_stake,
              args.training_blocks, args.commit_blocks, args.reveal_blocks]
    result = client.submit_and_wait(resolve_key(args.sender), "tasks", "create", [args.spec_cid, args.pool, params])
    code = print_inclusion(result)
    for event in result["events"]:
        if event["module"] == "tasks" and event["name"] == "TaskCreated":
            print(f"task id {event['data'][0]}")
    return code


def _task_list(client: RpcClient, args: argparse.Namespace) -> int:
    """Tasks, newest first, one line each (or the RPC JSON)."""
    rows = client.call("arena_tasks", args.status)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':>5}  {'status':<11} {'kind':<18} {'pool':>20}  top model")
    for row in rows:
        print(f"{row['id']:>5}  {row['status']:<11} {row['kind']:<18} {fmt_amount(row['rewardPool']):>20}  "
              f"{row['topModel'] or '-'}")
    return 0


def _task_view(client: RpcClient, method: str, task_id: int) -> dict | None:
    """An `arena_*` view of one task, or None after saying on stderr that there is no such task."""
    view = client.call(method, task_id)
    if view is None:
        print(f"no task {task_id}", file=sys.stderr)
    return view


def _task_show(client: RpcClient, args: argparse.Namespace) -> int:
    """A task, its participants and its leaderboard (ranks, consensus scores, rewards, top model)."""
    task = _task_view(client, "arena_task", args.task_id)
    if task is None:
        return 1
    board = client.call("arena_leaderboard", args.task_id)
    if args.json:
        print(json.dumps({"task": task, "leaderboard": board}, indent=2))
        return 0
    print(f"task {task['id']} ({task['kind']}) status {task['status']}, window ends at block {task['phaseEnd']}")
    print(f"  creator {task['creator']}  spec {task['specCid']}")
    print(f"  reward {fmt_amount(task['rewardPool'])} pool + {fmt_amount(task['emission'])} emission")
    print(f"  trainers   {', '.join(t['address'] for t in task['trainers']) or '-'}")
    print(f"  validators {', '.join(v['address'] for v in task['validators']) or '-'}")
    if board["entries"]:
        print(f"  {'rank':>4}  {'consensus':>12}  {'reward':>22}  trainer / model")
        for entry in board["entries"]:
            print(f"  {entry['rank']:>4}  {entry['consensusScore']:>12}  {fmt_amount(entry['reward']):>22}  "
                  f"{entry['address']} {entry['modelCid']}")
        for v in board["validators"]:
            print(f"  validator {v['address']} agreement {v['agreementPpb'] / 1e7:.2f}% reward {fmt_amount(v['reward'])}")
    else:
        for t in task["trainers"]:
            print(f"  submitted {t['address']}: {t['modelCid'] or '-'}")
    print(f"  top model {task['topModel'] or '-'}")
    return 0


def _task_timeline(client: RpcClient, args: argparse.Namespace) -> int:
    """Every phase a task entered (block, time), then each participant's steps by block."""
    task = _task_view(client, "arena_task", args.task_id)
    if task is None:
        return 1
    if args.json:
        print(json.dumps({"timeline": task["timeline"], "trainers": task["trainers"], "validators": task["validators"]},
                         indent=2))
        return 0
    print(f"task {task['id']} ({task['kind']}) status {task['status']}, current window ends at block {task['phaseEnd']}")
    for phase in task["timeline"]:
        print(f"  #{phase['block']:<8} {phase['status']}")
    steps = []
    for t in task["trainers"]:
        steps += [(t["startedBlock"], f"trainer {t['address']} started training"),
                  (t.get("commitBlock"), f"trainer {t['address']} committed its model"),
                  (t["submittedBlock"], f"trainer {t['address']} submitted {t['modelCid']}")]
    for v in task["validators"]:
        steps += [(v["startedBlock"], f"validator {v['address']} started validation"),
                  (v["commitBlock"], f"validator {v['address']} committed scores"),
                  (v["revealBlock"], f"validator {v['address']} revealed scores")]
    for block, what in sorted((b, w) for b, w in steps if b):
        print(f"  #{block:<8} {what}")
    return 0


def _task_selection(client: RpcClient, args: argparse.Namespace) -> int:
    """Who was selected (with stake) and who is eligible now, with selection weights."""
    sel = _task_view(client, "arena_selection", args.task_id)
    if sel is None:
        return 1
    if args.json:
        print(json.dumps(sel, indent=2))
        return 0
    print(f"task {sel['taskId']} status {sel['status']}")
    for role in ("trainers", "validators"):
        print(f"  selected {role}: " + (", ".join(f"{p['address']} ({fmt_amount(p['stake'])})" for p in sel[role]) or "-"))
    for role, rows in sel["eligibleNow"].items():
        print(f"  eligible {role}s now: " + (", ".join(f"{r['address']} (weight {r['weight']})" for r in rows) or "-"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `task` command group to the `arena` parser."""
    task = subparsers.add_parser("task", help="create and inspect training tasks")
    task_sub = task.add_subparsers(dest="task_command", required=True)
    create = task_sub.add_parser("create", help="tasks.create: publish a task and reserve its reward pool")
    create.add_argument("--from", dest="sender", required=True, help="signing key: dev name, key file or keystore name")
    create.add_argument("--spec-cid", required=True, help="CID of the task spec on IPFS")
    create.add_argument("--pool", required=True, type=parse_amount, help="reward pool in ARENA (or base units with 'u')")
    create.add_argument("--kind", required=True, help="task kind, e.g. digits_classifier or char_lm")
    create.add_argument("--trainers", type=int, default=2, help="number of trainers to select")
    create.add_argument("--validators", type=int, default=2, help="number of validators to select")
    create.add_argument("--min-stake", type=parse_amount, default=0, help="minimum bond of a participant")
    create.add_argument("--training-blocks", type=int, default=60)
    create.add_argument("--commit-blocks", type=int, default=30)
    create.add_argument("--reveal-blocks", type=int, default=30)
    show = task_sub.add_parser("show", help="a task and its leaderboard (ranks, consensus scores, rewards, top model)")
    show.add_argument("task_id", type=int)
    listing = task_sub.add_parser("list", help="tasks, newest first")
    listing.add_argument("--status", help="selection, training, validation, reveal, active, finalized, failed, cancelled")
    timeline = task_sub.add_parser("timeline", help="the phases a task entered and each participant's steps, by block")
    timeline.add_argument("task_id", type=int)
    selection = task_sub.add_parser("selection", help="selected trainers/validators and who is eligible now (weights)")
    selection.add_argument("task_id", type=int)
    for p in (show, listing, timeline, selection):
        p.add_argument("--json", action="store_true", help="print the RPC JSON")
    for p in (create, show, listing, timeline, selection):
        p.add_argument("--rpc", default=DEFAULT_RPC)
    task.set_defaults(func=cmd_task)
