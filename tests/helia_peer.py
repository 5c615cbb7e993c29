"""A real Helia node (tests/helia/peer.mjs, npm packages pinned in tests/helia/package.json).

`make test` installs the packages (`npm ci` in tests/helia). The peer listens on 127.0.0.1 only,
with no bootstrap, mDNS, DHT or delegated routing; it is driven by JSON lines and stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Self

import pytest

HELIA_DIR = Path(__file__).resolve().parent / "helia"


def require_helia() -> str:
    """The node binary; skips when Node.js is absent, fails when the packages are not installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (Helia interop needs node >= 20)")
    if not (HELIA_DIR / "node_modules" / "@helia" / "utils").is_dir():
        pytest.fail("Helia is not installed: run `make helia` (npm ci in tests/helia)")
    return node


class HeliaPeer:
    """One Helia process; `call` sends a command and returns its reply (raises on an error reply)."""

    def __init__(self) -> None:
        node = require_helia()
        self.proc = subprocess.Popen([node, str(HELIA_DIR / "peer.mjs")], cwd=HELIA_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self._read()
        self.peer_id: str = hello["id"]
        self.addrs: list[str] = hello["addrs"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Helia peer exited (code {self.proc.poll()})")
        return json.loads(line)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"Helia {op} failed: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("stop")
                self.proc.wait(10)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
