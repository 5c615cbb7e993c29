"""The host's HTTP API: paid OpenAI-style queries (one per request, or many in one `/v1/batch`), free listings.

    POST /v1/completions        char_lm / custom_text        header X-Arena-Voucher
    POST /v1/chat/completions   causal_lm_lora (SSE with `stream: true`)
    POST /v1/predict            digits_classifier / custom_csv
    POST /v1/batch              {"queries": [{"voucher": hex, ...the body of one query...}, ...]}
    GET  /v1/models, GET /health   free

Each paid query carries its own signed voucher. A request is parsed and its input checked
here (`BadRequest`, before any voucher is spent); the batcher (node.offchain.host_service)
decides and answers it together with concurrent requests. `/v1/batch` answers up to
`MAX_BATCH_QUERIES` queries in one HTTP exchange: `{"results": [{"status", "body"}, ...]}`,
each body what the query's own endpoint would have answered (no streaming), so a client with
many queries pays one HTTP round trip for all of them. Served on 127.0.0.1 by uvicorn + httptools on
asyncio, with the node's HTTP guards (node.offchain.host_server).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.offchain.host_models import BadRequest, ServedModel
from node.offchain.host_service import Batcher, HostService, Job
from node.offchain.vouchers import Voucher, VoucherError

VOUCHER_HEADER = "x-arena-voucher"
MAX_BODY_BYTES = 64 * 1024
MAX_BATCH_QUERIES = 64
MAX_BATCH_BODY_BYTES = MAX_BATCH_QUERIES * 16 * 1024
PAYMENT_HELP = "send a signed voucher in the X-Arena-Voucher header (docs/marketplace.md); GET /v1/models lists prices"


def error_body(code: str, message: str, last: Voucher | None = None) -> dict:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if last is not None:
        body["error"]["lastVoucher"] = last.to_hex()
    return body


def error_response(status: int, code: str, message: str, last: Voucher | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, last), status_code=status)


def parse_query(service: HostService, voucher_hex: Any, body: Any, endpoint: str | None) -> Job:
    """One paid query as a job (`BadRequest` for a bad voucher or input); `endpoint` None: the model's own."""
    if not voucher_hex or not isinstance(voucher_hex, str):
        raise BadRequest(402, "payment_required", PAYMENT_HELP)
    try:
        voucher = Voucher.from_hex(voucher_hex)
    except VoucherError as exc:
        raise BadRequest(400, "bad_voucher", str(exc)) from None
    if not isinstance(body, dict):
        raise BadRequest(400, "bad_input", "the body must be a JSON object")
    cid = body.get("model") or voucher.model_cid
    model = service.models.get(cid) if isinstance(cid, str) else None
    if model is None:
        raise BadRequest(404, "unknown_model", f"this host does not serve {cid}; see GET /v1/models")
    if endpoint is not None and model.endpoint != endpoint:
        raise BadRequest(400, "wrong_endpoint", f"model {cid} ({model.kind}) is served at /v1/{model.endpoint}")
    return Job(cid, voucher, model.parse(body))


def answer_body(job: Job, model: ServedModel, host_hex: str) -> dict:
    """The JSON answer of an accepted query, by its model's endpoint (chat without streaming)."""
    voucher, cid = job.voucher, job.model_cid
    arena = {"host": host_hex, "cost": model.price, "cumulativeAmount": voucher.cumulative_amount,
             "cumulativeQueries": voucher.cumulative_queries, "nonce": voucher.nonce}
    if model.endpoint == "predict":
        return {"model": cid, "predictions": job.result, "arena": arena}
    if model.endpoint == "chat/completions":
        from node.offchain.llm_serving import completion_body
        return completion_body(job.result, cid, f"chatcmpl-{voucher.user.hex()[:8]}-{voucher.nonce}", arena)
    prompt, _, _ = job.payload
    return {"id": f"cmpl-{voucher.user.hex()[:8]}-{voucher.nonce}", "object": "text_completion",
            "created": int(time.time()), "model": cid,
            "choices": [{"text": job.result, "index": 0, "finish_reason": "length", "logprobs": None}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(job.result),
                      "total_tokens": len(prompt) + len(job.result)},
            "arena": arena}


