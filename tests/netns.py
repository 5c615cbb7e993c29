"""Separate hosts on one machine: Linux network namespaces on a private bridge.

Each host is a network namespace with one veth interface on a bridge that lives in its own
"hub" namespace, an address in 10.213.77.0/24 and no default route: the hosts reach each other
and nothing else, and the machine's own network is never touched (no interface, address or
route is added outside the namespaces this harness creates). `cut(i)` takes a host's link down,
`restore(i)` brings it back; `close()` deletes every namespace (and with them the veths and the
bridge). The test process can act as a host too: `lab.call(i, fn)` runs `fn` in a thread that
has entered host i's namespace (network namespaces are per thread), so its sockets are there.

Needs root and iproute2; `unavailable()` says why not. Usable by any multi-host test, e.g. the
finality fault harness: partition with `cut`, heal with `restore`.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

T = TypeVar("T")
SUBNET = "10.213.77"
CIDR = f"{SUBNET}.0/24"
CLONE_NEWNET = 0x40000000


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` tool (iproute2) is not installed"
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


class NetnsLab:
    """`count` hosts `{tag}h0..` on a bridge in `{tag}hub`; host i has address 10.213.77.(i+1)."""

    def __init__(self, count: int, tag: str | None = None) -> None:
        self.tag = tag or f"ar{os.getpid() % 100000}"
        self.count = count
        self.hub = f"{self.tag}hub"
        self.hosts = [f"{self.tag}h{i}" for i in range(count)]
        self._made: list[str] = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def address(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def _build(self) -> None:
        _ip("netns", "add", self.hub)
        self._made.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i, name in enumerate(self.hosts):
            _ip("netns", "add", name)
            self._made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
            # create the pair inside the host namespace, then move the bridge end to the hub
            _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}")
            _ip("-n", name, "link", "set", f"p{i}", "netns", self.hub)
            _ip("-n", self.hub, "link", "set", f"p{i}", "master", "br0")
            _ip("-n", self.hub, "link", "set", f"p{i}", "up")
            _ip("-n", name, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")

    def exec_args(self, i: int, argv: list[str]) -> list[str]:
        """argv run inside host i (`ip netns exec` execs it: the PID is the command's own)."""
        return ["ip", "netns", "exec", self.hosts[i], *argv]

    def popen(self, i: int, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.exec_args(i, argv), **kwargs)

    def call(self, i: int, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread inside host i's network namespace; return its result or raise its error."""
        out: dict = {}

        def body() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{self.hosts[i]}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    out["error"] = OSError(ctypes.get_errno(), f"setns into {self.hosts[i]} failed")
                    return
            finally:
                os.close(fd)
            try:
                out["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                out["error"] = exc

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        thread.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def cut(self, i: int) -> None:
        """Take host i off the bridge (its link goes down; nothing reaches it, nothing leaves)."""
        _ip("-n", self.hub, "link", "set", f"p{i}", "down")

    def restore(self, i: int) -> None:
        _ip("-n", self.hub, "link", "set", f"p{i}", "up")

    def close(self) -> None:
        """Delete every namespace this lab made (processes still inside must be stopped first)."""
        for name in reversed(self._made):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self._made.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def has_namespace(name: str) -> bool:
    return Path(f"/var/run/netns/{name}").exists()
