"""Substrate-compatible RPC and the typed metadata, against a real `arena node --dev` (plus an in-process check
that every call argument, event field and storage item of the runtime has a declared type)."""
from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import open_websocket_url

from node.metadata import build_metadata
from runtime.codec import encode
from runtime.crypto import Keypair, blake2b_256
from tests.arena_helpers import UNIT
from tests.helpers import ALICE, BOB, CHARLIE, NodeProcess, make_chain


def _untyped(t, where):
    if t == "Any":
        return [where]
    if isinstance(t, dict):
        found = []
        for kind, inner in t.items():
            if kind == "struct":
                for name, ft in inner:
                    found += _untyped(ft, f"{where}.{name}")
            elif kind in ("list", "option"):
                found += _untyped(inner, f"{where}[]")
        return found
    return []


def test_metadata_types_every_call_argument_event_field_and_storage_item(tmp_path):
    chain = make_chain(tmp_path / "db")
    meta = build_metadata(chain.runtime, chain.state(), chain.runtime.spec_version, {"genesisHash": "0x00"})
    untyped = []
    for mname, module in meta["modules"].items():
        for fname, call in module["calls"].items():
            assert call["weight"] > 0
            for arg in call["args"]:
                untyped += _untyped(arg["type"], f"{mname}.{fname}({arg['name']})")
        for ename, event in module["events"].items():
            for f in event["fields"]:
                untyped += _untyped(f["type"], f"{mname}.{ename}.{f['name']}")
        for sname, item in module["storage"].items():
            assert item["kind"] in ("value", "map") and item["doc"], (mname, sname)
            untyped += _untyped(item["value"], f"{mname}:{sname}")
            if item["kind"] == "map":
                assert item["key"] is not None, (mname, sname)
    # session:Offences keys are a tagged union of two layouts: the one item documented as Any
    assert untyped == [], untyped
    assert meta["modules"]["tasks"]["errors"]["WrongPhase"]["doc"]
    assert meta["modules"]["system"]["constants"]["FeeParams"]["base_fee"] == meta["fees"]["base"]
    assert meta["modules"]["staking"]["constants"]["MinStake"]["trainer"] > 0
    args = {a["name"]: a["type"] for a in meta["modules"]["staking"]["calls"]["heartbeat"]["args"]}
    assert [n for n, _ in args["capabilities"]["struct"]] == ["available", "device_kind", "memory_mib"]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(tmp_path_factory.mktemp("substrate") / "dev", "--dev").start()
    yield proc
    proc.stop()


@pytest.mark.integration
def test_rpc_methods_runtime_version_and_fee_query(node):
    client = node.client()
    methods = client.call("rpc_methods")["methods"]
    for name in ("state_getMetadata", "author_submitAndWatchExtrinsic", "state_subscribeStorage", "payment_queryInfo",
                 "chain_getBlock", "arena_leaderboard"):
        assert name in methods
    version = client.call("state_getRuntimeVersion")
    assert version["specName"] == "arena" and version["specVersion"] == client.call("system_properties")["specVersion"]
    xt = client.sign(ALICE, "balances", "transfer", [BOB.public_key, UNIT])
    info = client.call("payment_queryInfo", "0x" + xt.hex())
    assert info["length"] == len(xt) and info["weight"] > 0
    fees = client.call("state_getMetadata")["fees"]
    assert info["partialFee"] == fees["base"] + fees["perByte"] * len(xt) + fees["perWeight"] * info["weight"]
    # the fee the chain charges is the one quoted
    result = client.wait_for(client.submit(xt))
    success = next(e for e in result["events"] if e["name"] == "ExtrinsicSuccess")
    assert success["fields"]["fee"] == info["partialFee"]


@pytest.mark.integration
def test_submit_and_watch_and_storage_subscription(node):
    client = node.client()
    xt = client.sign(CHARLIE, "balances", "transfer", [BOB.public_key, 3 * UNIT])
    statuses, storage = [], []
    account_key = b"balances:Account:" + encode(BOB.public_key)

    async def watch():
        async with open_websocket_url(node.url.replace("http", "ws") + "/") as ws:
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "state_subscribeStorage",
                                              "params": [["0x" + account_key.hex()]]}))
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "author_submitAndWatchExtrinsic",
                                              "params": ["0x" + xt.hex()]}))
            with trio.fail_after(30):
                while not any(isinstance(s, dict) and "finalized" in s for s in statuses) or len(storage) < 2:
                    msg = json.loads(await ws.get_message())
                    assert "error" not in msg, msg
                    if msg.get("method") == "author_extrinsicUpdate":
                        statuses.append(msg["params"]["result"])
                    elif msg.get("method") == "state_storage":
                        storage.append(msg["params"]["result"])

    trio.run(watch)
    assert statuses[0] == "ready"
    in_block = [s["inBlock"] for s in statuses if isinstance(s, dict) and "inBlock" in s]
    assert in_block and {"finalized": in_block[-1]} in statuses
    located = client.call("arena_extrinsic", "0x" + blake2b_256(xt).hex())
    assert located["blockHash"] == in_block[-1]
    # first notification: the current value; a later one: the value after the transfer
    assert storage[0]["changes"][0][0] == "0x" + account_key.hex()
    assert storage[-1]["changes"][0][1] == client.call("state_getStorage", "0x" + account_key.hex())


