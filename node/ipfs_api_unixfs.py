"""Kubo RPC calls over the embedded store's files, directories, pins and blocks.

`unixfs_routes(store)` serves `add` (files and directories: `recursive`, `wrap-with-directory`,
`cid-version`, `raw-leaves`), `get` (a file or a whole directory as tar), `ls`, `files/stat`
(`CumulativeSize`, `Blocks`), `pin/ls`, `pin/rm`, `block/stat`, `block/put` and `id` (with the
public key). `ipfs_routes` mounts them ahead of its own routes when the store is the embedded one.
Paths may be `CID`, `CID/dir/file` or `/ipfs/CID/dir/file`.
"""

from __future__ import annotations

import base64
import json
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import anyio
import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node import ipfs_api
from node.ipfs_api import (
    ApiError,
    MultipartEvents,
    UploadTruncated,
    _Import,
    _kubo_errors,
    fetch_timeout,
    gzip_stream,
    query_arg,
    query_bool,
    query_int,
)
from p2p.content.cid import RAW, Cid, parse_cid, parse_path
from p2p.content.dagpb import decode_pbnode
from p2p.content.directory import TYPE_DIRECTORY, walk
from p2p.content.errors import InvalidBlock, UnsupportedOption
from p2p.content.store import EmbeddedContentStore
from p2p.content.tree import TreeImport, ls, resolve
from p2p.content.unixfs import CHUNK_SIZE, iter_file, read_file_node


def tree_options(request: Request) -> dict[str, Any]:
    """Validate `add` options; what this store cannot do is refused with the reason."""
    cid_version = query_int(request, "cid-version", 0)
    if cid_version not in (0, 1):
        raise UnsupportedOption(f"cid-version={cid_version}: only 0 and 1 exist")
    raw = request.query_params.get("raw-leaves")
    chunker = request.query_params.get("chunker") or "size-262144"
    if chunker not in ("size-262144", "default"):
        raise UnsupportedOption(f"chunker {chunker!r} is not supported: only size-{CHUNK_SIZE} "
                                "(Kubo's default) is implemented")
    for flag in ("trickle", "nocopy", "inline", "fscache"):
        if query_bool(request, flag, False):
            raise UnsupportedOption(f"{flag}=true is not supported by this node's content store")
    hash_name = request.query_params.get("hash") or "sha2-256"
    if hash_name != "sha2-256":
        raise UnsupportedOption(f"hash {hash_name!r} is not supported: only sha2-256")
    return {"cid_version": cid_version, "raw_leaves": None if raw in (None, "") else query_bool(request, "raw-leaves", False),
            "pin": query_bool(request, "pin", True), "only_hash": query_bool(request, "only-hash", False),
            "wrap": query_bool(request, "wrap-with-directory", False)}


def part_path(headers: dict[str, str]) -> tuple[str, bool]:
    """(path, is directory) of a multipart part; ipfshttpclient URL-quotes the whole path."""
    ctype, _ = parse_options_header(headers.get("content-type", ""))
    _, params = parse_options_header(headers.get("content-disposition", ""))
    raw = params.get(b"filename", b"").decode("latin-1")
    path = urllib.parse.unquote(raw).strip("/")
    if any(part in ("..", ".") for part in path.split("/")):
        raise ApiError(f"path {path!r} in the upload leaves its directory")
    return path, ctype == b"application/x-directory"


class _TreeFile:
    """Looks like a ContentStore to `_Import`: its one file goes into the tree at `path`."""

    def __init__(self, tree: TreeImport, path: str) -> None:
        self.tree = tree
        self.path = path

    def add_file(self, fileobj: BinaryIO, pin: bool = True, only_hash: bool = False) -> tuple[str, int]:
        result = self.tree.add_file(self.path, fileobj)
        return str(result.cid), result.size


