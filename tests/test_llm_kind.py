"""The `causal_lm_lora` kind on a real tiny Qwen2 base model built locally (no hub, no mocks).

Training really improves the held-out assistant-token loss; evaluation gives identical
integers twice; every defence of the adapter and base-model loaders rejects what it exists to
reject (each test fails if its check is removed); the adapter folder is the one `peft` itself
loads.
"""
from __future__ import annotations

import json
import math
import pickle

import pytest
import torch

from node.offchain.ml import DataRejected, LimitExceeded, ModelRejected, SpecRejected, get_kind
from node.offchain.ml.llm import ADAPTER_CONFIG, ADAPTER_WEIGHTS, loss_units
from node.offchain.ml.llm_base import load_base
from node.offchain.ml.llm_data import parse_conversations
from node.offchain.ml.tensorfile import dump_tensors, load_tensors

KIND = get_kind("causal_lm_lora")


@pytest.fixture(scope="module")
def task():
    torch.set_num_threads(1)
    prepared = KIND.prepare(None, 42, options={"pretrain_steps": 10})
    spec = prepared.spec
    spec["model"]["base_cid"] = "QmLocalBase"
    spec["data"]["train_cid"] = "QmLocalTrain"
    base = prepared.folders["base"]
    good = KIND.train(spec, prepared.train_bytes, epochs=1, lr=0.01, seed=1, base_files=base, max_steps=25)
    poor = KIND.train(spec, prepared.train_bytes, epochs=1, lr=0.01, seed=2, base_files=base, quality="poor")
    return {"spec": spec, "base": base, "train": prepared.train_bytes, "heldout": prepared.heldout_bytes,
            "good": good, "poor": poor}


def evaluate(task, adapter, spec=None):
    return KIND.evaluate(spec or task["spec"], adapter, task["heldout"], base_files=task["base"])


def test_training_improves_the_heldout_loss_and_scores_are_reproducible(task):
    good, poor = evaluate(task, task["good"]), evaluate(task, task["poor"])
    assert good.rejected is None and poor.rejected is None
    assert good.loss_ppb < poor.loss_ppb and good.score > poor.score > 0
    assert evaluate(task, task["good"]) == good  # same integers on a second run
    units = loss_units(good.loss_ppb)
    assert units is not None and units["perplexity"] == pytest.approx(math.exp(good.loss_ppb / 1e9), rel=1e-4)
    assert set(task["good"]) == {ADAPTER_CONFIG, ADAPTER_WEIGHTS}
    assert task["spec"]["model"]["model_type"] == "qwen2"


def _mutated(adapter, *, config=None, tensors=None, files=None):
    out = dict(adapter)
    if config is not None:
        out[ADAPTER_CONFIG] = json.dumps({**json.loads(adapter[ADAPTER_CONFIG]), **config}).encode()
    if tensors is not None:
        out[ADAPTER_WEIGHTS] = dump_tensors(tensors(load_tensors(adapter[ADAPTER_WEIGHTS], what="t",
                                                                 error=ModelRejected)), {})
    out.update(files or {})
    return out


def _first(tensors, change):
    name = min(tensors)
    return {**tensors, name: change(tensors[name])}


