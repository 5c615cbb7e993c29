"""The host's HTTP API in process (no node): paid answers, every bad request, batching, a durable ledger."""
import threading

import pytest
from starlette.testclient import TestClient

from node.offchain.host_ledger import VoucherLedger
from node.offchain.host_worker import MAX_BODY_BYTES, HostService, ServedModel, build_app
from node.offchain.ml import get_kind
from node.offchain.vouchers import Voucher, sign_voucher
from runtime.codec import encode
from runtime.crypto import Keypair
from runtime.modules import marketplace

GENESIS = b"\x07" * 32
HOST = Keypair.from_dev_name("host-1")
USER = Keypair.from_dev_name("user-1")
POOR = Keypair.from_dev_name("user-poor")
PRICE = 1000


class FakeChain:
    """What the host reads from its node: escrows, channels (raw storage) and redeemed channel states."""

    def __init__(self):
        self.escrow = {USER.public_key: 10**9, POOR.public_key: 2 * PRICE}
        self.channels = {}  # (user, host) -> [balance, withdraw_requested, release_block]
        self.redeemed = {}  # (user, model) -> (queries, amount, nonce) of the last redeemed voucher
        self.calls = 0

    def __call__(self, method, *params):
        self.calls += 1
        if method == "arena_escrow":
            return {"available": self.escrow.get(bytes.fromhex(params[0][2:]), 0)}
        if method == "arena_voucherState":
            queries, amount, nonce = self.redeemed.get((bytes.fromhex(params[0][2:]), params[2]), (0, 0, 0))
            return {"cumulativeQueries": queries, "cumulativeAmount": amount, "nonce": nonce}
        if method == "state_getStorage":
            for (user, host), value in self.channels.items():
                if params[0] == "0x" + marketplace.Channel.key([user, host]).hex():
                    return "0x" + encode(value).hex()
            return None
        raise AssertionError(method)


@pytest.fixture(scope="module")
def models():
    found = {}
    for kind_name, cid in (("digits_classifier", "QmDigits"), ("char_lm", "QmCharLM")):
        kind = get_kind(kind_name)
        spec = kind.prepare(None, 7).spec
        found[cid] = ServedModel(cid, 0, kind_name, spec, kind.build_model(spec).eval(), PRICE)
    return found


@pytest.fixture()
def host(tmp_path, models):
    ledger = VoucherLedger(str(tmp_path / "vouchers.sqlite"))
    service = HostService(HOST.public_key, GENESIS, ledger, FakeChain())
    service.models.update(models)
    with TestClient(build_app(service)) as client:
        yield client, service, tmp_path
    ledger.close()


def v(n, user=USER, model="QmDigits", amount=None, nonce=None, host=HOST, genesis=GENESIS) -> str:
    return sign_voucher(user, genesis, host.public_key, model, n, n * PRICE if amount is None else amount,
                        n if nonce is None else nonce).to_hex()


ROW = [float(i % 17) for i in range(64)]


def predict(client, voucher, body=None):
    headers = {"X-Arena-Voucher": voucher} if voucher else {}
    return client.post("/v1/predict", json=body or {"model": "QmDigits", "input": ROW}, headers=headers)


def error_of(reply):
    return reply.status_code, reply.json()["error"]["code"]


def test_paid_predict_and_completion(host):
    client, _service, _ = host
    reply = predict(client, v(1))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["predictions"]) == 1 and 0 <= body["predictions"][0]["label"] <= 9
    assert abs(sum(body["predictions"][0]["probabilities"]) - 1) < 1e-3
    assert body["arena"]["cost"] == PRICE and body["arena"]["cumulativeAmount"] == PRICE
    reply = client.post("/v1/completions", json={"model": "QmCharLM", "prompt": "def ", "max_tokens": 12},
                        headers={"X-Arena-Voucher": v(1, model="QmCharLM")})
    assert reply.status_code == 200, reply.text
    completion = reply.json()
    assert completion["object"] == "text_completion" and len(completion["choices"][0]["text"]) == 12
    assert completion["usage"]["completion_tokens"] == 12
    listed = client.get("/v1/models").json()["data"]
    assert {m["id"]: m["endpoint"] for m in listed} == {"QmDigits": "/v1/predict", "QmCharLM": "/v1/completions"}


