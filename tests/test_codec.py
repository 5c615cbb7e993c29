import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.codec import CodecError, decode, encode

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@given(values)
def test_round_trip(value):
    assert decode(encode(value)) == value


@given(values)
def test_encoding_is_canonical(value):
    data = encode(value)
    assert encode(decode(data)) == data


@given(st.binary(max_size=200))
def test_garbage_never_crashes(data):
    try:
        decode(data)
    except CodecError:
        pass


def test_rejects_maps_trailing_bytes_and_oversize():
    import msgpack
    with pytest.raises(CodecError):
        decode(msgpack.packb({"a": 1}))
    with pytest.raises(CodecError):
        decode(encode([1]) + b"\x00")
    with pytest.raises(CodecError):
        decode(encode(b"x" * 100), max_size=50)
    with pytest.raises(CodecError):
        decode(b"\xc1")
