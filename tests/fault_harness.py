"""A fault harness on real node processes: every p2p link goes through a userspace proxy that
can delay, lose and cut traffic per direction.

Each pair of nodes (i < j) has one TCP connection, dialled by i through the proxy of link (i, j)
on 127.0.0.1 (nodes dial only their bootnodes, and j lists no bootnode for i). The proxy forwards
each direction in order, holding every chunk until its due time:
- delay: `delay_ms ± jitter_ms`, uniform, never reordering the stream (TCP delivers in order);
- loss: a chunk is "lost" with probability `loss` and arrives one retransmission timeout later
  (200–600 ms), which is what TCP does with a dropped segment (bytes are never corrupted);
- cut: a direction forwards nothing until it is restored; what was held then flows, as TCP
  retransmits after a partition heals. Both directions cut = partition.
The checker reads every node's finalized chain over RPC and compares the hashes at every height.
"""
from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from node import localnet
from node.rpc_client import RpcClient, RpcClientError

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Direction:
    delay_ms: int = 0
    jitter_ms: int = 0
    loss: float = 0.0
    cut: bool = False


@dataclass
class Link:
    a: int
    b: int
    port: int
    target_port: int
    a_to_b: Direction = field(default_factory=Direction)
    b_to_a: Direction = field(default_factory=Direction)


