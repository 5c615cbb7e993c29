"""The demo's tables and amounts: a task's leaderboard and validator results, ARENA rounded for reading."""
from __future__ import annotations

import math

from rich.table import Table

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
