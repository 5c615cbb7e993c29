"""State access for the runtime: a layered overlay over a read-only backend.

Each extrinsic runs in its own layer so a failed call's writes are discarded while its fee stays
paid. The block's net changes are handed to the node, which commits them atomically.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import cast

Backend = Callable[[bytes], bytes | None]
_DELETED = None
_UNSET = object()  # in a journal: the key had no write before the layer


class Overlay:
    """Key/value view: writes go to the top layer; reads fall through to the backend.

    The layers are kept as one dict of net writes plus, per open layer, a journal of what each
    key it wrote held before, so a read is one lookup however deep the layers are and a rollback
    restores the journal. `cache_reads` keeps every backend value read: for an overlay that
    applies a block, during which the backend does not change (a key is read for the pool
    check, the fee and the call alike).
    """

    def __init__(self, backend: Backend, cache_reads: bool = False) -> None:
        self._backend = backend
        self._writes: dict[bytes, bytes | None] = {}
        self._journals: list[dict[bytes, object]] = []
        self._reads: dict[bytes, bytes | None] | None = {} if cache_reads else None

    def get(self, key: bytes) -> bytes | None:
        writes = self._writes
        if key in writes:
            return writes[key]
        reads = self._reads
        if reads is None:
            return self._backend(key)
        if key in reads:
            return reads[key]
        value = reads[key] = self._backend(key)
        return value

    def set(self, key: bytes, value: bytes) -> None:
        self._write(key, value)

    def delete(self, key: bytes) -> None:
        self._write(key, _DELETED)

    def _write(self, key: bytes, value: bytes | None) -> None:
        if self._journals:
            journal = self._journals[-1]
            if key not in journal:
                journal[key] = self._writes.get(key, _UNSET)
        self._writes[key] = value

    def begin(self) -> None:
        """Open a transactional layer."""
        self._journals.append({})

    def commit(self) -> None:
        """Merge the top layer into the one below."""
        top = self._journals.pop()
        if self._journals:
            below = self._journals[-1]
            for key, previous in top.items():
                below.setdefault(key, previous)

    def rollback(self) -> None:
        """Discard the top layer's writes."""
        top = self._journals.pop()
        writes = self._writes
        for key, previous in top.items():
            if previous is _UNSET:
                del writes[key]
            else:
                writes[key] = cast("bytes | None", previous)

    def changes(self) -> dict[bytes, bytes | None]:
        """Net writes of all committed layers (None = deleted)."""
        if self._journals:
            raise RuntimeError("changes() with an open transactional layer")
        return dict(self._writes)
