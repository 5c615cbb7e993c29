"""Worker side of the `causal_lm_lora` kind: base-model fetch, adapter training (one process or
`torchrun`), adapter scoring.

Base model folders are fetched once per CID per process (`fetch_base`, per-file caps from the
spec).  `--nproc N` (trainer option ``nproc``) trains with `torch.distributed` across N local
processes launched by ``torchrun`` (gloo on the CPU, nccl on GPUs): the worker writes the spec,
data and base folder to a private directory, starts ``python -m torch.distributed.run
--nproc-per-node N -m node.offchain.llm_worker ...``, follows its log lines, and reads the
adapter that rank 0 wrote.  Only this worker process (the supervisor) talks to the chain and
IPFS; the ranks read and write local files only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from node.offchain.ml import MLError
from node.offchain.ml.errors import LimitExceeded

_BASES: dict[str, dict[str, bytes]] = {}
_BASES_LOCK = threading.Lock()
MAX_CACHED_BASES = 2


_WARM = threading.Event()


def warm_up(kind_name: str) -> None:
    """Import transformers/peft once a LoRA task is seen, while the task is still in an earlier
    phase (the imports take tens of seconds on a busy CPU). In this thread, not a background one:
    transformers pulls in torch._dynamo/_inductor, and a second thread importing torch modules at
    the same time (evaluation does) sees them half-initialised (ImportError, seen in make demo)."""
    if kind_name != "causal_lm_lora" or _WARM.is_set():
        return
    _WARM.set()
    from node.offchain.ml.llm_base import stack

    stack()


def fetch_base(loop: Any, spec: dict) -> dict[str, bytes]:
    """The spec's base model folder, from this process's cache or IPFS (caps from the spec)."""
    from node.offchain.folders import base_limits

    cid = spec["model"]["base_cid"]
    with _BASES_LOCK:
        if cid in _BASES:
            return _BASES[cid]
    from node.offchain.content import ContentTooLarge
    from node.offchain.ml.errors import ModelRejected

    limits, total = base_limits(spec)
    try:
        files = loop.content.fetch_folder(cid, limits, total, "base model")
    except ContentTooLarge as exc:  # the planner's base folder breaks the spec's own caps: not retried
        raise ModelRejected(f"base model folder {cid}: {exc}") from None
    with _BASES_LOCK:
        while len(_BASES) >= MAX_CACHED_BASES:
            _BASES.pop(next(iter(_BASES)))
        _BASES[cid] = files
    return files


def train_adapter(loop: Any, kind: Any, spec: dict, train_bytes: bytes, task_id: int, common: dict) -> dict[str, bytes]:
    """Train a LoRA adapter for `task_id` in this process or, with option ``nproc`` > 1, with torchrun."""
    base = fetch_base(loop, spec)
    options = loop.ctx.options
    max_steps = int(options["max_steps"]) if options.get("max_steps") else None
    nproc = int(options.get("nproc") or 1)
    if nproc <= 1:
        return kind.train(spec, train_bytes, base_files=base, max_steps=max_steps, **common)
    workdir = Path(tempfile.mkdtemp(prefix=f"ddp-task{task_id}-", dir=loop.ctx.data_dir))
    return launch_distributed(workdir, spec, train_bytes, base, nproc=nproc, max_steps=max_steps,
                              common={k: v for k, v in common.items() if k != "progress"},
                              log=loop.log, stop=loop.ctx.stop, task_id=task_id)


def launch_distributed(workdir: Path, spec: dict, train_bytes: bytes, base: dict[str, bytes], *, nproc: int,
                       max_steps: int | None, common: dict, log: Any, stop: threading.Event | None = None,
                       task_id: int = 0, timeout_s: float = 3600.0) -> dict[str, bytes]:
    """Run `nproc` training ranks under torchrun and return the adapter rank 0 wrote."""
    (workdir / "base").mkdir(parents=True, exist_ok=True)
    for name, data in base.items():
        (workdir / "base" / name).write_bytes(data)
    (workdir / "spec.json").write_text(json.dumps(spec))
    (workdir / "train.bin").write_bytes(train_bytes)
    (workdir / "args.json").write_text(json.dumps({**common, "max_steps": max_steps, "task_id": task_id}))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--nnodes", "1",
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               "-m", "node.offchain.llm_worker", "--workdir", str(workdir)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    log.info("event=distributed_launch task=%d nproc=%d workdir=%s", task_id, nproc, workdir)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:  # the ranks' progress lines, relayed into this worker's log
        line = line.rstrip()
        tail = [*tail[-20:], line]
        if "event=" in line:
            log.info("%s", line[line.index("event="):])
        if stop is not None and stop.is_set():
            proc.terminate()
    code = proc.wait(timeout=timeout_s)
    out = workdir / "adapter"
    if code != 0 or not out.is_dir():
        detail = " | ".join(tail[-6:])
        raise LimitExceeded(f"distributed training exited with code {code}: {detail[-600:]}")
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank_main(workdir: Path) -> int:
    """One torchrun rank: join the gloo/nccl group, train on its slice of each batch, rank 0 writes."""
    import torch
    import torch.distributed as dist

    from node.offchain.ml import get_kind

    args = json.loads((workdir / "args.json").read_text())
    device = args.get("device", "cpu")
    use_cuda = device in ("cuda", "auto") and torch.cuda.is_available()
    rank = int(os.environ["RANK"])
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    group = dist.group.WORLD
    try:
        spec = json.loads((workdir / "spec.json").read_text())
        base = {p.name: p.read_bytes() for p in (workdir / "base").iterdir()}
        kind: Any = get_kind(spec["kind"])

        def progress(step: int, total: int, loss: float) -> None:
            if step == total or step % max(1, total // 10) == 0:
                print(f"event=train_progress task={args['task_id']} rank={rank} world={dist.get_world_size()} "
                      f"step={step} total={total} loss={loss:.4f}", flush=True)

        adapter = kind.train(spec, (workdir / "train.bin").read_bytes(), epochs=int(args["epochs"]),
                             lr=float(args["lr"]), seed=int(args["seed"]), quality=args.get("quality", "good"),
                             progress=progress, device="cuda" if use_cuda else "cpu", base_files=base,
                             max_steps=args.get("max_steps"), distributed=group)
        if rank == 0:
            tmp = workdir / "adapter.tmp"
            tmp.mkdir(exist_ok=True)
            for name, data in adapter.items():
                (tmp / name).write_bytes(data)
            tmp.rename(workdir / "adapter")
        dist.barrier()
    except MLError as exc:
        print(f"event=train_failed rank={rank} error={type(exc).__name__} detail={exc!r:.300}", flush=True)
        return 3
    finally:
        dist.destroy_process_group()
    return 0


def score_adapter(loop: Any, kind: Any, spec: dict, cid: str, heldout: bytes) -> tuple[Any, float]:
    """Fetch an adapter folder (caps first) and evaluate it; an oversized or odd folder scores 0.

    Returns the `EvalResult` and the seconds spent fetching (base and adapter)."""
    import time

    from node.offchain.content import ContentTooLarge
    from node.offchain.folders import adapter_limits
    from node.offchain.ml.base import EvalResult
    from node.offchain.ml.spec import REJECTED_LOSS_PPB

    limits, total = adapter_limits(spec)
    began = time.monotonic()
    try:
        files = loop.content.fetch_folder(cid, limits, total, "adapter")
    except ContentTooLarge as exc:
        return EvalResult(REJECTED_LOSS_PPB, 0, None, 0, rejected=str(exc)), time.monotonic() - began
    base = fetch_base(loop, spec)
    fetched = time.monotonic() - began
    return kind.evaluate(spec, files, heldout, base_files=base), fetched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one torchrun rank of a causal_lm_lora training run")
    parser.add_argument("--workdir", type=Path, required=True)
    return rank_main(parser.parse_args(argv).workdir)


if __name__ == "__main__":
    sys.exit(main())
