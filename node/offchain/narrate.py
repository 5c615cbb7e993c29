"""Rich renderings of a task for people: timeline, participants, leaderboard, validator results.

Used by `arena task show ID` (when no other CLI plugin defines `arena task`) and by the demo.
"""
from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from node.rpc_client import RpcClient
from runtime.modules.balances import UNIT


def amount(units: int | None) -> str:
    """Base units as ARENA with up to 4 decimals (rounded half up, integers only)."""
    if units is None:
        return "-"
    step = UNIT // 10_000
    whole, frac = divmod((abs(units) + step // 2) // step, 10_000)
    text = f"{whole:,}" + f".{frac:04d}".rstrip("0").rstrip(".")
    return ("-" if units < 0 and (whole or frac) else "") + text + " ARENA"


def short(address: str | None, names: dict[str, str] | None = None) -> str:
    """A readable account: its demo name when known, else the SS58 prefix."""
    if not address:
        return "-"
    if names and address in names:
        return names[address]
    return address[:8] + "…"


def score_text(score: int) -> str:
    return f"{score:,}"


def leaderboard_table(board: dict, names: dict[str, str] | None = None) -> Table:
    table = Table(title=f"Task {board['taskId']} ({board['kind']}) leaderboard — {board['status']}",
                  title_justify="left")
    from node.offchain.ml.spec import loss_from_score

    per_token = board["kind"] in ("causal_lm_lora", "char_lm", "custom_text")
    loss_column = "held-out loss (nats/token, ppl)" if per_token else "held-out loss"
    for column in ("rank", "trainer", "consensus score", loss_column, "reward", "model CID"):
        table.add_column(column, justify="left" if column in ("trainer", "model CID") else "right")
    for entry in board["entries"]:
        loss = loss_from_score(entry["consensusScore"])
        shown = "rejected" if loss is None else f"{loss:.4f}" + (f" ({math.exp(min(loss, 700)):.2f})" if per_token else "")
        table.add_row(str(entry["rank"]), short(entry["address"], names), score_text(entry["consensusScore"]),
                      shown, amount(entry["reward"]), entry["modelCid"])
    return table


def validators_table(board: dict, names: dict[str, str] | None = None) -> Table:
    table = Table(title="Validators", title_justify="left")
    for column in ("validator", "agreement", "reward"):
        table.add_column(column, justify="left" if column == "validator" else "right")
    for v in board["validators"]:
        table.add_row(short(v["address"], names), f"{v['agreementPpb'] / 1e7:.2f} %", amount(v["reward"]))
    return table


def timeline_table(task: dict) -> Table:
    table = Table(title=f"Task {task['id']} timeline", title_justify="left")
    table.add_column("phase")
    table.add_column("block", justify="right")
    for entry in task["timeline"]:
        table.add_row(entry["status"], str(entry["block"]))
    return table


def print_task(rpc_url: str, task_id: int, console: Console | None = None,
               names: dict[str, str] | None = None) -> int:
    """Print a task's timeline, participants and leaderboard; 1 when the task does not exist."""
    console = console or Console()
    client = RpcClient(rpc_url, timeout=10)
    task: dict[str, Any] | None = client.call("arena_task", task_id)
    if task is None:
        console.print(f"[red]task {task_id} does not exist on {rpc_url}[/red]")
        return 1
    console.print(f"[bold]Task {task_id}[/bold] kind={task['kind']} status={task['status']} "
                  f"creator={short(task['creator'], names)} reward pool={amount(task['rewardPool'])} "
                  f"emission={amount(task['emission'])} spec={task['specCid']}")
    console.print(timeline_table(task))
    board = client.call("arena_leaderboard", task_id)
    if board and board["entries"]:
        console.print(leaderboard_table(board, names))
        console.print(validators_table(board, names))
    else:
        console.print("no leaderboard yet (the task is not finalized)")
    if task["topModel"]:
        console.print(f"top model: [bold]{task['topModel']}[/bold]")
    return 0
