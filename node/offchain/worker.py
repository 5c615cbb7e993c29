"""The worker runtime: the role registry, the shared follow-the-chain loop, and running workers.

Roles are discovered by module name: role R lives in `node/offchain/{R}_worker.py` and exposes
`run(ctx: WorkerContext) -> None`, a blocking loop that returns once `ctx.stop` is set. Adding a
role is adding such a file (the host worker plugs in this way).

`RoleLoop` is the loop the planner, trainer and validator share: it bonds the account for its
role when asked, sends a heartbeat (availability, device kind, memory) once per epoch, and calls
`step()` whenever a new block is finalized (and at least every few seconds). An exception in a
step is logged with its context and retried after a growing pause: never a crash loop, never a
silent stop. Durable progress lives in the worker's state file (`ctx.state()`), so a killed
worker resumes from chain state plus that file.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable

from node.offchain.chain_client import BACKOFF_MAX_S, CallFailed, ChainClient, WorkerStopped
from node.offchain.content import Content
from node.offchain.context import WorkerContext

log = logging.getLogger("arena.worker")

POLL_S = 0.3           # how often the finalized head is polled
MAX_IDLE_STEP_S = 3.0  # a step runs at least this often even without a new finalized block


class UnknownRole(ValueError):
    """No module `node/offchain/{role}_worker.py` with a `run(ctx)` function exists."""


# What the ML roles import beyond a plain node (the `workers` extra in pyproject.toml).
ML_PACKAGES = ("torch", "sklearn", "safetensors")


class MissingExtra(ValueError):
    """A role whose ML dependencies are not installed."""


def role_runner(role: str) -> Callable[[WorkerContext], None]:
    """The `run(ctx)` of role `role` (module `node.offchain.{role}_worker`)."""
    if not role.isidentifier():
        raise UnknownRole(f"role {role!r} is not a valid name")
    module_name = f"node.offchain.{role}_worker"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name in ML_PACKAGES:
            raise MissingExtra(f"the {role} worker needs {exc.name}, which a plain node does not install: "
                               f"pip install 'arena[workers]'") from exc
        if exc.name != module_name:
            raise
        raise UnknownRole(f"unknown role {role!r}: there is no {module_name.replace('.', '/')}.py; "
                          f"known roles: {', '.join(available_roles())}") from exc
    run = getattr(module, "run", None)
    if not callable(run):
        raise UnknownRole(f"{module_name} has no run(ctx) function")
    return run


def available_roles() -> list[str]:
    """Role names found in node/offchain/ (files named *_worker.py)."""
    here = os.path.dirname(__file__)
    return sorted(name[: -len("_worker.py")] for name in os.listdir(here) if name.endswith("_worker.py"))


def device_capabilities(device: str = "auto") -> list:
    """[available, device kind, memory MiB] for `staking.heartbeat`."""
    kind, memory = "cpu", 0
    try:
        import torch

        if device in ("auto", "cuda") and torch.cuda.is_available():
            name = torch.cuda.get_device_name(0).replace("NVIDIA ", "")
            kind = f"cuda:{name}"[:32]
            memory = torch.cuda.get_device_properties(0).total_memory // 2**20
    except Exception as exc:  # noqa: BLE001 - a broken CUDA setup still leaves the CPU
        log.warning("event=device_probe_failed error=%r", str(exc)[:120])
    if kind == "cpu":
        try:
            with open("/proc/meminfo") as fh:
                memory = int(fh.readline().split()[1]) // 1024
        except (OSError, ValueError, IndexError):
            memory = 0
    return [1, kind, min(memory, 2**32 - 1)]


class RoleLoop:
    """Shared loop of the chain-driven roles; subclasses implement `step()` (and maybe `setup()`)."""

    bond_role: str | None = None  # staking role to bond and heartbeat for (None: no bond needed)

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        # one logger per account: several accounts may share a process (and a log file)
        self.log = logging.getLogger(f"arena.worker.{ctx.role}.{ctx.key.address[:8]}")
        self.state = ctx.state()
        self.chain = ChainClient(ctx, self.state)
        self.content = Content(ctx)
        self._failures = 0

    # ------------------------------------------------------------ to implement

    def setup(self) -> None:
        """One-time preparation once the node answers (bonding is done before this)."""

    def step(self) -> None:
        """React to the chain as it is now; must be idempotent."""
        raise NotImplementedError

    # ------------------------------------------------------------ the loop

    def _bond_and_heartbeat(self) -> None:
        if self.bond_role is None:
            return
        amount = self.ctx.options.get("bond")
        if amount is None:
            amount = self.chain.call("arena_roles")[self.bond_role]["minStake"]
        self.chain.ensure_bonded(self.bond_role, int(amount))
        if self.chain.heartbeat_due():
            self.chain.send_heartbeat(device_capabilities(self.ctx.options.get("device", "auto")))

    def _guarded(self, what: str, action: Callable[[], None]) -> bool:
        """Run `action`; log and pause on failure (growing pause). Returns False once stopped."""
        try:
            action()
            self._failures = 0
            return True
        except WorkerStopped:
            return False
        except CallFailed as exc:
            self.log.warning("event=call_failed during=%s action=%s error=%s detail=%r",
                             what, exc.action, exc.error, str(exc)[:200])
        except Exception as exc:  # noqa: BLE001 - one bad step must not kill the worker
            self.log.error("event=step_error during=%s error=%s detail=%r\n%s", what, type(exc).__name__,
                           str(exc)[:300], traceback.format_exc(limit=6))
        self._failures += 1
        pause = min(BACKOFF_MAX_S * 2, 0.5 * 2 ** min(self._failures, 6))
        return not self.ctx.stop.wait(pause)

    def run(self) -> None:
        """Until `ctx.stop`: keep bonded and alive, and step on every newly finalized block."""
        self.log.info("event=worker_start role=%s account=%s rpc=%s data_dir=%s", self.ctx.role,
                      self.ctx.key.address, self.ctx.rpc_url, self.ctx.data_dir)
        while not self.ctx.stop.is_set():
            if self._guarded("setup", self.setup):
                break
        last_final, last_step = -1, 0.0
        while not self.ctx.stop.is_set():
            try:
                final = self.chain.finalized_number()
            except WorkerStopped:
                break
            if final != last_final or time.monotonic() - last_step > MAX_IDLE_STEP_S:
                last_final, last_step = final, time.monotonic()
                if not self._guarded("heartbeat", self._bond_and_heartbeat):
                    break
                if not self._guarded("step", self.step):
                    break
            self.ctx.stop.wait(POLL_S)
        self.log.info("event=worker_stop role=%s account=%s", self.ctx.role, self.ctx.key.address)


def _load_torch_lazy_modules() -> None:
    """torch loads its compiler modules (torch._dynamo, torch._inductor) on first use. Two role
    threads doing that at once (one importing transformers, one evaluating) see half-initialised
    modules and fail with ImportError (seen in make demo); so load them once, here, before any
    role thread starts."""
    try:
        import torch._dynamo  # noqa: F401
    except ImportError:  # a node installed without the workers extra: no ML roles run
        pass


def run_workers(contexts: Iterable[WorkerContext], stop: threading.Event) -> None:
    """Run each context's role in its own thread until `stop` is set (or every role returns)."""
    _load_torch_lazy_modules()
    threads = []
    for ctx in contexts:
        ctx.stop = stop
        runner = role_runner(ctx.role)
        thread = threading.Thread(target=runner, args=(ctx,), name=f"{ctx.role}-{ctx.key.address[:8]}", daemon=True)
        thread.start()
        threads.append(thread)
    while any(t.is_alive() for t in threads) and not stop.is_set():
        stop.wait(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
