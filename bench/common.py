"""Shared benchmark shapes: a row is one figure with the raw limit measured beside it."""
from __future__ import annotations

import time
from collections.abc import Callable


def row(figure: str, value: float, unit: str, limit_name: str, limit: float) -> dict:
    return {"figure": figure, "value": value, "unit": unit, "limit_name": limit_name, "limit": limit}


def rate(fn: Callable[[], int], min_seconds: float = 1.0) -> float:
    """Operations per second of `fn` (which returns how many operations it did), run ≥ min_seconds."""
    done = 0
    start = time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def print_rows(rows: list[dict]) -> None:
    print(f"{'figure':58} {'value':>14} {'unit':10} {'raw limit':>14}  {'ratio':>6}  limit measured")
    for r in rows:
        ratio = r["value"] / r["limit"] if r["limit"] else float("nan")
        print(f"{r['figure']:58} {r['value']:14.5g} {r['unit']:10} {r['limit']:14.5g}  {ratio:6.3g}  {r['limit_name']}")
