"""yamux as Arena runs it: window credit returned in bulk, as go-yamux does (issue 17).

py-libp2p 0.8.1's `YamuxStream` answers nearly every read with a WINDOW_UPDATE frame: a pubsub
message is read as a varint length (one read per byte) and a body, and each read whose data
leaves the window below its target sends one, so every gossip message cost the reader 2-4 tiny
frames back (each built, encrypted, sent, then read, decrypted and handled by the sender):
~5 % of a node's profile at 1,500 submitted transfers/s, plus the sender's share. The library
also reads its PY_YAMUX_* tuning variables from the environment on every frame (~1 %).

`BulkCreditYamuxStream` credits what was read once it reaches half the receive window's target
(go-yamux's `sendWindowUpdate` hysteresis), still doubling the target window when updates come
faster than 4 RTTs (the library's auto-tuning). A sender can never have more than the window in
flight, and a reader that keeps reading always returns credit before the sender runs dry
(the sender still holds half a window when the update goes out). `install()` makes the library
create this class for every yamux stream of the process, and reads PY_YAMUX_* once.
"""

from __future__ import annotations

import os

from libp2p.stream_muxer.yamux import yamux as library


class BulkCreditYamuxStream(library.YamuxStream):
    """A yamux stream that returns receive-window credit in half-window steps."""

    async def _auto_tune_and_send_window_update(self, *, bytes_read: int = 0) -> None:
        increment = 0
        async with self.window_lock:
            self._pending_recv_release += max(0, bytes_read)
            pending = self._pending_recv_release
            if pending > 0 and pending >= self._grow_threshold():
                self._pending_recv_release = 0
                self.recv_window += pending
                buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
                increment = pending + self._apply_autotune_epoch(buffered)
        if increment > 0:
            # never under window_lock: the peer's WINDOW_UPDATE handling needs it
            await self.send_window_update(increment, skip_lock=True)


def install() -> None:
    """Make py-libp2p's yamux create `BulkCreditYamuxStream`s, and read PY_YAMUX_* once."""
    settings = {key: value for key, value in os.environ.items() if key.startswith("PY_YAMUX_")}

    def read_once(name: str, default: str = "") -> str:
        return settings.get(f"PY_YAMUX_{name}", default)

    def is_set(name: str) -> bool:
        return f"PY_YAMUX_{name}" in settings

    library._py_yamux_env = read_once  # type: ignore[assignment]
    library._py_yamux_env_set = is_set  # type: ignore[assignment]
    library.YamuxStream = BulkCreditYamuxStream  # type: ignore[misc]
