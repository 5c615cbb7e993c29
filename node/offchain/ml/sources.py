"""Reading a planner's own data files, with limits and line-numbered errors."""

from __future__ import annotations

from pathlib import Path

from node.offchain.ml.errors import DataRejected

MAX_SOURCE_BYTES = 64 * 2**20


def read_source_text(source: str | None, *, what: str) -> str:
    """UTF-8 text of the file at `source` (``\\r\\n`` normalised); `DataRejected` otherwise."""
    if source is None:
        raise DataRejected(f"{what} needs a source file path; got None")
    path = Path(source)
    if not path.is_file():
        raise DataRejected(f"{what} source {source!r} is not a readable file")
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise DataRejected(
            f"{what} source {source!r} is {size} bytes, over the {MAX_SOURCE_BYTES}-byte limit"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataRejected(
            f"{source}: line {line}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataRejected(f"{source}: line {line}: NUL byte; this does not look like a text file")
    return text.replace("\r\n", "\n")
