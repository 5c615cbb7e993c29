"""The host worker: serve finished tasks' top models over HTTP, paid per query by vouchers.

    arena worker --role host --key //host-1 --rpc http://127.0.0.1:9933
    arena model serve --key //host-1 --rpc URL --port 8100 --price 0.001   (same, with options)

1. Bonds for the "host" role (the role minimum unless `--bond`), heartbeats every epoch.
2. Reads the top models of finalized tasks (`arena_marketModels`), pulls each spec and model
   from IPFS (size-limited, loaded defensively by the task kind), and registers as their host
   (`marketplace.register_host(model_cid, endpoint, price)`).
3. Serves them on 127.0.0.1 (hypercorn on trio): `POST /v1/completions` (OpenAI-style, for
   char_lm / custom_text) and `POST /v1/predict` (digits_classifier / custom_csv), each needing
   an `X-Arena-Voucher` header; `GET /v1/models`, `GET /health` are free. Concurrent requests
   are batched: one thread verifies the batch's vouchers in order, runs the model once per
   model, and commits the accepted vouchers to the SQLite ledger (fsync) before answering.
4. Once per usage period (or every `report_blocks`) it redeems the newest voucher of every
   channel not yet redeemed (`marketplace.report_usage`), checking chain state first, so a
   restarted host neither loses nor double-reports usage.

Options (`ctx.options`, or the environment for `arena worker --role host`): port
(ARENA_HOST_PORT, default any free port), price in base units (ARENA_HOST_PRICE, default
1 000 000), report_blocks (ARENA_HOST_REPORT_BLOCKS, default the period length), tasks (task
ids to serve, default all), max_batch (32).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.offchain.chain_client import CallFailed
from node.offchain.context import WorkerContext
from node.offchain.vouchers import Voucher, VoucherError, VoucherLedger, VoucherRejected, check_voucher
from node.offchain.worker import RoleLoop
from runtime.codec import encode
from runtime.crypto import blake2b_256

VOUCHER_HEADER = "x-arena-voucher"
MAX_BODY_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 2048
MAX_TOKENS = 256
MAX_ROWS = 32
MAX_SPEC_BYTES = 1 << 20
DEFAULT_PRICE = 1_000_000
ESCROW_TTL_S = 2.0
ENDPOINTS = {"digits_classifier": "predict", "custom_csv": "predict", "char_lm": "completions",
             "custom_text": "completions", "causal_lm_lora": "chat/completions"}


class BadRequest(Exception):
    """A request the host refuses before looking at its voucher."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, last: Voucher | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if last is not None:
        body["error"]["lastVoucher"] = last.to_hex()
    return JSONResponse(body, status_code=status)


# ---------------------------------------------------------------- models


