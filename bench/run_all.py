"""Run every benchmark in bench/ and print one table; write bench/results.json."""
from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_rows

BENCHES = ["import", "aggregation", "content", "p2p_raw", "ml_eval", "network", "lifecycle", "inference", "llm"]


def main() -> int:
    rows: list[dict] = []
    failures = []
    for name in BENCHES:
        path = Path(__file__).with_name(f"{name}.py")
        if not path.exists():
            continue
        print(f"== bench/{name}.py", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            got = module.run()
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others
            traceback.print_exc()
            failures.append(name)
            continue
        for r in got:
            r["bench"] = name
        rows.extend(got)
        print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
    print()
    print_rows(rows)
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps({"rows": rows, "failed": failures}, indent=2))
    print(f"\nwrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
