"""Test helpers for the content store: loopback libp2p hosts, test files, throwaway LevelDBs."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import multiaddr
import plyvel
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
PATTERN_PERIOD = 251 * 256
_PATTERN = bytes((i + i // 251) % 256 for i in range(PATTERN_PERIOD))


def pattern_bytes(start: int, count: int) -> bytes:
    """Bytes [start, start+count) of the test file whose byte i is (i + i // 251) % 256."""
    out = bytearray()
    pos = start
    while len(out) < count:
        off = pos % PATTERN_PERIOD
        take = min(count - len(out), PATTERN_PERIOD - off)
        out += _PATTERN[off:off + take]
        pos += take
    return bytes(out)


def pattern_chunks(size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The pattern file of `size` bytes as a stream of chunks (never all in memory)."""
    repeated = _PATTERN * (chunk // PATTERN_PERIOD + 2)
    pos = 0
    while pos < size:
        take = min(chunk, size - pos)
        off = pos % PATTERN_PERIOD
        yield repeated[off:off + take]
        pos += take


class PatternFile:
    """A read-only binary file object producing the pattern file lazily."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        """Read up to `n` bytes (all the rest when n < 0)."""
        if n is None or n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos)
        data = pattern_bytes(self.pos, n)
        self.pos += n
        return data


@contextmanager
def temp_leveldb() -> Iterator[Any]:
    """A fresh plyvel DB in a temporary directory, closed and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="arena-content-") as path:
        db = plyvel.DB(path, create_if_missing=True)
        try:
            yield db
        finally:
            db.close()


def make_host() -> Any:
    """A py-libp2p host with an ed25519 identity, Noise and yamux, for loopback only."""
    key_pair = create_new_key_pair()
    noise_key = create_new_x25519_key_pair().private_key
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=noise_key)},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        listen_addrs=[multiaddr.Multiaddr(LOOPBACK)],
    )


def p2p_addr(host: Any) -> multiaddr.Multiaddr:
    """The host's first loopback listen address including /p2p/<peer id>."""
    for addr in host.get_addrs():
        text = str(addr)
        if text.startswith("/ip4/127.0.0.1/"):
            if "/p2p/" not in text:
                text += f"/p2p/{host.get_id()}"
            return multiaddr.Multiaddr(text)
    raise RuntimeError(f"host {host.get_id()} has no 127.0.0.1 listen address")


@asynccontextmanager
async def running_hosts(count: int) -> AsyncIterator[list[Any]]:
    """`count` running hosts on 127.0.0.1, the first one connected to every other."""
    hosts = [make_host() for _ in range(count)]
    async with _run_all(hosts):
        with trio.fail_after(15):
            for other in hosts[1:]:
                await hosts[0].connect(info_from_p2p_addr(p2p_addr(other)))
        yield hosts


@asynccontextmanager
async def _run_all(hosts: list[Any]) -> AsyncIterator[None]:
    if not hosts:
        yield
        return
    async with hosts[0].run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]), _run_all(hosts[1:]):
        yield


@contextmanager
def serve_app(app: Any) -> Iterator[int]:
    """Serve an ASGI app with hypercorn under trio on 127.0.0.1 (a free port) in a thread."""
    import threading

    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 1
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        state["token"] = trio.lowlevel.current_trio_token()
        state["stop"] = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(lambda task_status: serve(
                app, config, shutdown_trigger=state["stop"].wait, task_status=task_status))
            state["port"] = int(binds[0].rsplit(":", 1)[1])
            ready.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - surfaced to the test through `state`
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="ipfs-api-test-server", daemon=True)
    thread.start()
    if not ready.wait(15) or "error" in state:
        raise RuntimeError(f"test HTTP server did not start: {state.get('error')!r}")
    try:
        yield state["port"]
    finally:
        trio.from_thread.run_sync(state["stop"].set, trio_token=state["token"])
        thread.join(10)
