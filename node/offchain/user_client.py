"""The user's side of the marketplace: pick a host, keep an escrow, sign a voucher per query.

    from node.offchain.user_client import ArenaModelClient
    client = ArenaModelClient("http://127.0.0.1:9933", Keypair.from_dev_name("ferdie"))
    answer = client.query(1, "def main(")          # task id or model CID; text or numbers
    print(answer.output, answer.cost)

Each channel (this user, a host, a model) has a cumulative voucher state (queries, amount,
nonce) that the client keeps in a JSON file (written atomically, fsync'd) *before* it sends a
voucher, so a restarted client never signs a nonce twice. It also reads the chain's last
redeemed voucher of the channel, so a lost state file only costs a resync. When a host answers
409 with a newer voucher (`lastVoucher`), the client checks that it signed it itself for this
channel and continues from it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from node.offchain.context import StateFile
from node.offchain.vouchers import Voucher, VoucherError, sign_voucher
from node.rpc_client import RpcClient, call_failed
from runtime.codec import decode
from runtime.crypto import Keypair, ss58_decode
from runtime.modules import marketplace
from runtime.modules.balances import UNIT

DEFAULT_STATE_DIR = Path.home() / ".arena" / "client"
DEFAULT_DEPOSIT = UNIT  # 1 ARENA when the escrow runs short
COMPLETION_KINDS = ("char_lm", "custom_text")
MAX_BATCH_QUERIES = 64  # per `POST /v1/batch` (node.offchain.host_http)


class ModelQueryError(Exception):
    """A query that could not be answered; `code` is the host's (or the client's) error name."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Answer:
    """A paid answer: the output, what it cost, and where it came from."""

    model_cid: str
    task_id: int
    kind: str
    host: str
    endpoint: str
    output: Any
    cost: int
    cumulative_amount: int
    response: dict


