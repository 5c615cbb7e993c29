"""`arena ipfs add|cat|get|pin|gc`: talk to a node's Kubo-compatible API with ipfshttpclient."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import ipfshttpclient.client
import ipfshttpclient.exceptions

from node.cli.common import positive_seconds

DEFAULT_API = "/ip4/127.0.0.1/tcp/9933/http"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `ipfs` command group to the `arena` CLI; dispatch with `args.func(args)` (= `run`)."""
    ipfs = subparsers.add_parser("ipfs", help="add, read and pin content through a node's IPFS API")
    commands = ipfs.add_subparsers(dest="ipfs_command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("--rpc", help="the node's RPC URL, as every other command takes it (its IPFS API is "
                                          "on the RPC port; default http://127.0.0.1:9933)")
        parser.add_argument("--api", help=f"an IPFS API instead (a Kubo daemon): multiaddr or http URL "
                                          f"(default: the node's, {DEFAULT_API})")
        parser.add_argument("--timeout", type=positive_seconds, default=600.0, help="HTTP timeout in seconds")
        return parser

    add = command("add", "import a file; prints its CID")
    add.add_argument("file", type=Path)
    add.add_argument("--no-pin", action="store_true", help="do not pin the added file")
    add.add_argument("--only-hash", action="store_true", help="compute the CID without storing")
    cat = command("cat", "write a file's bytes to stdout")
    cat.add_argument("cid")
    cat.add_argument("--offset", type=int, default=0)
    cat.add_argument("--length", type=int, default=None)
    get = command("get", "download a file")
    get.add_argument("cid")
    get.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    pin = command("pin", "pin a file (fetching it from peers if needed)")
    pin.add_argument("cid")
    command("gc", "remove every block that no pin holds (Kubo's `ipfs repo gc`)")
    ipfs.set_defaults(func=run)
    return ipfs


def run(args: argparse.Namespace) -> int:
    """Execute one `arena ipfs` command; returns the process exit code."""
    from node.urls import ipfs_api_multiaddr

    if args.rpc and args.api:
        print("error: give --rpc (the node) or --api (another IPFS API), not both", file=sys.stderr)
        return 2
    try:
        args.api = ipfs_api_multiaddr(args.rpc or "http://127.0.0.1:9933", args.api)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with ipfshttpclient.client.Client(args.api, timeout=args.timeout) as client:
            return _COMMANDS[args.ipfs_command](client, args)
    except ipfshttpclient.exceptions.ErrorResponse as exc:
        print(f"error: the node refused: {exc}", file=sys.stderr)
    except ipfshttpclient.exceptions.ConnectionError as exc:
        print(f"error: cannot reach the IPFS API at {args.api} ({exc}); is the node running?",
              file=sys.stderr)
    except ipfshttpclient.exceptions.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1


def _add(client: ipfshttpclient.client.Client, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"error: {args.file} is not a file", file=sys.stderr)
        return 2
    with args.file.open("rb") as fileobj:
        reply = client.add(fileobj, pin=not args.no_pin, only_hash=args.only_hash)
    print(f"{reply['Hash']}\t{reply['Size']}\t{args.file.name}")
    return 0


def _cat(client: ipfshttpclient.client.Client, args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    for chunk in client.cat(args.cid, offset=args.offset, length=args.length, stream=True):
        out.write(chunk)
    out.flush()
    return 0


def _get(client: ipfshttpclient.client.Client, args: argparse.Namespace) -> int:
    # `/get` sends a tar holding one member named by the CID; unpack it beside the output file
    # and rename, so an interrupted download never leaves a partial file under the final name.
    output = args.output.resolve()
    with tempfile.TemporaryDirectory(prefix=".arena-get-", dir=output.parent) as scratch:
        client.get(args.cid, target=scratch)
        (Path(scratch) / args.cid.rstrip("/").rsplit("/", 1)[-1]).replace(output)
    print(f"saved {args.cid} to {args.output}")
    return 0


def _pin(client: ipfshttpclient.client.Client, args: argparse.Namespace) -> int:
    reply = client.pin.add(args.cid)
    print(f"pinned {', '.join(reply['Pins'])}")
    return 0


def _gc(client: ipfshttpclient.client.Client, args: argparse.Namespace) -> int:
    removed = client.repo.gc()
    print(f"removed {len(removed)} blocks")
    return 0


_COMMANDS = {"add": _add, "cat": _cat, "get": _get, "pin": _pin, "gc": _gc}
