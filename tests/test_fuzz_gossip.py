"""Fuzz every gossip message decoder (blocks, finality votes and justifications, extrinsic
batches, status answers): arbitrary bytes and arbitrary msgpack structures either decode or raise
the decoder's declared error — never anything else, which would be a crash in a gossip validator."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.grandpa import FinalityError, Justification, SignedVote
from node.finality import decode_finality_message
from p2p.batcher import BatchDecodeError, decode_batch
from runtime.codec import CodecError, encode
from runtime.types import Block, Extrinsic

EXAMPLES = int(os.environ.get("ARENA_FUZZ_EXAMPLES", "200"))
DECLARED = (CodecError, ValueError)      # FinalityError and BatchDecodeError are ValueErrors

leaves = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                   st.binary(max_size=80), st.text(max_size=20), st.floats(allow_nan=True))
structures = st.recursive(leaves, lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                          max_leaves=40)
# plausible messages: the right shapes with hostile field values
votes = st.lists(st.one_of(st.integers(min_value=-2, max_value=2**64 - 1), st.binary(min_size=0, max_size=70)),
                 min_size=7, max_size=7)
justifications = st.tuples(st.integers(-1, 2**64 - 1), st.integers(-1, 2**64 - 1), st.integers(-1, 2**64 - 1),
                           st.binary(max_size=40), st.lists(votes, max_size=4), st.lists(st.binary(max_size=300), max_size=4))


def _payloads():
    return st.one_of(st.binary(max_size=600), structures.map(encode), votes.map(encode),
                     justifications.map(lambda j: encode(list(j))))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payloads())
def test_finality_messages_decode_or_raise_declared_errors(data):
    try:
        message = decode_finality_message(data)
    except FinalityError:
        return
    assert isinstance(message, SignedVote | Justification)
    if isinstance(message, SignedVote):
        message.verify()     # a signature check never raises either


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payloads())
def test_blocks_and_extrinsics_decode_or_raise_declared_errors(data):
    for decoder in (Block.decode, Extrinsic.decode):
        try:
            decoder(data)
        except DECLARED:
            pass


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_payloads(), st.lists(st.binary(max_size=100), max_size=20).map(encode)))
def test_extrinsic_batches_decode_or_raise_declared_errors(data):
    try:
        items = decode_batch(data, max_items=64, max_item_size=64 * 1024)
    except BatchDecodeError:
        return
    assert all(isinstance(item, bytes) for item in items)
