"""`make demo`: a 4-node local network, off-chain workers, two tasks end to end, narrated.

    python -m node.demo [--base-dir DIR] [--keep]

What it does (docs/workers.md, "The demo"):

1. starts 4 `arena node` processes (alice, bob, charlie, dave: the authorities) on 127.0.0.1
   with a fast genesis (500 ms slots, 20-block epochs);
2. alice funds the worker accounts: planner eve, trainers //trainer-good, //trainer-poor,
   //trainer-broken, validators //validator-1..3 (deterministic dev-style keys);
3. starts three worker processes against node-0..2: the planner (eve, tasks digits_classifier,
   char_lm and causal_lm_lora), the trainers (three accounts of quality good, poor, broken in one
   process), the validators (three accounts in one process); trainers and validators bond and send
   heartbeats; ferdie delegates to trainer-good;
4. narrates each task: creation, selection (stake, weight, chance), training progress, model
   CIDs, commits and reveals, the leaderboard, rewards to every account and delegator, the top
   model; then audits each task from the published key;
5. if `node/offchain/market_demo.py` exists, calls its `run_marketplace_demo(net, console)`;
6. stops every process it started, by PID, also on Ctrl-C or an error, and says where logs are.

Exit status: 0 only when everything it narrates happened (every task finalized with a top model,
every audit reproduced, the marketplace served, was paid and redeemed). Otherwise 1, and the last
lines list what went wrong (`DemoNet.failures`); 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from node import localnet
from node.offchain.narrate import amount
from node.rpc_client import RpcClient, RpcClientError, call_failed
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT

ROOT = Path(__file__).resolve().parent.parent
SLOT_MS = 500
TRAINERS = {"trainer-good": "good", "trainer-poor": "poor", "trainer-broken": "broken"}
VALIDATORS = ("validator-1", "validator-2", "validator-3")
KINDS = ("digits_classifier", "char_lm", "causal_lm_lora")  # the last: LoRA fine-tuning of a tiny Qwen2 LM
WINDOWS = (240, 120, 60)  # training, commit, reveal blocks: upper bounds; phases end early when all acted
BOND = 20 * UNIT         # each trainer's and validator's own bond (the role minimum is 10 ARENA)
DELEGATION = 10 * UNIT   # ferdie → trainer-good


class DemoError(RuntimeError):
    """The demo could not proceed (the message says what to look at)."""


@dataclass
class DemoNet:
    """What the marketplace part of the demo receives (`run_marketplace_demo(net, console)`).

    rpc_urls: the RPC URL of each of the 4 nodes (node-0 first); base_dir: the demo's directory
    (node logs `net/node-I.log`, worker logs `workers/*.log`); names: SS58 address → demo name;
    top_models: per task, the `arena_topModel` reply (taskId, modelCid, trainer, kind, specCid,
    consensusScore, reward, auditKey); processes: name → PID of every process the demo started
    (add yours with `net.processes[name] = pid`: the demo stops them at the end); failures: what
    did not happen as narrated (add with `net.fail(text)`): any failure makes the demo exit 1.
    """

    rpc_urls: list[str]
    base_dir: Path
    names: dict[str, str] = field(default_factory=dict)
    top_models: list[dict] = field(default_factory=list)
    processes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        """Record that a step of the demo did not do what it narrates (the run will exit 1)."""
        self.failures.append(text)

    @property
    def top_model(self) -> dict | None:
        """The first task's top model (the digits classifier), if any."""
        return self.top_models[0] if self.top_models else None


def free_port_base(count: int) -> int:
    """A run of `count` free TCP ports on 127.0.0.1."""
    import random

    for _ in range(200):
        base = random.randrange(20000, 60000, 16)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise DemoError("no free range of local ports found")


def fast_genesis(path: Path) -> Path:
    config = json.loads((ROOT / "genesis.json").read_text())
    config["slot_duration_ms"] = SLOT_MS
    path.write_text(json.dumps(config))
    return path


