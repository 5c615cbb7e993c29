"""`arena model …`: the marketplace from the command line: list, query, serve and pay for top models.

    arena model list [--rpc URL]
    arena model query TASK|CID --input "def main(" --key ferdie [--max-tokens 40]
    arena model query 0 --input "0,0,5,13,9,1,..." --key ferdie          (64 numbers for digits)
    arena model serve --key //host-1 --port 8100 --price 0.001 [--tasks 0,1]
    arena model escrow --key ferdie | deposit AMOUNT --key K | withdraw [--request AMOUNT] --key K
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from node.cli.common import (
    finite_float,
    fmt_amount,
    parse_amount,
    print_inclusion,
    quiet_http_loggers,
    setup_logging,
)
from node.cli.llm import register as register_llm
from node.keystore import resolve_key
from node.rpc_client import DEFAULT_RPC, RpcClient


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    models = RpcClient(args.rpc).call("arena_marketModels")
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    table = Table(title="Top models on the marketplace")
    columns = ["task", "kind", "model CID", "trainer", "hosts (price per query)"]
    if args.wide:
        columns += ["input", "classes"]
    for col in columns:
        table.add_column(col, overflow="fold")
    for m in models:
        hosts = "\n".join(f"{h['endpoint']} {_short(h['address'], args.wide)} {fmt_amount(h['pricePerQuery'])}"
                          for h in m["hosts"]) or "—"
        row = [str(m["taskId"]), m["kind"], m["modelCid"], _short(m["trainer"], args.wide), hosts]
        if args.wide:
            row += list(spec_summary(_fetch_spec(args.rpc, m["specCid"])))
        table.add_row(*row)
    # full CIDs and addresses are never cut: wide output or folded cells
    (Console(width=240) if args.wide else Console()).print(table)
    return 0


def _fetch_spec(rpc_url: str, spec_cid: str) -> dict | None:
    """A task spec from the node's IPFS API (None when it is not there or not a spec)."""
    import httpx

    try:
        reply = httpx.post(f"{rpc_url.rstrip('/')}/api/v0/cat", params={"arg": spec_cid}, timeout=5.0)
        spec = reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return spec if isinstance(spec, dict) else None


def spec_summary(spec: dict | None) -> tuple[str, str]:
    """(what a query's input is, the class names or count) from a task spec; dashes when unknown."""
    if spec is None:
        return "— (spec not on this node)", "—"
    task, model = spec.get("task") or {}, spec.get("model") or {}
    if "feature_columns" in task:
        inputs = f"{len(task['feature_columns'])} numbers: {', '.join(map(str, task['feature_columns']))}"
    elif "vocab" in task or model.get("arch") == "char_mlp":
        inputs = "text"
    elif "input_dim" in model:
        scale = f" ({task['input_scale']})" if task.get("input_scale") else ""
        inputs = f"{model['input_dim']} numbers{scale}"
    else:
        inputs = "text" if "lora" in str(spec.get("kind", "")) else "—"
    classes = task.get("classes")
    if isinstance(classes, list):
        names = ", ".join(map(str, classes))
    elif isinstance(classes, int):
        names = f"{classes} classes (0..{classes - 1})"
    elif task.get("problem") == "regression":
        names = f"regression ({task.get('label_column', 'target')})"
    else:
        names = "—"
    return inputs, names


def _short(address: str, wide: bool) -> str:
    return address if wide else address[:10] + "…"


def model_cid(client: RpcClient, model: str) -> str | None:
    """A model CID, or a task id's top model (None, with a message, when the task has none)."""
    if not model.isdigit():
        return model
    top = client.call("arena_topModel", int(model))
    if top is None:
        print(f"error: task {model} has no top model", file=sys.stderr)
        return None
    return str(top["modelCid"])


def cmd_usage(args: argparse.Namespace) -> int:
    """Queries, revenue and payouts of a model in a period (default: the current one)."""
    client = RpcClient(args.rpc)
    model = model_cid(client, args.model)
    if model is None:
        return 1
    usage = client.call("arena_usage", model, args.period)
    if args.json:
        print(json.dumps(usage, indent=2))
        return 0
    print(f"model {usage['modelCid']} period {usage['period']} (current {usage['currentPeriod']}): "
          f"{usage['queries']} queries, revenue {fmt_amount(usage['revenue'])}")
    for h in usage["hosts"]:
        print(f"  host {h['address']}: {h['queries']} queries, {fmt_amount(h['revenue'])}")
    for p in usage["payouts"]:
        print(f"  paid {p['party']:<10} {p['address']} {fmt_amount(p['amount'])}")
    return 0