@dataclass
class ServedModel:
    """One loaded model and how to run it."""

    cid: str
    task_id: int
    kind: str
    spec: dict
    module: Any
    price: int

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.kind]

    def parse(self, body: dict) -> Any:
        """The validated input of one request (BadRequest on bad input)."""
        if self.endpoint == "chat/completions":  # an LLM: `module` is a llm_serving.ChatModel
            from node.offchain.llm_serving import ChatRequestError
            try:
                return self.module.parse(body)
            except ChatRequestError as exc:
                raise BadRequest(exc.status, exc.code, exc.message) from None
        if self.endpoint == "completions":
            prompt = body.get("prompt", "")
            max_tokens = body.get("max_tokens", 32)
            temperature = body.get("temperature", 0)
            if not isinstance(prompt, str):
                raise BadRequest(400, "bad_input", "prompt must be a string")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise BadRequest(413, "input_too_large", f"prompt is {len(prompt)} characters, limit {MAX_PROMPT_CHARS}")
            if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_TOKENS:
                raise BadRequest(400, "bad_input", f"max_tokens must be an integer in 1..{MAX_TOKENS}")
            if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
                raise BadRequest(400, "bad_input", "temperature must be a number in [0, 2]")
            return prompt, max_tokens, float(temperature)
        rows = body.get("inputs", [body["input"]] if "input" in body else None)
        width = len(self.spec["task"].get("feature_columns", [])) or int(self.spec["model"]["input_dim"])
        if not isinstance(rows, list) or not rows:
            raise BadRequest(400, "bad_input", f"give `input` (one row of {width} numbers) or `inputs` (rows)")
        if len(rows) > MAX_ROWS:
            raise BadRequest(413, "input_too_large", f"{len(rows)} rows, limit {MAX_ROWS} per query")
        for row in rows:
            if not isinstance(row, list) or len(row) != width or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) < 1e9 for x in row):
                raise BadRequest(400, "bad_input", f"each row must be {width} finite numbers")
        return rows

    def run(self, inputs: list[Any]) -> list[Any]:
        """Answer a batch of parsed inputs with one forward pass (or one generation loop)."""
        import torch

        if self.endpoint == "chat/completions":
            return self.module.run(inputs)
        with torch.inference_mode():
            return self._complete(inputs) if self.endpoint == "completions" else self._predict(inputs)

    def _predict(self, batch: list[list[list[float]]]) -> list[list[dict]]:
        import torch

        rows = [row for rows in batch for row in rows]
        x = torch.tensor(rows, dtype=torch.float32)
        task = self.spec["task"]
        if self.kind == "digits_classifier":
            x = x / 16.0
        elif "feature_mean" in task:
            x = (x - torch.tensor(task["feature_mean"])) / torch.tensor(task["feature_std"])
        out = self.module(x)
        answers = []
        if task.get("problem") == "regression":
            values = (out[:, 0] * task["target_std"] + task["target_mean"]).tolist()
            answers = [{"value": round(v, 6)} for v in values]
        else:
            probs = torch.softmax(out.double(), dim=1)
            classes = task.get("classes")
            labels = classes if isinstance(classes, list) else list(range(probs.shape[1]))
            for p in probs.tolist():
                best = max(range(len(p)), key=lambda i: (p[i], -i))
                answers.append({"label": labels[best], "probabilities": [round(v, 6) for v in p]})
        found, start = [], 0
        for rows_of_one in batch:
            found.append(answers[start:start + len(rows_of_one)])
            start += len(rows_of_one)
        return found

    def _complete(self, batch: list[tuple[str, int, float]]) -> list[str]:
        import torch

        vocab = self.spec["task"]["vocab"]
        index = {c: i for i, c in enumerate(vocab) if i > 0}
        context = int(self.spec["model"]["context"])
        # Short prompts are left-padded with text the model saw in training (newlines), not <unk>,
        # which never appears in a training window and throws a tiny model off.
        pad = index.get("\n", index.get(" ", 0))
        windows = []
        for prompt, _, _ in batch:
            tokens = [index.get(c, 0) for c in prompt[-context:]]
            windows.append([pad] * (context - len(tokens)) + tokens)
        state = torch.tensor(windows, dtype=torch.int64)
        steps = max(n for _, n, _ in batch)
        temps = torch.tensor([t for _, _, t in batch], dtype=torch.float32).unsqueeze(1)
        generator = torch.Generator().manual_seed(int.from_bytes(blake2b_256(encode([p for p, _, _ in batch]))[:4], "big"))
        produced: list[list[int]] = [[] for _ in batch]
        for _ in range(steps):
            logits = self.module(state)
            logits[:, 0] = float("-inf")  # never emit <unk>
            greedy = logits.argmax(dim=1)
            sampled = torch.multinomial(torch.softmax(logits / temps.clamp(min=1e-3), dim=1), 1, generator=generator)[:, 0]
            nxt = torch.where(temps[:, 0] > 0, sampled, greedy)
            for i, token in enumerate(nxt.tolist()):
                produced[i].append(token)
            state = torch.cat([state[:, 1:], nxt.unsqueeze(1)], dim=1)
        return ["".join(vocab[t] for t in tokens[:n]) for tokens, (_, n, _) in zip(produced, batch)]


# ---------------------------------------------------------------- serving