@pytest.mark.integration
def test_watch_refuses_a_bad_extrinsic_with_the_pool_error(node):
    client = node.client()
    xt = bytearray(client.sign(ALICE, "balances", "transfer", [BOB.public_key, UNIT]))
    xt[-1] ^= 1  # breaks the signature (the amount's last byte changes)

    async def watch():
        async with open_websocket_url(node.url.replace("http", "ws") + "/") as ws:
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "author_submitAndWatchExtrinsic",
                                              "params": ["0x" + bytes(xt).hex()]}))
            return json.loads(await ws.get_message())

    reply = trio.run(watch)
    assert reply["id"] == 7 and reply["error"]["data"]["kind"] == "BadSignature"


@pytest.mark.integration
def test_account_next_index_counts_the_future_queue(node):
    client = node.client()
    key = Keypair.from_dev_name("ferdie")
    start = client.call("system_accountNextIndex", key.address)
    # nonce start+1 waits in the future queue (a gap); the next index is still `start`
    client.submit(client.sign(key, "balances", "transfer", [BOB.public_key, 1], nonce=start + 1))
    assert client.call("system_accountNextIndex", key.address) == start
    # filling the gap: the next index counts the queued future one too
    client.submit(client.sign(key, "balances", "transfer", [BOB.public_key, 1], nonce=start))
    assert client.call("system_accountNextIndex", key.address) == start + 2


def test_extrinsic_format_doc_lists_every_call_as_the_metadata_types_it(tmp_path):
    from node.metadata import calls_markdown
    from tests.helpers import ROOT
    chain = make_chain(tmp_path / "db")
    meta = build_metadata(chain.runtime, chain.state(), chain.runtime.spec_version, {})
    doc = (ROOT / "docs/extrinsic-format.md").read_text()
    listed = doc.split("<!-- calls:begin -->\n", 1)[1].split("\n<!-- calls:end -->", 1)[0]
    assert listed == calls_markdown(meta), "regenerate the table with node.metadata.calls_markdown"


NEW_METHODS = ["rpc_methods", "state_getRuntimeVersion", "state_getMetadata", "payment_queryInfo",
               "arena_blocks", "arena_blockDetail", "arena_scores"]
NEW_SUBSCRIPTIONS = ["author_submitAndWatchExtrinsic", "state_subscribeStorage", "author_unwatchExtrinsic",
                     "state_unsubscribeStorage"]


@pytest.mark.integration
def test_new_methods_answer_any_params_with_a_result_or_a_named_error(node):
    """Random JSON params to every method and subscription added here: never an internal error, never a crash."""
    import httpx
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=40),
                        st.sampled_from(["0x", "0x00", "0x" + "ab" * 32, "0x" + "zz", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"]))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                               max_size=3), max_leaves=8)
    params = st.one_of(st.lists(values, max_size=3), st.dictionaries(st.sampled_from(["at", "count", "task_id", "x"]),
                                                                     values, max_size=2))
    http = httpx.Client(timeout=10)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(method=st.sampled_from(NEW_METHODS), params=params)
    def over_http(method, params):
        reply = http.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).json()
        assert "result" in reply or reply["error"]["code"] != -32603, (method, params, reply)

    over_http()

    async def over_websocket(cases):
        async with open_websocket_url(node.url.replace("http", "ws") + "/") as ws:
            for method, p in cases:
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 9, "method": method, "params": p}))
                with trio.fail_after(10):
                    while True:
                        reply = json.loads(await ws.get_message())
                        if reply.get("id") == 9:
                            break
                assert "result" in reply or reply["error"]["code"] != -32603, (method, p, reply)

    cases = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(method=st.sampled_from(NEW_SUBSCRIPTIONS), params=params)
    def collect(method, params):
        cases.append((method, params))

    collect()
    trio.run(over_websocket, cases)
    assert node.client().call("system_health")["best"] >= 0  # still serving
