"""`arena localnet up|status|down`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from node import localnet


def cmd_localnet(args: argparse.Namespace) -> int:
    base = Path(args.base_dir)
    try:
        if args.localnet_command == "up":
            slots = localnet.up(base, args.nodes, Path(args.genesis) if args.genesis else None)
            for slot in slots:
                print(f"node-{slot.index} ({slot.key}): rpc {slot.rpc_url}  p2p {slot.multiaddr}")
            print(f"logs: {base}/node-*.log; stop with: arena localnet down --base-dir {base}")
        elif args.localnet_command == "status":
            for row in localnet.status(base):
                print(json.dumps(row))
        else:
            print(f"stopped {localnet.down(base)} node(s)")
    except localnet.LocalnetError as exc:
        print(f"error: {exc}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("localnet", help="run a local multi-node network")
    inner = parser.add_subparsers(dest="localnet_command", required=True)
    up = inner.add_parser("up", help="start N nodes (or resume them)")
    up.add_argument("-n", "--nodes", type=int, default=4)
    up.add_argument("--genesis")
    for p in (up, inner.add_parser("status", help="heads, finalized heads, peers"),
              inner.add_parser("down", help="stop the nodes")):
        p.add_argument("--base-dir", default=str(localnet.DEFAULT_BASE))
    parser.set_defaults(func=cmd_localnet)