@dataclass
class Job:
    """One paid request on its way through the batcher."""

    model_cid: str
    voucher: Voucher
    payload: Any
    result: Any = None
    error: tuple[int, str, str, Voucher | None] | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


class HostService:
    """Models, voucher checks against chain state, the ledger, and the batch step."""

    def __init__(self, host_key: bytes, genesis_hash: bytes, ledger: VoucherLedger, reader: Any) -> None:
        self.host = host_key
        self.genesis_hash = genesis_hash
        self.ledger = ledger
        self.reader = reader  # call(method, *params) against the node
        self.models: dict[str, ServedModel] = {}
        self._escrow: dict[bytes, tuple[float, int]] = {}
        self._redeemed: dict[tuple[bytes, str], tuple[int, int, int]] = {}
        self.lock = threading.Lock()
        self.stats = {"answered": 0, "rejected": 0, "batches": 0}

    def escrow_available(self, user: bytes, fresh: bool = False) -> int:
        cached = self._escrow.get(user)
        if fresh or cached is None or time.monotonic() - cached[0] > ESCROW_TTL_S:
            reply = self.reader("arena_escrow", "0x" + user.hex())
            cached = (time.monotonic(), int(reply["available"]))
            self._escrow[user] = cached
        return cached[1]

    def redeemed(self, user: bytes, model_cid: str) -> tuple[int, int, int]:
        key = (user, model_cid)
        if key not in self._redeemed:
            reply = self.reader("arena_voucherState", "0x" + user.hex(), "0x" + self.host.hex(), model_cid)
            self._redeemed[key] = (reply["cumulativeQueries"], reply["cumulativeAmount"], reply["nonce"])
        return self._redeemed[key]

    def forget_redeemed(self, model_cid: str) -> None:
        self._redeemed = {k: v for k, v in self._redeemed.items() if k[1] != model_cid}

    def check(self, voucher: Voucher, model: ServedModel) -> None:
        kwargs = {"genesis_hash": self.genesis_hash, "host": self.host, "model_cid": model.cid, "price": model.price,
                      "last": self.ledger.newest(voucher.user, model.cid), "redeemed": self.redeemed(voucher.user, model.cid)}
        try:
            check_voucher(voucher, escrow_available=self.escrow_available(voucher.user), **kwargs)  # type: ignore[arg-type]
        except VoucherRejected as exc:
            if exc.code != "escrow_exhausted":
                raise
            check_voucher(voucher, escrow_available=self.escrow_available(voucher.user, fresh=True), **kwargs)  # type: ignore[arg-type]

    def process(self, batch: list[Job]) -> None:
        """Verify in (user, nonce) order, answer per model in one pass, make accepted vouchers durable."""
        with self.lock:
            self.stats["batches"] += 1
            accepted: dict[str, list[Job]] = {}
            for job in sorted(batch, key=lambda j: (j.voucher.user, j.voucher.nonce)):
                model = self.models.get(job.model_cid)
                try:
                    if model is None:
                        raise VoucherRejected(404, "unknown_model", f"this host does not serve {job.model_cid}")
                    self.check(job.voucher, model)
                except VoucherRejected as exc:
                    job.error = (exc.status, exc.code, exc.message, exc.last)
                    continue
                except Exception as exc:  # noqa: BLE001 - the node is unreachable: refuse, do not guess
                    job.error = (503, "chain_unavailable", f"cannot read chain state: {exc}", None)
                    continue
                self.ledger.accept(job.voucher)
                accepted.setdefault(model.cid, []).append(job)
            try:
                for cid, jobs in accepted.items():
                    for job, answer in zip(jobs, self.models[cid].run([j.payload for j in jobs])):
                        job.result = answer
                self.ledger.commit()
            except Exception as exc:  # noqa: BLE001 - no answer, no charge
                self.ledger.discard()
                for jobs in accepted.values():
                    for job in jobs:
                        job.result, job.error = None, (500, "inference_failed", f"{type(exc).__name__}: {exc}", None)
            self.stats["answered"] += sum(1 for j in batch if j.error is None)
            self.stats["rejected"] += sum(1 for j in batch if j.error is not None)


