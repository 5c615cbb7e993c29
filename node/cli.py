"""The `arena` command line."""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from node import keystore
from node.chainspec import AUTHORITY_KEY_FILE
from node.jsonfmt import fmt_amount
from node.keystore import DEFAULT_KEYSTORE, KeyError_, resolve_account, resolve_key, write_key
from node.rpc_client import DEFAULT_RPC, RpcClient, RpcClientError, call_failed
from runtime.crypto import CryptoError, Keypair, ss58_encode
from runtime.modules.balances import UNIT  # 9 decimals: balances are u64 on the wire

if TYPE_CHECKING:
    from node.service import NodeConfig


def parse_amount(text: str) -> int:
    """An amount in ARENA ('1.5') or in base units with a 'u' suffix ('1500000000u'); the one unit convention."""
    example = "an amount in ARENA like 1.5 (1 ARENA = 10^9 units) or base units like 1500000000u"
    raw = text.strip().replace("_", "")
    if raw.endswith("u"):
        if not raw[:-1].isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is not {example}")
        return int(raw[:-1])
    whole, _, frac = raw.partition(".")
    if not (whole or frac) or not (whole or "0").isdigit() or not (frac or "0").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not {example}")
    if len(frac) > 9:
        raise argparse.ArgumentTypeError(f"{text!r} has more than 9 decimal places (1 ARENA = 10^9 units)")
    units = int(whole or "0") * UNIT + int((frac + "0" * 9)[:9])
    if units >= 2**64:
        raise argparse.ArgumentTypeError(f"{text!r} is more than the chain holds (amounts are u64 base units)")
    return units


def with_arena(message: str) -> str:
    """A chain message with every amount-sized integer (≥ 10^6 base units) also shown in ARENA: '5000000000 (5 ARENA)'.

    The runtime reports amounts in base units; block numbers, nonces and counts stay below 10^6 in
    any message a user meets, so they are left alone.
    """
    import re

    def annotate(match: re.Match) -> str:
        units = int(match.group(0))
        return f"{units} ({fmt_amount(units)})" if units >= 10**6 else match.group(0)

    return re.sub(r"(?<![\w.:/])\d{7,20}(?![\w.])", annotate, message)


def finite_float(text: str) -> float:
    """A finite number for float flags (NaN and infinities are refused with a message)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


# ---------------------------------------------------------------- key


def new_passphrase() -> str:
    """The passphrase for a new encrypted key: ARENA_KEY_PASSPHRASE, or asked twice on a terminal."""
    import getpass
    import os

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


# ---------------------------------------------------------------- node


LOOPBACK_CIDRS = ("127.0.0.1/32",)


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' → (host, port), with an error that names the flag."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} {text!r} must be HOST:PORT, e.g. 127.0.0.1:9933 or [::1]:9933")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable flags that also take comma-separated lists."""
    return tuple(part.strip() for value in values or [] for part in value.split(",") if part.strip())


