"""`arena worker`: run off-chain workers (planner, trainer, validator, host, ...) against a node's RPC.

    arena worker --role trainer --key trainer-1.json --rpc http://127.0.0.1:9933 --bond 20
    arena worker --role trainer --key //trainer-1,//trainer-2 --quality good,poor
    arena worker --role planner --key eve --task digits_classifier --task char_lm --reward 100
    arena worker audit --task 0 --rpc URL        # re-run a finalized task's validation

`--key` takes a dev name, a key file, a keystore name, or `//NAME` (a deterministic dev-style
key, Keypair.from_dev_name(NAME): for local networks only). Several comma-separated keys run
as several accounts in one process (one thread each, one state directory each). Amounts
(`--bond`, `--reward`) are ARENA with decimals, or base units with a 'u' suffix. Options are
checked before any worker starts, so a mistake is one message naming the flag.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import warnings
from pathlib import Path

from node.cli.common import comma_list, parse_amount, quiet_http_loggers, setup_logging
from node.keystore import resolve_key
from node.rpc_client import DEFAULT_RPC
from node.urls import ipfs_api_multiaddr
from runtime.modules.balances import UNIT

DEFAULT_DATA_DIR = Path(".arena-workers")
NEEDS_SOURCE_FILE = ("custom_csv", "custom_text")


def check_worker_options(args: argparse.Namespace) -> None:
    """Refuse bad worker options at start, with the flag named (not minutes later inside a role loop)."""
    if args.windows:
        parts = comma_list(args.windows)
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"--windows {args.windows!r} must be three positive block counts TRAINING,COMMIT,REVEAL, "
                             "e.g. 120,60,30")
    for flag, value in (("--trainers", args.trainers), ("--validators", args.validators), ("--reward", args.reward),
                        ("--bond", args.bond), ("--epochs", args.epochs), ("--nproc", args.nproc)):
        if value is not None and value <= 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    if args.quality:
        _check_qualities(args.quality)
    for steps in comma_list(args.max_steps):
        if not steps.isdigit():
            raise ValueError(f"--max-steps {args.max_steps!r}: {steps!r} is not a whole number of steps "
                             "(0: the spec's)")
    _check_device(args.device)
    if args.role != "planner" and args.task:
        raise ValueError(f"--task is a planner option; the {args.role} role takes no tasks")
    if args.role == "planner":
        _check_planned_tasks(args.task or [])


def _check_device(device: str) -> None:
    """`--device cuda` needs a CUDA device torch can see (else a trainer fails at its first task, minutes later)."""
    if device != "cuda":
        return
    try:
        import torch
    except ImportError:
        raise ValueError("--device cuda needs torch: pip install 'arena[workers]'") from None
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False); "
                         "use --device auto or cpu")


def _check_qualities(text: str) -> None:
    """Every `--quality` value is one the trainer knows."""
    from node.offchain.trainer_worker import QUALITIES

    for quality in comma_list(text):
        if quality not in QUALITIES:
            raise ValueError(f"--quality {text!r}: {quality!r} is not one of {', '.join(QUALITIES)}")


def _check_planned_tasks(tasks: list[str]) -> None:
    """Every planner `--task KIND[:SOURCE]` names a known kind, and its data file where the kind needs one."""
    from node.offchain.ml.kinds import KINDS

    for text in tasks:
        kind, _, source = text.partition(":")
        if kind not in KINDS:
            raise ValueError(f"--task {text!r}: unknown task kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        if kind in NEEDS_SOURCE_FILE and not source:
            raise ValueError(f"--task {text!r}: {kind} needs a data file, e.g. --task {kind}:data/train.csv")
        if source and kind in NEEDS_SOURCE_FILE and not Path(source).is_file():
            raise ValueError(f"--task {text!r}: data file {source!r} does not exist or is not a file")


def worker_options(args: argparse.Namespace, index: int) -> dict:
    """The options of the worker for the `index`-th key (per-key flags take their `index`-th value, or the last)."""
    from node.offchain.planner_worker import parse_plan

    qualities = comma_list(args.quality) or ["good"]
    options: dict = {"device": args.device, "progress_bar": args.progress_bar,
                     "quality": qualities[min(index, len(qualities) - 1)], "broken_mode": args.broken_mode}
    if args.bond is not None:
        options["bond"] = args.bond
    if args.epochs:
        options["epochs"] = args.epochs
    if args.fault:
        options["fault"] = args.fault
    if args.max_steps:
        steps = comma_list(args.max_steps)
        options["max_steps"] = int(steps[min(index, len(steps) - 1)]) or None
    if args.nproc and args.nproc > 1:
        options["nproc"] = args.nproc
    if args.role == "planner":
        defaults: dict = {"n_trainers": args.trainers, "n_validators": args.validators, "reward": args.reward,
                          "epochs": args.epochs, "base_cid": args.base_cid}
        if args.windows:
            windows = [int(w) for w in comma_list(args.windows)]
            defaults.update(zip(("training_blocks", "commit_blocks", "reveal_blocks"), windows, strict=True))
        options["tasks"] = [parse_plan(t, defaults) for t in args.task or []]
    return options


def build_contexts(args: argparse.Namespace) -> list:
    """One WorkerContext per (role, key) asked for on the command line."""
    from node.offchain.context import WorkerContext
    from node.offchain.worker import role_runner

    role_runner(args.role)  # fail fast on an unknown role
    check_worker_options(args)
    keys = comma_list(args.key)
    if not keys:
        raise ValueError("--key is required (a dev name, key file, keystore name or //NAME)")
    contexts = []
    for index, spec in enumerate(keys):
        key = resolve_key(spec)
        contexts.append(WorkerContext(role=args.role, key=key, rpc_url=args.rpc,
                                      ipfs_api=ipfs_api_multiaddr(args.rpc, args.ipfs_api),
                                      data_dir=Path(args.data_dir) / f"{args.role}-{key.address}",
                                      options=worker_options(args, index)))
    return contexts


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the workers of every key until SIGINT/SIGTERM."""
    setup_logging(args.log_level)
    warnings.filterwarnings("ignore", category=FutureWarning)  # urllib3 chatter under ipfshttpclient
    quiet_http_loggers()
    if args.torch_threads:
        import torch
        torch.set_num_threads(args.torch_threads)
    from node.offchain.worker import run_workers

    contexts = build_contexts(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("arena.worker").info("event=signal signal=%d stopping=1", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    run_workers(contexts, stop)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """`worker audit`: recompute a finalized task's losses from its published key; exit 1 unless they match."""
    from node.offchain.audit import audit_task

    report = audit_task(args.rpc, args.task)
    nats = {t: (None if loss is None else loss / 10**9) for t, loss in report.losses.items()}
    print(json.dumps({"taskId": report.task_id, "recomputed": report.recomputed, "lossPpb": report.losses,
                      "lossNats": nats,
                      "rejected": report.rejected, "revealed": report.revealed, "matches": report.matches,
                      "reproduced": report.reproduced}, indent=2))
    return 0 if report.reproduced else 1


def _dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "worker_command", None) == "audit":
        return cmd_audit(args)
    if not args.role:
        print("error: --role is required (planner, trainer, validator, ...)", file=sys.stderr)
        return 2
    return cmd_worker(args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `arena worker` and `arena worker audit`."""
    worker = sub.add_parser("worker", help="run off-chain workers against a node's RPC")
    worker.add_argument("--role", help="planner, trainer, validator, or any node/offchain/ROLE_worker.py")
    worker.add_argument("--key", help="account key(s), comma-separated: dev name, key file, keystore name, //NAME")
    worker.add_argument("--rpc", default=DEFAULT_RPC, help="the node's RPC URL, on this host or another "
                                                           "(reads retry with backoff while the node restarts)")
    worker.add_argument("--ipfs-api", help="IPFS API: multiaddr (/ip4/10.0.0.5/tcp/5001/http) or URL "
                                           "(default: the node's RPC port, which serves the Kubo API subset)")
    worker.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="state directory (one subdirectory per account)")
    worker.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device for training")
    worker.add_argument("--bond", type=parse_amount,
                        help="bond for the role: ARENA (e.g. 20) or base units with 'u' (default: the role minimum)")
    worker.add_argument("--quality", help="trainer: good, poor or broken (comma-separated, one per key)")
    worker.add_argument("--broken-mode", default="truncated", choices=("truncated", "wrong_arch", "pickle", "huge"))
    worker.add_argument("--epochs", type=int, help="trainer: epochs (default: the spec's); planner: suggested epochs")
    worker.add_argument("--max-steps", help="trainer (causal_lm_lora): optimizer steps, comma-separated per key")
    worker.add_argument("--nproc", type=int, default=1,
                        help="trainer (causal_lm_lora): train with N processes under torchrun (gloo/nccl)")
    worker.add_argument("--base-cid", help="planner (causal_lm_lora): base model folder CID (default: build one)")
    worker.add_argument("--task", action="append", help="planner: KIND[:SOURCE] to create (repeatable)")
    worker.add_argument("--trainers", type=int, default=3, help="planner: trainers per task")
    worker.add_argument("--validators", type=int, default=3, help="planner: validators per task")
    worker.add_argument("--windows", help="planner: TRAINING,COMMIT,REVEAL window lengths in blocks")
    worker.add_argument("--reward", type=parse_amount, default=100 * UNIT,
                        help="planner: reward pool per task, ARENA or base units with 'u' (default 100)")
    worker.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    worker.add_argument("--progress-bar", action="store_true", help="trainer: tqdm bar when on a terminal")
    worker.add_argument("--fault", help=argparse.SUPPRESS)  # tests: crash-after-commit
    worker.add_argument("--log-level", default="info")
    worker_sub = worker.add_subparsers(dest="worker_command")
    audit = worker_sub.add_parser("audit", help="re-run a finalized task's validation from its published key")
    audit.add_argument("--task", dest="task", type=int, required=True)
    audit.add_argument("--rpc", default=DEFAULT_RPC)
    audit.set_defaults(func=cmd_audit)
    worker.set_defaults(func=_dispatch)
