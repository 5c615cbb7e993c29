"""Content store throughput: UnixFS import, bitswap fetch vs a raw libp2p stream (same run).

Run `python -m bench.content`. With Node.js and `make helia`, a real Helia node fetches the
same file from the Arena host too. Everything binds 127.0.0.1; the run takes well under 2 minutes.
"""

from __future__ import annotations

import os
import tempfile
import time
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

from p2p.content.bitswap import Exchange
from p2p.content.blockstore import BlockStore
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE

SIZE = 100 * 1024 * 1024
RAW_PROTOCOL = "/arena/bench/raw/1.0.0"
WRITE_SIZE = 1024 * 1024
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


class _PatternReader:
    """`size` bytes read lazily; every 256 KiB chunk is distinct, so no block deduplicates."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.counter = 0
        self.base = os.urandom(CHUNK_SIZE)

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, CHUNK_SIZE)
        self.left -= n
        self.counter += 1
        return (self.counter.to_bytes(8, "big") + self.base[8:])[:n]


def _host() -> Any:
    key_pair = create_new_key_pair()
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, create_new_x25519_key_pair().private_key)},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        listen_addrs=[multiaddr.Multiaddr(LOOPBACK)],
    )


def _row(figure: str, value: float, unit: str, limit_name: str, limit: float) -> dict[str, Any]:
    return {"figure": figure, "value": round(value, 3), "unit": unit, "limit_name": limit_name,
            "limit": limit}


async def _transfers(provider: BlockStore, receiver: BlockStore, root: str) -> tuple[float, float, float | None]:
    """Seconds for a raw stream of SIZE bytes, a bitswap fetch of the same file, and Helia's fetch
    of it from the same provider (None when Node.js or tests/helia is not installed)."""
    host_a, host_b = _host(), _host()
    payload = b"\xa5" * WRITE_SIZE

    async def send_raw(stream: Any) -> None:
        try:
            for _ in range(SIZE // WRITE_SIZE):
                await stream.write(payload)
            await stream.close()
        except Exception:  # noqa: BLE001 - bench: a failed send shows up as a short read
            await stream.reset()

    host_a.set_stream_handler(RAW_PROTOCOL, send_raw)
    Exchange(host_a, provider, lambda peer, reason: None, host_a.get_connected_peers)
    fetcher = Exchange(host_b, receiver, lambda peer, reason: None, host_b.get_connected_peers)
    listen = [multiaddr.Multiaddr(LOOPBACK)]
    async with host_a.run(listen_addrs=listen), host_b.run(listen_addrs=listen):
        addr = next(a for a in host_a.get_addrs() if str(a).startswith("/ip4/127.0.0.1/"))
        if "/p2p/" not in str(addr):
            addr = multiaddr.Multiaddr(f"{addr}/p2p/{host_a.get_id()}")
        await host_b.connect(info_from_p2p_addr(addr))
        with trio.fail_after(60):
            started = time.perf_counter()
            stream = await host_b.new_stream(host_a.get_id(), [RAW_PROTOCOL])
            received = 0
            while received < SIZE:
                try:
                    data = await stream.read(WRITE_SIZE)
                except EOFError:
                    break
                if not data:
                    break
                received += len(data)
            raw_s = time.perf_counter() - started
            if received != SIZE:
                raise RuntimeError(f"raw stream delivered {received} of {SIZE} bytes")
        started = time.perf_counter()
        await fetcher.fetch(root, timeout=90)
        bitswap_s = time.perf_counter() - started
        helia_s = await _helia_fetch(addr, root)
    return raw_s, bitswap_s, helia_s


async def _helia_fetch(provider_addr: Any, root: str) -> float | None:
    """Seconds for a real Helia node (tests/helia) to fetch `root` from the provider over bitswap."""
    import shutil
    from pathlib import Path

    if shutil.which("node") is None or not (Path(__file__).parent.parent / "tests/helia/node_modules").is_dir():
        return None
    from tests.helia_peer import HeliaPeer

    with HeliaPeer() as helia:
        await trio.to_thread.run_sync(lambda: helia.call("dial", addr=str(provider_addr)))
        started = time.perf_counter()
        reply = await trio.to_thread.run_sync(lambda: helia.call("cat", cid=root, out="/dev/null", timeout=120))
        helia_s = time.perf_counter() - started
    if reply["size"] != SIZE:
        raise RuntimeError(f"Helia fetched {reply['size']} of {SIZE} bytes")
    return helia_s


def run() -> list[dict[str, Any]]:
    """Measure and return the figures as rows."""
    mb = SIZE / 1e6
    with tempfile.TemporaryDirectory(prefix="arena-bench-") as dir_a, \
            tempfile.TemporaryDirectory(prefix="arena-bench-") as dir_b:
        db_a = plyvel.DB(dir_a, create_if_missing=True)
        db_b = plyvel.DB(dir_b, create_if_missing=True)
        try:
            store = EmbeddedContentStore(BlockStore(db_a.prefixed_db(b"c")))
            started = time.perf_counter()
            EmbeddedContentStore(BlockStore(db_b.prefixed_db(b"h"))).add_file(
                _PatternReader(SIZE), only_hash=True)
            hash_s = time.perf_counter() - started
            started = time.perf_counter()
            root, _ = store.add_file(_PatternReader(SIZE))
            add_s = time.perf_counter() - started
            receiver = BlockStore(db_b.prefixed_db(b"c"))
            raw_s, bitswap_s, helia_s = trio.run(_transfers, store.blocks, receiver, root)
            if not receiver.is_complete(store.blocks.pins()[0]):
                raise RuntimeError("bitswap fetch ended without the complete DAG")
        finally:
            db_a.close()
            db_b.close()
    rows = [
        _row("unixfs add into LevelDB (100 MB)", mb / add_s, "MB/s", "add --only-hash (chunk+hash only) MB/s", mb / hash_s),
        _row("bitswap fetch between two hosts (100 MB, loopback)", mb / bitswap_s, "MB/s",
             "raw libp2p stream of the same bytes MB/s", mb / raw_s),
    ]
    if helia_s is not None:
        rows.append(_row("Helia fetches from an Arena host (100 MB, bitswap 1.2.0)", mb / helia_s, "MB/s",
                         "raw libp2p stream of the same bytes MB/s", mb / raw_s))
    return rows


def main() -> None:
    """Print the figures, one per line."""
    for row in run():
        print(f"{row['figure']:<42} {row['value']:>10.3f} {row['unit']:<6} "
              f"({row['limit_name']} {row['limit']})")


if __name__ == "__main__":
    main()
