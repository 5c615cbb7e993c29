"""End to end: LoRA fine-tuning of a Hugging Face causal LM on a real 4-node network, real processes.

The planner (eve) builds a tiny Qwen2-architecture base model (tokenizer trained with
`tokenizers` on the task text, briefly pretrained), publishes it as a folder on IPFS and creates
a `causal_lm_lora` task on built-in chats.  Three trainers of different quality (60 steps,
5 steps, one tiny step) fine-tune LoRA adapters with `peft` and publish the adapter folders;
three validators open the sealed held-out chats, score every adapter by assistant-token
cross-entropy, commit and reveal.  The chain must rank the 60-step adapter first; the audit
from the published key must reproduce the revealed integer scores; a host must serve the top
adapter as paid OpenAI-style chat completions, plain and streamed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from node.rpc_client import RpcClient
from runtime.crypto import Keypair
from tests.helpers import ROOT
from tests.netutil import Net

pytestmark = pytest.mark.integration

UNIT = 10**9
TRAINERS = {"llm-good": ("good", 60), "llm-fair": ("good", 5), "llm-poor": ("poor", 1)}
VALIDATORS = ("llm-val-1", "llm-val-2", "llm-val-3")
HOST = "llm-host"
KEYS = {name: Keypair.from_dev_name(name) for name in (*TRAINERS, *VALIDATORS, HOST, "eve", "alice", "ferdie")}
TASK_TIMEOUT_S = 240
PRICE = 2_000_000


def submit_all(client: RpcClient, key: Keypair, calls: list) -> None:
    nonce = client.call("system_accountNextIndex", key.address)
    hashes = [client.submit(client.sign(key, m, f, a, nonce=nonce + i)) for i, (m, f, a) in enumerate(calls)]
    for xt_hash in hashes:
        client.wait_for(xt_hash, timeout=60)


class Workers:
    """Worker processes started by the test, stopped by PID."""

    def __init__(self, base) -> None:
        self.base = base
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        with open(self.base / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "node.cli", *args], cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                                         **(env or {})})
        self.procs[name] = proc
        return proc

    def worker(self, name: str, role: str, keys: list[str], rpc: str, *extra: str,
               env: dict | None = None) -> subprocess.Popen:
        return self.start(name, ["worker", "--role", role, "--key", ",".join(keys), "--rpc", rpc, "--data-dir",
                                 str(self.base / "state"), "--bond", "20", *extra], env)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.base.glob("*.log")))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("llm-e2e")
    net = Net(tmp, slot_ms=500).up()
    workers = Workers(tmp)
    try:
        yield run_scenario(net, workers)
    finally:
        workers.stop()
        net.down()


def run_scenario(net: Net, workers: Workers) -> dict:
    rpc = [net.slots[i].rpc_url for i in range(4)]
    client = net.client(0)
    net.wait(lambda: client.call("system_health")["finalized"] >= 2, 60, "finality")
    submit_all(client, KEYS["alice"], [("balances", "transfer", [KEYS[n].public_key, 1000 * UNIT])
                                       for n in (*TRAINERS, *VALIDATORS, HOST)])
    workers.worker("planner", "planner", ["eve"], rpc[0], "--task", "causal_lm_lora", "--windows", "400,200,40")
    workers.worker("trainers", "trainer", [f"//{n}" for n in TRAINERS], rpc[1],
                   "--quality", ",".join(q for q, _ in TRAINERS.values()),
                   "--max-steps", ",".join(str(s) for _, s in TRAINERS.values()))
    workers.worker("validator-1", "validator", [f"//{VALIDATORS[0]}"], rpc[2])
    workers.worker("validators", "validator", [f"//{n}" for n in VALIDATORS[1:]], rpc[3])
    workers.worker("host", "host", [f"//{HOST}"], rpc[0], env={"ARENA_HOST_PRICE": str(PRICE)})
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while time.monotonic() < deadline:
        task = client.call("arena_task", 0)
        if task and task["status"] in ("finalized", "failed", "cancelled") and task["auditKey"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"task did not finish: {client.call('arena_task', 0)}\n{workers.logs()}")
    if task["status"] == "finalized":
        net.wait(lambda: any(m["taskId"] == 0 and m["hosts"] for m in client.call("arena_marketModels")), 90,
                 "the host registered the top adapter")
    return {"net": net, "client": client, "task": task, "workers": workers, "rpc": rpc, "tmp": workers.base,
            "board": client.call("arena_leaderboard", 0)}


def test_best_adapter_ranks_first(scenario):
    task, board = scenario["task"], scenario["board"]
    assert task["status"] == "finalized", scenario["workers"].logs()
    assert task["kind"] == "causal_lm_lora"
    order = [e["address"] for e in board["entries"]]
    assert order == [KEYS[n].address for n in ("llm-good", "llm-fair", "llm-poor")], scenario["workers"].logs()
    scores = [e["consensusScore"] for e in board["entries"]]
    assert scores[0] > scores[1] > scores[2] > 0
    assert task["topModel"] == board["entries"][0]["modelCid"]


def test_adapter_is_a_peft_folder_on_ipfs(scenario):
    import ipfshttpclient

    from node.offchain.context import rpc_to_ipfs_multiaddr
    ipfs = ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(scenario["rpc"][3]), timeout=60)
    links = ipfs.ls(scenario["task"]["topModel"])["Objects"][0]["Links"]
    assert sorted(link["Name"] for link in links) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads(ipfs.cat(f"{scenario['task']['topModel']}/adapter_config.json"))
    assert config["peft_type"] == "LORA" and config["r"] == 8


def test_audit_reproduces_the_revealed_scores(scenario):
    from node.offchain.audit import audit_task

    report = audit_task(scenario["rpc"][3], 0)
    assert report.reproduced, report
    assert len(report.revealed) == 3


def test_validators_logged_losses_in_nats(scenario):
    log = (scenario["workers"].base / "validators.log").read_text()
    assert "event=model_scored" in log and "loss_nats=" in log


def test_host_serves_paid_chat_completions_plain_and_streamed(scenario):
    import httpx

    from node.offchain.user_client import ArenaModelClient
    client = ArenaModelClient(scenario["rpc"][1], KEYS["ferdie"], scenario["tmp"] / "client")
    try:
        messages = [{"role": "user", "content": "What is the opposite of hot?"}]
        plain = client.chat(0, messages, max_tokens=16)
        pieces: list[str] = []
        streamed = client.chat(0, messages, max_tokens=16, stream=True, on_delta=pieces.append)
        entry = client.resolve(0)
    finally:
        client.close()
    assert plain.kind == "causal_lm_lora"
    assert plain.response["object"] == "chat.completion"
    # what the trained adapter says is its own (a tiny model may end its turn at once); the host's
    # part is that the counts and the finish reason agree with it
    tokens = plain.response["usage"]["completion_tokens"]
    finish = plain.response["choices"][0]["finish_reason"]
    assert 0 <= tokens <= 16 and finish in ("stop", "length") and (finish == "stop" or tokens == 16)
    assert plain.output or finish == "stop"
    # greedy decoding: the streamed reply is the same text, delivered as one event per token
    assert "".join(pieces) == streamed.output == plain.output
    assert streamed.response["usage"]["completion_tokens"] == tokens
    # role, one event per token (the tokens of one multi-byte character travel together), finish
    assert 2 <= streamed.response["events"] <= tokens + 2
    assert plain.cost == streamed.cost == PRICE
    assert streamed.cumulative_amount == 2 * PRICE  # two paid replies on one voucher channel
    endpoint = entry["hosts"][0]["endpoint"]
    unpaid = httpx.post(f"{endpoint}/v1/chat/completions", json={"messages": messages}, timeout=30)
    assert unpaid.status_code == 402


def test_arena_model_chat_cli_streams(scenario):
    from node.offchain.user_client import ArenaModelClient
    prompt = "Spell the word cold."
    result = subprocess.run([sys.executable, "-m", "node.cli", "model", "chat", "0", "--key", "ferdie", "--rpc",
                             scenario["rpc"][2], "-m", prompt, "--stream", "--max-tokens", "12",
                             "--state-dir", str(scenario["tmp"] / "cli-client")],
                            check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "paid" in result.stderr
    # greedy decoding: the CLI prints exactly what a plain completion of the same turn says; a tiny
    # model may end its turn at once, and then the CLI says so instead of printing a bare blank line
    client = ArenaModelClient(scenario["rpc"][1], KEYS["ferdie"], scenario["tmp"] / "cli-compare")
    try:
        plain = client.chat(0, [{"role": "user", "content": prompt}], max_tokens=12)
    finally:
        client.close()
    assert result.stdout == plain.output + "\n"
    assert plain.output or "ended its reply without text" in result.stderr


def test_arena_model_publish_gives_the_same_folder_cid(scenario, tmp_path, capsys):
    import ipfshttpclient

    from node.offchain.context import rpc_to_ipfs_multiaddr
    from node.offchain.folders import base_limits, read_folder
    spec_cid = scenario["task"]["specCid"]
    ipfs = ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(scenario["rpc"][3]), timeout=60)
    spec = json.loads(ipfs.cat(spec_cid))
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name, data in read_folder(ipfs, spec["model"]["base_cid"], *base_limits(spec), "base").items():
        (folder / name).write_bytes(data)
    (folder / "README.md").write_text("not part of a model folder")

    from node.cli import main  # in process: the CLI code path without another transformers import

    code = main(["model", "publish", str(folder), "--rpc", scenario["rpc"][2], "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    info = json.loads(out)
    assert info["cid"] == spec["model"]["base_cid"] and info["model_type"] == "qwen2"
    assert info["skipped"] == ["README.md"]
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    assert main(["model", "publish", str(folder), "--rpc", scenario["rpc"][2]]) == 1
    assert "model_type" in capsys.readouterr().err


def test_lifecycle_bench_raw_rate_of_the_tasks_adapters(scenario):
    import ipfshttpclient

    from bench.llm import raw_adapter_rate
    from node.offchain.context import rpc_to_ipfs_multiaddr
    ipfs = ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(scenario["rpc"][3]), timeout=60)
    spec = json.loads(ipfs.cat(scenario["task"]["specCid"]))
    assert raw_adapter_rate(scenario["task"], spec, ipfs, seconds=1.0) > 0