async def receive_tree(request: Request, tree: TreeImport) -> list[tuple[str, str, int]]:
    """Stream every part of the multipart body into `tree`; (name, cid, size) per file."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError("add expects a multipart/form-data body with a 'file' field")
    events = MultipartEvents(params[b"boundary"])
    added: list[tuple[str, str, int]] = []
    current: _Import | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        try:
            async for chunk in request.stream():
                for kind, value in events.feed(chunk):
                    if kind == "part":
                        path, is_dir = part_path(value)
                        if is_dir:
                            tree.add_directory(path)
                            continue
                        current = _Import(path)
                        tasks.start_soon(current.run, cast(Any, _TreeFile(tree, path)),
                                         {"pin": False, "only_hash": tree.only_hash})
                    elif kind == "data" and current is not None:
                        await current.send(bytes(value))
                    elif kind == "end" and current is not None:
                        cid, size = await current.finish()
                        added.append((current.name.rsplit("/", 1)[-1] if "/" not in current.name
                                      else current.name, cid, size))
                        current = None
            if not events.finished:
                raise UploadTruncated("the upload ended before its closing multipart boundary; "
                                      "nothing was recorded as stored")
        except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
            failure = exc
            if current is not None:
                await current.abort(f"upload interrupted: {exc or type(exc).__name__}")
    if isinstance(failure, ClientDisconnect):
        raise UploadTruncated("the client disconnected during the upload; nothing was stored")
    if isinstance(failure, MultipartParseError):
        raise ApiError(f"malformed multipart body: {failure}")
    if failure is not None:
        raise failure
    return added


def tar_tree(store: EmbeddedContentStore, root: Cid, name: str) -> Iterator[bytes]:
    """A tar archive of the file or directory `root`, named `name`, as `ipfs get` returns it."""
    now = int(time.time())
    for path, cid, kind, size in walk(store.blocks.get, root, name):
        info = tarfile.TarInfo(path)
        info.mtime = now
        if kind == TYPE_DIRECTORY:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            continue
        info.size, info.mode = size, 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield from iter_file(store.blocks.get, cid)
        yield b"\0" * (-size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def unixfs_routes(store: EmbeddedContentStore) -> list[Route]:
    """The routes above, for the embedded store."""
    blocks = store.blocks

    async def add(request: Request) -> Response:
        options = tree_options(request)
        tree = TreeImport(blocks, options["cid_version"], options["raw_leaves"], options["only_hash"])
        try:
            added = await receive_tree(request, tree)
            if not added and not tree.builder.finish(None)[:-1]:
                raise ApiError("no file part found in the multipart body (expected field 'file')")
            dirs = await anyio.to_thread.run_sync(tree.finish, options["wrap"], options["pin"])
        finally:
            tree.close()
        rows = [*added, *[(path, str(result.cid), result.size) for path, result in dirs]]
        lines = [json.dumps({"Name": name, "Hash": cid, "Size": str(size)}) for name, cid, size in rows]
        return Response("\n".join(lines) + "\n", media_type="application/json",
                        headers={"X-Chunked-Output": "1"})

    async def get(request: Request) -> Response:
        path = query_arg(request)
        await store.fetch(path, fetch_timeout(request))
        target = await anyio.to_thread.run_sync(resolve, blocks, path)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        parts: Iterator[bytes] = tar_tree(store, target, name)
        if query_bool(request, "compress", False):
            level = query_int(request, "compression-level", -1)
            parts = gzip_stream(parts, -1 if level is None or not -1 <= level <= 9 else level)
        return StreamingResponse(ipfs_api.guarded_stream(parts, "get"), media_type="application/x-tar",
                                 headers={"X-Stream-Output": "1"})

    async def ls_(request: Request) -> Response:
        objects = []
        for path in request.query_params.getlist("arg") or [query_arg(request)]:
            await store.fetch(path, fetch_timeout(request))
            entries = await anyio.to_thread.run_sync(ls, blocks, path)
            links = []
            for entry in entries:
                size = 0
                if entry.kind != TYPE_DIRECTORY:
                    size = read_file_node(entry.cid, blocks.get(entry.cid)).filesize
                links.append({"Name": entry.name, "Hash": str(entry.cid), "Size": size,
                              "Type": entry.kind, "Target": ""})
            objects.append({"Hash": path, "Links": links})
        return JSONResponse({"Objects": objects})

    async def files_stat(request: Request) -> Response:
        path = query_arg(request)
        if not path.startswith("/ipfs/"):
            raise ApiError(f"only /ipfs/ paths can be stat'ed here (there is no MFS), got {path!r}")
        local = store.has(path)
        if not local:
            await store.fetch(path, fetch_timeout(request))
        target = await anyio.to_thread.run_sync(resolve, blocks, path)
        block = blocks.get(target)
        reply: dict[str, Any]
        if target.codec == RAW:
            reply = {"Hash": str(target), "Size": len(block), "CumulativeSize": len(block), "Blocks": 0,
                     "Type": "file"}
        else:
            node = decode_pbnode(block)
            cumulative = len(block) + sum(link.tsize for link in node.links)
            links = len(node.links)
            try:
                size, kind = read_file_node(target, block).filesize, "file"
            except InvalidBlock:
                size, kind = 0, "directory"
            reply = {"Hash": str(target), "Size": size, "CumulativeSize": cumulative, "Blocks": links,
                     "Type": kind}
        if query_bool(request, "with-local", False):
            reply.update({"WithLocality": True, "Local": local})
        return JSONResponse(reply)

    async def pin_ls(request: Request) -> Response:
        kind = request.query_params.get("type") or "all"
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise ApiError(f"invalid type {kind!r}, must be one of {{direct, indirect, recursive, all}}")
        pins = {str(cid): {"Type": "recursive"} for cid in blocks.pins()} if kind in ("all", "recursive") else {}
        wanted = request.query_params.getlist("arg")
        if wanted:
            selected = {}
            for path in wanted:
                cid = str(parse_path(path)[0])
                if cid not in pins:
                    raise ApiError(f"path '{path}' is not pinned")
                selected[cid] = pins[cid]
            pins = selected
        return JSONResponse({"Keys": pins})

    async def pin_rm(request: Request) -> Response:
        if not query_bool(request, "recursive", True):
            raise ApiError("only recursive pins exist here; omit recursive=false")
        removed = []
        for path in request.query_params.getlist("arg") or [query_arg(request)]:
            cid = parse_path(path)[0]
            if not blocks.is_pinned(cid):
                raise ApiError("not pinned or pinned indirectly")
            blocks.unpin(cid)
            removed.append(str(cid))
        return JSONResponse({"Pins": removed})

    async def block_stat(request: Request) -> Response:
        path = query_arg(request)
        cid = await anyio.to_thread.run_sync(resolve, blocks, path) if "/" in path.strip("/").removeprefix(
            "ipfs/") else parse_cid(path)
        block = blocks.get_or_none(cid)
        if block is None:
            await store.fetch(str(cid), fetch_timeout(request))
            block = blocks.get(cid)
        return JSONResponse({"Key": str(cid), "Size": len(block)})

    async def block_put(request: Request) -> Response:
        codec = request.query_params.get("cid-codec") or request.query_params.get("format") or "raw"
        codecs = {"raw": RAW, "dag-pb": 0x70, "v0": 0x70, "protobuf": 0x70}
        if codec not in codecs:
            raise UnsupportedOption(f"cid-codec {codec!r} is not supported: raw or dag-pb")
        mhtype = request.query_params.get("mhtype") or "sha2-256"
        if mhtype != "sha2-256":
            raise UnsupportedOption(f"mhtype {mhtype!r} is not supported: only sha2-256")
        events = MultipartEvents(parse_options_header(request.headers.get("content-type", ""))[1].get(
            b"boundary", b"-"))
        data = bytearray()
        async for chunk in request.stream():
            for kind, value in events.feed(chunk):
                if kind == "data":
                    data += value
                if len(data) > blocks.max_block_size:
                    raise ApiError(f"block is over the {blocks.max_block_size}-byte limit")
        if not events.finished:
            raise UploadTruncated("the upload ended before its closing multipart boundary")
        block = bytes(data)
        cid = Cid.for_dag_pb_block(block)
        if codecs[codec] == RAW or request.query_params.get("cid-version") == "1":
            cid = Cid(1, codecs[codec], cid.multihash)
        if codecs[codec] != RAW:
            decode_pbnode(block)  # raises InvalidBlock for bytes that are not dag-pb
        blocks.put(cid, block)
        if query_bool(request, "pin", False):
            blocks.pin(cid)
        return JSONResponse({"Key": str(cid), "Size": len(block)})

    async def node_id(request: Request) -> Response:
        info = await anyio.to_thread.run_sync(store.node_info)
        if store.exchange is not None and not info.get("PublicKey"):
            key = store.exchange.host.get_public_key()
            info["PublicKey"] = base64.b64encode(key.serialize()).decode("ascii")
            info["Protocols"] = list(store.exchange.protocols)
        return JSONResponse(info)

    handlers = {"add": add, "get": get, "ls": ls_, "files/stat": files_stat, "pin/ls": pin_ls,
                "pin/rm": pin_rm, "block/stat": block_stat, "block/put": block_put, "id": node_id}
    return [Route(f"/api/v0/{path}", _kubo_errors(handler), methods=["POST"])
            for path, handler in handlers.items()]