class Batcher:
    """Collects concurrent requests and hands them to `HostService.process` in batches."""

    def __init__(self, service: HostService, max_batch: int = 32) -> None:
        self.service = service
        self.max_batch = max_batch
        self.send, self.receive = anyio.create_memory_object_stream[Job](1024)
        self.running = False

    async def submit(self, job: Job) -> Job:
        await self.send.send(job)
        await job.done.wait()
        return job

    async def loop(self) -> None:
        if self.running:  # started by the ASGI lifespan and by serve_in_thread: one loop is enough
            return
        self.running = True
        try:
            await self._loop()
        finally:
            self.running = False

    async def _loop(self) -> None:
        while True:
            batch = [await self.receive.receive()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.receive.receive_nowait())
                except anyio.WouldBlock:
                    break
            await anyio.to_thread.run_sync(self.service.process, batch)
            for job in batch:
                job.done.set()


def build_app(service: HostService, max_batch: int = 32) -> Starlette:
    """The host's ASGI app (module docstring)."""
    import contextlib

    batcher = Batcher(service, max_batch)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        async with anyio.create_task_group() as group:
            group.start_soon(batcher.loop)
            yield
            group.cancel_scope.cancel()

    async def paid(request: Request, endpoint: str) -> Response:
        raw = await _read_limited(request)
        if raw is None:
            return error_response(413, "input_too_large", f"request body over {MAX_BODY_BYTES} bytes")
        header = request.headers.get(VOUCHER_HEADER)
        if not header:
            return error_response(402, "payment_required", "send a signed voucher in the X-Arena-Voucher header "
                                                            "(docs/marketplace.md); GET /v1/models lists prices")
        try:
            voucher = Voucher.from_hex(header)
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise BadRequest(400, "bad_input", "the body must be a JSON object")
            cid = body.get("model") or voucher.model_cid
            model = service.models.get(cid)
            if model is None:
                raise BadRequest(404, "unknown_model", f"this host does not serve {cid}; see GET /v1/models")
            if model.endpoint != endpoint:
                raise BadRequest(400, "wrong_endpoint", f"model {cid} ({model.kind}) is served at /v1/{model.endpoint}")
            payload = model.parse(body)
        except VoucherError as exc:
            return error_response(400, "bad_voucher", str(exc))
        except (ValueError, UnicodeDecodeError) as exc:
            return error_response(400, "bad_json", f"the body is not JSON: {exc}")
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.message)
        job = await batcher.submit(Job(cid, voucher, payload))
        if job.error is not None:
            return error_response(*job.error)
        arena = {"host": service.host.hex(), "cost": model.price, "cumulativeAmount": voucher.cumulative_amount,
                 "cumulativeQueries": voucher.cumulative_queries, "nonce": voucher.nonce}
        if endpoint == "predict":
            return JSONResponse({"model": cid, "predictions": job.result, "arena": arena})
        if endpoint == "chat/completions":
            from node.offchain.llm_serving import completion_body, sse_chunks
            request_id = f"chatcmpl-{voucher.user.hex()[:8]}-{voucher.nonce}"
            if payload.stream:  # server-sent events, one per generated token (docs/task-kinds.md)
                return StreamingResponse(sse_chunks(job.result, cid, request_id, arena), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            return JSONResponse(completion_body(job.result, cid, request_id, arena))
        prompt, _, _ = payload
        return JSONResponse({
            "id": f"cmpl-{voucher.user.hex()[:8]}-{voucher.nonce}", "object": "text_completion",
            "created": int(time.time()), "model": cid,
            "choices": [{"text": job.result, "index": 0, "finish_reason": "length", "logprobs": None}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(job.result),
                      "total_tokens": len(prompt) + len(job.result)},
            "arena": arena})

    async def completions(request: Request) -> Response:
        return await paid(request, "completions")

    async def chat_completions(request: Request) -> Response:
        return await paid(request, "chat/completions")

    async def predict(request: Request) -> Response:
        return await paid(request, "predict")

    async def models(_request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "host": service.host.hex(), "data": [
            {"id": m.cid, "object": "model", "taskId": m.task_id, "kind": m.kind, "pricePerQuery": m.price,
             "endpoint": f"/v1/{m.endpoint}"} for m in service.models.values()]})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "models": len(service.models), **service.stats})

    app = Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                             Route("/v1/predict", predict, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"]),
                             Route("/health", health, methods=["GET"])], lifespan=lifespan)
    app.state.batcher = batcher  # serve_in_thread runs its loop: the guarded server runs no ASGI lifespan
    return app


