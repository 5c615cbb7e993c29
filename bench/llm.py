"""`causal_lm_lora` figures, each beside the raw limit of the same model measured in the same run.

* LoRA training tokens/s (`kind.train`: peft, AdamW on the adapter, ChatML batches) beside the
  bare forward and forward+backward tokens/s of the same base model (float32, same batch shape);
* held-out evaluation tokens/s (`kind.evaluate`: defensive load, float64, one thread, integer
  score) beside the bare float32 forward of base + adapter over the same examples;
* adapters scored per minute including the IPFS fetch (a real `arena node --dev`, its Kubo API,
  per-file caps from `ls`) beside the same without the fetch;
* paid chat completions per second through the real host app (hypercorn, vouchers, ledger)
  beside bare generation of the same replies.

The model is the demo's: a Qwen2-architecture base of ~128 k parameters built and pretrained
locally, rank-8 LoRA on q_proj/v_proj.  `python -m bench.llm`; about a minute on a quiet CPU.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import print_rows, row

ROOT = Path(__file__).resolve().parent.parent
TRAIN_STEPS = 20
CHATS = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _dev_node(base: Path) -> tuple[subprocess.Popen, str]:
    from node.rpc_client import RpcClient

    port = _free_port()
    log = open(base / "node.log", "ab")  # noqa: SIM115 - the child keeps the descriptor
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "node", "--dev", "--base-path", str(base / "node"),
                             "--rpc-port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            RpcClient(url, timeout=2).call("system_health")
            return proc, url
        except Exception:  # noqa: BLE001 - still starting
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the dev node did not start")


def run() -> list[dict]:
    import torch

    from node.offchain.llm_serving import ChatModel
    from node.offchain.ml import get_kind
    from node.offchain.ml.llm_base import collate, token_losses

    torch.set_num_threads(1)
    kind: Any = get_kind("causal_lm_lora")
    prepared = kind.prepare(None, 2024)
    spec, base_files = prepared.spec, prepared.folders["base"]
    spec["model"]["base_cid"] = "QmBench"
    base = kind.load_base(spec, base_files)
    train_examples = kind.decode_examples(spec, prepared.train_bytes, "train", base)
    heldout = kind.decode_examples(spec, prepared.heldout_bytes, "heldout", base)
    batch_size = spec["training"]["batch_size"]
    batch = train_examples[:batch_size]
    batch_tokens = sum(len(ids) for ids, _ in batch)
    ids, mask, labels = collate(batch, base.eos)

    # raw limits: the bare base model, float32, the same batch shape
    model = base.model.float().train()

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        token_losses(model, ids, mask, labels).mean().backward()

    fwd_bwd()
    _, seconds = _timed(lambda: [fwd_bwd() for _ in range(TRAIN_STEPS)])
    bare_train = TRAIN_STEPS * batch_tokens / seconds
    model.eval()
    with torch.inference_mode():
        _, seconds = _timed(lambda: [model(input_ids=ids, attention_mask=mask) for _ in range(TRAIN_STEPS)])
    bare_forward = TRAIN_STEPS * batch_tokens / seconds

    # LoRA training through the kind: time between the first and the last step's progress callback
    stamps: list[float] = []
    adapter = kind.train(spec, prepared.train_bytes, epochs=2, lr=0.01, seed=1, base_files=base_files,
                         max_steps=TRAIN_STEPS + 1, progress=lambda step, total, loss: stamps.append(time.perf_counter()))
    mean_tokens = sum(len(i) for i, _ in train_examples) / len(train_examples)
    lora_train = TRAIN_STEPS * batch_size * mean_tokens / (stamps[-1] - stamps[0])

    # evaluation through the kind beside a bare float32 forward of base + adapter over the same examples
    heldout_tokens = sum(len(i) for i, _ in heldout)
    result, eval_seconds = _timed(kind.evaluate, spec, adapter, prepared.heldout_bytes, base_files=base_files)
    merged, merged_base = kind.merged_model(spec, base_files, adapter)
    with torch.inference_mode():
        def bare_eval() -> None:
            for start in range(0, len(heldout), spec["metric"]["eval_batch_size"]):
                b_ids, b_mask, _ = collate(heldout[start:start + spec["metric"]["eval_batch_size"]], merged_base.eos)
                merged(input_ids=b_ids, attention_mask=b_mask)
        bare_eval()
        _, bare_seconds = _timed(bare_eval)

    # adapters scored per minute with and without the IPFS fetch through a real node's Kubo API
    import ipfshttpclient

    from node.offchain.context import rpc_to_ipfs_multiaddr
    from node.offchain.folders import adapter_limits, read_folder

    rows_fetch: list[float] = []
    with tempfile.TemporaryDirectory(prefix="arena-bench-llm-") as tmp:
        proc, url = _dev_node(Path(tmp))
        try:
            client = ipfshttpclient.client.Client(rpc_to_ipfs_multiaddr(url), timeout=60)
            folder = Path(tmp) / "adapter"
            folder.mkdir()
            for name, data in adapter.items():
                (folder / name).write_bytes(data)
            cid = next(e["Hash"] for e in client.add(str(folder), recursive=True) if e["Name"] == "adapter")
            for _ in range(3):
                start = time.perf_counter()
                files = read_folder(client, cid, *adapter_limits(spec), "adapter")
                kind.evaluate(spec, files, prepared.heldout_bytes, base_files=base_files)
                rows_fetch.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    fetched_per_min = 60.0 / (sum(rows_fetch) / len(rows_fetch))

    untrained = kind.train(spec, prepared.train_bytes, epochs=1, lr=0.01, seed=1, base_files=base_files,
                           quality="poor")
    poor = kind.evaluate(spec, untrained, prepared.heldout_bytes, base_files=base_files)

    # paid chat completions through the real host app, beside bare generation
    chat = ChatModel(merged, merged_base, spec["limits"]["context_length"])
    questions = [{"role": "user", "content": f"What is {i} plus {i + 3}?"} for i in range(CHATS)]
    requests = [chat.parse({"messages": [q], "max_tokens": 16}) for q in questions]
    _, bare_gen_seconds = _timed(chat.run, requests)
    paid_rate = _paid_chats(chat, spec, questions)

    return [
        row("LoRA training tokens/s (peft, AdamW on the adapter)", lora_train, "tokens/s",
            "bare forward+backward, same base model", bare_train),
        row("LoRA training tokens/s", lora_train, "tokens/s", "bare forward, same base model", bare_forward),
        row("held-out evaluation tokens/s (float64, integer score)", heldout_tokens / eval_seconds, "tokens/s",
            "bare float32 forward, base + adapter", heldout_tokens / bare_seconds),
        row("adapters scored/min incl. IPFS fetch (dev node)", fetched_per_min, "adapters/min",
            "adapters scored/min without the fetch", 60.0 / eval_seconds),
        row("paid chat completions/s through the host (16 tokens)", paid_rate, "chats/s",
            "bare generation, same replies", CHATS / bare_gen_seconds),
        row(f"held-out loss after {TRAIN_STEPS + 1} LoRA steps", result.loss_ppb / 1e9, "nats/token",
            "held-out loss of the base (one 1e-5 step)", poor.loss_ppb / 1e9),
    ]


def raw_adapter_rate(task: dict, spec: dict, ipfs: Any, seconds: float = 5.0) -> float:
    """Bare float32 forward passes of a finished task's loadable adapters (merged into the base) over its
    held-out chats, per minute: the raw limit beside the validators' adapters/min in bench/lifecycle.py."""
    import torch

    from node.offchain.folders import FolderRejected, adapter_limits, base_limits, read_folder
    from node.offchain.ml import MLError, get_kind
    from node.offchain.ml.llm_base import collate
    from node.offchain.ml.sealing import decode_share, open_with_key

    kind: Any = get_kind(spec["kind"])
    share = decode_share(bytes(ipfs.cat(task["validationShare"])))
    heldout_bytes = open_with_key(share.ciphertext, bytes.fromhex(task["auditKey"][2:]))
    base_files = read_folder(ipfs, spec["model"]["base_cid"], *base_limits(spec), "base")
    models = []
    for entry in task["trainers"]:
        if not entry.get("modelCid"):
            continue
        try:
            adapter = read_folder(ipfs, entry["modelCid"], *adapter_limits(spec), "adapter")
            models.append(kind.merged_model(spec, base_files, adapter))
        except (MLError, FolderRejected):
            continue  # the broken adapter does not load raw either
    if not models:
        return 0.0
    examples = kind.decode_examples(spec, heldout_bytes, "heldout", models[0][1])
    size = spec["metric"]["eval_batch_size"]
    count, start = 0, time.perf_counter()
    with torch.inference_mode():
        while (elapsed := time.perf_counter() - start) < seconds:
            model, base = models[count % len(models)]
            for begin in range(0, len(examples), size):
                ids, mask, _ = collate(examples[begin:begin + size], base.eos)
                model(input_ids=ids, attention_mask=mask)
            count += 1
    return count * 60.0 / elapsed


