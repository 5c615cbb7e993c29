"""Training curves (recorded by the ML library, read back by the node from its content store) and the
guards of `arena_tryModel` (dev chains only, loopback hosts only, an "unsafe" method)."""
from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from node import api_dashboard
from node.api_dashboard import TRY_ERROR, parse_curve, parse_rows, training_curve
from node.rpc import RpcError, RpcServer
from node.service import NodeConfig
from p2p.content.blockstore import BlockStore
from p2p.content.store import EmbeddedContentStore
from p2p.content.tree import TreeImport
from tests.content_helpers import temp_leveldb

torch = pytest.importorskip("torch")


def header_metadata(model: bytes) -> dict:
    (size,) = struct.unpack("<Q", model[:8])
    return json.loads(model[8:8 + size])["__metadata__"]


@pytest.fixture(scope="module")
def digits():
    from node.offchain.ml import get_kind

    kind = get_kind("digits_classifier")
    prepared = kind.prepare(None, 3)
    return kind, prepared


def test_training_records_one_point_per_epoch_in_the_model_file(digits):
    from node.offchain.ml.training import CURVE_KEY

    kind, prepared = digits
    model = kind.train(prepared.spec, prepared.train_bytes, epochs=4, lr=0.01, seed=5)
    curve = json.loads(header_metadata(model)[CURVE_KEY])
    assert curve["unit"] == "epoch" and curve["loss"] == "cross_entropy"
    points = curve["points"]
    assert [p["epoch"] for p in points] == [1, 2, 3, 4]
    assert all(math.isfinite(p["loss"]) and 0 <= p["accuracy"] <= 1 for p in points)
    assert points[-1]["loss"] < points[0]["loss"] and points[-1]["accuracy"] > points[0]["accuracy"]
    # the model still loads and scores as before: validators ignore the metadata
    assert kind.evaluate(prepared.spec, model, prepared.heldout_bytes).rejected is None
    # deterministic: the same seed gives the same bytes, curve included
    assert kind.train(prepared.spec, prepared.train_bytes, epochs=4, lr=0.01, seed=5) == model
    poor = kind.train(prepared.spec, prepared.train_bytes, epochs=4, lr=0.01, seed=5, quality="poor")
    assert len(json.loads(header_metadata(poor)[CURVE_KEY])["points"]) == 1


def test_curve_metadata_thins_long_runs_and_keeps_the_last_point():
    from node.offchain.ml.training import MAX_CURVE_POINTS, curve_metadata

    for count in (MAX_CURVE_POINTS, MAX_CURVE_POINTS + 1, 1000, 1237):
        points = [{"step": i, "loss": 1.0 / i} for i in range(1, count + 1)]
        kept = json.loads(curve_metadata(points, "token_cross_entropy", "step"))["points"]
        assert len(kept) <= MAX_CURVE_POINTS and kept[-1]["step"] == count
        assert [p["step"] for p in kept] == sorted({p["step"] for p in kept})


def test_parse_curve_refuses_or_cleans_what_a_trainer_could_write():
    good = {"unit": "epoch", "loss": "cross_entropy", "points": [{"epoch": 1, "loss": 0.5, "accuracy": 0.9}]}
    assert parse_curve(json.dumps(good))["points"] == [{"epoch": 1, "loss": 0.5, "accuracy": 0.9}]
    for bad in ({**good, "unit": "hour"}, {**good, "points": "x"}, {**good, "points": [{"epoch": "1", "loss": 1}]},
                {**good, "points": [{"epoch": 1, "loss": float("nan")}]}, {**good, "points": [{"epoch": True, "loss": 1}]},
                {**good, "points": [{"epoch": -1, "loss": 1}]}, {**good, "points": [7]}, [1, 2]):
        assert parse_curve(json.dumps(bad)) is None, bad
    assert parse_curve("not json") is None and parse_curve(None) is None
    odd = parse_curve(json.dumps({**good, "points": [{"epoch": 1, "loss": 1, "accuracy": 7}]}))
    assert odd["points"] == [{"epoch": 1, "loss": 1.0}]  # an accuracy outside [0, 1] is dropped
    many = parse_curve(json.dumps({**good, "points": [{"epoch": i, "loss": 1} for i in range(5000)]}))
    assert len(many["points"]) == api_dashboard.MAX_POINTS


