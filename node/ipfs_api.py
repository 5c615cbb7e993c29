"""The Kubo RPC subset that ipfshttpclient 0.7.0 uses, served from any ContentStore.

`ipfs_routes(store)` returns Starlette routes for `/api/v0/{add,cat,get,pin/add,block/get,files/stat,
id,version,repo/gc}` (all POST, as Kubo requires), mounting node/ipfs_api_unixfs.py's routes ahead of
them when the store is the embedded one, and a Kubo-shaped 404/405 for every other command.
Kubo's error shapes and query options are in node/ipfs_http.py, the streaming upload in
node/ipfs_upload.py.
"""

from __future__ import annotations

import json
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

from node.ipfs_api_unixfs import unixfs_routes
from node.ipfs_http import (
    ApiError,
    add_reply,
    compression_level,
    fetch_timeout,
    guarded_stream,
    gzip_stream,
    kubo_error,
    kubo_errors,
    query_arg,
    query_bool,
    query_int,
)
from node.ipfs_upload import AddFile, receive_parts
from p2p.content.abc import ContentStore
from p2p.content.errors import ContentError, ContentNotFound, UnsupportedOption
from p2p.content.store import EmbeddedContentStore
from p2p.content.unixfs import CHUNK_SIZE

API_VERSION = "0.7.0"  # the Kubo API level ipfshttpclient 0.7.0 accepts in connect()


def add_options(request: Request) -> dict[str, bool]:
    """Validate `add` options; anything but Kubo's defaults is refused with the reason."""
    cid_version = query_int(request, "cid-version", 0)
    if cid_version != 0:
        raise UnsupportedOption(f"cid-version={cid_version} is not supported: this node makes CIDv0 "
                                "only (Kubo's default); omit cid-version")
    if query_bool(request, "raw-leaves", False):
        raise UnsupportedOption("raw-leaves=true is not supported: leaves are dag-pb UnixFS nodes "
                                "(Kubo's default for CIDv0); omit raw-leaves")
    chunker = request.query_params.get("chunker") or "size-262144"
    if chunker not in ("size-262144", "default"):
        raise UnsupportedOption(f"chunker {chunker!r} is not supported: only size-{CHUNK_SIZE} "
                                "(Kubo's default) is implemented")
    for flag in ("trickle", "wrap-with-directory", "nocopy", "inline", "fscache"):
        if query_bool(request, flag, False):
            raise UnsupportedOption(f"{flag}=true is not supported by this node's content store")
    hash_name = request.query_params.get("hash") or "sha2-256"
    if hash_name != "sha2-256":
        raise UnsupportedOption(f"hash {hash_name!r} is not supported: only sha2-256")
    return {"pin": query_bool(request, "pin", True), "only_hash": query_bool(request, "only-hash", False)}


def part_filename(headers: dict[str, str]) -> str:
    """The file name of a part (ipfshttpclient URL-quotes it); directories are refused."""
    ctype, _ = parse_options_header(headers.get("content-type", ""))
    if ctype == b"application/x-directory":
        raise UnsupportedOption("adding directories is not supported: add files one by one")
    _, params = parse_options_header(headers.get("content-disposition", ""))
    raw = params.get(b"filename", b"").decode("latin-1")
    return urllib.parse.unquote(raw).rsplit("/", 1)[-1]


async def receive_files(request: Request, store: ContentStore,
                        options: dict[str, bool]) -> list[tuple[str, str, int]]:
    """Stream every file part of the multipart body into the store; (name, cid, size) each."""

    def begin(headers: dict[str, str]) -> tuple[str, AddFile]:
        def add_file(fileobj: BinaryIO) -> tuple[str, int]:
            return store.add_file(fileobj, pin=options["pin"], only_hash=options["only_hash"])
        return part_filename(headers), add_file

    added = await receive_parts(request, begin, "the upload ended before its closing multipart boundary; "
                                                "the partial file was not stored")
    if not added:
        raise ApiError("no file part found in the multipart body (expected field 'file')")
    return [(name or cid, cid, size) for name, cid, size in added]


