"""The demo's narrator: follows the planner's tasks on chain (and the trainers' progress lines in
their log) and prints a timeline of everything that happens, then the audit.

Kept apart from node/demo.py (process management) so each file has one job.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from node.offchain.narrate import amount, leaderboard_table, short, validators_table
from node.rpc_client import RpcClientError

if TYPE_CHECKING:
    from node.demo import Demo

PROGRESS = re.compile(r"arena\.worker\.trainer\.(\S+) event=train_progress task=(\d+) step=(\d+) total=(\d+) "
                      r"loss=([0-9.]+)")
TRAIN_DONE = re.compile(r"arena\.worker\.trainer\.(\S+) event=train_done task=(\d+) bytes=(\d+) seconds=([0-9.]+)")
REJECTED = re.compile(r"arena\.worker\.validator\.(\S+) event=model_rejected task=(\d+) trainer=(\S+) cid=\S+ "
                      r"reason='(.*)'")


class LogTail:
    """New lines of a growing log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode(errors="replace").splitlines()


class TaskStory:
    """What has been told about one task so far."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        self.status = ""
        self.told: set[str] = set()
        self.progress: dict[str, int] = {}
        self.finished = False
        self.audited = False


class Narrator:
    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.rpc = demo.rpc
        self.say = demo.say
        self.names = demo.names
        self.prefix_names = {addr[:8]: name for addr, name in self.names.items()}
        self.stories: dict[int, TaskStory] = {}
        self.trainer_log = LogTail(demo.log_dir / "trainers.log")
        self.validator_log = LogTail(demo.log_dir / "validators.log")

    def name(self, address: str) -> str:
        return short(address, self.names)

    # ------------------------------------------------------------ logs

    def read_logs(self) -> None:
        for line in self.trainer_log.lines():
            if m := PROGRESS.search(line):
                who, task_id, step, total, loss = m.groups()
                story = self.stories.get(int(task_id))
                pct = int(step) * 100 // int(total)
                if story is None or not any(story.progress.get(who, 0) < mark <= pct for mark in (10, 50, 100)):
                    continue
                story.progress[who] = pct
                bar = "█" * (pct // 10) + "░" * (10 - pct // 10)
                self.say(f"  task {task_id}: {self.prefix_names.get(who, who)} training {bar} {pct:3d}% "
                         f"step {step}/{total} loss {loss}")
            elif m := TRAIN_DONE.search(line):
                who, task_id, size, seconds = m.groups()
                self.say(f"  task {task_id}: {self.prefix_names.get(who, who)} finished training in {seconds} s "
                         f"(model file {int(size):,} bytes)")
        for line in self.validator_log.lines():
            if m := REJECTED.search(line):
                who, task_id, trainer, reason = m.groups()
                self.say(f"  task {task_id}: {self.prefix_names.get(who, who)} rejects the model of "
                         f"{self.name(trainer)}: [italic]{reason[:110]}[/italic] → score 0")

    # ------------------------------------------------------------ chain

    def selection(self, task: dict) -> None:
        found = self.rpc.call("arena_selection", task["id"])
        self.say(f"[bold]task {task['id']}[/bold]: selection by the randomness beacon, weight = "
                 "stake^α × reputation among bonded accounts with a live heartbeat:")
        for role, key in (("trainer", "trainers"), ("validator", "validators")):
            eligible = {e["address"]: int(e["weight"]) for e in found["eligibleNow"][role]}
            total = sum(eligible.values()) or 1
            for entry in task[key]:
                stakes = self.rpc.call("arena_stakes", entry["address"])
                delegated = f", {amount(stakes['delegatedTo'])} delegated" if stakes["delegatedTo"] else ""
                chance = eligible.get(entry["address"], 0) * 100 / total
                self.say(f"    {role:9} {self.name(entry['address']):15} effective stake {amount(entry['stake'])}"
                         f"{delegated}; first-draw chance {chance:.0f}% "
                         f"(heartbeat {stakes['heartbeat']['deviceKind'] if stakes['heartbeat'] else '-'})")

    def tell(self, story: TaskStory, key: str, text: str) -> None:
        if key not in story.told:
            story.told.add(key)
            self.say(text)

    def follow(self, task: dict) -> None:
        story = self.stories.setdefault(task["id"], TaskStory(task["id"]))
        tid = task["id"]
        self.tell(story, "created", f"[bold]task {tid} created[/bold] by {self.name(task['creator'])}: "
                  f"kind {task['kind']}, reward pool {amount(task['rewardPool'])}, spec {task['specCid']}")
        if task["status"] != story.status:
            story.status = task["status"]
            if task["status"] != "selection":
                self.say(f"task {tid} → phase [bold]{task['status']}[/bold]")
            if task["status"] in ("training", "validation", "reveal", "finalized") and "selected" not in story.told:
                story.told.add("selected")
                self.selection(task)
        if task["validationShare"]:
            self.tell(story, "share", f"  task {tid}: planner sealed the held-out set to the "
                      f"{len(task['validators'])} validators → share {task['validationShare']}")
        for t in task["trainers"]:
            if t["startedBlock"]:
                self.tell(story, f"start/{t['address']}", f"  task {tid}: {self.name(t['address'])} "
                          f"start_training at block #{t['startedBlock']}")
            if t["modelCid"]:
                self.tell(story, f"model/{t['address']}", f"  task {tid}: {self.name(t['address'])} "
                          f"submit_model at block #{t['submittedBlock']}: {t['modelCid']}")
        for v in task["validators"]:
            if v["commitment"]:
                self.tell(story, f"commit/{v['address']}", f"  task {tid}: {self.name(v['address'])} "
                          f"commit_scores at block #{v['commitBlock']} (hash {v['commitment'][:18]}…)")
            if v["revealBlock"]:
                self.tell(story, f"reveal/{v['address']}", f"  task {tid}: {self.name(v['address'])} "
                          f"reveal_scores at block #{v['revealBlock']}")
        if task["status"] in ("finalized", "failed", "cancelled") and not story.finished:
            story.finished = True
            self.finished(task)

    def rewards(self, task: dict) -> Table:
        block = next(e["block"] for e in task["timeline"] if e["status"] == "finalized")
        events = self.rpc.call("arena_events", self.rpc.call("chain_getBlockHash", block))
        table = Table(title=f"Task {task['id']} rewards paid (block #{block})", title_justify="left")
        for column in ("account", "as", "amount"):
            table.add_column(column, justify="right" if column == "amount" else "left")
        for e in events:
            if e["module"] == "rewards" and e["name"] == "RewardPaid" and e["data"][0] == task["id"]:
                table.add_row(self.name(e["data"][1]), e["data"][2], amount(e["data"][3]))
            if e["module"] == "staking" and e["name"] == "Slashed":
                table.add_row(self.name(e["data"][0]), f"slashed ({e['data'][3]})", "-" + amount(e["data"][2]))
        return table

    def failure_reason(self, task: dict) -> str:
        """The reason of the task's `TaskFailed` event, or "" if it cannot be found."""
        try:
            block = next(e["block"] for e in reversed(task["timeline"]) if e["status"] == task["status"])
            events = self.rpc.call("arena_events", self.rpc.call("chain_getBlockHash", block))
        except (StopIteration, KeyError, RpcClientError, OSError):
            return ""
        for e in events:
            if e["module"] == "tasks" and e["name"] == "TaskFailed" and e["data"][0] == task["id"]:
                return str(e["data"][1])
        return ""

    def finished(self, task: dict) -> None:
        console = self.demo.console
        if task["status"] != "finalized":
            reason = self.failure_reason(task)
            text = f"task {task['id']} ({task.get('kind', '?')}) ended {task['status']}" + (f": {reason}" if reason else "")
            self.say(f"[red]{escape(text)}[/red]")
            self.demo.net.fail(text)
            return
        board = self.rpc.call("arena_leaderboard", task["id"])
        console.print(leaderboard_table(board, self.names))
        console.print(validators_table(board, self.names))
        console.print(self.rewards(task))
        top = self.rpc.call("arena_topModel", task["id"])
        if top:
            self.demo.net.top_models.append(top)
            self.say(f"[bold green]task {task['id']} top model[/bold green] {top['modelCid']} by "
                     f"{self.name(top['trainer'])} (consensus score {top['consensusScore']:,})")
        else:
            self.say(f"[red]task {task['id']} was finalized without a top model[/red]")
            self.demo.net.fail(f"task {task['id']} was finalized without a top model (no trainer scored above 0)")

    def audit(self, task: dict) -> None:
        from node.offchain.audit import audit_task

        report = audit_task(self.demo.net.rpc_urls[3], task["id"])
        table = Table(title=f"Audit of task {task['id']} from the published key (re-run on node-3's data)",
                      title_justify="left")
        table.add_column("trainer")
        table.add_column("recomputed score", justify="right")
        for v in sorted(report.revealed):
            table.add_column(f"revealed by {self.name(v)}", justify="right")
        for trainer, score in report.recomputed.items():
            table.add_row(self.name(trainer), f"{score:,}",
                          *[f"{report.revealed[v].get(trainer, 0):,}" for v in sorted(report.revealed)])
        self.demo.console.print(table)
        verdict = "[green]reproduced exactly[/green]" if report.reproduced else "[red]NOT reproduced[/red]"
        self.say(f"audit of task {task['id']}: revealed scores {verdict}")
        if not report.reproduced:
            self.demo.net.fail(f"the audit of task {task['id']} did not reproduce the revealed scores")


def follow_tasks(demo: Demo, count: int, timeout: float = 240.0) -> None:
    """Narrate the planner's first `count` tasks until each is finalized and audited."""
    narrator = Narrator(demo)
    eve = demo.keys["eve"].address
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        demo.check_workers()
        narrator.read_logs()
        mine = sorted(t["id"] for t in demo.rpc.call("arena_tasks") if t["creator"] == eve)[:count]
        for task_id in mine:
            task = demo.rpc.call("arena_task", task_id)
            narrator.follow(task)
            story = narrator.stories[task_id]
            if story.finished and not story.audited and task["auditKey"] and task["status"] == "finalized":
                story.audited = True
                narrator.audit(task)
            if story.finished and task["status"] != "finalized":
                story.audited = True
        if len(mine) == count and all(narrator.stories[i].audited for i in mine):
            narrator.read_logs()
            return
        time.sleep(0.4)
    from node.demo import DemoError
    raise DemoError(f"the tasks did not finish within {timeout:.0f} s; see {demo.log_dir}")
