"""The transfer hot path's shortcuts (issue 17) give exactly what the plain code gave.

- the overlay's journal behaves as the old stack of layers, read for read and in `changes()`;
- a read cache is only where asked for, and reads the backend once per key;
- the reused msgpack Packer encodes as `msgpack.packb`, after a failed encode and across threads;
- the last-read record cache follows the stored bytes and never shares a mutable record;
- the decoded-extrinsic cache serves only what decodes and checks, never list arguments, and is bounded.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import executive
from runtime.codec import CodecError, encode
from runtime.executive import InvalidTransaction
from runtime.module import Record, RecordValue
from runtime.modules import system
from runtime.state import Overlay
from tests.helpers import ALICE, BOB, make_chain, sign


class LayeredOverlay:
    """The overlay as it was before the journal: a stack of dicts (the reference)."""

    def __init__(self, backend):
        self._backend = backend
        self._layers = [{}]

    def get(self, key):
        for layer in reversed(self._layers):
            if key in layer:
                return layer[key]
        return self._backend(key)

    def set(self, key, value):
        self._layers[-1][key] = value

    def delete(self, key):
        self._layers[-1][key] = None

    def begin(self):
        self._layers.append({})

    def commit(self):
        top = self._layers.pop()
        self._layers[-1].update(top)

    def rollback(self):
        self._layers.pop()

    def changes(self):
        return dict(self._layers[0])


KEYS = [bytes([k]) for k in range(6)]
BACKEND = {KEYS[0]: b"zero", KEYS[1]: b"one", KEYS[4]: b"four"}
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(KEYS), st.binary(max_size=3)),
        st.tuples(st.just("delete"), st.sampled_from(KEYS)),
        st.tuples(st.just("get"), st.sampled_from(KEYS)),
        st.just(("begin",)), st.just(("commit",)), st.just(("rollback",)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.booleans())
def test_overlay_journal_matches_layers(sequence, cache_reads):
    new, old = Overlay(BACKEND.get, cache_reads=cache_reads), LayeredOverlay(BACKEND.get)
    depth = 0
    for op in sequence:
        if op[0] in ("commit", "rollback") and depth == 0:
            continue
        depth += {"begin": 1, "commit": -1, "rollback": -1}.get(op[0], 0)
        results = [getattr(o, op[0])(*op[1:]) for o in (new, old)]
        assert results[0] == results[1], op
        assert [new.get(k) for k in KEYS] == [old.get(k) for k in KEYS]
    while depth:
        new.commit()
        old.commit()
        depth -= 1
    assert list(new.changes().items()) == list(old.changes().items())  # same keys, values and order


def test_read_cache_only_where_asked():
    store = {b"k": b"1"}
    reads = []

    def backend(key):
        reads.append(key)
        return store.get(key)

    cached = Overlay(backend, cache_reads=True)
    assert cached.get(b"k") == b"1" and cached.get(b"k") == b"1" and cached.get(b"absent") is None
    assert cached.get(b"absent") is None
    assert reads == [b"k", b"absent"]  # once per key, absent keys too
    plain = Overlay(backend)
    assert plain.get(b"k") == b"1"
    store[b"k"] = b"2"  # a scratch view (RPC, pool) sees the store as it is now
    assert plain.get(b"k") == b"2"


values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_encode_is_packb_even_after_a_failed_encode(value):
    with pytest.raises(CodecError):
        encode([value, b"x" * 50, object()])  # fails midway through the packer's buffer
    assert encode(value) == msgpack.packb(value, use_bin_type=True, strict_types=False)


def test_encode_across_threads():
    samples = [[i, b"%d" % i * (i % 50), ["t" * (i % 7), [i, i * 3]]] for i in range(400)]
    wrong: list = []

    def work():
        for _ in range(20):
            for sample in samples:
                if encode(sample) != msgpack.packb(sample, use_bin_type=True):
                    wrong.append(sample)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


@dataclass(frozen=True)
class Listed(Record):
    items: list
    count: int


def test_record_cache_follows_bytes_and_never_shares_mutable_records():
    fees = {}
    state = Overlay(fees.get)
    first = system.FeeSchedule(1, 2, 3, 4)
    state.set(system.FeeParams.key, encode(first.to_list()))
    assert system.FeeParams.get(state) == first
    second = system.FeeSchedule(5, 2, 3, 4)
    state.set(system.FeeParams.key, encode(second.to_list()))
    assert system.FeeParams.get(state) == second  # new bytes, new value
    state.delete(system.FeeParams.key)
    assert system.FeeParams.get(state) == system.FeeParams.default

    listed = RecordValue("test", "Listed", Listed([], 0))
    state.set(listed.key, encode([[1, 2], 2]))
    one = listed.get(state)
    one.items.append(3)  # a caller that mutates what it read must not change the next read
    assert listed.get(state) == Listed([1, 2], 2)


@pytest.fixture()
def chain(tmp_path):
    c = make_chain(tmp_path / "db")
    yield c
    c.store.close()


def test_decoded_extrinsic_cache(chain, monkeypatch):
    transfer = sign(chain, ALICE, "balances", "transfer", [BOB.public_key, 10], 0)
    first = chain.check_for_pool(transfer)
    again = chain.check_for_pool(transfer)
    assert again.extrinsic is first.extrinsic and again.hash == first.hash  # decoded once
    assert chain.check_for_pool(bytearray(transfer)).hash == first.hash  # not hashable: not cached, still checked

    heartbeat = sign(chain, ALICE, "staking", "heartbeat", [[1, "cpu", 512]], 0)
    one, two = chain.check_for_pool(heartbeat), chain.check_for_pool(heartbeat)
    assert one.extrinsic is not two.extrinsic  # a list argument is never shared between uses

    bad = sign(chain, ALICE, "balances", "transfer", [BOB.public_key, -1], 0)
    for _ in range(2):  # a rejection is not cached either
        with pytest.raises(InvalidTransaction, match="BadArguments"):
            chain.check_for_pool(bad)

    monkeypatch.setattr(executive, "DECODE_CACHE_SIZE", 3)
    chain.runtime._decoded.clear()
    for amount in range(10):
        chain.check_for_pool(sign(chain, ALICE, "balances", "transfer", [BOB.public_key, amount + 1], 0))
        assert len(chain.runtime._decoded) <= 3


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_bucket_of_cache_is_the_hash(key):
    from runtime.crypto import blake2b_256
    from runtime.merkle import BUCKET_BITS, bucket_of

    digest = blake2b_256(key)
    expected = (digest[0] << 8 | digest[1]) >> (16 - BUCKET_BITS)
    assert bucket_of(key) == bucket_of(key) == expected
    assert bucket_of(bytearray(key)) == expected  # not hashable: computed, not cached