class ArenaModelClient:
    """Query the marketplace's models as one user (thread-safe; one query at a time per client)."""

    def __init__(self, rpc_url: str, key: Keypair, state_dir: Path | None = None, deposit: int = DEFAULT_DEPOSIT,
                 timeout: float = 60.0) -> None:
        self.rpc = RpcClient(rpc_url)
        self.key = key
        self.deposit_amount = deposit
        self.state = StateFile((state_dir or DEFAULT_STATE_DIR) / f"{key.address}.json")
        self.http = httpx.Client(timeout=timeout)
        self.genesis_hash = bytes.fromhex(self.rpc.properties()["genesisHash"][2:])
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()
        self.rpc.close()

    # ------------------------------------------------------------ chain reads

    def models(self) -> list[dict]:
        """Top models of finalized tasks with their hosts and prices (`arena_marketModels`)."""
        return self.rpc.call("arena_marketModels")

    def resolve(self, model_or_task: int | str) -> dict:
        """The market entry of a task id (int or digits) or a model CID."""
        text = str(model_or_task)
        for entry in self.models():
            if (text.isdigit() and entry["taskId"] == int(text)) or entry["modelCid"] == text:
                return entry
        raise ModelQueryError("unknown_model", f"{text} is neither a finalized task with a top model nor its CID")

    def escrow(self) -> dict:
        return self.rpc.call("arena_escrow", self.key.address)

    def channel_available(self, host: bytes) -> int:
        """What the escrow locked for `host` alone (`marketplace.deposit_for`) still holds, less withdrawals."""
        raw = self.rpc.call("state_getStorage", "0x" + marketplace.Channel.key([self.key.public_key, host]).hex())
        if raw is None:
            return 0
        balance, requested, _release = decode(bytes.fromhex(raw[2:]))
        return int(balance) - int(requested)

    def ensure_escrow(self, needed: int, host: bytes | None = None) -> int:
        """Deposit when the escrow's available part (and the channel to `host`) is below `needed`; returns
        the amount deposited."""
        available = int(self.escrow()["available"]) + (self.channel_available(host) if host is not None else 0)
        if available >= needed:
            return 0
        amount = max(needed - available, self.deposit_amount)
        result = self.rpc.submit_and_wait(self.key, "marketplace", "deposit", [amount])
        failed = call_failed(result)
        if failed:
            raise ModelQueryError("deposit_failed", f"{failed['data'][1]}: {failed['data'][2]}")
        return amount

    # ------------------------------------------------------------ channel state

    def _channel_key(self, host: bytes, cid: str) -> str:
        return f"{host.hex()}/{cid}"

    def channel(self, host: bytes, cid: str) -> list[int]:
        """[queries, amount, nonce]: the newer of the local state and the chain's last redeemed voucher."""
        local = self.state.data.setdefault("channels", {}).get(self._channel_key(host, cid), [0, 0, 0])
        chain = self.rpc.call("arena_voucherState", self.key.address, "0x" + host.hex(), cid)
        on_chain = [chain["cumulativeQueries"], chain["cumulativeAmount"], chain["nonce"]]
        return [max(a, b) for a, b in zip(local, on_chain)]

    def _save_channel(self, host: bytes, cid: str, value: list[int]) -> None:
        self.state.data.setdefault("channels", {})[self._channel_key(host, cid)] = value
        self.state.save()

    # ------------------------------------------------------------ querying

    def _pick(self, model_or_task: int | str, host: str | None) -> tuple[dict, dict]:
        """The market entry and the cheapest (or the named) host of a model."""
        entry = self.resolve(model_or_task)
        hosts = sorted(entry["hosts"], key=lambda h: (h["pricePerQuery"], h["address"]))
        if host is not None:
            hosts = [h for h in hosts if h["address"] == host or h["endpoint"] == host]
        if not hosts:
            raise ModelQueryError("no_host", f"nobody hosts model {entry['modelCid']} (task {entry['taskId']})")
        return entry, hosts[0]

    @staticmethod
    def _query_body(entry: dict, data: Any, max_tokens: int, temperature: float) -> tuple[str, dict]:
        if entry["kind"] in COMPLETION_KINDS:
            return "/v1/completions", {"model": entry["modelCid"], "prompt": str(data), "max_tokens": max_tokens,
                                       "temperature": temperature}
        rows = data if data and isinstance(data[0], list) else [data]
        return "/v1/predict", {"model": entry["modelCid"], "inputs": rows}

    @staticmethod
    def _answer(entry: dict, chosen: dict, response: dict) -> Answer:
        output = response["choices"][0]["text"] if "choices" in response else response["predictions"]
        return Answer(entry["modelCid"], entry["taskId"], entry["kind"], chosen["address"], chosen["endpoint"],
                      output, chosen["pricePerQuery"], response["arena"]["cumulativeAmount"], response)

    def query(self, model_or_task: int | str, data: Any, *, max_tokens: int = 32, temperature: float = 0.0,
              host: str | None = None) -> Answer:
        """Pay for and run one query: text for language models, a row (or rows) of numbers for classifiers."""
        entry, chosen = self._pick(model_or_task, host)
        path, body = self._query_body(entry, data, max_tokens, temperature)
        with self._lock:
            response = self._paid_request(entry["modelCid"], chosen, path, body)
        return self._answer(entry, chosen, response)

    def query_many(self, model_or_task: int | str, inputs: list, *, max_tokens: int = 32, temperature: float = 0.0,
                   host: str | None = None) -> list[Answer | ModelQueryError]:
        """Pay for many queries to one model, up to 64 per HTTP request (`POST /v1/batch`), one voucher each.

        The vouchers of a request build on each other; the host refuses every later voucher of a
        refused one (409 `previous_refused`), so a refused query costs nothing. Results come back
        in order: an Answer, or the ModelQueryError of that one query.
        """
        entry, chosen = self._pick(model_or_task, host)
        found: list[Answer | ModelQueryError] = []
        for start in range(0, len(inputs), MAX_BATCH_QUERIES):
            bodies = [self._query_body(entry, data, max_tokens, temperature)[1]
                      for data in inputs[start:start + MAX_BATCH_QUERIES]]
            with self._lock:
                results = self._paid_batch(entry["modelCid"], chosen, bodies)
            found += [self._answer(entry, chosen, r) if isinstance(r, dict) else r for r in results]
        return found

    def chat(self, model_or_task: int | str, messages: list[dict], *, max_tokens: int = 64,
             temperature: float = 0.0, stream: bool = False, on_delta: Any = None, host: str | None = None) -> Answer:
        """Pay for one OpenAI-style chat completion of a `causal_lm_lora` top model.

        With `stream`, the host answers with server-sent events; `on_delta(text)` is called for
        every piece as it arrives, and the Answer's `output` is the whole reply.
        """
        entry, chosen = self._pick(model_or_task, host)
        body = {"model": entry["modelCid"], "messages": messages, "max_tokens": max_tokens,
                "temperature": temperature, "stream": stream}
        with self._lock:
            response = self._paid_request(entry["modelCid"], chosen, "/v1/chat/completions", body,
                                          on_delta=on_delta if stream else None, stream=stream)
        output = response["choices"][0]["message"]["content"]
        return Answer(entry["modelCid"], entry["taskId"], entry["kind"], chosen["address"], chosen["endpoint"],
                      output, chosen["pricePerQuery"], response["arena"]["cumulativeAmount"], response)

    def _read_stream(self, reply: httpx.Response, on_delta: Any) -> dict:
        """Collect a streamed chat completion into the shape of a plain one."""
        from node.offchain.llm_serving import parse_sse

        text, last, events = "", {}, 0
        for chunk in parse_sse(reply.iter_lines()):
            events += 1
            delta = chunk["choices"][0]["delta"].get("content") or ""
            if delta:
                text += delta
                if on_delta is not None:
                    on_delta(delta)
            last = chunk
        finish = last.get("choices", [{}])[0].get("finish_reason")
        return {"id": last.get("id"), "object": "chat.completion", "model": last.get("model"), "events": events,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": last.get("usage"), "arena": last.get("arena", {})}

    def _paid_request(self, cid: str, host: dict, path: str, body: dict, *, stream: bool = False,
                      on_delta: Any = None) -> dict:
        host_key = ss58_decode(host["address"])
        price = int(host["pricePerQuery"])
        base = self.channel(host_key, cid)
        for attempt in range(2):
            redeemed = self.rpc.call("arena_voucherState", self.key.address, "0x" + host_key.hex(), cid)
            self.ensure_escrow(base[1] + price - redeemed["cumulativeAmount"], host_key)
            voucher = sign_voucher(self.key, self.genesis_hash, host_key, cid, base[0] + 1, base[1] + price, base[2] + 1)
            self._save_channel(host_key, cid, [voucher.cumulative_queries, voucher.cumulative_amount, voucher.nonce])
            try:
                if stream:
                    with self.http.stream("POST", host["endpoint"].rstrip("/") + path, json=body,
                                          headers={"X-Arena-Voucher": voucher.to_hex()}) as streamed:
                        if streamed.status_code == 200:
                            return self._read_stream(streamed, on_delta)
                        streamed.read()
                        reply = streamed
                else:
                    reply = self.http.post(host["endpoint"].rstrip("/") + path, json=body,
                                           headers={"X-Arena-Voucher": voucher.to_hex()})
            except httpx.HTTPError as exc:
                raise ModelQueryError("host_unreachable", f"{host['endpoint']}: {exc}") from exc
            if reply.status_code == 200:
                return reply.json()
            try:
                error = reply.json().get("error", {})
            except ValueError:
                error = {}
            code, message = error.get("code", "http_error"), error.get("message", reply.text[:200])
            newer = self._adopt(error.get("lastVoucher"), host_key, cid)
            if reply.status_code == 409 and newer is not None and attempt == 0:
                base = newer
                continue
            if 400 <= reply.status_code < 500:
                self._save_channel(host_key, cid, newer or base)  # the host did not accept this voucher
            raise ModelQueryError(code, message, reply.status_code)
        raise ModelQueryError("channel_conflict", "the host keeps rejecting the channel state")

    def _paid_batch(self, cid: str, host: dict, bodies: list[dict]) -> list[dict | ModelQueryError]:
        """Sign one voucher per body on top of the channel, send them in one `/v1/batch`, keep the newest accepted."""
        host_key = ss58_decode(host["address"])
        price = int(host["pricePerQuery"])
        base = self.channel(host_key, cid)
        redeemed = self.rpc.call("arena_voucherState", self.key.address, "0x" + host_key.hex(), cid)
        self.ensure_escrow(base[1] + price * len(bodies) - redeemed["cumulativeAmount"], host_key)
        vouchers = [sign_voucher(self.key, self.genesis_hash, host_key, cid, base[0] + n, base[1] + n * price,
                                 base[2] + n) for n in range(1, len(bodies) + 1)]
        last = vouchers[-1]
        self._save_channel(host_key, cid, [last.cumulative_queries, last.cumulative_amount, last.nonce])
        try:
            reply = self.http.post(host["endpoint"].rstrip("/") + "/v1/batch", json={"queries": [
                {**body, "voucher": v.to_hex()} for body, v in zip(bodies, vouchers)]})
        except httpx.HTTPError as exc:
            raise ModelQueryError("host_unreachable", f"{host['endpoint']}: {exc}") from exc
        if reply.status_code != 200:
            self._save_channel(host_key, cid, base)  # the host read none of the vouchers
            raise ModelQueryError("http_error", reply.text[:200], reply.status_code)
        newest, found = base, []
        for voucher, result in zip(vouchers, reply.json()["results"]):
            if result["status"] == 200:
                newest = [voucher.cumulative_queries, voucher.cumulative_amount, voucher.nonce]
                found.append(result["body"])
                continue
            error = result["body"].get("error", {})
            adopted = self._adopt(error.get("lastVoucher"), host_key, cid)
            if adopted is not None and adopted[2] > newest[2]:
                newest = adopted
            found.append(ModelQueryError(error.get("code", "http_error"), error.get("message", ""), result["status"]))
        self._save_channel(host_key, cid, newest)
        return found

    def _adopt(self, text: str | None, host: bytes, cid: str) -> list[int] | None:
        """A host's claim of our newest voucher, if we really signed it for this channel."""
        if not text:
            return None
        try:
            voucher = Voucher.from_hex(text)
        except VoucherError:
            return None
        if voucher.user != self.key.public_key or voucher.host != host or voucher.model_cid != cid \
                or not voucher.verifies(self.genesis_hash):
            return None
        return [voucher.cumulative_queries, voucher.cumulative_amount, voucher.nonce]