def tar_stream(name: str, size: int, body: Iterator[bytes]) -> Iterator[bytes]:
    """A one-file tar archive, as `ipfs get` returns for a file: header, data, padding, end."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    written = 0
    for piece in body:
        written += len(piece)
        yield piece
    if written != size:
        raise ContentError(f"{name}: produced {written} bytes but the root block says {size}")
    yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


class FileApi:
    """The handlers over one store's files; each is an `/api/v0/<command>` endpoint."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store

    def handlers(self) -> dict[str, Any]:
        return {"add": self.add, "cat": self.cat, "get": self.get, "pin/add": self.pin_add,
                "block/get": self.block_get, "files/stat": self.files_stat, "id": self.node_id,
                "version": self.version, "repo/gc": self.repo_gc}

    async def add(self, request: Request) -> Response:
        options = add_options(request)
        return add_reply(await receive_files(request, self.store, options))

    async def cat(self, request: Request) -> Response:
        cid = query_arg(request)
        offset = query_int(request, "offset", 0) or 0
        length = query_int(request, "length", None)
        if offset < 0:
            raise ApiError(f"cannot specify negative offset, got {offset}")
        await self.store.fetch(cid, fetch_timeout(request))
        size = await anyio.to_thread.run_sync(self.store.file_size, cid)
        body = await anyio.to_thread.run_sync(self.store.cat, cid, offset, length)
        remaining = max(0, size - offset) if length is None or length < 0 else max(0, min(length, size - offset))
        return StreamingResponse(guarded_stream(body, "cat"), media_type="text/plain",
                                 headers={"X-Content-Length": str(remaining), "X-Stream-Output": "1"})

    async def get(self, request: Request) -> Response:
        cid = query_arg(request)
        await self.store.fetch(cid, fetch_timeout(request))
        size = await anyio.to_thread.run_sync(self.store.file_size, cid)
        name = cid.rstrip("/").rsplit("/", 1)[-1]
        parts = tar_stream(name, size, await anyio.to_thread.run_sync(self.store.cat, cid))
        level = compression_level(request)
        if level is not None:
            parts = gzip_stream(parts, level)
        return StreamingResponse(guarded_stream(parts, "get"), media_type="application/x-tar",
                                 headers={"X-Stream-Output": "1"})

    async def pin_add(self, request: Request) -> Response:
        if not query_bool(request, "recursive", True):
            raise ApiError("only recursive pins are supported; omit recursive=false")
        cids = request.query_params.getlist("arg")
        if not cids:
            raise ApiError("argument \"ipfs-path\" is required")
        timeout = fetch_timeout(request)
        for cid in cids:
            await self.store.fetch(cid, timeout)
            await anyio.to_thread.run_sync(self.store.pin, cid)
        return JSONResponse({"Pins": cids})

    async def block_get(self, request: Request) -> Response:
        cid = query_arg(request)
        try:
            block = await anyio.to_thread.run_sync(self.store.get_block, cid)
        except ContentNotFound:
            await self.store.fetch(cid, fetch_timeout(request))  # pulls the DAG rooted at this block
            block = await anyio.to_thread.run_sync(self.store.get_block, cid)
        return Response(block, media_type="application/octet-stream")

    async def files_stat(self, request: Request) -> Response:
        path = query_arg(request)
        if not path.startswith("/ipfs/"):
            raise ApiError(f"only /ipfs/CID paths can be stat'ed here (there is no MFS), got {path!r}")
        cid = path[len("/ipfs/"):].rstrip("/")
        local = await anyio.to_thread.run_sync(self.store.has, cid)
        if not local:
            await self.store.fetch(cid, fetch_timeout(request))
        size = await anyio.to_thread.run_sync(self.store.file_size, cid)
        reply: dict[str, Any] = {"Hash": cid, "Size": size, "Type": "file"}
        if query_bool(request, "with-local", False):
            reply.update({"WithLocality": True, "Local": local})
        return JSONResponse(reply)

    async def repo_gc(self, request: Request) -> Response:
        removed = await anyio.to_thread.run_sync(self.store.gc)
        if query_bool(request, "quiet", False):
            return Response(b"", media_type="application/json", headers={"X-Chunked-Output": "1"})
        lines = "".join(json.dumps({"Key": {"/": cid}}) + "\n" for cid in removed)
        return Response(lines, media_type="application/json", headers={"X-Chunked-Output": "1"})

    async def node_id(self, request: Request) -> Response:
        return JSONResponse(await anyio.to_thread.run_sync(self.store.node_info))

    async def version(self, request: Request) -> Response:
        return JSONResponse({"Version": API_VERSION, "Commit": "arena", "Repo": "10",
                             "System": "arena-embedded", "Golang": "none"})


def ipfs_routes(store: ContentStore) -> list[Route]:
    """Kubo RPC routes (`/api/v0/...`, POST) serving `store`; mount them into the RPC app."""
    routes = [Route(f"/api/v0/{path}", kubo_errors(handler), methods=["POST"])
              for path, handler in FileApi(store).handlers().items()]
    if isinstance(store, EmbeddedContentStore):  # directories, pins, blocks: node/ipfs_api_unixfs.py
        routes = unixfs_routes(store) + routes
    known = {route.path for route in routes}

    async def unknown(request: Request) -> Response:
        command = request.path_params["command"]
        if f"/api/v0/{command}" in known:
            return kubo_error(f"{request.method} is not allowed for /api/v0/{command}: use POST", 405)
        return kubo_error(f"unknown command /api/v0/{command[:100]}", 404)

    every_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return [*routes, Route("/api/v0/{command:path}", unknown, methods=every_method)]  # Kubo-shaped errors for the rest
