"""The host worker: serve finished tasks' top models over HTTP, paid per query by vouchers (composition).

    arena worker --role host --key //host-1 --rpc http://127.0.0.1:9933
    arena model serve --key //host-1 --rpc URL --port 8100 --price 0.001   (same, with options)

1. Bonds for the "host" role (the role minimum unless `--bond`), heartbeats every epoch.
2. Reads the top models of finalized tasks (`arena_marketModels`), pulls each spec and model
   from IPFS and loads it (node.offchain.host_models), and registers as their host
   (`marketplace.register_host(model_cid, endpoint, price)`).
3. Serves them on 127.0.0.1 (node.offchain.host_http): one paid query per request, or many in
   one `POST /v1/batch`, each with its own voucher. Concurrent queries are decided in batches
   (node.offchain.host_service): vouchers checked against the in-memory ledger, the chain's
   redeemed state and the user's escrow plus its channel to this host, the model run once per
   batch, the accepted vouchers committed to the SQLite ledger (node.offchain.host_ledger) in
   one fsync'd transaction before any answer leaves.
4. Once per usage period (or every `report_blocks`) it redeems the newest voucher of every
   channel not yet redeemed (`marketplace.report_usage`, `UsageReporter`); the chain takes each
   redemption from the user's channel to this host first, then from the shared escrow.

Options (`ctx.options`, or the environment for `arena worker --role host`): port
(ARENA_HOST_PORT, default any free port), price in base units (ARENA_HOST_PRICE, default
1 000 000), report_blocks (ARENA_HOST_REPORT_BLOCKS, default the period length), tasks (task
ids to serve, default all), max_batch (queries per ledger commit, 256).
"""
from __future__ import annotations

import os
from typing import Any

from node.offchain.context import WorkerContext
from node.offchain.host_http import MAX_BODY_BYTES, build_app, free_port, serve_in_thread
from node.offchain.host_ledger import UsageReporter, VoucherLedger
from node.offchain.host_models import ENDPOINTS, ServedModel, load_served_model
from node.offchain.host_service import HostService
from node.offchain.worker import RoleLoop

DEFAULT_PRICE = 1_000_000


def _option(ctx: WorkerContext, name: str, env: str, default: Any) -> Any:
    value = ctx.options.get(name)
    if value is None and os.environ.get(env):
        value = os.environ[env]
    return default if value is None else value


class HostWorker(RoleLoop):
    """Bond, load top models, register, serve, report usage (module docstring)."""

    bond_role = "host"

    def setup(self) -> None:
        ctx = self.ctx
        self.port = int(_option(ctx, "port", "ARENA_HOST_PORT", 0)) or free_port()
        self.price = int(_option(ctx, "price", "ARENA_HOST_PRICE", DEFAULT_PRICE))
        self.endpoint = f"http://127.0.0.1:{self.port}"
        tasks = _option(ctx, "tasks", "ARENA_HOST_TASKS", None)
        if isinstance(tasks, str):
            tasks = tasks.replace(",", " ").split()
        self.only_tasks = None if tasks is None else {int(t) for t in tasks}
        genesis_hash = bytes.fromhex(self.chain.properties()["genesisHash"][2:])
        self.params = self.chain.call("arena_marketParams")
        self.report_blocks = int(_option(ctx, "report_blocks", "ARENA_HOST_REPORT_BLOCKS", self.params["periodBlocks"]))
        self.ledger = VoucherLedger(str(ctx.data_dir / "vouchers.sqlite"))
        self.service = HostService(self.ctx.key.public_key, genesis_hash, self.ledger, self.chain.call)
        self.reporter = UsageReporter(self.chain, self.ledger, self.service.lock, self.ctx.key.address, self.log)
        self.http = serve_in_thread(build_app(self.service, int(ctx.options.get("max_batch", 256))), self.port,
                                    ctx.stop)
        self.last_report_block = int(self.state.data.get("last_report_block", 0))
        self.log.info("event=host_serving endpoint=%s price=%d report_blocks=%d", self.endpoint, self.price,
                      self.report_blocks)

    def step(self) -> None:
        self.sync_models()
        best = self.chain.best_number()
        if best >= self.last_report_block + self.report_blocks:
            self.report_all()
            self.last_report_block = best
            self.state.data["last_report_block"] = best
            self.state.save()

    def sync_models(self) -> None:
        """Load every top model not yet served, and keep the on-chain registration current."""
        for entry in self.chain.call("arena_marketModels"):
            cid, task_id = entry["modelCid"], entry["taskId"]
            if entry["kind"] not in ENDPOINTS or (self.only_tasks is not None and task_id not in self.only_tasks):
                continue
            if cid not in self.service.models:
                self.service.models[cid] = load_served_model(self, cid, task_id, entry["specCid"], self.price)
            mine = [h for h in entry["hosts"] if h["address"] == self.ctx.key.address]
            if not mine or mine[0]["endpoint"] != self.endpoint or mine[0]["pricePerQuery"] != self.price:
                self.chain.submit_once(f"register/{cid}/{self.endpoint}/{self.price}", "marketplace", "register_host",
                                       [cid, self.endpoint, self.price])
                self.log.info("event=host_registered model=%s task=%d endpoint=%s price=%d", cid, task_id,
                              self.endpoint, self.price)

    def report_all(self) -> None:
        """Redeem every channel's newest unredeemed voucher, per model, in chunks."""
        limit = int(self.params["maxVouchersPerReport"])
        period = int(self.chain.call("arena_marketParams")["currentPeriod"])
        for cid in list(self.service.models):
            self.reporter.report(cid, limit, period)
            self.service.forget_redeemed(cid)


def run(ctx: WorkerContext) -> None:
    """The host role's loop; returns when `ctx.stop` is set."""
    worker = HostWorker(ctx)
    try:
        worker.run()
    finally:
        ledger = getattr(worker, "ledger", None)
        if ledger is not None:
            with worker.service.lock:
                ledger.close()


__all__ = ["MAX_BODY_BYTES", "HostService", "ServedModel", "VoucherLedger", "build_app", "free_port", "run",
           "serve_in_thread"]
