"""`arena node`: run a node from its flags, loopback unless told otherwise, with one readable line on failure."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from node.chainspec import AUTHORITY_KEY_FILE
from node.cli.common import comma_list, setup_logging
from node.keystore import resolve_key

if TYPE_CHECKING:
    from node.service import ArenaNode, NodeConfig

LOOPBACK_CIDRS = ("127.0.0.1/32",)
EXIT_DISK_FULL = 28  # ENOSPC's errno: `arena node` could not write for lack of disk space


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT' → (host, port), with an error that names the flag."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} {text!r} must be HOST:PORT, e.g. 127.0.0.1:9933 or [::1]:9933")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether a host name or address stays on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable flags that also take comma-separated lists."""
    return tuple(part for value in values or [] for part in comma_list(value))


def parse_size(text: str) -> int:
    """'50G', '800M', '1048576' → bytes (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    if not number.isdigit():
        raise ValueError(f"size {text!r} must be a number with an optional K, M, G or T suffix, e.g. 50G")
    return int(number) * scale


def _rpc_address(args: argparse.Namespace) -> tuple[str, int, bool]:
    """(host, port, refuse methods that sign with node keys) for the RPC server; loud when it is external."""
    rpc_host, rpc_port = parse_host_port(args.rpc_addr, "--rpc-addr") if args.rpc_addr else ("127.0.0.1", args.rpc_port)
    external = not is_loopback(rpc_host)
    if external and not args.rpc_external:
        raise ValueError(f"--rpc-addr {rpc_host} is not a loopback address: anyone who can reach it can use this node's "
                         "RPC; pass --rpc-external to mean it (and put it behind a firewall)")
    if external:
        logging.getLogger("arena.node").warning(
            "RPC is served on %s:%d, reachable from other hosts; the methods that sign with node keys are %s",
            rpc_host, rpc_port, "ALLOWED (--rpc-methods unsafe)" if args.rpc_methods == "unsafe" else "refused")
    refuse_unsafe = args.rpc_methods == "safe" or (args.rpc_methods == "auto" and external)
    return rpc_host, rpc_port, refuse_unsafe


def node_config(args: argparse.Namespace) -> NodeConfig:
    """Turn `arena node` flags into a NodeConfig; loopback unless told otherwise, and loud about it."""
    from node.http_guard import parse_cors
    from node.service import NodeConfig

    rpc_host, rpc_port, refuse_unsafe = _rpc_address(args)
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
    """Open the node's database and run it until SIGINT/SIGTERM."""
    import plyvel

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
    return _run_until_signal(node, config)


def _run_until_signal(node: ArenaNode, config: NodeConfig) -> int:
    """Run `node.run` in a trio nursery until a signal; a bind failure or a full disk becomes one line."""
    import trio

    from node.service import collect_on_schedule, schedule_full_collections

    async def main() -> None:
        schedule_full_collections()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.run)
            nursery.start_soon(collect_on_schedule)
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add `arena node`."""
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
