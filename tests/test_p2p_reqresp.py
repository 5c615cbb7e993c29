"""Request/response over real libp2p hosts on 127.0.0.1."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID

from p2p.reqresp import KIND_ERROR, KIND_REQUEST, RemoteError, RequestTimeout, read_frame, write_frame
from tests.p2p_helpers import run_trio, start_line

MIB = 1024 * 1024


def test_status_roundtrip(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            a.set_status_handler(lambda: b"status of a")
            assert await b.request_status(a.peer_id) == b"status of a"
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_blocks_by_range_over_8_mib_arrive_chunked_and_intact(tmp_path: Path) -> None:
    # 5 blocks of 2.5 MiB = 12.5 MiB; each block spans 3 frames of <= 1 MiB. The client reads
    # frames with a 1 MiB limit, so any larger write from the server would fail this test.
    blocks = [bytes([index]) * (5 * MIB // 2) for index in range(10)]

    async def serve(start: int, count: int) -> list[bytes]:
        return blocks[start : start + count]

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            a.set_blocks_by_range_handler(serve)
            got = await b.request_blocks(a.peer_id, 2, 5)
            assert got == blocks[2:7]
            assert sum(map(len, got)) > 8 * MIB
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_reply_is_truncated_to_the_response_limit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2, max_response_bytes=3 * MIB)
            a.set_blocks_by_range_handler(lambda start, count: [bytes(MIB)] * count)
            got = await b.request_blocks(a.peer_id, 0, 10)
            assert len(got) == 3  # the node asks again from block 3
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_garbage_request_gets_error_and_penalty_and_server_keeps_serving(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b, c = await start_line(nursery, tmp_path, count=3)
            b.set_status_handler(lambda: b"b ok")
            for garbage in (b"\xc1\xc1 garbage", b"\x93\x01\x02\x03"):
                stream = await a.host.new_stream(ID.from_base58(b.peer_id), [b.reqresp.sync_protocol])
                await write_frame(stream, KIND_REQUEST, garbage)
                kind, body = await read_frame(stream, 4096)
                assert kind == KIND_ERROR
                assert b"blocks_by_range" in body or b"undecodable" in body
                await stream.close()
            # a raw over-long frame header
            stream = await a.host.new_stream(ID.from_base58(b.peer_id), [b.reqresp.status_protocol])
            await stream.write(struct.pack(">I", 10 * MIB))
            kind, _ = await read_frame(stream, 4096)
            assert kind == KIND_ERROR
            assert b.peer_manager.score(a.peer_id) < -70  # three penalties of 25, barely decayed
            assert await c.request_status(b.peer_id) == b"b ok"
            assert await a.request_status(b.peer_id) == b"b ok"  # penalised, not banned yet
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_handler_exception_becomes_error_reply(tmp_path: Path) -> None:
    def broken(start: int, count: int) -> list[bytes]:
        raise KeyError("no such block")

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            a.set_blocks_by_range_handler(broken)
            with pytest.raises(RemoteError, match="KeyError"):
                await b.request_blocks(a.peer_id, 0, 1)
            assert a.peer_manager.score(b.peer_id) == 0  # our bug, not the peer's fault
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_timeout_when_peer_never_answers(tmp_path: Path) -> None:
    async def hang(stream: object) -> None:
        await trio.sleep(30)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2, request_timeout_s=0.5)
            a.host.set_stream_handler(a.reqresp.status_protocol, hang)
            started = trio.current_time()
            with pytest.raises(RequestTimeout, match="did not answer"):
                await b.request_status(a.peer_id)
            assert trio.current_time() - started < 2
            assert b.peer_manager.score(a.peer_id) == 0  # slow is not invalid: no penalty toward a ban
            nursery.cancel_scope.cancel()

    run_trio(scenario)
