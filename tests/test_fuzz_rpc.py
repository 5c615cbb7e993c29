"""Hypothesis fuzz of JSON-RPC (HTTP and WebSocket) and the IPFS API at a modest size (`make fuzz` runs long).

Every input must get an answer in the surface's dialect — never a 5xx, never a dropped connection.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from bench.fuzz import METHODS, rpc_answer_ok
from node.http_guard import HttpLimits
from node.ipfs_api import ipfs_routes
from p2p.content.blockstore import BlockStore
from p2p.content.store import EmbeddedContentStore
from tests.content_helpers import temp_leveldb
from tests.rpc_harness import demo_server, post, running

pytestmark = pytest.mark.timeout(300)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20)
    | st.sampled_from(["0x", "0x00", "0x" + "ab" * 32, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
methods = st.sampled_from([*METHODS, "test_echo", "test_blockHash", "test_fail", "test_subscribe",
                           "test_unsubscribe"])
requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": methods | json_values, "id": st.integers(0, 99)},
    optional={"params": json_values},
)
raw_bodies = (st.binary(max_size=200)
              | requests.map(lambda r: json.dumps(r).encode()).flatmap(
                  lambda b: st.integers(0, len(b)).map(lambda n: b[:n]))
              | st.integers(1, 3000).map(lambda depth: b"[" * depth))


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with temp_leveldb() as db:
        store = EmbeddedContentStore(BlockStore(db.prefixed_db(b"c")))
        with running(demo_server(HttpLimits(), ipfs_routes(store))) as bound:
            yield bound


@FUZZ
@given(body=requests.map(lambda r: json.dumps(r).encode()) | raw_bodies)
def test_http_json_rpc_answers_every_input(port: int, body: bytes) -> None:
    status, _, reply = post(port, body)
    assert status < 500
    assert status == 204 or rpc_answer_ok(reply), reply


@FUZZ
@given(frames=st.lists(requests.map(json.dumps) | raw_bodies, min_size=1, max_size=5))
def test_websocket_answers_every_frame_and_stays_open(port: int, frames: list[Any]) -> None:
    async def session() -> list[Any]:
        answers = []
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            for frame in frames:
                if isinstance(frame, str):
                    frame = json.loads(frame)
                    frame["id"] = frame.get("id", 0)  # a notification would get no answer by design
                    frame = json.dumps(frame)
                await ws.send_message(frame)
                with trio.fail_after(20):
                    answers.append(json.loads(await ws.get_message()))
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": "last", "method": "test_echo", "params": [1]}))
            with trio.fail_after(20):
                while (last := json.loads(await ws.get_message())).get("id") != "last":
                    pass
            answers.append(last)
        return answers

    answers = trio.run(session)
    assert all(rpc_answer_ok(a) for a in answers), answers
    assert answers[-1]["result"] == 1


ipfs_paths = st.sampled_from(["add", "cat", "get", "pin/add", "block/get", "files/stat", "id", "version",
                              "repo/gc", "ls", "pin/ls", "block/stat", "nope", "cat/x"])
queries = st.lists(st.tuples(st.sampled_from(["arg", "offset", "length", "timeout", "pin", "cid-version",
                                              "chunker", "recursive", "compress", "quiet"]),
                             st.text(max_size=50) | st.sampled_from(["QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
                                                                     "true", "-1", "1ms", "9" * 40])),
                   max_size=4)


@FUZZ
@given(path=ipfs_paths, query=queries, body=st.binary(max_size=300),
       ctype=st.sampled_from(["multipart/form-data; boundary=b", "multipart/form-data", "text/plain"]))
def test_ipfs_api_answers_kubo_errors_not_5xx(port: int, path: str, query: list, body: bytes, ctype: str) -> None:
    import urllib.parse

    status, _, reply = post(port, body, f"/api/v0/{path}?{urllib.parse.urlencode(query)}",
                            headers={"Content-Type": ctype})
    assert status < 500, reply
    if status >= 400:
        assert isinstance(reply, dict) and reply["Type"] == "error", reply