MUTATIONS = {
    "pickle weights": (lambda a: {**a, ADAPTER_WEIGHTS: pickle.dumps({"w": [0.0] * 8})}, "pickle"),
    "extra file": (lambda a: {**a, "pytorch_model.bin": b"x"}, "exactly"),
    "missing config": (lambda a: {ADAPTER_WEIGHTS: a[ADAPTER_WEIGHTS]}, "exactly"),
    "not lora": (lambda a: _mutated(a, config={"peft_type": "PREFIX_TUNING"}), "LoRA"),
    "rank over limit": (lambda a: _mutated(a, config={"r": 64}), "max_rank"),
    "module not allowed": (lambda a: _mutated(a, config={"target_modules": ["lm_head"]}), "subset"),
    "config rank differs from tensors": (lambda a: _mutated(a, config={"r": 4}), "F32"),
    "modules_to_save": (lambda a: _mutated(a, config={"modules_to_save": ["lm_head"]}), "plain LoRA"),
    "missing tensor": (lambda a: _mutated(a, tensors=lambda t: dict(sorted(t.items())[1:])), "missing"),
    "wrong shape": (lambda a: _mutated(a, tensors=lambda t: _first(t, lambda x: torch.zeros(x.shape[0], 3))), "F32"),
    "float64 tensor": (lambda a: _mutated(a, tensors=lambda t: _first(t, lambda x: x.double())), "F32"),
    "NaN": (lambda a: _mutated(a, tensors=lambda t: _first(t, lambda x: x * float("nan"))), "NaN"),
    "oversized": (lambda a: {**a, ADAPTER_WEIGHTS: a[ADAPTER_WEIGHTS] + b"\0" * 500_000}, "max_adapter_bytes"),
    "config not json": (lambda a: {**a, ADAPTER_CONFIG: b"\x80\x04not json"}, "not JSON"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_hostile_adapters_score_zero_with_the_reason(task, name):
    mutate, reason = MUTATIONS[name]
    result = evaluate(task, mutate(task["good"]))
    assert result.score == 0 and result.rejected is not None
    assert reason in result.rejected, result.rejected


def test_trainable_parameter_cap(task):
    spec = json.loads(json.dumps(task["spec"]))
    spec["limits"]["max_trainable_params"] = 100
    result = evaluate(task, task["good"], spec)
    assert result.score == 0 and "max_trainable_params" in result.rejected
    with pytest.raises(LimitExceeded, match="max_trainable_params"):
        KIND.train(spec, task["train"], epochs=1, lr=0.01, seed=1, base_files=task["base"], max_steps=1)


def test_training_limits_and_spec_checks(task):
    with pytest.raises(LimitExceeded, match="max_lr"):
        KIND.train(task["spec"], task["train"], epochs=1, lr=0.9, seed=1, base_files=task["base"], max_steps=1)
    with pytest.raises(LimitExceeded, match="max_epochs"):
        KIND.train(task["spec"], task["train"], epochs=999, lr=0.01, seed=1, base_files=task["base"])
    for path, value, match in ((("lora", "r"), 99, "lora.r"), (("limits", "target_modules"), ["lm_head"], "subset"),
                               (("limits", "max_base_params"), 10**12, "max_base_params"),
                               (("metric", "loss"), "mse", "metric.loss"), (("task", "chat_format"), "x", "chatml")):
        spec = json.loads(json.dumps(task["spec"]))
        spec[path[0]][path[1]] = value
        with pytest.raises(SpecRejected, match=match):
            KIND.validate_spec(spec)


def test_tampered_heldout_is_the_planners_fault(task):
    with pytest.raises(DataRejected, match="heldout_blake2b"):
        KIND.evaluate(task["spec"], task["good"], task["heldout"] + b"\n", base_files=task["base"])


def test_base_model_defences(task):
    base, spec = task["base"], task["spec"]
    limits = {"max_params": 10**9, "max_bytes": 10**9}
    config = json.loads(base["config.json"])
    with pytest.raises(ModelRejected, match="model_type"):
        load_base({**base, "config.json": json.dumps({**config, "model_type": "gpt2"}).encode()}, **limits)
    with pytest.raises(ModelRejected, match="unexpected files"):
        load_base({**base, "pytorch_model.bin": b"\x80\x04"}, **limits)
    with pytest.raises(ModelRejected, match="parameters, over"):
        load_base(base, max_params=1000, max_bytes=10**9)
    with pytest.raises(ModelRejected, match="not a valid qwen2 config"):
        load_base({**base, "config.json": json.dumps({**config, "num_hidden_layers": 3}).encode()}, **limits)
    with pytest.raises(ModelRejected, match="config needs"):
        load_base({**base, "config.json": json.dumps({**config, "intermediate_size": 96}).encode()}, **limits)
    # remote code is never run: auto_map is dropped, the allowed architecture is built from the fields
    remote = {**config, "auto_map": {"AutoModelForCausalLM": "evil.Model"}}
    assert load_base({**base, "config.json": json.dumps(remote).encode()}, **limits).params == \
        spec["model"]["base_params"]
    with pytest.raises(ModelRejected, match="the spec says 'llama'"):
        KIND.evaluate({**spec, "model": {**spec["model"], "model_type": "llama"}}, task["good"], task["heldout"],
                      base_files=base)


def test_the_adapter_folder_is_what_peft_loads(task, tmp_path):
    import peft
    import transformers

    from node.offchain.ml.llm import heldout_loss
    for folder, files in (("base", task["base"]), ("adapter", task["good"])):
        (tmp_path / folder).mkdir()
        for name, data in files.items():
            (tmp_path / folder / name).write_bytes(data)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", local_files_only=True)
    model = peft.PeftModel.from_pretrained(model, tmp_path / "adapter")
    base = load_base(task["base"], max_params=10**9, max_bytes=10**9)
    examples = KIND.decode_examples(task["spec"], task["heldout"], "heldout", base)
    total = heldout_loss(model, examples, 16, base.eos)
    tokens = sum(sum(1 for x in labels[1:] if x != -100) for _, labels in examples)
    assert round(total * 10**9 / tokens) == pytest.approx(evaluate(task, task["good"]).loss_ppb, abs=10)


def test_conversation_files_are_checked_line_by_line():
    good = '{"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}'
    assert parse_conversations(f"{good}\n\n{good}\n", what="f")[1][1]["content"] == "yo"
    cases = (("not json", "line 2: not JSON"), ('{"conversations": []}', "line 2: needs"),
             ('{"messages": [{"role": "user", "content": "only a question"}]}', "line 2: a conversation needs"),
             ('{"conversations": [{"role": "tool", "content": "x"}]}', "line 2: message 0 has role"))
    for line, match in cases:
        with pytest.raises(DataRejected, match=match):
            parse_conversations(f"{good}\n{line}\n", what="f")


def test_plain_text_tasks(task, tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("\n\n".join(f"Paragraph {i}: the quick brown fox jumps over dog {i % 7}." for i in range(60)))
    prepared = KIND.prepare(str(source), 3, options={"base": task["base"]})
    spec = prepared.spec
    spec["model"]["base_cid"] = "QmLocalBase"
    assert spec["data"]["format"] == "text" and spec["metric"]["loss"] == "token_cross_entropy"
    adapter = KIND.train(spec, prepared.train_bytes, epochs=1, lr=0.01, seed=1, base_files=task["base"], max_steps=3)
    result = KIND.evaluate(spec, adapter, prepared.heldout_bytes, base_files=task["base"])
    assert result.rejected is None and result.score > 0


def test_scores_read_back_as_losses_in_nats():
    from node.demo.tables import leaderboard_table
    from node.offchain.ml.spec import loss_from_score, score_from_loss_ppb

    for loss_ppb in (0, 1, 362_000_000, 2_122_173_815, 10**12):
        assert loss_from_score(score_from_loss_ppb(loss_ppb)) == pytest.approx(loss_ppb / 1e9, rel=1e-6, abs=1e-7)
    assert loss_from_score(0) is None
    board = {"taskId": 2, "kind": "causal_lm_lora", "status": "finalized", "entries": [
        {"rank": 1, "address": "5Good", "consensusScore": score_from_loss_ppb(2_122_173_815), "reward": 1,
         "modelCid": "QmA"},
        {"rank": 2, "address": "5Bad", "consensusScore": 0, "reward": 0, "modelCid": "QmB"}]}
    from rich.console import Console
    console = Console(width=200, record=True)
    console.print(leaderboard_table(board))
    text = console.export_text()
    assert "nats/token" in text and "2.1222 (8.35)" in text and "rejected" in text


class Listing:
    """What a Kubo-compatible `ls` answers for a folder; counts `cat` calls (nothing may be read early)."""

    def __init__(self, links):
        self.links, self.cats = links, 0

    def ls(self, cid):
        return {"Objects": [{"Hash": cid, "Links": self.links}]}

    def cat(self, path, length=None):
        self.cats += 1
        return b"{}"


def test_folders_are_checked_from_the_listing_before_any_file_is_read(task):
    from node.offchain.folders import FolderRejected, adapter_limits, read_folder

    limits = adapter_limits(task["spec"])
    ok = [{"Name": ADAPTER_CONFIG, "Size": 2, "Type": 2}, {"Name": ADAPTER_WEIGHTS, "Size": 2, "Type": 2}]
    assert set(read_folder(Listing(ok), "Qm", *limits, "adapter")) == {ADAPTER_CONFIG, ADAPTER_WEIGHTS}
    for links, match in (([*ok, {"Name": "model.py", "Size": 1, "Type": 2}], "unexpected entry"),
                         ([ok[0], {"Name": ADAPTER_WEIGHTS, "Size": 10**9, "Type": 2}], "over the limit"),
                         ([ok[0], {"Name": ADAPTER_WEIGHTS, "Size": 0, "Type": 1}], "unexpected entry"),
                         ([], "not a folder")):
        listing = Listing(links)
        with pytest.raises(FolderRejected, match=match):
            read_folder(listing, "Qm", *limits, "adapter")
        assert listing.cats == 0