class HostApp:
    """The request handlers of `build_app`, over one service and its batcher."""

    def __init__(self, service: HostService, batcher: Batcher) -> None:
        self.service, self.batcher = service, batcher
        self.host_hex = service.host.hex()

    async def paid(self, request: Request, endpoint: str) -> Response:
        """One paid query: parse, wait for the batcher's decision, answer."""
        raw = await read_body(request, MAX_BODY_BYTES)
        if isinstance(raw, Response):
            return raw
        try:
            job = parse_query(self.service, request.headers.get(VOUCHER_HEADER), json.loads(raw or b"{}"), endpoint)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return error_response(400, "bad_json", f"the body is not JSON: {exc}")
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.message)
        await self.batcher.submit([job])
        if job.error is not None:
            return error_response(*job.error)
        model = self.service.models[job.model_cid]
        if endpoint == "chat/completions" and job.payload.stream:  # server-sent events, one per token
            from node.offchain.llm_serving import sse_chunks
            voucher = job.voucher
            arena = answer_body(job, model, self.host_hex)["arena"]
            return StreamingResponse(sse_chunks(job.result, job.model_cid,
                                                f"chatcmpl-{voucher.user.hex()[:8]}-{voucher.nonce}", arena),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return JSONResponse(answer_body(job, model, self.host_hex))

    async def batch(self, request: Request) -> Response:
        """Up to MAX_BATCH_QUERIES paid queries in one request, each with its own voucher and result."""
        raw = await read_body(request, MAX_BATCH_BODY_BYTES)
        if isinstance(raw, Response):
            return raw
        try:
            queries = json.loads(raw or b"{}").get("queries")
        except (ValueError, UnicodeDecodeError, AttributeError, RecursionError) as exc:
            return error_response(400, "bad_json", f"the body is not a JSON object: {exc}")
        if not isinstance(queries, list) or not 1 <= len(queries) <= MAX_BATCH_QUERIES:
            return error_response(400, "bad_input", f'give "queries": a list of 1..{MAX_BATCH_QUERIES} query bodies, '
                                                    'each with its "voucher" (hex)')
        results: list[dict | None] = [None] * len(queries)
        jobs = self._parse_batch(queries, results)
        if jobs:
            await self.batcher.submit([job for _, job in jobs])
        for i, job in jobs:
            if job.error is not None:
                status, code, message, last = job.error
                results[i] = {"status": status, "body": error_body(code, message, last)}
            else:
                results[i] = {"status": 200, "body": answer_body(job, self.service.models[job.model_cid],
                                                                 self.host_hex)}
        return JSONResponse({"results": results})

    def _parse_batch(self, queries: list, results: list[dict | None]) -> list[tuple[int, Job]]:
        """Jobs of the well-formed queries; refusals go to `results`, and so does every later query of a
        channel with a refused one (its voucher, signed on top of the refused one, would pay for it)."""
        jobs: list[tuple[int, Job]] = []
        refused: set[tuple[bytes, str]] = set()
        for i, query in enumerate(queries):
            voucher_hex = query.get("voucher") if isinstance(query, dict) else None
            try:
                job = parse_query(self.service, voucher_hex, query, None)
                if getattr(job.payload, "stream", False):
                    raise BadRequest(400, "bad_input", "streaming is only available at /v1/chat/completions")
                if (job.voucher.user, job.voucher.model_cid) in refused:
                    raise BadRequest(409, "previous_refused", "an earlier voucher of this channel in the batch was "
                                                              "refused; sign again from the channel's newest")
                jobs.append((i, job))
            except BadRequest as exc:
                results[i] = {"status": exc.status, "body": error_body(exc.code, exc.message)}
                try:
                    voucher = Voucher.from_hex(voucher_hex if isinstance(voucher_hex, str) else "")
                    refused.add((voucher.user, voucher.model_cid))
                except VoucherError:
                    pass
        return jobs

    async def models(self, _request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "host": self.host_hex, "data": [
            {"id": m.cid, "object": "model", "taskId": m.task_id, "kind": m.kind, "pricePerQuery": m.price,
             "endpoint": f"/v1/{m.endpoint}"} for m in self.service.models.values()]})

    async def health(self, _request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "models": len(self.service.models), **self.service.stats})


def build_app(service: HostService, max_batch: int = 256) -> Starlette:
    """The host's ASGI app (module docstring); `max_batch` queries at most per ledger commit."""
    import contextlib

    batcher = Batcher(service, max_batch)
    handlers = HostApp(service, batcher)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        async with anyio.create_task_group() as group:
            group.start_soon(batcher.loop)
            yield
            group.cancel_scope.cancel()

    def paid(endpoint: str) -> Any:
        async def handler(request: Request) -> Response:
            return await handlers.paid(request, endpoint)
        return handler

    app = Starlette(routes=[Route("/v1/completions", paid("completions"), methods=["POST"]),
                            Route("/v1/chat/completions", paid("chat/completions"), methods=["POST"]),
                            Route("/v1/predict", paid("predict"), methods=["POST"]),
                            Route("/v1/batch", handlers.batch, methods=["POST"]),
                            Route("/v1/models", handlers.models, methods=["GET"]),
                            Route("/health", handlers.health, methods=["GET"])], lifespan=lifespan)
    return app


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The body, or the answer to give instead: 413 past `limit` bytes (the rest is never read), or, when
    the client left (or the server dropped it as too slow), a 400 that nobody reads."""
    try:
        raw = await read_limited(request, limit)
    except ClientDisconnect:
        return error_response(400, "client_left", "the connection closed before the whole body arrived")
    if raw is None:
        return error_response(413, "input_too_large", f"request body over {limit} bytes")
    return raw


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds `limit` bytes (stops reading at the limit)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def serve_in_thread(app: Starlette, port: int, stop: threading.Event) -> threading.Thread:
    """Serve `app` on 127.0.0.1:`port` from a thread until `stop` is set (node.offchain.host_server)."""
    from node.offchain import host_server

    return host_server.serve_in_thread(app, port, stop)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
