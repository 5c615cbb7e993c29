"""Attached mode: the node runs its off-chain workers as supervised child processes.

`arena node ... --offchain planner,trainer,validator --key NAME` makes `ArenaNode.run` start
`supervise(roles, key_spec, rpc_url, data_dir)` in its nursery. Each role runs as

    python -m node.cli worker --role R --key K --rpc URL --data-dir D

(talking to the node only through its public RPC, like a standalone worker), with its output in
`D/worker-R.log`. A child that exits is restarted after a pause that doubles from 1 s up to 60 s
(reset after a run of 5 minutes or more), so a crashing role never turns into a busy loop. On
cancellation (the node shutting down) every child gets SIGTERM, then SIGKILL after 10 s, by PID.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import trio

log = logging.getLogger("arena.offchain.supervisor")

RESTART_MIN_S = 1.0
RESTART_MAX_S = 60.0
HEALTHY_RUN_S = 300.0
STOP_GRACE_S = 10.0


def worker_command(role: str, key_spec: str, rpc_url: str, data_dir: Path) -> list[str]:
    """The command line of one attached worker."""
    return [sys.executable, "-m", "node.cli", "worker", "--role", role, "--key", key_spec, "--rpc", rpc_url,
            "--data-dir", str(data_dir)]


async def _stop(process: trio.Process, role: str) -> None:
    """SIGTERM, then SIGKILL after the grace period; shielded so cancellation cannot skip it."""
    with trio.CancelScope(shield=True):
        if process.returncode is not None:
            return
        log.info("event=worker_stopping role=%s pid=%d", role, process.pid)
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with trio.move_on_after(STOP_GRACE_S):
            await process.wait()
            return
        log.warning("event=worker_kill role=%s pid=%d reason=%r", role, process.pid, "no exit after SIGTERM")
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        await process.wait()


async def supervise_role(role: str, key_spec: str, rpc_url: str, data_dir: Path) -> None:
    """Run one role forever, restarting it with backoff whenever it exits."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pause = RESTART_MIN_S
    while True:
        started = trio.current_time()
        with open(data_dir / f"worker-{role}.log", "ab") as out:  # noqa: ASYNC230 - opening a log is instant
            process = await trio.lowlevel.open_process(
                worker_command(role, key_spec, rpc_url, data_dir), stdout=out, stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        log.info("event=worker_started role=%s pid=%d log=%s", role, process.pid, data_dir / f"worker-{role}.log")
        try:
            code = await process.wait()
        finally:
            await _stop(process, role)
        ran = trio.current_time() - started
        pause = RESTART_MIN_S if ran >= HEALTHY_RUN_S else min(RESTART_MAX_S, pause * 2)
        log.warning("event=worker_exited role=%s code=%s ran_s=%.1f restart_in_s=%.1f", role, code, ran, pause)
        await trio.sleep(pause)


async def supervise(roles: tuple[str, ...] | list[str], key_spec: str, rpc_url: str, data_dir: Path) -> None:
    """Run every role in `roles` as a supervised child process until cancelled."""
    if not key_spec:
        raise ValueError("attached workers need an account: pass --key with --offchain")
    from node.offchain.worker import UnknownRole, available_roles

    known = available_roles()  # by file name: the node process does not import torch
    for role in roles:
        if role not in known:
            raise UnknownRole(f"unknown off-chain role {role!r}; known roles: {', '.join(known)}")
    async with trio.open_nursery() as nursery:
        for role in roles:
            nursery.start_soon(supervise_role, role, key_spec, rpc_url, Path(data_dir))
