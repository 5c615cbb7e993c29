"""`arena localnet up|status|down`: run a local multi-node network of real node processes."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node import localnet


def print_status_table(rows: list[dict]) -> None:
    """One line per node: key, pid, heads, peers and addresses (errors under it)."""
    print(f"{'node':<7} {'key':<8} {'pid':>7}  {'best':>6} {'final':>6} {'peers':>5}  {'rpc':<23} p2p")
    for row in rows:
        if "error" in row:
            numbers = f"{'-':>6} {'-':>6} {'-':>5}"
        else:
            numbers = f"{row['best']:>6} {row['finalized']:>6} {row['peers']:>5}"
        pid = str(row["pid"]) if row["running"] else "-"
        print(f"{row['node']:<7} {row['key']:<8} {pid:>7}  {numbers}  {row['rpc']:<23} {row['p2p']}")
        if "error" in row:
            print(f"        ! {row['error']}")


def cmd_localnet(args: argparse.Namespace) -> int:
    """Start, report on or stop the nodes under --base-dir."""
    base = Path(args.base_dir)
    try:
        if args.localnet_command == "up":
            slots = localnet.up(base, args.nodes, Path(args.chain) if args.chain else None,
                                base_port=args.base_port, slot_ms=args.slot_ms)
            for slot in slots:
                print(f"node-{slot.index} ({slot.key}): rpc {slot.rpc_url}  p2p {slot.multiaddr}")
            print(f"chain spec: {localnet.spec_path(base, Path(args.chain) if args.chain else None) or 'genesis.json'}")
            print(f"logs: {base}/node-*.log; stop with: arena localnet down --base-dir {base}")
            warning = localnet.finality_warning(base)
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
        elif args.localnet_command == "status":
            rows = localnet.status(base)
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                print_status_table(rows)
                warning = localnet.finality_warning(base)
                if warning:
                    print(f"warning: {warning}")
            return 0 if all("error" not in row for row in rows) else 1
        else:
            print(f"stopped {localnet.down(base)} node(s)")
    except localnet.LocalnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `arena localnet`."""
    parser = sub.add_parser("localnet", help="run a local multi-node network")
    inner = parser.add_subparsers(dest="localnet_command", required=True)
    up = inner.add_parser("up", help="start N nodes (or resume them)")
    up.add_argument("-n", "--nodes", type=int, default=4, help="nodes, one per dev authority; the generated spec "
                                                               "has exactly N authorities")
    up.add_argument("--chain", "--genesis", dest="chain",
                    help="run this chain spec as given instead of generating one (warns if it cannot finalize)")
    up.add_argument("--base-port", type=int, help="node i uses BASE+3i (rpc), +1 (p2p), +2 (metrics); "
                                                  "default: free ports")
    up.add_argument("--slot-ms", type=int, help="slot duration of the generated spec")
    status = inner.add_parser("status", help="heads, finalized heads, peers, addresses and PIDs")
    status.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    for p in (up, status, inner.add_parser("down", help="stop the nodes")):
        p.add_argument("--base-dir", default=str(localnet.DEFAULT_BASE))
    parser.set_defaults(func=cmd_localnet)
