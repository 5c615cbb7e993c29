"""`arena model chat` and `arena model publish`: the language-model side of the `arena model` CLI.

    arena model publish ./my-qwen --rpc URL            # a Hugging Face model folder → IPFS; prints its CID
    arena model chat 2 --key ferdie -m "What is 3 plus 4?" [--stream] [--max-tokens 64]
    arena model chat 2 --key ferdie                     # interactive: one line per user turn

`publish` checks the folder the way validators will (allowed files, an allowed architecture
whose weights match its config, a tokenizer with the ChatML tokens) before adding it, so a
planner learns of a problem before creating a task with ``--base-cid``.  `chat` pays per
reply with vouchers, like `arena model query`, and prints the reply as it streams in.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node.cli.common import finite_float, fmt_amount
from node.keystore import resolve_key
from node.rpc_client import DEFAULT_RPC


def cmd_publish(args: argparse.Namespace) -> int:
    import ipfshttpclient

    from node.offchain.folders import FolderRejected
    from node.offchain.ml.errors import ModelRejected
    from node.offchain.ml.llm import HARD_MAX_BASE_BYTES, HARD_MAX_BASE_PARAMS
    from node.offchain.ml.llm_base import BASE_FILES, load_base
    from node.urls import ipfs_api_multiaddr

    folder: Path = args.folder
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name in BASE_FILES}
    skipped = sorted(p.name for p in folder.iterdir() if p.name not in files)
    try:
        base = load_base(files, max_params=HARD_MAX_BASE_PARAMS, max_bytes=HARD_MAX_BASE_BYTES)
    except (ModelRejected, FolderRejected) as exc:
        print(f"error: {folder} is not a usable base model: {exc}", file=sys.stderr)
        return 1
    client = ipfshttpclient.client.Client(ipfs_api_multiaddr(args.rpc, args.ipfs_api), timeout=600)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / folder.name
        root.mkdir()
        for name, data in files.items():
            (root / name).write_bytes(data)
        added = client.add(str(root), recursive=True)
    entries = added if isinstance(added, list) else [added]
    cid = next(e["Hash"] for e in entries if e["Name"] == folder.name)
    info = {"cid": cid, "model_type": base.config.get("model_type"), "parameters": base.params,
            "files": sorted(files), "skipped": skipped}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{cid}\t{info['model_type']}\t{base.params} parameters\t{', '.join(sorted(files))}")
        if skipped:
            print(f"not published (not part of a base model folder): {', '.join(skipped)}", file=sys.stderr)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from node.offchain.user_client import ArenaModelClient, ModelQueryError

    client = ArenaModelClient(args.rpc, resolve_key(args.key), Path(args.state_dir) if args.state_dir else None)
    messages: list[dict] = [{"role": "system", "content": args.system}] if args.system else []
    turns = list(args.message) if args.message else None
    try:
        while True:
            if turns is not None:
                if not turns:
                    return 0
                text = turns.pop(0)
            else:
                try:
                    text = input("you> ")
                except EOFError:
                    return 0
                if not text.strip():
                    continue
            messages.append({"role": "user", "content": text})

            def show(piece: str) -> None:
                sys.stdout.write(piece)
                sys.stdout.flush()

            if turns is None or args.stream:
                sys.stdout.write("assistant> " if turns is None else "")
            answer = client.chat(args.model, messages, max_tokens=args.max_tokens, temperature=args.temperature,
                                 stream=args.stream, on_delta=show, host=args.host)
            if not args.stream:
                sys.stdout.write(answer.output)
            sys.stdout.write("\n")
            if not answer.output:  # a small model may end its turn at once: say so, not just a blank line
                usage = answer.response.get("usage") or {}
                print(f"(the model ended its reply without text: finish reason "
                      f"{answer.response['choices'][0].get('finish_reason')}, "
                      f"{usage.get('completion_tokens', 0)} tokens)", file=sys.stderr)
            if args.json:
                print(json.dumps(answer.response, indent=2))
            print(f"[paid {fmt_amount(answer.cost)} to {answer.host[:10]}… for model {answer.model_cid}; "
                  f"channel total {fmt_amount(answer.cumulative_amount)}]", file=sys.stderr)
            messages.append({"role": "assistant", "content": answer.output})
    except ModelQueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def register(model_sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """Add `chat` and `publish` under `arena model`; returns the parsers (they take --rpc)."""
    chat = model_sub.add_parser("chat", help="chat with a fine-tuned LLM (causal_lm_lora task), paying per reply")
    chat.add_argument("model", help="task id or model CID")
    chat.add_argument("--key", required=True, help="paying account: dev name, key file, keystore name or //NAME")
    chat.add_argument("-m", "--message", action="append", help="a user turn (repeatable); none: interactive")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--stream", action="store_true", help="stream the reply (server-sent events)")
    chat.add_argument("--max-tokens", type=int, default=64)
    chat.add_argument("--temperature", type=finite_float, default=0.0)
    chat.add_argument("--host", help="a host address or endpoint (default: the cheapest)")
    chat.add_argument("--state-dir", help="where voucher state is kept (default ~/.arena/client)")
    chat.add_argument("--json", action="store_true", help="print the host's whole reply")
    chat.set_defaults(func=cmd_chat)
    publish = model_sub.add_parser("publish", help="add a Hugging Face model folder to IPFS (checked like a "
                                                   "validator would); prints its CID for --base-cid")
    publish.add_argument("folder", type=Path)
    publish.add_argument("--ipfs-api", help="IPFS API multiaddr or URL (default: the node's RPC port)")
    publish.add_argument("--json", action="store_true")
    publish.set_defaults(func=cmd_publish)
    for parser in (chat, publish):
        parser.add_argument("--rpc", default=DEFAULT_RPC)
    return [chat, publish]
