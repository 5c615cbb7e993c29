"""The host's OpenAI-style chat endpoint in process (no node): a real tiny LoRA model merged into its base,
plain and streamed (server-sent events) replies, payment by voucher, bad requests refused."""
import json

import pytest
import torch
from starlette.testclient import TestClient

from node.offchain.host_ledger import VoucherLedger
from node.offchain.host_worker import HostService, ServedModel, build_app
from node.offchain.llm_serving import ChatModel, parse_sse
from node.offchain.ml import get_kind
from node.offchain.vouchers import sign_voucher
from runtime.crypto import Keypair

GENESIS = b"\x07" * 32
HOST = Keypair.from_dev_name("host-1")
USER = Keypair.from_dev_name("user-1")
PRICE = 1000
CID = "QmChat"
ASK = [{"role": "user", "content": "What is the opposite of hot?"}]


class FakeChain:
    def __call__(self, method, *params):
        if method == "arena_escrow":
            return {"available": 10**9}
        if method == "arena_voucherState":
            return {"cumulativeQueries": 0, "cumulativeAmount": 0, "nonce": 0}
        raise AssertionError(method)


@pytest.fixture(scope="module")
def served():
    torch.set_num_threads(1)
    kind = get_kind("causal_lm_lora")
    prepared = kind.prepare(None, 5, options={"pretrain_steps": 5})
    spec = prepared.spec
    spec["model"]["base_cid"] = "QmBase"
    adapter = kind.train(spec, prepared.train_bytes, epochs=1, lr=0.01, seed=1, base_files=prepared.folders["base"],
                         max_steps=3)
    merged, base = kind.merged_model(spec, prepared.folders["base"], adapter)
    return ServedModel(CID, 0, "causal_lm_lora", spec, ChatModel(merged, base, 128), PRICE)


@pytest.fixture()
def host(tmp_path, served):
    ledger = VoucherLedger(str(tmp_path / "vouchers.sqlite"))
    service = HostService(HOST.public_key, GENESIS, ledger, FakeChain())
    service.models[CID] = served
    with TestClient(build_app(service)) as client:
        yield client
    ledger.close()


def v(n: int) -> str:
    return sign_voucher(USER, GENESIS, HOST.public_key, CID, n, n * PRICE, n).to_hex()


def test_plain_and_streamed_chat_completions(host):
    reply = host.post("/v1/chat/completions", json={"model": CID, "messages": ASK, "max_tokens": 8},
                      headers={"X-Arena-Voucher": v(1)})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    text = body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 8 and body["arena"]["cost"] == PRICE
    with host.stream("POST", "/v1/chat/completions", json={"model": CID, "messages": ASK, "max_tokens": 8,
                                                          "stream": True},
                     headers={"X-Arena-Voucher": v(2)}) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        lines = list(streamed.iter_lines())
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
    chunks = list(parse_sse(iter(lines)))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text  # greedy: same reply
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["arena"]["cumulativeAmount"] == 2 * PRICE
    assert len(chunks) == chunks[-1]["usage"]["completion_tokens"] + 2
    listed = host.get("/v1/models").json()["data"]
    assert listed[0]["endpoint"] == "/v1/chat/completions"


def test_chat_requests_are_checked_before_payment(host):
    unpaid = host.post("/v1/chat/completions", json={"messages": ASK})
    assert unpaid.status_code == 402
    for body, code in (({"messages": "hi"}, "bad_input"), ({"messages": [{"role": "tool", "content": "x"}]}, "bad_input"),
                       ({"messages": ASK, "max_tokens": 10**6}, "bad_input"),
                       ({"messages": ASK, "stream": "yes"}, "bad_input"),
                       ({"messages": [{"role": "user", "content": "x" * 9000}]}, "input_too_large")):
        reply = host.post("/v1/chat/completions", json={"model": CID, **body}, headers={"X-Arena-Voucher": v(1)})
        assert reply.status_code in (400, 413) and reply.json()["error"]["code"] == code, reply.text
    # none of the refused requests spent the voucher: it still pays for a real answer
    reply = host.post("/v1/chat/completions", json={"model": CID, "messages": ASK, "max_tokens": 2},
                      headers={"X-Arena-Voucher": v(1)})
    assert reply.status_code == 200, reply.text
    assert json.loads(reply.text)["arena"]["cumulativeAmount"] == PRICE