def node_config(args: argparse.Namespace) -> NodeConfig:
    """Turn `arena node` flags into a NodeConfig; loopback unless told otherwise, and loud about it."""
    from node.http_guard import parse_cors
    from node.service import NodeConfig

    log = logging.getLogger("arena.node")
    rpc_host, rpc_port = parse_host_port(args.rpc_addr, "--rpc-addr") if args.rpc_addr else ("127.0.0.1", args.rpc_port)
    external = not is_loopback(rpc_host)
    if external and not args.rpc_external:
        raise ValueError(f"--rpc-addr {rpc_host} is not a loopback address: anyone who can reach it can use this node's "
                         "RPC; pass --rpc-external to mean it (and put it behind a firewall)")
    if external:
        log.warning("RPC is served on %s:%d, reachable from other hosts; the methods that sign with node keys are %s",
                    rpc_host, rpc_port, "ALLOWED (--rpc-methods unsafe)" if args.rpc_methods == "unsafe" else "refused")
    refuse_unsafe = args.rpc_methods == "safe" or (args.rpc_methods == "auto" and external)
    prom_host, prom_port = (parse_host_port(args.prometheus_addr, "--prometheus-addr") if args.prometheus_addr
                            else ("127.0.0.1", args.prometheus_port))
    key_spec = args.key
    if not key_spec:
        stored = Path(args.base_path) / "keystore" / AUTHORITY_KEY_FILE
        key_spec = str(stored) if stored.exists() else None
    chain = args.chain or args.genesis
    return NodeConfig(
        base_path=Path(args.base_path), rpc_port=rpc_port, rpc_host=rpc_host, genesis_path=Path(chain) if chain else None,
        dev=args.dev, author_key=resolve_key(key_spec) if key_spec else None, name=args.name,
        p2p_port=args.p2p_port, bootnodes=_split(args.bootnodes),
        test_equivocate=args.test_equivocate, ipfs_api=args.ipfs_api, prometheus_port=prom_port,
        prometheus_host=prom_host, offchain=_split([args.offchain] if args.offchain else []),
        offchain_key=key_spec or "", listen_addrs=_split(args.listen_addr), public_addrs=_split(args.public_addr),
        allowed_cidrs=LOOPBACK_CIDRS + tuple(c for c in _split(args.allow_cidr) if c not in LOOPBACK_CIDRS),
        rpc_refuse_unsafe=refuse_unsafe, rpc_cors=parse_cors(args.rpc_cors),
        rpc_max_connections=args.rpc_max_connections, ipfs_quota=parse_size(args.ipfs_quota) if args.ipfs_quota else None,
    )