class Demo:
    """One demo run; `run()` is wrapped by `main()` which always cleans up."""

    def __init__(self, base: Path, console: Console) -> None:
        self.base = base
        self.console = console
        self.net_dir = base / "net"
        self.log_dir = base / "workers"
        self.workers: dict[str, subprocess.Popen] = {}
        self.net = DemoNet([], base)
        self.started = time.monotonic()
        self.keys = {name: Keypair.from_dev_name(name) for name in (*TRAINERS, *VALIDATORS, "eve", "ferdie", "alice")}
        self.names = {k.address: name for name, k in self.keys.items()}
        self.net.names = self.names

    # ------------------------------------------------------------ output

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/dim] {text}")

    # ------------------------------------------------------------ processes

    def start_network(self) -> None:
        genesis = fast_genesis(self.base / "genesis.json")
        rpc_base, p2p_base = free_port_base(4), free_port_base(4)
        self.say(f"starting 4 nodes (alice, bob, charlie, dave) on 127.0.0.1:{rpc_base}-{rpc_base + 3}, "
                 f"{SLOT_MS} ms slots …")
        slots = localnet.up(self.net_dir, 4, genesis, None, rpc_base, p2p_base, wait=90)
        for i, pid in enumerate(localnet.read_state(self.net_dir)["pids"]):
            self.net.processes[f"node-{i}"] = pid
        self.net.rpc_urls = [s.rpc_url for s in slots]
        self.rpc = RpcClient(self.net.rpc_urls[0], timeout=10)
        deadline = time.monotonic() + 60
        while self.rpc.call("system_health")["finalized"] < 2:
            if time.monotonic() > deadline:
                raise DemoError(f"the network does not finalize; see {self.net_dir}/node-*.log")
            time.sleep(0.5)
        self.say(f"network up: finalizing, block #{self.rpc.call('system_health')['best']}")

    def start_worker(self, name: str, role: str, keys: list[str], rpc_url: str, *extra: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "node.cli", "worker", "--role", role, "--key", ",".join(keys),
                "--rpc", rpc_url, "--data-dir", str(self.base / "worker-state"), "--torch-threads", "1",
                "--bond", str(BOND), *extra]
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.workers[name] = proc
        self.net.processes[name] = proc.pid

    def stop_all(self) -> None:
        for name, proc in self.workers.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.workers.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        known = set(localnet.read_state(self.net_dir).get("pids", [])) if self.net_dir.exists() else set()
        for name, pid in self.net.processes.items():  # e.g. processes the marketplace part added
            if name not in self.workers and pid not in known:
                localnet.stop_pid(pid)
        if localnet.read_state(self.net_dir) if self.net_dir.exists() else None:
            localnet.down(self.net_dir)

    # ------------------------------------------------------------ chain helpers

    def submit_all(self, key: Keypair, calls: list[tuple[str, str, list]]) -> None:
        """Submit calls from one key with consecutive nonces, then wait for all of them."""
        nonce = self.rpc.call("system_accountNextIndex", key.address)
        hashes = [self.rpc.submit(self.rpc.sign(key, m, f, a, nonce=nonce + i)) for i, (m, f, a) in enumerate(calls)]
        for xt_hash, (m, f, _) in zip(hashes, calls):
            failed = call_failed(self.rpc.wait_for(xt_hash, timeout=60))
            if failed:
                raise DemoError(f"{m}.{f} failed: {failed['data'][1]}: {failed['data'][2]}")

    def fund(self) -> None:
        targets = [*TRAINERS, *VALIDATORS]
        self.submit_all(self.keys["alice"], [("balances", "transfer", [self.keys[n].public_key, 1000 * UNIT])
                                             for n in targets])
        self.say(f"alice funded {len(targets)} worker accounts with 1000 ARENA each "
                 "(planner eve and delegator ferdie are funded at genesis)")

    def wait_until(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            self.check_workers()
            time.sleep(0.5)
        raise DemoError(f"timed out waiting for {what}; logs in {self.log_dir} and {self.net_dir}")

    def check_workers(self) -> None:
        for name, proc in self.workers.items():
            if proc.poll() is not None:
                raise DemoError(f"worker {name} exited with code {proc.returncode}; see {self.log_dir / name}.log")

    def delegate(self) -> None:
        good = self.keys["trainer-good"]
        self.wait_until(lambda: self.rpc.call("arena_stakes", good.address)["bonds"].get("trainer"), 90,
                        "trainer-good to bond")
        self.submit_all(self.keys["ferdie"], [("staking", "delegate", [good.public_key, DELEGATION])])
        self.say(f"ferdie delegated {amount(DELEGATION)} to trainer-good (delegators share its rewards)")

    def run(self) -> None:
        self.console.rule("[bold]Arena demo: decentralised training on a 4-node local network")
        self.start_network()
        self.fund()
        urls = self.net.rpc_urls
        self.start_worker("trainers", "trainer", [f"//{n}" for n in TRAINERS], urls[1],
                          "--quality", ",".join(TRAINERS.values()))
        self.start_worker("validators", "validator", [f"//{n}" for n in VALIDATORS], urls[2])
        self.say("started workers: trainers (good, poor, broken) on node-1, validators ×3 on node-2; "
                 "they bond and send heartbeats")
        self.delegate()
        planner_args = ["--windows", ",".join(map(str, WINDOWS)), "--reward", str(200 * UNIT)]
        for kind in KINDS:
            planner_args += ["--task", kind]
        self.start_worker("planner", "planner", ["eve"], urls[0], *planner_args)
        self.say("started the planner (eve) on node-0: it prepares data, waits for live workers, creates tasks")
        from node.offchain.demo_story import follow_tasks
        follow_tasks(self, len(KINDS))
        self.show_with_cli()
        self.marketplace()
        self.check_outcome()

    def check_outcome(self) -> None:
        """Raise `DemoError` listing every step that did not do what the demo narrated."""
        if self.net.failures:
            lines = "\n".join(f"  - {text}" for text in self.net.failures)
            raise DemoError(f"{len(self.net.failures)} step(s) did not do what the demo narrates:\n{lines}\n"
                            f"logs: nodes {self.net_dir}/node-*.log, workers {self.log_dir}/*.log")

    def show_with_cli(self) -> None:
        """The leaderboard again, as `arena task show` prints it from any node."""
        for task_id in range(len(KINDS)):
            command = ["arena", "task", "show", str(task_id), "--rpc", self.net.rpc_urls[3]]
            self.console.rule(f"[bold]$ {' '.join(command)}")
            out = subprocess.run([sys.executable, "-m", "node.cli", *command[1:]], cwd=ROOT, capture_output=True,
                                 text=True, timeout=60, check=False)
            self.console.print(out.stdout.rstrip() or out.stderr.rstrip(), markup=False)
            if out.returncode != 0:
                self.net.fail(f"`{' '.join(command)}` exited with code {out.returncode}")

    def marketplace(self) -> None:
        import importlib

        try:
            market_demo = importlib.import_module("node.offchain.market_demo")
        except ModuleNotFoundError as exc:
            if exc.name != "node.offchain.market_demo":
                raise
            return
        runner = getattr(market_demo, "run_marketplace_demo", None)
        if callable(runner):
            self.console.rule("[bold]Marketplace")
            runner(self.net, self.console)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", help="where nodes and workers keep data and logs (default: a new temp dir)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # urllib3 chatter under ipfshttpclient
    base = Path(args.base_dir) if args.base_dir else Path(tempfile.mkdtemp(prefix="arena-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
    demo = Demo(base, console)
    code = 1

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_term)
    try:
        demo.run()
        code = 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping everything the demo started[/yellow]")
        code = 130
    except (DemoError, localnet.LocalnetError, RpcClientError) as exc:
        console.print(f"[red]demo failed:[/red] {escape(str(exc))}")
    finally:
        demo.stop_all()
        console.print(f"stopped {len(demo.net.processes)} processes by PID; total wall time "
                      f"{time.monotonic() - demo.started:.1f} s")
        console.print(f"logs: nodes {demo.net_dir}/node-*.log, workers {demo.log_dir}/*.log")
    return code


if __name__ == "__main__":
    sys.exit(main())