def _paid_chats(chat: Any, spec: dict, questions: list[dict]) -> float:
    import httpx

    from node.offchain.host_ledger import VoucherLedger
    from node.offchain.host_worker import HostService, ServedModel, build_app, free_port, serve_in_thread
    from node.offchain.vouchers import sign_voucher
    from runtime.crypto import Keypair

    genesis, price = b"\x07" * 32, 1000
    host, user = Keypair.from_dev_name("bench-host"), Keypair.from_dev_name("bench-user")

    def chain(method: str, *params: object) -> dict:
        if method == "arena_escrow":
            return {"available": 10**15}
        return {"cumulativeQueries": 0, "cumulativeAmount": 0, "nonce": 0}

    with tempfile.TemporaryDirectory(prefix="arena-bench-chat-") as tmp:
        ledger = VoucherLedger(str(Path(tmp) / "vouchers.sqlite"))
        service = HostService(host.public_key, genesis, ledger, chain)
        service.models["QmChat"] = ServedModel("QmChat", 0, "causal_lm_lora", spec, chat, price)
        stop = threading.Event()
        port = free_port()
        thread = serve_in_thread(build_app(service), port, stop)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        vouchers = [sign_voucher(user, genesis, host.public_key, "QmChat", n, n * price, n).to_hex()
                    for n in range(1, len(questions) + 1)]
        start = time.perf_counter()
        with httpx.Client(timeout=60) as http:
            for voucher, question in zip(vouchers, questions):
                reply = http.post(f"{url}/v1/chat/completions", headers={"X-Arena-Voucher": voucher},
                                  json={"model": "QmChat", "messages": [question], "max_tokens": 16})
                reply.raise_for_status()
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join(10)
        ledger.close()
    return len(questions) / elapsed


if __name__ == "__main__":
    print_rows(run())
