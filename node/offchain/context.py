"""What every off-chain worker gets: the node's RPC and IPFS API, its key, and a private store.

Workers talk to their node only through these public interfaces, exactly as an external client
would, whether they run attached to a node (`arena node --offchain ROLES`) or standalone
(`arena worker --role ROLE`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.crypto import Keypair


def rpc_to_ipfs_multiaddr(rpc_url: str) -> str:
    """The node serves the Kubo API subset on its RPC port: http://127.0.0.1:9933 → /ip4/127.0.0.1/tcp/9933/http."""
    host_port = rpc_url.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.partition(":")
    return f"/ip4/{host}/tcp/{port or 80}/http"


class StateFile:
    """A small JSON document persisted atomically (write to temp, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(self.data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)


@dataclass
class WorkerContext:
    """Everything a worker loop needs; `stop` is set when the worker must exit."""

    role: str
    key: Keypair
    rpc_url: str
    ipfs_api: str
    data_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger(f"arena.worker.{self.role}")

    def ipfs(self) -> Any:
        """An ipfshttpclient client against the node (constructed directly: connect() rejects new Kubos)."""
        import ipfshttpclient
        return ipfshttpclient.client.Client(self.ipfs_api, timeout=120)

    def state(self, name: str = "state") -> StateFile:
        return StateFile(self.data_dir / f"{name}.json")
