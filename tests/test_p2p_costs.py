"""Per-message costs of py-libp2p that Arena removes (issue 17), on real hosts on 127.0.0.1.

The sender's signed peer record rides on every pubsub RPC; it is verified once per peer (and
again only when it changes), not on every RPC. Messages are not signed by the library (every
payload carries its own signature); their id binds the payload, so a forged (origin, seqno)
cannot shadow another message.
"""

from __future__ import annotations

from pathlib import Path

import libp2p.pubsub.utils as library_utils
import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2

from p2p.gossip import Topic, Verdict, message_id
from tests.p2p_helpers import run_trio, start_line, wait_until


def test_peer_records_are_verified_once_per_peer_not_per_rpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verified: list[bytes] = []
    library_check = library_utils.consume_envelope

    def counting(data: bytes, domain: str):  # the library's ed25519 check of a peer record
        verified.append(data)
        return library_check(data, domain)

    monkeypatch.setattr(library_utils, "consume_envelope", counting)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await start_line(nursery, tmp_path, count=2)
            got: list[bytes] = []

            def validate(peer: str, payload: object) -> Verdict:
                assert isinstance(payload, bytes)
                got.append(payload)
                return Verdict.ACCEPT

            b.set_validator(Topic.VOTES, validate)
            before = len(verified)
            for index in range(60):
                await a.publish(Topic.VOTES, b"vote-%d" % index)
                await trio.sleep(0.01)  # separate RPCs, each with the sender record
            await wait_until(lambda: len(got) == 60, "all votes at B")
            # Without the cache: one ed25519 verification per RPC (>= 60 here).
            assert len(verified) - before < 10
            nursery.cancel_scope.cancel()

    run_trio(scenario)


def test_message_id_binds_the_payload() -> None:
    first = rpc_pb2.Message(data=b"real", from_id=b"peer", seqno=(7).to_bytes(8, "big"))
    forged = rpc_pb2.Message(data=b"other", from_id=b"peer", seqno=(7).to_bytes(8, "big"))
    assert message_id(first) != message_id(forged)
    assert message_id(first) == message_id(rpc_pb2.Message(data=b"real", from_id=b"peer", seqno=(7).to_bytes(8, "big")))
