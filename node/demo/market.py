"""The marketplace part of the demo: serve each top model, pay for queries, show the usage split.

1. alice funds a host account (//host-1) and a user (//user-1);
2. the host worker starts as a child process (`arena model serve`) against node-3: it bonds as
   host, pulls every top model from IPFS and registers as its host; it is stopped by PID at the
   end (and listed in `net.processes`, so the demo's own cleanup stops it too);
3. the user queries each top model a few times through `ArenaModelClient` (deposit, vouchers),
   printing the answers and their cost;
4. once the host has redeemed the vouchers on chain, a table shows, per model, who received what:
   host, trainer, validators, treasury.

A step that does not happen is printed in red and recorded with `net.fail(...)`, so the demo exits 1.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from node import localnet
from node.demo.network import ROOT, DemoNet
from node.jsonfmt import fmt_amount
from node.offchain.user_client import ArenaModelClient, ModelQueryError
from node.rpc_client import RpcClient, call_failed
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT

PRICE = 2_000_000  # 0.002 ARENA per query
QUERIES = 4
PROMPTS = ("def main(", "The class ", "Return the ", "import ")
CHATS = ("What is the opposite of hot?", "What is 12 plus 7?", "Is yield a Python keyword?", "Spell the word cold.")

T = TypeVar("T")


def _fail(net: DemoNet, console: Console, text: str) -> None:
    """Say in red that a marketplace step did not happen, and record it so the demo exits 1."""
    console.print(f"[red]{escape(text)}[/]")
    net.fail(text)


def _wait(predicate: Callable[[], T | None], timeout: float) -> T | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    return None


def run_marketplace_demo(net: DemoNet, console: Console) -> None:
    """Serve each top model, pay for queries, and show the usage split (module docstring)."""
    models = [m for m in net.top_models if m and m.get("modelCid")]
    if not models:
        _fail(net, console, "no top model to serve: the marketplace could not run")
        return
    market = Market(net, console, models)
    if not market.fund():
        return
    proc = market.start_host()
    try:
        if market.wait_hosted():
            spent = market.query_all()
            if spent is not None:
                market.report(spent)
    finally:
        localnet.stop_pid(proc.pid, timeout=30)
        net.processes.pop("host-1", None)


class Market:
    """One marketplace run against node-3: a host, a user, the top models."""

    def __init__(self, net: DemoNet, console: Console, models: list[dict]) -> None:
        self.net = net
        self.console = console
        self.models = models
        self.rpc_url = net.rpc_urls[-1]
        self.client = RpcClient(self.rpc_url)
        self.host_key, self.user_key = Keypair.from_dev_name("host-1"), Keypair.from_dev_name("user-1")
        self.log_path = Path(net.base_dir) / "workers" / "host.log"

    def fund(self) -> bool:
        alice = Keypair.from_dev_name("alice")
        for key in (self.host_key, self.user_key):
            failed = call_failed(self.client.submit_and_wait(alice, "balances", "transfer", [key.public_key, 50 * UNIT]))
            if failed:
                _fail(self.net, self.console, f"funding {key.address} failed: {failed['data'][1:3]}")
                return False
        self.net.names.setdefault(self.host_key.address, "host-1")
        self.net.names.setdefault(self.user_key.address, "user-1")
        return True

    def start_host(self) -> subprocess.Popen:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "model", "serve", "--key", "//host-1", "--rpc", self.rpc_url,
                 "--price", f"{PRICE}u", "--report-blocks", "6", "--data-dir", str(Path(self.net.base_dir) / "workers")],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.net.processes["host-1"] = proc.pid
        self.console.print(f"started the host worker (host-1, pid {proc.pid}) against node-3; log {self.log_path}")
        return proc

    def wait_hosted(self) -> bool:
        if not _wait(lambda: all(self.client.call("arena_hosts", m["modelCid"]) for m in self.models), 180):
            _fail(self.net, self.console, f"the host did not register within 180 s; see {self.log_path}")
            return False
        for m in self.models:
            h = self.client.call("arena_hosts", m["modelCid"])[0]
            self.console.print(f"task {m['taskId']} ({m['kind']}): model {m['modelCid']} served by host-1 at "
                               f"{h['endpoint']} for {fmt_amount(h['pricePerQuery'])} per query")
        return True

    def query_all(self) -> int | None:
        """Query every model QUERIES times as user-1; what it spent, or None when a query failed."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        user = ArenaModelClient(self.rpc_url, self.user_key, state_dir=Path(self.net.base_dir) / "client", deposit=UNIT)
        spent = 0
        try:
            for m in self.models:
                for i in range(QUERIES):
                    cost, shown = self.query_one(user, m, i, digits)
                    spent += cost
                    self.console.print(f"  user-1 paid {fmt_amount(cost)}: {shown}")
        except ModelQueryError as exc:
            _fail(self.net, self.console, f"query failed: {exc}")
            return None
        finally:
            user.close()
        return spent

    @staticmethod
    def query_one(user: ArenaModelClient, m: dict, i: int, digits: Any) -> tuple[int, str]:
        """The i-th query of model `m` by its kind: (its cost, what to show)."""
        if m["kind"] == "causal_lm_lora":  # chat completions, the first one streamed (SSE)
            question = CHATS[i % len(CHATS)]
            answer = user.chat(m["taskId"], [{"role": "user", "content": question}], max_tokens=24, stream=i == 0)
            return answer.cost, f"{question!r} → {answer.output!r}" + (" (streamed)" if i == 0 else "")
        if m["kind"] in ("char_lm", "custom_text"):
            prompt = PROMPTS[i % len(PROMPTS)]
            answer = user.query(m["taskId"], prompt, max_tokens=40, temperature=0.7)
            return answer.cost, f"{prompt!r} → {answer.output!r}"
        answer = user.query(m["taskId"], [float(x) for x in digits.data[i]])
        return answer.cost, f"digit image #{i} (true {int(digits.target[i])}) → {answer.output[0]['label']}"

    def report(self, spent: int) -> None:
        """Wait for host-1 to redeem the vouchers, then show who was paid what."""
        self.console.print(f"user-1 spent {fmt_amount(spent)} in {QUERIES * len(self.models)} queries; "
                           "waiting for host-1 to redeem")
        redeemed = _wait(lambda: all(self.client.call("arena_voucherState", self.user_key.address, self.host_key.address,
                                                      m["modelCid"])["nonce"] >= QUERIES for m in self.models), 120)
        if not redeemed:
            _fail(self.net, self.console, "host-1 did not redeem the user's vouchers within 120 s; see its log")
        current = self.client.call("arena_marketParams")["currentPeriod"]
        table = Table(title="Usage revenue paid out (marketplace.report_usage)")
        for col in ("task", "period", "party", "account", "amount"):
            table.add_column(col)
        for m in self.models:
            for period in range(max(0, current - 20), current + 1):
                usage = self.client.call("arena_usage", m["modelCid"], period)
                for p in usage["payouts"]:
                    name = "treasury" if p["party"] == "treasury" else self.net.names.get(p["address"], p["address"][:10] + "…")
                    table.add_row(str(m["taskId"]), str(period), p["party"], name, fmt_amount(p["amount"]))
        self.console.print(table)
        escrow = self.client.call("arena_escrow", self.user_key.address)
        self.console.print(f"user-1 escrow left: {fmt_amount(escrow['balance'])}")
