"""The marketplace part of the demo (`run_marketplace_demo(net, console)`, called by node/demo.py).

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
from pathlib import Path
from typing import Any

from node import localnet
from node.offchain.user_client import ArenaModelClient, ModelQueryError
from node.rpc_client import RpcClient, call_failed
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT

ROOT = Path(__file__).resolve().parent.parent.parent
PRICE = 2_000_000  # 0.002 ARENA per query
QUERIES = 4
PROMPTS = ("def main(", "The class ", "Return the ", "import ")
CHATS = ("What is the opposite of hot?", "What is 12 plus 7?", "Is yield a Python keyword?", "Spell the word cold.")


def _fmt(units: int) -> str:
    return f"{units / UNIT:.6f} ARENA"


def _fail(net: Any, console: Any, text: str) -> None:
    """Say in red that a marketplace step did not happen, and record it so the demo exits 1."""
    from rich.markup import escape

    console.print(f"[red]{escape(text)}[/]")
    net.fail(text)


def _wait(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    return None


def run_marketplace_demo(net: Any, console: Any) -> None:
    """Serve each top model, pay for queries, and show the usage split (module docstring)."""
    from rich.table import Table

    models = [m for m in net.top_models if m and m.get("modelCid")]
    if not models:
        _fail(net, console, "no top model to serve: the marketplace could not run")
        return
    rpc_url = net.rpc_urls[-1]
    client = RpcClient(rpc_url)
    alice, host_key, user_key = (Keypair.from_dev_name(n) for n in ("alice", "host-1", "user-1"))
    for key in (host_key, user_key):
        failed = call_failed(client.submit_and_wait(alice, "balances", "transfer", [key.public_key, 50 * UNIT]))
        if failed:
            _fail(net, console, f"funding {key.address} failed: {failed['data'][1:3]}")
            return
    net.names.setdefault(host_key.address, "host-1")
    net.names.setdefault(user_key.address, "user-1")
    log_path = Path(net.base_dir) / "workers" / "host.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "model", "serve", "--key", "//host-1", "--rpc", rpc_url,
             "--price", f"{PRICE}u", "--report-blocks", "6", "--data-dir", str(Path(net.base_dir) / "workers")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    net.processes["host-1"] = proc.pid
    console.print(f"started the host worker (host-1, pid {proc.pid}) against node-3; log {log_path}")
    try:
        _serve_and_pay(net, console, client, models, host_key, user_key, rpc_url, Table)
    finally:
        localnet.stop_pid(proc.pid, timeout=30)
        net.processes.pop("host-1", None)


def _serve_and_pay(net: Any, console: Any, client: RpcClient, models: list[dict], host_key: Keypair,
                   user_key: Keypair, rpc_url: str, table_type: Any) -> None:
    hosted = _wait(lambda: all(client.call("arena_hosts", m["modelCid"]) for m in models), 180)
    if not hosted:
        _fail(net, console, f"the host did not register within 180 s; see {Path(net.base_dir) / 'workers' / 'host.log'}")
        return
    for m in models:
        h = client.call("arena_hosts", m["modelCid"])[0]
        console.print(f"task {m['taskId']} ({m['kind']}): model {m['modelCid']} served by host-1 at "
                      f"{h['endpoint']} for {_fmt(h['pricePerQuery'])} per query")
    user = ArenaModelClient(rpc_url, user_key, state_dir=Path(net.base_dir) / "client", deposit=UNIT)
    spent = 0
    try:
        from sklearn.datasets import load_digits

        digits = load_digits()
        for m in models:
            for i in range(QUERIES):
                if m["kind"] == "causal_lm_lora":  # chat completions, the first one streamed (SSE)
                    question = CHATS[i % len(CHATS)]
                    answer = user.chat(m["taskId"], [{"role": "user", "content": question}], max_tokens=24,
                                       stream=i == 0)
                    shown = f"{question!r} → {answer.output!r}" + (" (streamed)" if i == 0 else "")
                elif m["kind"] in ("char_lm", "custom_text"):
                    data: Any = PROMPTS[i % len(PROMPTS)]
                    answer = user.query(m["taskId"], data, max_tokens=40, temperature=0.7)
                    shown = f"{data!r} → {answer.output!r}"
                else:
                    data = [float(x) for x in digits.data[i]]
                    answer = user.query(m["taskId"], data)
                    shown = f"digit image #{i} (true {int(digits.target[i])}) → {answer.output[0]['label']}"
                spent += answer.cost
                console.print(f"  user-1 paid {_fmt(answer.cost)}: {shown}")
    except ModelQueryError as exc:
        _fail(net, console, f"query failed: {exc}")
        return
    finally:
        user.close()
    console.print(f"user-1 spent {_fmt(spent)} in {QUERIES * len(models)} queries; waiting for host-1 to redeem")
    done = _wait(lambda: all(client.call("arena_voucherState", user_key.address, host_key.address,
                                         m["modelCid"])["nonce"] >= QUERIES for m in models), 120)
    if not done:
        _fail(net, console, "host-1 did not redeem the user's vouchers within 120 s; see its log")
    current = client.call("arena_marketParams")["currentPeriod"]
    table = table_type(title="Usage revenue paid out (marketplace.report_usage)")
    for col in ("task", "period", "party", "account", "amount"):
        table.add_column(col)
    for m in models:
        for period in range(max(0, current - 20), current + 1):
            usage = client.call("arena_usage", m["modelCid"], period)
            for p in usage["payouts"]:
                name = "treasury" if p["party"] == "treasury" else net.names.get(p["address"], p["address"][:10] + "…")
                table.add_row(str(m["taskId"]), str(period), p["party"], name, _fmt(p["amount"]))
    console.print(table)
    escrow = client.call("arena_escrow", user_key.address)
    console.print(f"user-1 escrow left: {_fmt(escrow['balance'])}")
