"""Kubo RPC calls over the embedded store's files, directories, pins and blocks.

`unixfs_routes(store)` serves `add` (files and directories: `recursive`, `wrap-with-directory`,
`cid-version`, `raw-leaves`), `get` (a file or a whole directory as tar), `ls`, `files/stat`
(`CumulativeSize`, `Blocks`), `pin/ls`, `pin/rm`, `block/stat`, `block/put` and `id` (with the
public key). `ipfs_routes` mounts them ahead of its own routes when the store is the embedded one.
Paths may be `CID`, `CID/dir/file` or `/ipfs/CID/dir/file`.
"""

from __future__ import annotations

import base64
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, BinaryIO

import anyio
import anyio.to_thread
from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.ipfs_http import (
    ApiError,
    UploadTruncated,
    add_reply,
    compression_level,
    fetch_timeout,
    guarded_stream,
    gzip_stream,
    kubo_errors,
    query_arg,
    query_bool,
    query_int,
)
from node.ipfs_upload import AddFile, MultipartEvents, receive_parts
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


async def receive_tree(request: Request, tree: TreeImport) -> list[tuple[str, str, int]]:
    """Stream every part of the multipart body into `tree`; (path, cid, size) per file."""

    def begin(headers: dict[str, str]) -> tuple[str, AddFile] | None:
        path, is_dir = part_path(headers)
        if is_dir:
            tree.add_directory(path)
            return None

        def add_file(fileobj: BinaryIO) -> tuple[str, int]:
            result = tree.add_file(path, fileobj)
            return str(result.cid), result.size
        return path, add_file

    return await receive_parts(request, begin, "the upload ended before its closing multipart boundary; "
                                               "nothing was recorded as stored")


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


def stat_reply(blocks: Any, target: Cid) -> dict[str, Any]:
    """`files/stat` of a resolved block: Size, CumulativeSize, Blocks (its links) and Type."""
    block = blocks.get(target)
    if target.codec == RAW:
        return {"Hash": str(target), "Size": len(block), "CumulativeSize": len(block), "Blocks": 0, "Type": "file"}
    node = decode_pbnode(block)
    cumulative = len(block) + sum(link.tsize for link in node.links)
    try:
        size, kind = read_file_node(target, block).filesize, "file"
    except InvalidBlock:
        size, kind = 0, "directory"
    return {"Hash": str(target), "Size": size, "CumulativeSize": cumulative, "Blocks": len(node.links), "Type": kind}


