"""The demo's narrator: tells each task's life as the chain records it, block by block.

It reads what any user of the network can read: the events of every finalized block
(`chain_getBlockHash` + `arena_events`), in block order, and the `arena_*` views for the tables
(selection, revealed scores, leaderboard, rewards), then audits each task from its published key.
A task that ends failed or cancelled, or finalized without a top model, is recorded with
`net.fail(...)` so the demo exits 1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.markup import escape
from rich.table import Table

from node.demo.network import DemoError, Network
from node.demo.tables import amount, leaderboard_table, short, validators_table

ENDED = ("finalized", "failed", "cancelled")


@dataclass
class TaskStory:
    """What the chain has said about one task so far."""

    task_id: int
    kind: str
    started_ms: dict[str, int] = field(default_factory=dict)  # trainer → start_training block timestamp
    validators: int = 0
    ended: str = ""       # the final status, once reached
    audited: bool = False

    @property
    def told(self) -> bool:
        """Everything about this task has been told (a finalized task also needs its audit)."""
        return bool(self.ended) and (self.ended != "finalized" or self.audited)


def fields(event: dict) -> dict:
    """An event's data by field name (`arena_events` gives `fields` for every declared event)."""
    return event.get("fields") or {}


class Narrator:
    """Turns finalized blocks' events into narration; `on_block` is the whole story's entry point."""

    def __init__(self, network: Network, creator: str, count: int) -> None:
        self.network = network
        self.net = network.net
        self.rpc = network.rpc
        self.say = network.say
        self.creator = creator  # the planner: only its first `count` tasks are told
        self.count = count
        self.stories: dict[int, TaskStory] = {}
        self.next_block = 1

    def name(self, address: str) -> str:
        return short(address, self.net.names)

    @property
    def done(self) -> bool:
        return len(self.stories) == self.count and all(s.told for s in self.stories.values())

    # ------------------------------------------------------------ reading the chain

    def read_new_blocks(self) -> None:
        """Narrate every block finalized since the last call, in order."""
        finalized = self.rpc.call("system_health")["finalized"]
        while self.next_block <= finalized:
            block_hash = self.rpc.call("chain_getBlockHash", self.next_block)
            self.on_block(self.next_block, self.rpc.call("arena_events", block_hash))
            self.next_block += 1

    def on_block(self, number: int, events: list[dict]) -> None:
        """Narrate one block's task events (events of other tasks are skipped)."""
        for event in events:
            if event["module"] != "tasks":
                continue
            data = fields(event)
            if event["name"] == "TaskCreated":
                self.created(data)
                continue
            story = self.stories.get(data.get("task_id", -1))
            if story is not None and not story.ended:
                self.on_task_event(story, event["name"], data, number, events)
            elif story is not None and event["name"] == "AuditKeyPublished" and story.ended == "finalized" \
                    and not story.audited:
                self.audit(story)

    def created(self, data: dict) -> None:
        if data["creator"] != self.creator or len(self.stories) >= self.count:
            return
        story = self.stories[data["task_id"]] = TaskStory(data["task_id"], data["kind"])
        self.say(f"[bold]task {story.task_id} created[/bold] by {self.name(data['creator'])}: kind {story.kind}, "
                 f"reward pool {amount(data['reward_pool'])}, spec {data['spec_cid']}")

    def on_task_event(self, story: TaskStory, name: str, data: dict, block: int, events: list[dict]) -> None:
        tid = story.task_id
        if name == "PhaseChanged":
            self.phase(story, data, events)
        elif name == "Selected":
            story.validators = len(data["validators"])
            self.selection(tid)
        elif name == "TrainingStarted":
            story.started_ms[data["trainer"]] = data["timestamp_ms"]
            self.say(f"  task {tid}: {self.name(data['trainer'])} start_training at block #{data['block']}")
        elif name == "ModelCommitted":
            began = story.started_ms.get(data["trainer"])
            took = f" after {(data['timestamp_ms'] - began) / 1000:.1f} s of training" if began else ""
            self.say(f"  task {tid}: {self.name(data['trainer'])} commit_model at block #{data['block']}{took} "
                     "(CID hidden until reveal)")
        elif name == "ModelSubmitted":
            self.say(f"  task {tid}: {self.name(data['trainer'])} submit_model (reveal) at block #{data['block']}: "
                     f"{data['model_cid']}")
        elif name == "ValidationShared":
            self.say(f"  task {tid}: planner sealed the held-out set to the {story.validators} validators "
                     f"→ share {data['share_cid']}")
        elif name == "ValidationStarted":
            self.say(f"  task {tid}: {self.name(data['validator'])} start_validation at block #{data['block']}")
        elif name == "ScoresCommitted":
            self.say(f"  task {tid}: {self.name(data['validator'])} commit_scores at block #{block} "
                     f"(hash {str(data['commitment'])[:18]}…)")
        elif name == "ScoresRevealed":
            self.say(f"  task {tid}: {self.name(data['validator'])} reveal_scores at block #{block}")
            self.rejections(tid, data["validator"])
        elif name == "TaskFinalized":
            story.ended = "finalized"
            self.finalized(story, block, events)
        elif name == "TaskFailed":
            self.ended(story, "failed", str(data.get("reason") or ""))

    def phase(self, story: TaskStory, data: dict, events: list[dict]) -> None:
        status = data["status"]
        if status != "selection":
            self.say(f"task {story.task_id} → phase [bold]{status}[/bold] at block #{data['block']}"
                     + (f" (window until #{data['window_end']})" if status not in ENDED else ""))
        failed_event = any(e["module"] == "tasks" and e["name"] == "TaskFailed"
                           and fields(e).get("task_id") == story.task_id for e in events)
        if status == "cancelled" or (status == "failed" and not failed_event):
            self.ended(story, status, "")

    # ------------------------------------------------------------ tables from the arena_* views

    def selection(self, task_id: int) -> None:
        task = self.rpc.call("arena_task", task_id)
        found = self.rpc.call("arena_selection", task_id)
        self.say(f"[bold]task {task_id}[/bold]: selection by the randomness beacon, weight = "
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

    def rejections(self, task_id: int, validator: str) -> None:
        """The models `validator` scored 0 in its reveal (it could not load or run them)."""
        scores = self.rpc.call("arena_scores", task_id)
        row = next((r for r in (scores or {}).get("rows", []) if r["validator"] == validator), None)
        if row is None:
            return
        for trainer, score in zip(scores["trainers"], row["scores"]):
            if score == 0:
                self.say(f"  task {task_id}: {self.name(validator)} rejected the model of {self.name(trainer)} "
                         "→ score 0")

    def rewards(self, task_id: int, block: int, events: list[dict]) -> Table:
        table = Table(title=f"Task {task_id} rewards paid (block #{block})", title_justify="left")
        for column in ("account", "as", "amount"):
            table.add_column(column, justify="right" if column == "amount" else "left")
        for e in events:
            if e["module"] == "rewards" and e["name"] == "RewardPaid" and e["data"][0] == task_id:
                table.add_row(self.name(e["data"][1]), e["data"][2], amount(e["data"][3]))
            if e["module"] == "staking" and e["name"] == "Slashed":
                table.add_row(self.name(e["data"][0]), f"slashed ({e['data'][3]})", "-" + amount(e["data"][2]))
        return table

    # ------------------------------------------------------------ endings

    def ended(self, story: TaskStory, status: str, reason: str) -> None:
        """A task that ended without rewards: say so in red and fail the demo."""
        story.ended = status
        text = f"task {story.task_id} ({story.kind}) ended {status}" + (f": {reason}" if reason else "")
        self.say(f"[red]{escape(text)}[/red]")
        self.net.fail(text)

    def finalized(self, story: TaskStory, block: int, events: list[dict]) -> None:
        console = self.network.console
        board = self.rpc.call("arena_leaderboard", story.task_id)
        console.print(leaderboard_table(board, self.net.names))
        console.print(validators_table(board, self.net.names))
        console.print(self.rewards(story.task_id, block, events))
        top = self.rpc.call("arena_topModel", story.task_id)
        if top:
            self.net.top_models.append(top)
            self.say(f"[bold green]task {story.task_id} top model[/bold green] {top['modelCid']} by "
                     f"{self.name(top['trainer'])} (consensus score {top['consensusScore']:,})")
        else:
            self.say(f"[red]task {story.task_id} was finalized without a top model[/red]")
            self.net.fail(f"task {story.task_id} was finalized without a top model (no trainer scored above 0)")

    def audit(self, story: TaskStory) -> None:
        """Recompute every revealed score from the published key on node-3's data."""
        from node.offchain.audit import audit_task

        story.audited = True
        report = audit_task(self.net.rpc_urls[3], story.task_id)
        table = Table(title=f"Audit of task {story.task_id} from the published key (re-run on node-3's data)",
                      title_justify="left")
        table.add_column("trainer")
        table.add_column("recomputed score", justify="right")
        for v in sorted(report.revealed):
            table.add_column(f"revealed by {self.name(v)}", justify="right")
        for trainer, score in report.recomputed.items():
            table.add_row(self.name(trainer), f"{score:,}",
                          *[f"{report.revealed[v].get(trainer, 0):,}" for v in sorted(report.revealed)])
        self.network.console.print(table)
        verdict = "[green]reproduced exactly[/green]" if report.reproduced else "[red]NOT reproduced[/red]"
        self.say(f"audit of task {story.task_id}: revealed scores {verdict}")
        if not report.reproduced:
            self.net.fail(f"the audit of task {story.task_id} did not reproduce the revealed scores")


def follow_tasks(network: Network, creator: str, count: int, timeout: float = 300.0) -> None:
    """Narrate `creator`'s first `count` tasks until each has ended (and, if finalized, been audited)."""
    narrator = Narrator(network, creator, count)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        network.check_workers()
        narrator.read_new_blocks()
        if narrator.done:
            return
        time.sleep(0.4)
    raise DemoError(f"the tasks did not finish within {timeout:.0f} s; see {network.log_dir}")