async def _read_limited(request: Request) -> bytes | None:
    """The body, or None when it exceeds MAX_BODY_BYTES (stops reading at the limit)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def serve_in_thread(app: Starlette, port: int, stop: threading.Event) -> threading.Thread:
    """Run hypercorn on trio for `app` on 127.0.0.1:`port` in a thread until `stop` is set."""
    import trio

    from node.rpc import serve

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, app, "127.0.0.1", port)
            batcher = getattr(app.state, "batcher", None)
            if batcher is not None:
                nursery.start_soon(batcher.loop)
            while not stop.is_set():
                await trio.sleep(0.2)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,), name=f"host-http-{port}", daemon=True)
    thread.start()
    return thread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the worker


def _option(ctx: WorkerContext, name: str, env: str, default: Any) -> Any:
    value = ctx.options.get(name)
    if value is None and os.environ.get(env):
        value = os.environ[env]
    return default if value is None else value


class HostWorker(RoleLoop):
    """Bond, load top models, register, serve, report usage (module docstring)."""

    bond_role = "host"

    def setup(self) -> None:
        ctx = self.ctx
        self.port = int(_option(ctx, "port", "ARENA_HOST_PORT", 0)) or free_port()
        self.price = int(_option(ctx, "price", "ARENA_HOST_PRICE", DEFAULT_PRICE))
        self.endpoint = f"http://127.0.0.1:{self.port}"
        tasks = _option(ctx, "tasks", "ARENA_HOST_TASKS", None)
        if isinstance(tasks, str):
            tasks = tasks.replace(",", " ").split()
        self.only_tasks = None if tasks is None else {int(t) for t in tasks}
        genesis_hash = bytes.fromhex(self.chain.properties()["genesisHash"][2:])
        self.params = self.chain.call("arena_marketParams")
        self.report_blocks = int(_option(ctx, "report_blocks", "ARENA_HOST_REPORT_BLOCKS", self.params["periodBlocks"]))
        self.ledger = VoucherLedger(str(ctx.data_dir / "vouchers.sqlite"))
        self.service = HostService(self.ctx.key.public_key, genesis_hash, self.ledger, self.chain.call)
        self.http = serve_in_thread(build_app(self.service, int(ctx.options.get("max_batch", 32))), self.port, ctx.stop)
        self.last_report_block = int(self.state.data.get("last_report_block", 0))
        self.log.info("event=host_serving endpoint=%s price=%d report_blocks=%d", self.endpoint, self.price,
                      self.report_blocks)

    def step(self) -> None:
        self.sync_models()
        best = self.chain.best_number()
        if best >= self.last_report_block + self.report_blocks:
            self.report_all()
            self.last_report_block = best
            self.state.data["last_report_block"] = best
            self.state.save()

    def sync_models(self) -> None:
        """Load every top model not yet served, and keep the on-chain registration current."""
        for entry in self.chain.call("arena_marketModels"):
            cid, task_id = entry["modelCid"], entry["taskId"]
            if entry["kind"] not in ENDPOINTS or (self.only_tasks is not None and task_id not in self.only_tasks):
                continue
            if cid not in self.service.models:
                self.service.models[cid] = self.load(cid, task_id, entry["specCid"])
            mine = [h for h in entry["hosts"] if h["address"] == self.ctx.key.address]
            if not mine or mine[0]["endpoint"] != self.endpoint or mine[0]["pricePerQuery"] != self.price:
                self.chain.submit_once(f"register/{cid}/{self.endpoint}/{self.price}", "marketplace", "register_host",
                                       [cid, self.endpoint, self.price])
                self.log.info("event=host_registered model=%s task=%d endpoint=%s price=%d", cid, task_id,
                              self.endpoint, self.price)

    def load(self, cid: str, task_id: int, spec_cid: str) -> ServedModel:
        from node.offchain.ml import get_kind

        spec = json.loads(self.content.fetch(spec_cid, MAX_SPEC_BYTES, "spec"))
        kind = get_kind(spec["kind"])
        if kind.artifact == "folder":  # a LoRA adapter: merged into its base model and served as chat
            from node.offchain.folders import adapter_limits
            from node.offchain.llm_serving import ChatModel
            from node.offchain.llm_worker import fetch_base
            adapter = self.content.fetch_folder(cid, *adapter_limits(spec), "adapter")
            merged, base = kind.merged_model(spec, fetch_base(self, spec), adapter)  # type: ignore[attr-defined]
            self.log.info("event=model_loaded model=%s task=%d kind=%s base=%s", cid, task_id, spec["kind"],
                          spec["model"]["base_cid"])
            return ServedModel(cid, task_id, spec["kind"], spec, ChatModel(merged, base,
                               int(spec["limits"]["context_length"])), self.price)
        data = self.content.fetch(cid, int(spec["limits"]["max_model_bytes"]), "model")
        module = kind.load_model(spec, data)
        self.log.info("event=model_loaded model=%s task=%d kind=%s bytes=%d", cid, task_id, spec["kind"], len(data))
        return ServedModel(cid, task_id, spec["kind"], spec, module, self.price)

    def report_all(self) -> None:
        """Redeem every channel's newest unredeemed voucher, per model, in chunks."""
        limit = int(self.params["maxVouchersPerReport"])
        period = int(self.chain.call("arena_marketParams")["currentPeriod"])
        for cid in list(self.service.models):
            with self.service.lock:
                candidates = self.ledger.unreported(cid)
            pending = []
            for v in candidates:
                state = self.chain.call("arena_voucherState", "0x" + v.user.hex(), self.ctx.key.address, cid)
                if state["nonce"] >= v.nonce or state["cumulativeAmount"] >= v.cumulative_amount:
                    with self.service.lock:  # already redeemed (e.g. reported just before a crash)
                        self.ledger.mark_reported(cid, v.user, v.nonce)
                else:
                    pending.append(v)
            for start in range(0, len(pending), limit):
                chunk = pending[start:start + limit]
                digest = blake2b_256(encode([v.to_list() for v in chunk])).hex()[:16]
                try:
                    inclusion = self.chain.submit_once(f"report/{cid}/{period}/{digest}", "marketplace", "report_usage",
                                                       [cid, period, [v.to_list() for v in chunk]])
                except CallFailed as exc:
                    self.log.warning("event=report_failed model=%s period=%d vouchers=%d error=%s", cid, period,
                                     len(chunk), exc)
                    continue
                with self.service.lock:
                    for v in chunk:
                        self.ledger.mark_reported(cid, v.user, v.nonce)
                revenue = sum(e["data"][5] for e in inclusion.events if e["name"] == "UsageReported")
                self.log.info("event=usage_reported model=%s period=%d vouchers=%d revenue=%d block=%d", cid, period,
                              len(chunk), revenue, inclusion.block_number)
            self.service.forget_redeemed(cid)


def run(ctx: WorkerContext) -> None:
    """The host role's loop; returns when `ctx.stop` is set."""
    worker = HostWorker(ctx)
    try:
        worker.run()
    finally:
        ledger = getattr(worker, "ledger", None)
        if ledger is not None:
            with worker.service.lock:
                ledger.close()


__all__ = ["HostService", "ServedModel", "VoucherLedger", "build_app", "run"]
