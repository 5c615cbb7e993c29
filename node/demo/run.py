"""`make demo`: a 4-node local network, off-chain workers, three tasks end to end, narrated.

    python -m node.demo [--base-dir DIR]

What it does (docs/workers.md, "The demo"):

1. starts 4 `arena node` processes (alice, bob, charlie, dave: the authorities) on 127.0.0.1
   with a fast genesis (500 ms slots);
2. alice funds the worker accounts: trainers //trainer-good, //trainer-poor, //trainer-broken,
   validators //validator-1..3 (deterministic dev-style keys; planner eve and delegator ferdie
   are funded at genesis);
3. starts three worker processes against node-0..2: the trainers (three accounts of quality
   good, poor, broken in one process), the validators (three accounts in one process), then the
   planner (eve: tasks digits_classifier, char_lm and causal_lm_lora); trainers and validators
   bond and send heartbeats; ferdie delegates to trainer-good;
4. narrates each task from the chain (node/demo/story.py): creation, selection, training in
   block order, model CIDs, commits and reveals, rejected models, the leaderboard, rewards to
   every account and delegator, the top model; then audits each task from the published key;
   and shows each task again as `arena task show` prints it;
5. serves the top models and pays for queries (node/demo/market.py);
6. stops every process it started, by PID, also on Ctrl-C or an error, and says where logs are.

Exit status: 0 only when everything it narrates happened (every task finalized with a top model,
every audit reproduced, the marketplace served, was paid and redeemed). Otherwise 1, and the last
lines list what went wrong (`DemoNet.failures`); 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from node import localnet
from node.demo.market import run_marketplace_demo
from node.demo.network import ROOT, DemoError, DemoNet, Network
from node.demo.story import follow_tasks
from node.demo.tables import amount
from node.rpc_client import RpcClientError
from runtime.crypto import Keypair
from runtime.modules.balances import UNIT

TRAINERS = {"trainer-good": "good", "trainer-poor": "poor", "trainer-broken": "broken"}
VALIDATORS = ("validator-1", "validator-2", "validator-3")
KINDS = ("digits_classifier", "char_lm", "causal_lm_lora")  # the last: LoRA fine-tuning of a tiny Qwen2 LM
WINDOWS = (240, 120, 60)  # training, commit, reveal blocks: upper bounds; phases end early when all acted
DELEGATION = 10 * UNIT    # ferdie → trainer-good


class Demo:
    """One demo run; `run()` is wrapped by `main()` which always cleans up."""

    def __init__(self, base: Path, console: Console) -> None:
        self.console = console
        self.network = Network(base, console)
        self.keys = {name: Keypair.from_dev_name(name) for name in (*TRAINERS, *VALIDATORS, "eve", "ferdie", "alice")}
        self.network.net.names = {k.address: name for name, k in self.keys.items()}

    @property
    def net(self) -> DemoNet:
        return self.network.net

    def run(self) -> None:
        network = self.network
        self.console.rule("[bold]Arena demo: decentralised training on a 4-node local network")
        network.start_nodes()
        self.fund()
        urls = self.net.rpc_urls
        network.start_worker("trainers", "trainer", [f"//{n}" for n in TRAINERS], urls[1],
                             "--quality", ",".join(TRAINERS.values()))
        network.start_worker("validators", "validator", [f"//{n}" for n in VALIDATORS], urls[2])
        network.say("started workers: trainers (good, poor, broken) on node-1, validators ×3 on node-2; "
                    "they bond and send heartbeats")
        self.delegate()
        planner_args = ["--windows", ",".join(map(str, WINDOWS)), "--reward", f"{200 * UNIT}u"]
        for kind in KINDS:
            planner_args += ["--task", kind]
        network.start_worker("planner", "planner", ["eve"], urls[0], *planner_args)
        network.say("started the planner (eve) on node-0: it prepares data, waits for live workers, creates tasks")
        follow_tasks(network, self.keys["eve"].address, len(KINDS))
        self.show_with_cli()
        self.console.rule("[bold]Marketplace")
        run_marketplace_demo(self.net, self.console)
        self.check_outcome()

    def fund(self) -> None:
        targets = [*TRAINERS, *VALIDATORS]
        self.network.submit_all(self.keys["alice"], [("balances", "transfer", [self.keys[n].public_key, 1000 * UNIT])
                                                     for n in targets])
        self.network.say(f"alice funded {len(targets)} worker accounts with 1000 ARENA each "
                         "(planner eve and delegator ferdie are funded at genesis)")

    def delegate(self) -> None:
        good = self.keys["trainer-good"]
        self.network.wait_until(lambda: self.network.rpc.call("arena_stakes", good.address)["bonds"].get("trainer"),
                                90, "trainer-good to bond")
        self.network.submit_all(self.keys["ferdie"], [("staking", "delegate", [good.public_key, DELEGATION])])
        self.network.say(f"ferdie delegated {amount(DELEGATION)} to trainer-good (delegators share its rewards)")

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

    def check_outcome(self) -> None:
        """Raise `DemoError` listing every step that did not do what the demo narrated."""
        if self.net.failures:
            lines = "\n".join(f"  - {text}" for text in self.net.failures)
            raise DemoError(f"{len(self.net.failures)} step(s) did not do what the demo narrates:\n{lines}\n"
                            f"logs: nodes {self.network.net_dir}/node-*.log, workers {self.network.log_dir}/*.log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base-dir", help="where nodes and workers keep data and logs (default: a new temp dir)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # urllib3 chatter under ipfshttpclient
    base = Path(args.base_dir) if args.base_dir else Path(tempfile.mkdtemp(prefix="arena-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
    demo = Demo(base, console)
    network = demo.network
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
        network.stop_all()
        console.print(f"stopped {len(demo.net.processes)} processes by PID; total wall time "
                      f"{time.monotonic() - network.started:.1f} s")
        console.print(f"logs: nodes {network.net_dir}/node-*.log, workers {network.log_dir}/*.log")
    return code
