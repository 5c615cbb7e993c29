"""UnixFS importer/exporter against Kubo 0.22 `ipfs add` defaults, and CID parsing."""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.content.cid import DAG_PB, RAW, Cid, parse_cid, sha256_multihash
from p2p.content.dagpb import decode_pbnode, decode_unixfs
from p2p.content.errors import InvalidBlock, InvalidCid
from p2p.content.unixfs import (
    CHUNK_SIZE,
    FileImporter,
    file_size,
    import_bytes,
    import_file,
    iter_file,
)
from tests.content_helpers import PatternFile, pattern_bytes, pattern_chunks

# Kubo 0.22 `ipfs add` of the file whose byte i is (i + i // 251) % 256.
KUBO_VECTORS = {
    0: "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
    1: "QmS9JArPwa55ePgDnyg6TzX24mYTS1b1vLqWNebyVotKxQ",
    12: "QmebaVP2bwpoZK9XEV6QWrjmHXodxS3fdL1SypEYDb8vGx",
    262143: "QmXQ7FJGF6omEhvLqJGGH1bsQigCJpRfwZWg9cqyd18C12",
    262144: "QmTjXgkTQac5XGKMPTzwGyycQeGy1P7BsGMf7ntMCNuYq2",
    262145: "QmaUgKqSsiunbhjANjQvLeQCkJx1DGHL8Ek6Wwi4TZJq1G",
    1048576: "QmR5VGcZLMeVtirdVZRbRT3gFSmLkNTdRvGmAomqiFsFoR",
    10485760: "QmRiQWW3BiKJFDHgKMJ3o1STuuc3erfRo8Qn2Ecgwi9fFB",
    45613056: "QmXiEX74UgruXNp1eowLyfPJXorQ2pszVAxh3P6P45XApR",  # 174 chunks: one full node
    45613057: "QmamvnESLkMWaENmCDFvgW9qN5qSwAy66CyvAe1xfDDiSy",  # 175 chunks: depth 2
    45875201: "QmQTp5RcZPeEVCdDKRsMLgGRsuWLTFZYuMx7sPBT13RumJ",
}
HELLO = (b"hello world\n", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", 20)


def _import_pattern(size: int, blocks: dict[bytes, bytes] | None = None):
    sink = None if blocks is None else (lambda cid, block: blocks.__setitem__(cid.multihash, block))
    importer = FileImporter(sink)
    for chunk in pattern_chunks(size, chunk=(1 << 20) + 7):  # odd write sizes cross chunk edges
        importer.write(chunk)
    return importer.finish()


@pytest.mark.parametrize("size", sorted(KUBO_VECTORS))
def test_kubo_vectors(size: int) -> None:
    result = _import_pattern(size)
    assert str(result.cid) == KUBO_VECTORS[size]
    assert result.filesize == size


def test_hello_world_cid_and_size() -> None:
    data, cid, size = HELLO
    result = import_bytes(data)
    assert (str(result.cid), result.size) == (cid, size)
    assert str(import_file(io.BytesIO(data)).cid) == cid


def test_importer_write_sizes_do_not_matter() -> None:
    data = pattern_bytes(0, 3 * CHUNK_SIZE + 5)
    whole = import_bytes(data).cid
    importer = FileImporter()
    for i in range(0, len(data), 1000):
        importer.write(data[i:i + 1000])
    assert importer.finish().cid == whole


def test_size_is_cumulative_dag_size_and_root_comes_last() -> None:
    blocks: dict[bytes, bytes] = {}
    order: list[bytes] = []

    def sink(cid: Cid, block: bytes) -> None:
        blocks[cid.multihash] = block
        order.append(cid.multihash)

    importer = FileImporter(sink)
    importer.write(pattern_bytes(0, 175 * CHUNK_SIZE + 1))
    result = importer.finish()
    assert order[-1] == result.cid.multihash
    assert result.size == sum(len(b) for b in blocks.values())
    root = decode_pbnode(blocks[result.cid.multihash])
    assert len(root.links) == 2
    meta = decode_unixfs(root.data)
    assert meta.filesize == 175 * CHUNK_SIZE + 1
    assert meta.blocksizes == [174 * CHUNK_SIZE, CHUNK_SIZE + 1]


def test_at_most_174_links_per_node() -> None:
    blocks: dict[bytes, bytes] = {}
    _import_pattern(400 * CHUNK_SIZE, blocks)
    assert max(len(decode_pbnode(b).links) for b in blocks.values()) == 174


def _store(size: int) -> tuple[Cid, dict[bytes, bytes], list[str]]:
    blocks: dict[bytes, bytes] = {}
    reads: list[str] = []
    result = _import_pattern(size, blocks)

    def get(cid: Cid) -> bytes:
        reads.append(str(cid))
        return blocks[cid.multihash]

    return result.cid, get, reads


def test_export_whole_file_round_trip() -> None:
    size = 175 * CHUNK_SIZE + 12345
    cid, get, _ = _store(size)
    digest = hashlib.sha256()
    total = 0
    for piece in iter_file(get, cid):
        digest.update(piece)
        total += len(piece)
    expected = hashlib.sha256()
    for chunk in pattern_chunks(size):
        expected.update(chunk)
    assert total == size == file_size(get, cid)
    assert digest.digest() == expected.digest()


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 0), (0, 1), (5, 10), (CHUNK_SIZE - 3, 10), (CHUNK_SIZE, CHUNK_SIZE),
     (174 * CHUNK_SIZE - 1, 5), (175 * CHUNK_SIZE + 100, None), (10**12, 10), (7, -1)],
)
def test_export_ranges(offset: int, length: int | None) -> None:
    size = 175 * CHUNK_SIZE + 200
    cid, get, _ = _store(size)
    got = b"".join(iter_file(get, cid, offset, length))
    end = size if length is None or length < 0 else min(size, offset + length)
    assert got == pattern_bytes(offset, max(0, end - offset))