def test_node_reads_the_curve_of_a_stored_model_file_or_adapter_folder(digits):
    from node.offchain.ml.tensorfile import dump_tensors
    from node.offchain.ml.training import CURVE_KEY

    assert api_dashboard.CURVE_KEY == CURVE_KEY
    kind, prepared = digits
    model = kind.train(prepared.spec, prepared.train_bytes, epochs=2, lr=0.01, seed=1)
    curve = json.dumps({"unit": "step", "loss": "token_cross_entropy", "points": [{"step": 5, "loss": 2.5}]})
    adapter = dump_tensors({"w": torch.zeros(2)}, {"format": "pt", CURVE_KEY: curve})
    with temp_leveldb() as db:
        store = EmbeddedContentStore(BlockStore(db))
        file_cid, _ = store.add_file(io.BytesIO(model))
        tree = TreeImport(store.blocks)
        try:
            tree.add_file("adapter/adapter_config.json", io.BytesIO(b"{}"))
            tree.add_file("adapter/adapter_model.safetensors", io.BytesIO(adapter))
            folder_cid = str(tree.finish(False, True)[-1][1].cid)
        finally:
            tree.close()
        plain_cid, _ = store.add_file(io.BytesIO(dump_tensors({"w": torch.zeros(2)}, {"format": "pt"})))
        text_cid, _ = store.add_file(io.BytesIO(b"\xff" * 64))
        from_file = training_curve(store, file_cid)
        assert from_file["unit"] == "epoch" and [p["epoch"] for p in from_file["points"]] == [1, 2]
        assert from_file["points"] == json.loads(header_metadata(model)[CURVE_KEY])["points"]
        from_folder = training_curve(store, folder_cid)
        assert from_folder["file"].endswith("/adapter_model.safetensors")
        assert from_folder["points"] == [{"step": 5, "loss": 2.5}]
        assert training_curve(store, plain_cid) is None  # no curve recorded
        assert training_curve(store, text_cid) is None  # not safetensors (header length way over the cap)
        assert training_curve(store, "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG") is None  # not stored here


def test_parse_rows():
    assert parse_rows("1, 2 3") == [[1.0, 2.0, 3.0]]
    assert parse_rows("[[1,2],[3,4]]") == [[1.0, 2.0], [3.0, 4.0]]
    for bad in ("a,b", "[1, NaN]", "[[1], 2]", "[]", "[true]"):
        with pytest.raises(RpcError):
            parse_rows(bad)


def try_rpc(tmp_path: Path, dev: bool, endpoint: str) -> RpcServer:
    rpc = RpcServer()
    entry = {"taskId": 0, "modelCid": "QmModel", "kind": "digits_classifier",
             "hosts": [{"address": "5Host", "endpoint": endpoint, "pricePerQuery": 1}]}
    rpc.method("arena_marketModels")(lambda: [entry])
    api_dashboard.register_try_model(rpc, SimpleNamespace(config=NodeConfig(tmp_path, dev=dev)))  # type: ignore[arg-type]
    return rpc


def ask(rpc: RpcServer, *params) -> dict:
    return trio.run(rpc.dispatch, {"jsonrpc": "2.0", "id": 1, "method": "arena_tryModel", "params": list(params)})


def test_try_model_is_refused_off_dev_chains_for_remote_hosts_and_on_external_rpc(tmp_path):
    refused = ask(try_rpc(tmp_path, False, "http://127.0.0.1:8100"), 0, "1,2,3")["error"]
    assert refused["code"] == TRY_ERROR and "dev chain" in refused["message"]
    assert refused["data"]["command"] == "arena model query 0 --input 1,2,3 --key YOUR_KEY"
    remote = ask(try_rpc(tmp_path, True, "http://10.1.2.3:8100"), 0, "1 2")["error"]
    assert remote["code"] == TRY_ERROR and "loopback" in remote["message"]
    assert remote["data"]["command"] == "arena model query 0 --input '1 2' --key YOUR_KEY"
    assert ask(try_rpc(tmp_path, True, "http://127.0.0.1:9"), 5, "1")["error"]["code"] == TRY_ERROR  # no such task
    assert ask(try_rpc(tmp_path, True, "http://127.0.0.1:9"), 0, "x" * 5000)["error"]["code"] == -32602
    external = try_rpc(tmp_path, True, "http://127.0.0.1:9")
    external.refuse_unsafe = True  # arena node --rpc-external: the node's key must not pay for strangers
    assert "refused" in ask(external, 0, "1")["error"]["message"]


def test_lora_training_records_the_loss_per_window_of_steps_in_the_adapter_weights():
    pytest.importorskip("peft")
    from node.offchain.ml import get_kind
    from node.offchain.ml.llm import ADAPTER_CONFIG, ADAPTER_WEIGHTS
    from node.offchain.ml.training import CURVE_KEY

    kind = get_kind("causal_lm_lora")
    prepared = kind.prepare(None, 42, options={"pretrain_steps": 5})
    prepared.spec["model"]["base_cid"] = "QmLocalBase"  # as the planner fills it in after publishing
    prepared.spec["data"]["train_cid"] = "QmLocalTrain"
    adapter = kind.train(prepared.spec, prepared.train_bytes, epochs=1, lr=0.01, seed=1,
                         base_files=prepared.folders["base"], max_steps=12)
    assert set(adapter) == {ADAPTER_CONFIG, ADAPTER_WEIGHTS}  # the folder's strict file list is unchanged
    curve = json.loads(header_metadata(adapter[ADAPTER_WEIGHTS])[CURVE_KEY])
    assert curve["unit"] == "step" and curve["loss"] == "token_cross_entropy"
    steps = [p["step"] for p in curve["points"]]
    assert steps[-1] == 12 and steps == sorted(steps) and all(math.isfinite(p["loss"]) for p in curve["points"])
    assert parse_curve(header_metadata(adapter[ADAPTER_WEIGHTS])[CURVE_KEY])["points"] == curve["points"]
