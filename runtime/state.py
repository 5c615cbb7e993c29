"""State access for the runtime: a layered overlay over a read-only backend.

Each extrinsic runs in its own layer so a failed call's writes are discarded while its fee stays
paid. The block's net changes are handed to the node, which commits them atomically.
"""
from __future__ import annotations

from collections.abc import Callable

Backend = Callable[[bytes], bytes | None]
_DELETED = None


class Overlay:
    """Key/value view: writes go to the top layer; reads fall through to the backend."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._layers: list[dict[bytes, bytes | None]] = [{}]

    def get(self, key: bytes) -> bytes | None:
        for layer in reversed(self._layers):
            if key in layer:
                return layer[key]
        return self._backend(key)

    def set(self, key: bytes, value: bytes) -> None:
        self._layers[-1][key] = value

    def delete(self, key: bytes) -> None:
        self._layers[-1][key] = _DELETED

    def begin(self) -> None:
        """Open a transactional layer."""
        self._layers.append({})

    def commit(self) -> None:
        """Merge the top layer into the one below."""
        top = self._layers.pop()
        self._layers[-1].update(top)

    def rollback(self) -> None:
        """Discard the top layer's writes."""
        self._layers.pop()

    def changes(self) -> dict[bytes, bytes | None]:
        """Net writes of all committed layers (None = deleted)."""
        if len(self._layers) != 1:
            raise RuntimeError("changes() with an open transactional layer")
        return dict(self._layers[0])