def test_every_bad_request_is_a_clear_4xx(host):
    client, _, _ = host
    assert error_of(predict(client, None)) == (402, "payment_required")
    assert error_of(predict(client, "zz")) == (400, "bad_voucher")
    assert error_of(predict(client, "c0")) == (400, "bad_voucher")
    forged = Voucher.from_hex(v(1))
    forged = Voucher(*forged.to_list()[:4], 10**9, *forged.to_list()[5:])
    assert error_of(predict(client, forged.to_hex())) == (401, "bad_signature")
    assert error_of(predict(client, v(1, genesis=b"\x01" * 32))) == (401, "bad_signature")
    assert error_of(predict(client, v(1, host=USER))) == (403, "wrong_host")
    assert error_of(predict(client, v(1, model="QmCharLM"))) == (403, "wrong_model")
    wrong_endpoint = predict(client, v(1, model="QmCharLM"), {"model": "QmCharLM", "input": ROW})
    assert error_of(wrong_endpoint) == (400, "wrong_endpoint")
    assert error_of(predict(client, v(1, amount=PRICE - 1))) == (402, "underpaid")
    assert predict(client, v(1)).status_code == 200
    replay = predict(client, v(1))
    assert error_of(replay) == (409, "replayed")
    assert Voucher.from_hex(replay.json()["error"]["lastVoucher"]).nonce == 1
    assert error_of(predict(client, v(2, amount=PRICE // 2))) == (409, "amount_backwards")
    assert error_of(predict(client, v(2, amount=PRICE + 1))) == (402, "underpaid")
    assert predict(client, v(1, user=POOR)).status_code == 200
    assert predict(client, v(2, user=POOR)).status_code == 200
    assert error_of(predict(client, v(3, user=POOR))) == (402, "escrow_exhausted")
    assert error_of(predict(client, v(2), {"model": "QmDigits", "input": ROW[:10]})) == (400, "bad_input")
    assert error_of(predict(client, v(2), {"model": "QmDigits", "inputs": [ROW] * 33})) == (413, "input_too_large")
    assert error_of(predict(client, v(2), {"model": "QmNope", "input": ROW})) == (404, "unknown_model")
    big = client.post("/v1/predict", content=b"x" * (MAX_BODY_BYTES + 1), headers={"X-Arena-Voucher": v(2)})
    assert error_of(big) == (413, "input_too_large")
    long_prompt = client.post("/v1/completions", json={"model": "QmCharLM", "prompt": "a" * 5000},
                              headers={"X-Arena-Voucher": v(1, model="QmCharLM")})
    assert error_of(long_prompt) == (413, "input_too_large")
    too_many = client.post("/v1/completions", json={"model": "QmCharLM", "prompt": "a", "max_tokens": 10_000},
                           headers={"X-Arena-Voucher": v(1, model="QmCharLM")})
    assert error_of(too_many) == (400, "bad_input")
    assert error_of(client.post("/v1/predict", content=b"{not json", headers={"X-Arena-Voucher": v(2)})) == \
        (400, "bad_json")
    # none of the refused requests moved the channel: the next good voucher is number 2
    assert predict(client, v(2)).status_code == 200


def test_concurrent_requests_are_batched_and_all_paid(host):
    client, service, _ = host
    users = [Keypair.from_dev_name(f"batch-user-{i}") for i in range(12)]
    service.reader.escrow.update({u.public_key: 10**9 for u in users})
    results = []

    def one(user):
        results.append(predict(client, v(1, user=user)).status_code)

    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * len(users)
    assert service.stats["answered"] == len(users)
    assert service.stats["batches"] <= len(users)


def test_ledger_survives_a_crash(host):
    client, _service, tmp_path = host
    for n in (1, 2, 3):
        assert predict(client, v(n)).status_code == 200
    # a second connection sees every answered voucher: it was committed (fsync) before the answer
    other = VoucherLedger(str(tmp_path / "vouchers.sqlite"))
    try:
        newest = other.unreported("QmDigits")
        assert [(x.user, x.nonce, x.cumulative_amount) for x in newest] == [(USER.public_key, 3, 3 * PRICE)]
        other.mark_reported("QmDigits", [(USER.public_key, 3)])
        assert other.unreported("QmDigits") == []
        assert other.totals()["QmDigits"] == [1, 3, 3 * PRICE]
    finally:
        other.close()


def batch(client, queries):
    reply = client.post("/v1/batch", json={"queries": queries})
    assert reply.status_code == 200, reply.text
    return [(r["status"], r["body"]) for r in reply.json()["results"]]


def test_batch_answers_each_query_with_its_own_voucher(host):
    client, service, tmp_path = host
    other = Keypair.from_dev_name("batch-other")
    service.reader.escrow[other.public_key] = 10**9
    results = batch(client, [
        {"voucher": v(1), "input": ROW},
        {"voucher": v(2), "input": ROW[:3]},                       # bad input: refused before payment
        {"voucher": v(3), "input": ROW},                           # signed on top of the refused one
        {"voucher": v(1, user=other), "input": ROW},
        {"voucher": v(2, user=other, genesis=b"\x01" * 32), "input": ROW},   # refused by the batch step
        {"voucher": v(3, user=other), "input": ROW},               # signed on top of that one
        {"voucher": v(1, user=other, model="QmCharLM"), "prompt": "de", "max_tokens": 3},
        {"input": ROW},                                            # no voucher
        {"voucher": v(1, user=POOR), "input": ROW},
        {"voucher": v(1, user=POOR), "input": ROW},                # the same voucher again: a replay
    ])
    assert [s for s, _ in results] == [200, 400, 409, 200, 401, 409, 200, 402, 200, 409]
    assert [b["error"]["code"] for s, b in results if s != 200] == [
        "bad_input", "previous_refused", "bad_signature", "previous_refused", "payment_required", "replayed"]
    assert results[0][1]["arena"]["nonce"] == 1 and results[3][1]["arena"]["cumulativeAmount"] == PRICE
    assert len(results[6][1]["choices"][0]["text"]) == 3
    # the accepted queries share one ledger commit, durable before the answer
    newest = VoucherLedger(str(tmp_path / "vouchers.sqlite"))
    try:
        assert sorted((x.user, x.nonce) for x in newest.unreported("QmDigits")) == sorted(
            [(USER.public_key, 1), (other.public_key, 1), (POOR.public_key, 1)])
        assert [(x.user, x.nonce) for x in newest.unreported("QmCharLM")] == [(other.public_key, 1)]
    finally:
        newest.close()
    assert error_of(client.post("/v1/batch", json={"queries": []})) == (400, "bad_input")
    assert error_of(client.post("/v1/batch", json={"queries": [{"input": ROW}] * 65})) == (400, "bad_input")
    assert error_of(client.post("/v1/batch", content=b"[1]")) == (400, "bad_json")


def test_a_batch_shares_one_commit(tmp_path, models):
    ledger = VoucherLedger(str(tmp_path / "vouchers.sqlite"))
    service = HostService(HOST.public_key, GENESIS, ledger, FakeChain())
    service.models.update(models)
    from node.offchain.host_http import parse_query
    jobs = [parse_query(service, v(n), {"input": ROW}, None) for n in range(1, 21)]
    service.process(jobs)
    assert [j.error for j in jobs] == [None] * 20 and ledger.commits == 1
    ledger.close()
    reopened = VoucherLedger(str(tmp_path / "vouchers.sqlite"))  # state comes back from disk into memory
    try:
        assert reopened.newest(USER.public_key, "QmDigits").nonce == 20
        service = HostService(HOST.public_key, GENESIS, reopened, FakeChain())
        service.models.update(models)
        replay = parse_query(service, v(20), {"input": ROW}, None)
        service.process([replay])
        assert replay.error[1] == "replayed"
    finally:
        reopened.close()


def test_escrow_counts_the_channel_to_this_host_and_other_models(host):
    client, service, _ = host
    chain = service.reader
    locked = Keypair.from_dev_name("channel-user")
    chain.escrow[locked.public_key] = 0
    chain.channels[(locked.public_key, HOST.public_key)] = [4 * PRICE, PRICE, 0]  # 3 units left after withdrawal
    chain.channels[(locked.public_key, USER.public_key)] = [10**9, 0, 0]         # another host's channel
    for n in (1, 2, 3):
        assert predict(client, v(n, user=locked)).status_code == 200
    assert error_of(predict(client, v(4, user=locked))) == (402, "escrow_exhausted")
    # one escrow pays every model of this host: what QmCharLM owes counts against QmDigits
    assert predict(client, v(1, user=POOR)).status_code == 200
    reply = client.post("/v1/completions", json={"model": "QmCharLM", "prompt": "a", "max_tokens": 2},
                        headers={"X-Arena-Voucher": v(1, user=POOR, model="QmCharLM")})
    assert reply.status_code == 200, reply.text
    assert error_of(predict(client, v(2, user=POOR))) == (402, "escrow_exhausted")


def test_after_a_report_escrow_and_redeemed_state_are_read_afresh(host):
    client, service, _ = host
    chain = service.reader
    chain.escrow[POOR.public_key] = 3 * PRICE
    for n in (1, 2):
        assert predict(client, v(n, user=POOR)).status_code == 200
    # the host redeems vouchers 1..2: the escrow pays 2 units and the channel's redeemed state moves to 2
    chain.escrow[POOR.public_key] = PRICE
    chain.redeemed[(POOR.public_key, "QmDigits")] = (2, 2 * PRICE, 2)
    service.forget_redeemed("QmDigits")
    assert predict(client, v(3, user=POOR)).status_code == 200
    assert error_of(predict(client, v(4, user=POOR))) == (402, "escrow_exhausted")