class UnixfsApi:
    """The handlers over the embedded store's trees, pins and blocks; each an `/api/v0/<command>` endpoint."""

    def __init__(self, store: EmbeddedContentStore) -> None:
        self.store = store
        self.blocks = store.blocks

    def handlers(self) -> dict[str, Any]:
        return {"add": self.add, "get": self.get, "ls": self.ls_, "files/stat": self.files_stat,
                "pin/ls": self.pin_ls, "pin/rm": self.pin_rm, "block/stat": self.block_stat,
                "block/put": self.block_put, "id": self.node_id}

    async def add(self, request: Request) -> Response:
        options = tree_options(request)
        tree = TreeImport(self.blocks, options["cid_version"], options["raw_leaves"], options["only_hash"])
        try:
            added = await receive_tree(request, tree)
            if not added and not tree.builder.finish(None)[:-1]:
                raise ApiError("no file part found in the multipart body (expected field 'file')")
            dirs = await anyio.to_thread.run_sync(tree.finish, options["wrap"], options["pin"])
        finally:
            tree.close()
        return add_reply([*added, *[(path, str(result.cid), result.size) for path, result in dirs]])

    async def get(self, request: Request) -> Response:
        path = query_arg(request)
        await self.store.fetch(path, fetch_timeout(request))
        target = await anyio.to_thread.run_sync(resolve, self.blocks, path)
        name = path.rstrip("/").rsplit("/", 1)[-1]
        parts: Iterator[bytes] = tar_tree(self.store, target, name)
        level = compression_level(request)
        if level is not None:
            parts = gzip_stream(parts, level)
        return StreamingResponse(guarded_stream(parts, "get"), media_type="application/x-tar",
                                 headers={"X-Stream-Output": "1"})

    async def ls_(self, request: Request) -> Response:
        objects = []
        for path in request.query_params.getlist("arg") or [query_arg(request)]:
            await self.store.fetch(path, fetch_timeout(request))
            entries = await anyio.to_thread.run_sync(ls, self.blocks, path)
            links = []
            for entry in entries:
                size = 0
                if entry.kind != TYPE_DIRECTORY:
                    size = read_file_node(entry.cid, self.blocks.get(entry.cid)).filesize
                links.append({"Name": entry.name, "Hash": str(entry.cid), "Size": size,
                              "Type": entry.kind, "Target": ""})
            objects.append({"Hash": path, "Links": links})
        return JSONResponse({"Objects": objects})

    async def files_stat(self, request: Request) -> Response:
        path = query_arg(request)
        if not path.startswith("/ipfs/"):
            raise ApiError(f"only /ipfs/ paths can be stat'ed here (there is no MFS), got {path!r}")
        local = self.store.has(path)
        if not local:
            await self.store.fetch(path, fetch_timeout(request))
        target = await anyio.to_thread.run_sync(resolve, self.blocks, path)
        reply = stat_reply(self.blocks, target)
        if query_bool(request, "with-local", False):
            reply.update({"WithLocality": True, "Local": local})
        return JSONResponse(reply)

    async def pin_ls(self, request: Request) -> Response:
        kind = request.query_params.get("type") or "all"
        if kind not in ("all", "recursive", "direct", "indirect"):
            raise ApiError(f"invalid type {kind!r}, must be one of {{direct, indirect, recursive, all}}")
        pins = {str(cid): {"Type": "recursive"} for cid in self.blocks.pins()} if kind in ("all", "recursive") else {}
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

    async def pin_rm(self, request: Request) -> Response:
        if not query_bool(request, "recursive", True):
            raise ApiError("only recursive pins exist here; omit recursive=false")
        removed = []
        for path in request.query_params.getlist("arg") or [query_arg(request)]:
            cid = parse_path(path)[0]
            if not self.blocks.is_pinned(cid):
                raise ApiError("not pinned or pinned indirectly")
            self.blocks.unpin(cid)
            removed.append(str(cid))
        return JSONResponse({"Pins": removed})

    async def block_stat(self, request: Request) -> Response:
        path = query_arg(request)
        cid = await anyio.to_thread.run_sync(resolve, self.blocks, path) if "/" in path.strip("/").removeprefix(
            "ipfs/") else parse_cid(path)
        block = self.blocks.get_or_none(cid)
        if block is None:
            await self.store.fetch(str(cid), fetch_timeout(request))
            block = self.blocks.get(cid)
        return JSONResponse({"Key": str(cid), "Size": len(block)})

    async def block_put(self, request: Request) -> Response:
        codec = request.query_params.get("cid-codec") or request.query_params.get("format") or "raw"
        codecs = {"raw": RAW, "dag-pb": 0x70, "v0": 0x70, "protobuf": 0x70}
        if codec not in codecs:
            raise UnsupportedOption(f"cid-codec {codec!r} is not supported: raw or dag-pb")
        mhtype = request.query_params.get("mhtype") or "sha2-256"
        if mhtype != "sha2-256":
            raise UnsupportedOption(f"mhtype {mhtype!r} is not supported: only sha2-256")
        block = await self.receive_block(request)
        cid = Cid.for_dag_pb_block(block)
        if codecs[codec] == RAW or request.query_params.get("cid-version") == "1":
            cid = Cid(1, codecs[codec], cid.multihash)
        if codecs[codec] != RAW:
            decode_pbnode(block)  # raises InvalidBlock for bytes that are not dag-pb
        self.blocks.put(cid, block)
        if query_bool(request, "pin", False):
            self.blocks.pin(cid)
        return JSONResponse({"Key": str(cid), "Size": len(block)})

    async def receive_block(self, request: Request) -> bytes:
        """The data of `block/put`'s multipart body, refused once it passes the block size limit."""
        events = MultipartEvents(parse_options_header(request.headers.get("content-type", ""))[1].get(
            b"boundary", b"-"))
        data = bytearray()
        async for chunk in request.stream():
            for kind, value in events.feed(chunk):
                if kind == "data":
                    data += value
                if len(data) > self.blocks.max_block_size:
                    raise ApiError(f"block is over the {self.blocks.max_block_size}-byte limit")
        if not events.finished:
            raise UploadTruncated("the upload ended before its closing multipart boundary")
        return bytes(data)

    async def node_id(self, request: Request) -> Response:
        info = await anyio.to_thread.run_sync(self.store.node_info)
        if self.store.exchange is not None and not info.get("PublicKey"):
            key = self.store.exchange.host.get_public_key()
            info["PublicKey"] = base64.b64encode(key.serialize()).decode("ascii")
            info["Protocols"] = list(self.store.exchange.protocols)
        return JSONResponse(info)


def unixfs_routes(store: EmbeddedContentStore) -> list[Route]:
    """The routes of `UnixfsApi` over the embedded store (POST, Kubo-shaped errors)."""
    return [Route(f"/api/v0/{path}", kubo_errors(handler), methods=["POST"])
            for path, handler in UnixfsApi(store).handlers().items()]