class ProxyThread:
    """All link proxies, in one asyncio loop on a background thread."""

    def __init__(self, links: list[Link], seed: int = 1) -> None:
        self.links = links
        self.rng = random.Random(seed)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.servers: list[asyncio.base_events.Server] = []
        self.ready = threading.Event()

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("proxy loop did not start")

    def stop(self) -> None:
        async def close() -> None:
            for server in self.servers:
                server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        for link in self.links:
            server = self.loop.run_until_complete(
                asyncio.start_server(lambda r, w, link=link: self._accept(link, r, w), "127.0.0.1", link.port))
            self.servers.append(server)
        self.ready.set()
        self.loop.run_forever()

    async def _accept(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", link.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer, link.a_to_b), self._pump(up_reader, writer, link.b_to_a),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, writer, direction))
        last_due = 0.0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                delay = max(0.0, direction.delay_ms + self.rng.uniform(-direction.jitter_ms, direction.jitter_ms))
                if direction.loss and self.rng.random() < direction.loss:
                    delay += self.rng.uniform(200, 600)
                last_due = max(last_due, time.monotonic() + delay / 1000)
                queue.put_nowait((last_due, data))
        finally:
            await queue.join()
            sender.cancel()
            writer.close()

    @staticmethod
    async def _send(queue: asyncio.Queue, writer: asyncio.StreamWriter, direction: Direction) -> None:
        while True:
            due, data = await queue.get()
            while True:
                wait = due - time.monotonic()
                if wait <= 0 and not direction.cut:
                    break
                await asyncio.sleep(max(wait, 0.02))
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                pass
            queue.task_done()


class FaultNet:
    """N authorities of a fresh localnet spec, fully meshed through link proxies."""

    def __init__(self, base: Path, count: int = 4, slot_ms: int = 500, seed: int = 1) -> None:
        self.base = base
        self.count = count
        base.mkdir(parents=True, exist_ok=True)
        localnet.write_spec(base / localnet.SPEC_FILE, localnet.localnet_spec(count, slot_ms=slot_ms))
        ports = localnet.free_ports(2 * count + count * (count - 1) // 2)
        self.slots = localnet.plan_ports(base, count, [(ports[i], ports[count + i], 0) for i in range(count)])
        proxy_ports = iter(ports[2 * count:])
        self.links = [Link(a, b, next(proxy_ports), self.slots[b].p2p_port)
                      for a in range(count) for b in range(a + 1, count)]
        self.proxy = ProxyThread(self.links, seed)
        self.pids: dict[int, int] = {}

    # ------------------------------------------------------------ processes

    def start(self) -> FaultNet:
        self.proxy.start()
        for i in range(self.count):
            self.start_node(i)
        deadline = time.monotonic() + 60
        for i in range(self.count):
            while self.health(i) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node-{i} did not start:\n{self.log(i)[-3000:]}")
                time.sleep(0.2)
        return self

    def start_node(self, i: int) -> None:
        slot = self.slots[i]
        boot = [f"/ip4/127.0.0.1/tcp/{link.port}/p2p/{self.slots[link.b].peer_id}" for link in self.links if link.a == i]
        args = [sys.executable, "-m", "node.cli", "node", "--base-path", str(self.base / f"node-{i}"),
                "--rpc-port", str(slot.rpc_port), "--p2p-port", str(slot.p2p_port), "--key", slot.key,
                "--name", f"node-{i}", "--chain", str(self.base / localnet.SPEC_FILE)]
        if boot:
            args += ["--bootnodes", ",".join(boot)]
        with open(self.base / f"node-{i}.log", "ab") as log:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.pids[i] = proc.pid

    def stop(self) -> None:
        for pid in self.pids.values():
            localnet.stop_pid(pid)
        self.proxy.stop()

    def log(self, i: int) -> str:
        path = self.base / f"node-{i}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------ faults

    def set_all(self, delay_ms: int = 0, jitter_ms: int = 0, loss: float = 0.0) -> None:
        for link in self.links:
            for d in (link.a_to_b, link.b_to_a):
                d.delay_ms, d.jitter_ms, d.loss = delay_ms, jitter_ms, loss

    def partition(self, *groups: set[int]) -> None:
        """Cut every link between nodes of different groups (both directions)."""
        side = {n: k for k, group in enumerate(groups) for n in group}
        for link in self.links:
            cut = side.get(link.a) != side.get(link.b)
            link.a_to_b.cut = link.b_to_a.cut = cut

    def cut_one_way(self, src: int, dst: int, cut: bool = True) -> None:
        for link in self.links:
            if (link.a, link.b) == (src, dst):
                link.a_to_b.cut = cut
            elif (link.a, link.b) == (dst, src):
                link.b_to_a.cut = cut

    def heal(self) -> None:
        self.set_all()
        self.partition(set(range(self.count)))

    # ------------------------------------------------------------ observation

    def client(self, i: int) -> RpcClient:
        return RpcClient(self.slots[i].rpc_url, timeout=5)

    def health(self, i: int) -> dict | None:
        try:
            return self.client(i).call("system_health")
        except (RpcClientError, OSError):
            return None

    def finalized_numbers(self) -> list[int]:
        return [(self.health(i) or {}).get("finalized", -1) for i in range(self.count)]

    def finalized_chain(self, i: int, since: int = 0) -> dict[int, str]:
        c = self.client(i)
        fin = c.call("chain_getHeader", c.call("chain_getFinalizedHead"))["number"]
        return {n: c.call("chain_getBlockHash", n) for n in range(since, fin + 1)}

    def conflicts(self) -> list[tuple[int, int, int]]:
        """(height, node a, node b) where two nodes finalized different blocks."""
        chains = [self.finalized_chain(i) for i in range(self.count)]
        out = []
        for a in range(self.count):
            for b in range(a + 1, self.count):
                for n in set(chains[a]) & set(chains[b]):
                    if chains[a][n] != chains[b][n]:
                        out.append((n, a, b))
        return out

    def honest_bans(self) -> int:
        """Bans any node imposed on another node of this network (all are honest here)."""
        ours = {s.peer_id for s in self.slots}
        count = 0
        for i in range(self.count):
            for match in re.finditer(r"peer_banned peer=(\S+)", self.log(i)):
                if match.group(1) in ours:
                    count += 1
        return count

    def wait_finality_past(self, number: int, timeout: float) -> float | None:
        """Seconds until every node finalized above `number`, or None on timeout."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if min(self.finalized_numbers()) > number:
                return time.monotonic() - start
            time.sleep(0.2)
        return None


def finality_latencies(net: FaultNet, seconds: float, node: int = 0) -> list[float]:
    """Seconds from a height first appearing as best to it being finalized, sampled every 100 ms."""
    first_best: dict[int, float] = {}
    latencies: list[float] = []
    last_fin = (net.health(node) or {}).get("finalized", 0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        h = net.health(node) or {}
        now = time.monotonic()
        for n in range(max(first_best, default=h.get("best", 0)), h.get("best", 0) + 1):
            first_best.setdefault(n, now)
        fin = h.get("finalized", last_fin)
        for n in range(last_fin + 1, fin + 1):
            if n in first_best:
                latencies.append(now - first_best[n])
        last_fin = max(last_fin, fin)
        time.sleep(0.1)
    return latencies


def rate(net: FaultNet, seconds: float) -> float:
    """Finalized blocks per minute on the slowest node over `seconds`."""
    before = min(net.finalized_numbers())
    time.sleep(seconds)
    return (min(net.finalized_numbers()) - before) * 60 / seconds
