"""A really full disk (issue 11, finding 8): a dev node whose base path is a 16 MiB tmpfs, filled to
the last byte while the node authors blocks.

The tmpfs lives in a private mount namespace held by a `sleep` process (it vanishes with it, so a
killed test leaves no mount behind); nodes run in that namespace through `nsenter`, and the test
fills the disk through `/proc/<holder>/root`. Needs root (or CAP_SYS_ADMIN) for the mount; it is
skipped, saying so, where that is not available.

What must hold: the node stops on ENOSPC with one `error: disk full` line and exit code 28, no
traceback; a restart while the disk is still full does the same; once space is freed the node
starts again with every block it had reported.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.rpc_client import RpcClient
from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.integration

DISK_BYTES = 16 * 2**20


@pytest.fixture
def namespace(tmp_path: Path):
    """(holder pid, mount point): a tmpfs of DISK_BYTES in a private mount namespace."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.skip("a real full disk needs root (a tmpfs mount in a private namespace) and util-linux")
    disk = tmp_path / "disk"
    disk.mkdir()
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "3600"])
    try:
        # `unshare` is ours until it has made its namespace: mounting before that would mount on
        # this (the host's) namespace and leave the tmpfs behind
        ours, deadline = os.readlink("/proc/self/ns/mnt"), time.monotonic() + 10
        while os.readlink(f"/proc/{holder.pid}/ns/mnt") == ours:
            if time.monotonic() > deadline:
                pytest.fail("unshare did not make a mount namespace within 10 s")
            time.sleep(0.01)
        mounted = subprocess.run(["nsenter", "-t", str(holder.pid), "-m", "mount", "-t", "tmpfs", "-o",
                                  f"size={DISK_BYTES}", "tmpfs", str(disk)], check=False, capture_output=True,
                                 text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        yield holder.pid, disk
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)


def _start(holder: int, disk: Path, port: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["nsenter", "-t", str(holder), "-m", sys.executable, "-m", "node.cli", "node",
             "--base-path", str(disk / "node"), "--dev", "--rpc-port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _best(client: RpcClient, proc: subprocess.Popen, at_least: int, log: Path) -> int:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the node exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
        try:
            number = int(client.call("chain_getHeader")["number"])
        except Exception:  # noqa: BLE001 - still starting
            number = -1
        if number >= at_least:
            return number
        time.sleep(0.2)
    raise AssertionError(f"the node did not reach #{at_least}:\n{log.read_text()[-2000:]}")


def _fill(path: Path) -> None:
    """Write zeros until the file system says ENOSPC."""
    with open(path, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == 28, exc


def test_a_really_full_disk_stops_the_node_cleanly_and_it_recovers(namespace: tuple[int, Path], tmp_path: Path) -> None:
    holder, disk = namespace
    view = Path(f"/proc/{holder}/root") / disk.relative_to("/")  # the tmpfs as the nodes see it
    port = free_port()
    client = RpcClient(f"http://127.0.0.1:{port}", timeout=5)

    log = tmp_path / "first.log"
    node = _start(holder, disk, port, log)
    try:
        reported = _best(client, node, 2, log)
        assert shutil.disk_usage(view).total <= DISK_BYTES  # really the small disk
        _fill(view / "filler")
        assert node.wait(timeout=120) == 28, log.read_text()[-2000:]
    finally:
        if node.poll() is None:
            node.kill()
    text = log.read_text(errors="replace")
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "disk full" in errors[0] and str(disk / "node") in errors[0], text[-2000:]
    assert "Traceback" not in text

    log = tmp_path / "while-full.log"
    again = _start(holder, disk, port, log)
    try:
        assert again.wait(timeout=120) == 28, log.read_text()[-2000:]
    finally:
        if again.poll() is None:
            again.kill()
    text = log.read_text(errors="replace")
    assert "error: disk full" in text and "Traceback" not in text, text[-2000:]

    (view / "filler").unlink()
    log = tmp_path / "freed.log"
    freed = _start(holder, disk, port, log)
    try:
        assert _best(client, freed, reported, log) >= reported
    finally:
        freed.send_signal(signal.SIGTERM)
        assert freed.wait(timeout=30) == 0
