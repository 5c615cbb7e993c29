"""Multipart uploads for `/api/v0/add`: parse the body as it arrives and stream each file part into a
content store from a worker thread, so a file is never held whole in memory and a truncated upload
is never recorded as stored.

`receive_parts(request, begin, truncated)` is the one upload loop; its callers (node/ipfs_api.py for
single files, node/ipfs_api_unixfs.py for directory trees) say only where each part goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, BinaryIO, cast

import anyio
import anyio.from_thread
import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from node.ipfs_http import ApiError, UploadTruncated

# python-multipart logs a warning for every malformed upload; the client already gets a Kubo error for it
logging.getLogger("python_multipart").setLevel(logging.ERROR)

PIPE_DEPTH = 8  # upload chunks buffered between the HTTP reader and the import thread

AddFile = Callable[[BinaryIO], tuple[str, int]]  # a file object → (cid, size), run in a worker thread
# a part's headers → (its name, where its bytes go), or None for a part that carries no file bytes
BeginPart = Callable[[dict[str, str]], tuple[str, AddFile] | None]


class UploadPipe:
    """A blocking binary file object for the import thread, fed chunk by chunk from the event loop."""

    def __init__(self) -> None:
        self.send_stream, self._receive = anyio.create_memory_object_stream[Any](PIPE_DEPTH)
        self._buffer = memoryview(b"")
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        """Called in the import thread: the next bytes of the part, b"" at its end."""
        while not self._buffer and not self._eof:
            item = anyio.from_thread.run(self._receive.receive)
            if item is None:
                self._eof = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._buffer = memoryview(item)
        if size is None or size < 0 or size >= len(self._buffer):
            out, self._buffer = bytes(self._buffer), memoryview(b"")
        else:
            out, self._buffer = bytes(self._buffer[:size]), self._buffer[size:]
        return out

    def close_reader(self) -> None:
        """Stop accepting chunks (the import ended or failed): senders get BrokenResourceError."""
        self._receive.close()


class MultipartEvents:
    """python-multipart callbacks turned into a list of ("part", headers) / ("data", b) / ("end",)."""

    def __init__(self, boundary: bytes) -> None:
        self.finished = False
        self._events: list[tuple[str, Any]] = []
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self._events.append(("part", self._headers)),
            "on_part_data": self._data,
            "on_part_end": lambda: self._events.append(("end", None)),
            "on_end": self._end,
        })

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field.clear()
        self._value.clear()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            if self._events and self._events[-1][0] == "data":
                self._events[-1][1].extend(data[start:end])
            else:
                self._events.append(("data", bytearray(data[start:end])))

    def _end(self) -> None:
        self.finished = True

    def feed(self, chunk: bytes) -> list[tuple[str, Any]]:
        """Parse one body chunk; return the events it completed."""
        self._parser.write(chunk)
        events, self._events = self._events, []
        return events


def multipart_boundary(request: Request) -> bytes:
    """The boundary of a multipart/form-data body, or ApiError."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError("add expects a multipart/form-data body with a 'file' field")
    return bytes(params[b"boundary"])


class FileImport:
    """One file part being imported by a worker thread."""

    def __init__(self, name: str, add_file: AddFile) -> None:
        self.name = name
        self.add_file = add_file
        self.pipe = UploadPipe()
        self.done = anyio.Event()
        self.result: tuple[str, int] | None = None
        self.error: BaseException | None = None

    async def run(self) -> None:
        try:
            self.result = await anyio.to_thread.run_sync(self.add_file, cast(BinaryIO, self.pipe))
        except Exception as exc:  # noqa: BLE001 - reported to the client by the request handler
            self.error = exc
        finally:
            self.pipe.close_reader()
            self.done.set()

    async def send(self, item: Any) -> None:
        try:
            await self.pipe.send_stream.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the import already ended; its error is reported below

    async def finish(self) -> tuple[str, int]:
        await self.send(None)
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    async def abort(self, reason: str) -> None:
        await self.send(UploadTruncated(reason))
        await self.done.wait()


async def receive_parts(request: Request, begin: BeginPart, truncated: str) -> list[tuple[str, str, int]]:
    """Stream every file part of the multipart body where `begin` says; (name, cid, size) per file.

    `truncated` is the message for a body that ends before its closing boundary.
    """
    events = MultipartEvents(multipart_boundary(request))
    added: list[tuple[str, str, int]] = []
    current: FileImport | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tasks:
        try:
            async for chunk in request.stream():
                for kind, value in events.feed(chunk):
                    if kind == "part":
                        target = begin(value)
                        if target is not None:
                            current = FileImport(*target)
                            tasks.start_soon(current.run)
                    elif kind == "data" and current is not None:
                        await current.send(bytes(value))
                    elif kind == "end" and current is not None:
                        cid, size = await current.finish()
                        added.append((current.name, cid, size))
                        current = None
            if not events.finished:
                raise UploadTruncated(truncated)
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
