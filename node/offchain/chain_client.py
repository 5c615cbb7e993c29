"""How a worker talks to its node: RPC reads with retry and backoff, and de-duplicated submissions.

Transport, call composition and signing are the public client's (node/client.py `ArenaClient`,
as any external program would use it): calls are composed from the node's typed metadata (so a
wrong argument is refused before anything is signed) and signed for the chain the metadata
names. What this module adds is what a long-running worker needs on top. (It waits for inclusion
by polling `arena_extrinsic` rather than `ArenaClient.submit_and_watch`: a watch is one WebSocket
that a node restart ends, while the hash it records before sending can be looked up again by a
restarted worker or after the node comes back.)

Workers never assume the node is up. Every read goes through `ChainClient.call`, which retries
transport failures with capped exponential backoff (logging one line per attempt) until the
worker is told to stop, so a node that restarts mid-task costs time, never a crash loop.

Submissions (`ChainClient.submit_once`) are idempotent by construction:

1. each logical action has a stable name ("task/3/commit"); the worker's state file records the
   extrinsic hash it sent for that action *before* it is sent;
2. on a later attempt (or after a restart) an action that already has a hash is not signed again
   while that extrinsic is pending or included; only a dropped one is re-signed;
3. nonces come from `system_accountNextIndex` (which counts the node's pending pool entries) and
   all submissions of one key in one process are serialized by a per-key lock, so two threads
   never sign the same nonce.

Besides, every role reads chain state before acting (e.g. "has this validator committed?"), so
the runtime's own duplicate checks (AlreadyCommitted, ...) are never what stops a resubmission.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from node.client import ArenaClient
from node.offchain.context import StateFile, WorkerContext
from node.rpc_client import RpcClientError, call_failed
from runtime.crypto import Keypair

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 8.0
INCLUSION_TIMEOUT_S = 60.0
# Pool refusals that a fresh nonce or a short wait cures (a racing submission, a full pool).
RETRY_POOL_KINDS = ("Stale", "PriorityTooLow", "AlreadyInPool", "AccountLimit", "PoolFull")
_KEY_LOCKS: dict[bytes, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


class WorkerStopped(Exception):
    """The worker was asked to stop while waiting for the node."""


class CallFailed(Exception):
    """An extrinsic was included but its call failed (the runtime's named error is in the message)."""

    def __init__(self, action: str, error: str, message: str) -> None:
        super().__init__(f"{action}: {error}: {message}")
        self.action = action
        self.error = error


@dataclass(frozen=True)
class Inclusion:
    """Where an extrinsic landed, and its events."""

    xt_hash: str
    block_number: int
    events: list


def key_lock(public_key: bytes) -> threading.Lock:
    """The process-wide lock that serializes signing and submitting for one account."""
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(public_key, threading.Lock())


class ChainClient:
    """A worker's view of its node: resilient reads, de-duplicated writes."""

    def __init__(self, ctx: WorkerContext, state: StateFile | None = None) -> None:
        self.ctx = ctx
        self.key: Keypair = ctx.key
        self.state = state if state is not None else ctx.state()
        self.client = ArenaClient(ctx.rpc_url, timeout=20.0)
        self._props: dict | None = None
        self.log = logging.getLogger(f"arena.worker.{ctx.role}.{ctx.key.address[:8]}")

    # ------------------------------------------------------------ reads

    def call(self, method: str, *params: Any) -> Any:
        """One RPC call, retried with backoff while the node is unreachable."""
        delay = BACKOFF_START_S
        attempt = 0
        while True:
            try:
                return self.client.view(method, *params)
            except RpcClientError as exc:
                if exc.code != -1:  # the node answered with an error: not a transport problem
                    raise
                attempt += 1
                self.log.warning("event=rpc_unreachable method=%s attempt=%d retry_in=%.1fs url=%s",
                            method, attempt, delay, self.ctx.rpc_url)
                if self.ctx.stop.wait(delay):
                    raise WorkerStopped() from exc
                delay = min(BACKOFF_MAX_S, delay * 2)
            except ValueError as exc:  # a garbled reply (node shutting down): same treatment
                attempt += 1
                self.log.warning("event=rpc_bad_reply method=%s attempt=%d error=%r", method, attempt, str(exc)[:120])
                if self.ctx.stop.wait(delay):
                    raise WorkerStopped() from exc
                delay = min(BACKOFF_MAX_S, delay * 2)

    def properties(self) -> dict:
        if self._props is None:
            self._props = self.call("system_properties")
        return self._props

    def epoch_length(self) -> int:
        return int(self.properties().get("epochLength", 20))

    def finalized_number(self) -> int:
        return int(self.call("system_health")["finalized"])

    def best_number(self) -> int:
        return int(self.call("system_health")["best"])

    def task(self, task_id: int) -> dict | None:
        return self.call("arena_task", task_id)

    def active_tasks(self) -> list[dict]:
        return self.call("arena_tasks", "active")

    def stakes(self, address: str | None = None) -> dict:
        return self.call("arena_stakes", address or self.key.address)

    # ------------------------------------------------------------ writes

    def _sign_and_submit(self, module: str, function: str, args: list) -> str:
        """Sign with the pool-aware next nonce and submit; the caller holds the key lock."""
        delay = BACKOFF_START_S
        while True:
            try:
                call = self.client.compose_call(module, function, args)
                return self.client.submit(self.client.create_signed_extrinsic(call, self.key))
            except RpcClientError as exc:
                kind = exc.data.get("kind") if isinstance(exc.data, dict) else None
                if exc.code != -1 and kind not in RETRY_POOL_KINDS:
                    raise
                self.log.warning("event=submit_retry call=%s.%s error=%r retry_in=%.1fs", module, function,
                            exc.message[:160], delay)
                if self.ctx.stop.wait(delay):
                    raise WorkerStopped() from exc
                delay = min(BACKOFF_MAX_S, delay * 2)

    def _status(self, xt_hash: str) -> dict | None:
        return self.call("arena_extrinsic", xt_hash)

    def _wait_inclusion(self, action: str, xt_hash: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self._status(xt_hash)
            if found is None:
                return None  # dropped from the pool (or never reached it): may be re-sent
            if found.get("status") == "inBlock":
                return found
            if self.ctx.stop.wait(0.25):
                raise WorkerStopped()
        self.log.warning("event=inclusion_slow action=%s xt=%s waited=%.0fs", action, xt_hash[:18], timeout)
        return None

    def was_submitted(self, action: str) -> bool:
        """Whether the logical `action` was submitted before (it has a record in the state file)."""
        return bool(self.state.data.get("sent", {}).get(action))

    def submit_once(self, action: str, module: str, function: str, args: list,
                    timeout: float = INCLUSION_TIMEOUT_S) -> Inclusion:
        """Submit `module.function(args)` for the logical `action` at most once; wait for inclusion.

        Raises `CallFailed` when the call was included but failed (the failure is remembered, so
        the action is never retried blindly), `WorkerStopped` when asked to stop.
        """
        sent = self.state.data.setdefault("sent", {})
        with key_lock(self.key.public_key):
            record = sent.get(action)
            if record and record.get("failed"):
                raise CallFailed(action, record["failed"], record.get("message", ""))
            for _ in range(5):
                if record and record.get("hash"):
                    found = self._status(record["hash"])
                    if found is not None:  # pending or included: never sign it again
                        break
                    self.log.info("event=resend action=%s dropped_xt=%s", action, record["hash"][:18])
                xt_hash = self._sign_and_submit(module, function, args)
                record = {"hash": xt_hash, "call": f"{module}.{function}", "at": time.time()}
                sent[action] = record
                self.state.save()
                self.log.info("event=submitted action=%s call=%s.%s xt=%s", action, module, function, xt_hash[:18])
                break
        included = self._wait_inclusion(action, record["hash"], timeout)
        if included is None:
            raise CallFailed(action, "NotIncluded", f"extrinsic {record['hash']} was not included in {timeout:.0f} s")
        failed = call_failed(included)
        if failed:
            _, error, message = (failed["data"] + ["", "", ""])[:3]
            record.update(failed=str(error), message=str(message))
            self.state.save()
            raise CallFailed(action, str(error), str(message))
        if not record.get("block"):
            record["block"] = included["blockNumber"]
            self.state.save()
        return Inclusion(record["hash"], included["blockNumber"], included["events"])

    # ------------------------------------------------------------ staking helpers

    def ensure_bonded(self, role: str, amount: int) -> None:
        """Bond `amount` for `role` unless the account is bonded for it already."""
        bonds = self.stakes().get("bonds", {})
        if bonds.get(role, 0) > 0:
            return
        self.submit_once(f"bond/{role}", "staking", "bond", [role, amount])
        self.log.info("event=bonded role=%s amount=%d account=%s", role, amount, self.key.address)

    def heartbeat_due(self) -> bool:
        """True when this account has no heartbeat in the current epoch."""
        beat = self.stakes().get("heartbeat")
        epoch = self.best_number() // self.epoch_length()
        return beat is None or beat["epoch"] < epoch or not beat["available"]

    def send_heartbeat(self, capabilities: list) -> None:
        epoch = self.best_number() // self.epoch_length()
        self.submit_once(f"heartbeat/{epoch}", "staking", "heartbeat", [capabilities])
        self.log.info("event=heartbeat epoch=%d device=%s memory_mib=%d", epoch, capabilities[1], capabilities[2])