def parse_size(text: str) -> int:
    """'50G', '800M', '1048576' → bytes (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    if not number.isdigit():
        raise ValueError(f"size {text!r} must be a number with an optional K, M, G or T suffix, e.g. 50G")
    return int(number) * scale


EXIT_DISK_FULL = 28  # ENOSPC's errno: `arena node` could not write for lack of disk space


def disk_full_message(exc: BaseException, base_path: Path) -> str | None:
    """One operator line if `exc` (or anything in its group or chain) is ENOSPC, else None."""
    if "No space left on device" in str(exc) or getattr(exc, "errno", None) == 28:
        return (f"error: disk full: no space left on device under {base_path} ({exc}). The database keeps every "
                f"block it committed; free disk space (or lower --ipfs-quota) and restart the node.")
    for inner in (*getattr(exc, "exceptions", ()), exc.__cause__, exc.__context__):
        if inner is not None and inner is not exc:
            found = disk_full_message(inner, base_path)
            if found:
                return found
    return None


def _os_error(exc: BaseException) -> OSError | None:
    """The first OSError inside an exception (group), e.g. an address already in use."""
    if isinstance(exc, OSError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _os_error(inner)
        if found is not None:
            return found
    return _os_error(exc.__cause__) if exc.__cause__ is not None else None


def cmd_node(args: argparse.Namespace) -> int:
    import plyvel
    import trio

    from node.genesis import GenesisError
    from node.service import ArenaNode
    from node.storage import StorageError
    from p2p import NetworkConfigError

    setup_logging(args.log_level)
    config = node_config(args)
    try:
        node = ArenaNode(config)
    except (StorageError, GenesisError, NetworkConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except plyvel.IOError as exc:
        full = disk_full_message(exc, config.base_path)
        if full:
            print(full, file=sys.stderr)
            return EXIT_DISK_FULL
        if "lock" in str(exc):
            print(f"error: {config.base_path} is in use by another running node (LevelDB lock held)", file=sys.stderr)
            return 1
        raise

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.run)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    logging.getLogger("arena.node").info("shutting down")
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except BaseException as exc:  # turn a bind failure into one readable line
        full = disk_full_message(exc, config.base_path)
        if full:
            print(full, file=sys.stderr)
            return EXIT_DISK_FULL
        os_error = _os_error(exc)
        if os_error is None or isinstance(exc, KeyboardInterrupt):
            raise
        print(f"error: cannot start the node: {os_error.strerror or os_error} "
              f"(rpc {config.rpc_host}:{config.rpc_port}, p2p {', '.join(config.listen_addrs) or config.p2p_port}, "
              f"prometheus {config.prometheus_port or 'off'}); is another process using the port?", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- tx / query


def print_inclusion(result: dict) -> int:
    failed = call_failed(result)
    print(f"included in block #{result['blockNumber']} {result['blockHash']} (index {result['index']})")
    for event in result["events"]:
        print(f"  event {event['module']}.{event['name']} {json.dumps(event['data'])}")
    if failed:
        print(f"call failed: {failed['data'][1]}: {with_arena(str(failed['data'][2]))}", file=sys.stderr)
        return 1
    return 0


def cmd_tx(args: argparse.Namespace) -> int:
    client = RpcClient(args.rpc)
    key = resolve_key(args.sender)
    if args.tx_command == "transfer":
        dest = resolve_account(args.to)
        result = client.submit_and_wait(key, "balances", "transfer", [dest, args.amount], tip=args.tip)
    else:  # remark
        result = client.submit_and_wait(key, "system", "remark", [args.data.encode()], tip=args.tip)
    return print_inclusion(result)


def cmd_query(args: argparse.Namespace) -> int:
    client = RpcClient(args.rpc)
    if args.query_command == "balance":
        account = client.call("arena_account", ss58_encode(resolve_account(args.address)))
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


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arena", description="Arena: a blockchain node for decentralised AI training")
    sub = parser.add_subparsers(dest="command", required=True)

    key = sub.add_parser("key", help="generate or inspect account keys")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    gen = key_sub.add_parser("generate", help="create a new key file")
    gen.add_argument("--name", default="default")
    gen.add_argument("--output", help=f"key file path (default {DEFAULT_KEYSTORE}/NAME.json)")
    gen.add_argument("--encrypt", action="store_true",
                     help="encrypt the seed with a passphrase (scrypt + secretbox; ARENA_KEY_PASSPHRASE or a prompt)")
    inspect = key_sub.add_parser("inspect", help="show a key's address")
    inspect.add_argument("key", help="dev name, //NAME, key file or keystore name")
    key.set_defaults(func=cmd_key)
    from node.cli_chainspec import register_key_insert
    register_key_insert(key_sub)

    node = sub.add_parser("node", help="run a node")
    node.add_argument("--base-path", required=True, help="data directory (LevelDB, keys)")
    node.add_argument("--rpc-port", type=int, default=9933, help="RPC port on 127.0.0.1 (see --rpc-addr)")
    node.add_argument("--rpc-addr", metavar="HOST:PORT", help="serve RPC here instead (non-loopback needs --rpc-external)")
    node.add_argument("--rpc-external", action="store_true",
                      help="allow --rpc-addr on a non-loopback address (refuses methods that sign with node keys)")
    node.add_argument("--rpc-methods", choices=("auto", "safe", "unsafe"), default="auto",
                      help="auto: safe when the RPC is external; safe: refuse methods that sign with node keys")
    node.add_argument("--rpc-cors", metavar="ORIGINS",
                      help="browser origins allowed to use the RPC and IPFS API: comma-separated "
                           "(http://localhost:* wildcards the port), 'all' or 'none' (default: loopback origins)")
    node.add_argument("--rpc-max-connections", type=int, default=512, help="open RPC connections at most (default 512)")
    node.add_argument("--ipfs-quota", metavar="SIZE", help="cap the embedded content store, e.g. 50G or 800M "
                                                           "(unpinned content is collected first)")
    node.add_argument("--chain", metavar="SPEC", help="chain spec file (from `arena chain-spec new`; default genesis.json)")
    node.add_argument("--genesis", help=argparse.SUPPRESS)  # the older name of --chain
    node.add_argument("--dev", action="store_true", help="single-node dev chain: author every slot, finalize at once")
    node.add_argument("--key", help="author/worker account key (dev name, key file or keystore name; "
                                    "default: BASE_PATH/keystore/authority.json from `arena key insert`)")
    node.add_argument("--name", default="arena-node")
    node.add_argument("--p2p-port", type=int, default=30333, help="libp2p TCP port on 127.0.0.1 (0 = any; see --listen-addr)")
    node.add_argument("--listen-addr", action="append", metavar="MULTIADDR",
                      help="libp2p listen address, e.g. /ip4/0.0.0.0/tcp/30333 (repeatable; needs --allow-cidr for peers)")
    node.add_argument("--public-addr", action="append", metavar="MULTIADDR",
                      help="address peers are told to dial, e.g. /ip4/203.0.113.7/tcp/30333 (repeatable)")
    node.add_argument("--bootnodes", action="append", metavar="MULTIADDR",
                      help="comma-separated or repeated /ip4|ip6|dns4/A/tcp/P/p2p/ID addresses")
    node.add_argument("--allow-cidr", action="append", metavar="CIDR",
                      help="peers may connect from / be dialled at these networks (repeatable; loopback always)")
    node.add_argument("--prometheus-port", type=int, default=0, help="serve Prometheus metrics on 127.0.0.1:PORT (0 = off)")
    node.add_argument("--prometheus-addr", metavar="HOST:PORT", help="serve Prometheus metrics here instead")
    node.add_argument("--ipfs-api", help="use an external Kubo daemon (multiaddr of its API) instead of the embedded store")
    node.add_argument("--offchain", help="off-chain worker roles to run attached, e.g. planner,trainer,validator "
                                          "(they sign with --key)")
    node.add_argument("--test-equivocate", action="store_true", help=argparse.SUPPRESS)
    node.add_argument("--log-level", default="info")
    node.set_defaults(func=cmd_node)

    tx = sub.add_parser("tx", help="sign and submit an extrinsic, wait for inclusion")
    tx_sub = tx.add_subparsers(dest="tx_command", required=True)
    transfer = tx_sub.add_parser("transfer", help="balances.transfer")
    transfer.add_argument("--to", required=True, help="destination: SS58 address, 0x key, dev name, //NAME or keystore name")
    transfer.add_argument("--amount", required=True, type=parse_amount, help="ARENA (e.g. 1.5; 1 ARENA = 10^9 units) or base units with 'u'")
    remark = tx_sub.add_parser("remark", help="system.remark")
    remark.add_argument("--data", required=True)
    for p in (transfer, remark):
        p.add_argument("--from", dest="sender", required=True, help="signing key: dev name, key file or keystore name")
        p.add_argument("--tip", type=parse_amount, default=0, help="ARENA (or base units with 'u')")
        p.add_argument("--rpc", default=DEFAULT_RPC)
    tx.set_defaults(func=cmd_tx)

    query = sub.add_parser("query", help="read chain state")
    query_sub = query.add_subparsers(dest="query_command", required=True)
    balance = query_sub.add_parser("balance", help="free/reserved balance and nonce of an account")
    balance.add_argument("address", help="SS58 address, 0x key, dev name, //NAME or keystore name")
    block = query_sub.add_parser("block", help="a block by number or hash (default: best)")
    block.add_argument("block", nargs="?")
    for p in (balance, block):
        p.add_argument("--rpc", default=DEFAULT_RPC)
    query.set_defaults(func=cmd_query)
    from node import cli_client  # tx call, query storage|metadata: anything, from the node's metadata
    cli_client.add_commands(tx_sub, query_sub, parse_amount, with_arena)

    # subcommand groups defined next to the features they drive
    from node import cli_arena, cli_chainspec, cli_ipfs, cli_model, cli_network, cli_worker
    for group in (cli_ipfs, cli_network, cli_arena, cli_worker, cli_model, cli_chainspec):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None) or args.handler
    try:
        return func(args)
    except RpcClientError as exc:
        print(f"error: {with_arena(str(exc))}", file=sys.stderr)
        return 1
    except (KeyError_, CryptoError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