def cmd_deregister(args: argparse.Namespace) -> int:
    """marketplace.deregister_host: stop being listed as a host of a model."""
    client = RpcClient(args.rpc)
    model = model_cid(client, args.model)
    if model is None:
        return 1
    return print_inclusion(client.submit_and_wait(resolve_key(args.key), "marketplace", "deregister_host", [model]))


def _parse_input(text: str) -> object:
    """Numbers ("1,2,3" or a JSON list) for classifiers, otherwise the text itself."""
    import math

    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except ValueError as exc:
            raise ValueError(f"--input looks like a JSON list but is not one: {exc}") from None
    else:
        parts = [p for p in stripped.replace(",", " ").split()]
        try:
            values = [float(p) for p in parts] if parts and len(parts) > 1 else text
        except ValueError:
            return text
    if isinstance(values, list):
        bad = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"--input holds {len(bad)} value(s) that are not finite numbers ({bad[0]}); "
                             "a model input must be finite")
    return values


def cmd_query(args: argparse.Namespace) -> int:
    from node.offchain.user_client import ArenaModelClient, ModelQueryError

    client = ArenaModelClient(args.rpc, resolve_key(args.key), Path(args.state_dir) if args.state_dir else None)
    try:
        entry = client.resolve(args.model)
        data = args.input if entry["kind"] in ("char_lm", "custom_text") else _parse_input(args.input)
        answer = client.query(args.model, data, max_tokens=args.max_tokens, temperature=args.temperature,
                              host=args.host)
    except ModelQueryError as exc:
        print(f"error: {exc}")
        return 1
    finally:
        client.close()
    if args.json:
        print(json.dumps(answer.response, indent=2))
    else:
        output = answer.output if isinstance(answer.output, str) else json.dumps(
            [{"label": p.get("label", p.get("value"))} for p in answer.output])
        print(f"model  {answer.model_cid} (task {answer.task_id}, {answer.kind})")
        print(f"host   {answer.host} at {answer.endpoint}")
        print(f"answer {output}")
        print(f"cost   {fmt_amount(answer.cost)} (this host has been promised {fmt_amount(answer.cumulative_amount)} in all)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from node.offchain.context import WorkerContext
    from node.offchain.host_worker import run
    from node.urls import ipfs_api_multiaddr

    key = resolve_key(args.key)
    pid_file = Path(args.data_dir) / f"host-{key.address}" / "serve.pid"
    if args.stop:
        return stop_serving(pid_file, key.address)
    running = _running_pid(pid_file)
    if running is not None:
        print(f"error: a host worker for {key.address} already runs from {args.data_dir} (pid {running}); "
              f"stop it with: arena model serve --stop --key {args.key} --data-dir {args.data_dir}", file=sys.stderr)
        return 1
    setup_logging(args.log_level)
    quiet_http_loggers()
    options: dict = {"port": args.port, "price": args.price, "report_blocks": args.report_blocks,
                     "device": "cpu", "max_batch": args.max_batch}
    if args.tasks:
        options["tasks"] = [int(t) for t in args.tasks.split(",")]
    if args.bond is not None:
        options["bond"] = args.bond
    ctx = WorkerContext(role="host", key=key, rpc_url=args.rpc, ipfs_api=ipfs_api_multiaddr(args.rpc, args.ipfs_api),
                        data_dir=Path(args.data_dir) / f"host-{key.address}", options=options)
    stop = threading.Event()
    ctx.stop = stop
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        run(ctx)
    finally:
        pid_file.unlink(missing_ok=True)
    return 0


def _running_pid(pid_file: Path) -> int | None:
    """The pid in a host worker's pid file if that process is alive and is an `arena model serve`."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"serve" in cmdline and b"model" in cmdline else None


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_serving(pid_file: Path, address: str, timeout: float = 30.0) -> int:
    """`arena model serve --stop`: SIGTERM the host worker of this key and wait for it to finish its report."""
    import time

    pid = _running_pid(pid_file)
    if pid is None:
        print(f"error: no host worker for {address} is running from {pid_file.parent.parent}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        print(f"error: host worker pid {pid} did not stop within {timeout:.0f} s", file=sys.stderr)
        return 1
    print(f"stopped host worker pid {pid} for {address}; it is still listed as a host until "
          f"`arena model deregister TASK|CID --key …`")
    return 0


def cmd_escrow(args: argparse.Namespace) -> int:
    key = resolve_key(args.key)
    client = RpcClient(args.rpc)
    if args.model_command == "deposit":
        return print_inclusion(client.submit_and_wait(key, "marketplace", "deposit", [args.amount]))
    if args.model_command == "withdraw":
        if args.request is not None:
            return print_inclusion(client.submit_and_wait(key, "marketplace", "request_withdraw", [args.request]))
        return print_inclusion(client.submit_and_wait(key, "marketplace", "withdraw", []))
    print(json.dumps(client.call("arena_escrow", key.address), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `arena model ...`."""
    model = sub.add_parser("model", help="use and serve the marketplace's top models")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    listing = model_sub.add_parser("list", help="top models with their hosts and prices")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--wide", action="store_true", help="full trainer and host addresses")
    listing.set_defaults(func=cmd_list)
    usage = model_sub.add_parser("usage", help="queries, revenue and payouts of a model in a period")
    usage.add_argument("model", help="task id or model CID")
    usage.add_argument("--period", type=int, help="period number (default: the current one)")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(func=cmd_usage)
    deregister = model_sub.add_parser("deregister", help="marketplace.deregister_host: stop hosting a model")
    deregister.add_argument("model", help="task id or model CID")
    deregister.add_argument("--key", required=True, help="the host's key: dev name, //NAME, key file or keystore name")
    deregister.set_defaults(func=cmd_deregister)
    query = model_sub.add_parser("query", help="pay for one query and print the answer and its cost")
    query.add_argument("model", help="task id or model CID")
    query.add_argument("--input", required=True, help="text (language models) or numbers: '1,2,3' or a JSON list")
    query.add_argument("--key", required=True, help="paying account: dev name, key file, keystore name or //NAME")
    query.add_argument("--max-tokens", type=int, default=32)
    query.add_argument("--temperature", type=finite_float, default=0.0)
    query.add_argument("--host", help="a host address or endpoint (default: the cheapest)")
    query.add_argument("--state-dir", help="where voucher state is kept (default ~/.arena/client)")
    query.add_argument("--json", action="store_true", help="print the host's whole reply")
    query.set_defaults(func=cmd_query)
    serve = model_sub.add_parser("serve", help="run the host worker: serve top models, report usage")
    serve.add_argument("--key", required=True)
    serve.add_argument("--stop", action="store_true",
                       help="stop the host worker of --key running from --data-dir (SIGTERM, waits for it)")
    serve.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: any free port)")
    serve.add_argument("--price", type=parse_amount, default=1_000_000, help="per query: ARENA or base units with 'u'")
    serve.add_argument("--tasks", help="comma-separated task ids to serve (default: every top model)")
    serve.add_argument("--report-blocks", type=int, help="report usage this often (default: once per period)")
    serve.add_argument("--max-batch", type=int, default=32)
    serve.add_argument("--bond", type=parse_amount, help="host bond: ARENA or base units with 'u' (default: the role minimum)")
    serve.add_argument("--data-dir", default=".arena-workers")
    serve.add_argument("--ipfs-api")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)
    escrow = model_sub.add_parser("escrow", help="show an account's escrow")
    deposit = model_sub.add_parser("deposit", help="move funds into the escrow")
    deposit.add_argument("amount", type=parse_amount)
    withdraw = model_sub.add_parser("withdraw", help="withdraw after the delay (request first with --request)")
    withdraw.add_argument("--request", type=parse_amount, help="start the withdraw delay for this amount")
    for p in (escrow, deposit, withdraw):
        p.add_argument("--key", required=True)
        p.set_defaults(func=cmd_escrow)
    for p in (listing, query, serve, escrow, deposit, withdraw, usage, deregister):
        p.add_argument("--rpc", default=DEFAULT_RPC)
    register_llm(model_sub)  # `chat` and `publish` (language models)