def test_export_skips_subtrees_before_offset() -> None:
    cid, get, reads = _store(176 * CHUNK_SIZE)
    b"".join(iter_file(get, cid, 175 * CHUNK_SIZE + 10, 5))
    # root, second depth-1 node and the one leaf: the first 174-leaf subtree is never read
    assert len(reads) == 3


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 3 * CHUNK_SIZE + 10), offset=st.integers(0, 4 * CHUNK_SIZE),
       length=st.integers(-1, 2 * CHUNK_SIZE))
def test_export_matches_slicing(size: int, offset: int, length: int) -> None:
    cid, get, _ = _store(size)
    data = pattern_bytes(0, size)
    expected = data[offset:] if length < 0 else data[offset:offset + length]
    assert b"".join(iter_file(get, cid, offset, length)) == expected


def test_raw_leaf_cidv1_is_readable() -> None:
    chunk = b"raw leaf bytes"
    cid = Cid(1, RAW, sha256_multihash(chunk))
    assert parse_cid(str(cid)) == cid
    assert str(cid).startswith("bafkrei")
    assert b"".join(iter_file(lambda c: chunk, cid, 4, 4)) == b"leaf"


def test_import_streams_large_files_without_holding_them() -> None:
    result = import_file(PatternFile(10485760), read_size=300_000)
    assert str(result.cid) == KUBO_VECTORS[10485760]


def test_cid_parsing() -> None:
    v0 = parse_cid(HELLO[1])
    assert (v0.version, v0.codec) == (0, DAG_PB)
    v1 = Cid(1, DAG_PB, v0.multihash)
    assert str(v1).startswith("bafybei")
    assert parse_cid(str(v1)) == v1
    assert parse_cid(str(v1).upper()) == v1
    assert parse_cid("/ipfs/" + HELLO[1]) == v0
    assert Cid.from_bytes(v1.to_bytes()) == v1


@pytest.mark.parametrize(
    "text",
    ["", "hello", "Qm" + "0" * 44, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5", "b!!!!", "zabc",
     "bafkqaaa"],
)
def test_bad_cids_raise_invalid_cid(text: str) -> None:
    with pytest.raises(InvalidCid):
        parse_cid(text)


def test_directory_is_not_a_file() -> None:
    from p2p.content.dagpb import UNIXFS_DIRECTORY, UnixFSData, encode_pbnode, encode_unixfs

    block = encode_pbnode([], encode_unixfs(UnixFSData(UNIXFS_DIRECTORY)))
    cid = Cid.for_dag_pb_block(block)
    with pytest.raises(InvalidBlock, match="directory"):
        list(iter_file(lambda c: block, cid))
