"""Shared test helpers: a dev chain in a temp dir, signing, and real node processes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from node.chain import Chain
from node.genesis import load_chain_spec
from node.rpc_client import RpcClient
from node.storage import ChainStore
from runtime.crypto import Keypair
from runtime.types import Call, Era, sign_extrinsic

ROOT = Path(__file__).resolve().parent.parent
ALICE = Keypair.from_dev_name("alice")
BOB = Keypair.from_dev_name("bob")
CHARLIE = Keypair.from_dev_name("charlie")


def make_chain(path: Path, genesis: Path | None = None) -> Chain:
    return Chain(load_chain_spec(genesis), ChainStore(str(path)))


def sign(chain: Chain, key: Keypair, module: str, function: str, args: list, nonce: int,
         tip: int = 0, era: Era = Era(0, 0), birth_hash: bytes | None = None,
         genesis_hash: bytes | None = None) -> bytes:
    return sign_extrinsic(key, Call(module, function, args), nonce, genesis_hash or chain.spec.genesis_hash,
                          chain.runtime.spec_version, era, tip, birth_hash or chain.spec.genesis_hash)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """A real `arena node` process on 127.0.0.1, stopped by PID."""

    def __init__(self, base_path: Path, *extra: str, rpc_port: int | None = None) -> None:
        self.base_path = base_path
        self.rpc_port = rpc_port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log_path = base_path.parent / f"{base_path.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    def start(self, timeout: float = 30.0) -> NodeProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "node", "--base-path", str(self.base_path),
             "--rpc-port", str(self.rpc_port), *self.extra],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        client = RpcClient(self.url, timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                client.call("system_health")
                return self
            except Exception:  # noqa: BLE001 - the node is still starting
                time.sleep(0.2)
        raise RuntimeError(f"node did not answer RPC within {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def client(self) -> RpcClient:
        return RpcClient(self.url)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
