"""The state commitment: a binary Merkle tree over 4,096 hash buckets.

Every storage key falls in bucket `blake2b_256(key)[:2] >> 4`. A bucket's hash commits to its
sorted (key, value) pairs; the state root is the root of a complete binary tree of depth 12 over
the bucket hashes, where an empty subtree hashes to 32 zero bytes. A read proof for a key is the
whole bucket plus the 12 sibling hashes on the path to the root, so it proves presence and
absence alike. Pure functions: the node's storage keeps the tree, the runtime never does I/O.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from runtime.codec import CodecError, decode, encode
from runtime.crypto import blake2b_256

BUCKET_BITS = 12
BUCKET_COUNT = 1 << BUCKET_BITS
EMPTY = bytes(32)
BUCKET_OF_CACHE_SIZE = 1 << 16


class ProofError(ValueError):
    """A read proof that does not verify against the given root."""


def bucket_of(key: bytes) -> int:
    """The bucket index of a storage key."""
    if type(key) is bytes:
        return _cached_bucket_of(key)
    return _bucket_of(key)


def _bucket_of(key: bytes) -> int:
    digest = blake2b_256(key)
    return (digest[0] << 8 | digest[1]) >> (16 - BUCKET_BITS)


# Every state read and write hashes its key to find the bucket, several times per extrinsic for the
# same few keys (sender, treasury, nonce): remember the newest ones. A pure function, so a cache.
_cached_bucket_of = functools.lru_cache(maxsize=BUCKET_OF_CACHE_SIZE)(_bucket_of)


def bucket_hash(entries: list[tuple[bytes, bytes]]) -> bytes:
    """Hash of a bucket's (key, value) pairs sorted by key; empty bucket → zero hash."""
    if not entries:
        return EMPTY
    return blake2b_256(encode([[k, v] for k, v in entries]))


def node_hash(left: bytes, right: bytes) -> bytes:
    if left == EMPTY and right == EMPTY:
        return EMPTY
    return blake2b_256(left + right)


class BucketTree:
    """The in-memory tree: nodes in heap order (1 = root, BUCKET_COUNT + b = bucket b)."""

    def __init__(self, nodes: list[bytes] | None = None) -> None:
        self.nodes = nodes if nodes is not None else [EMPTY] * (2 * BUCKET_COUNT)

    @property
    def root(self) -> bytes:
        return self.nodes[1]

    def updated(self, bucket_hashes: dict[int, bytes]) -> tuple[bytes, dict[int, bytes]]:
        """Root and changed nodes after replacing some bucket hashes; the tree is unchanged."""
        changed: dict[int, bytes] = {}
        dirty: set[int] = set()
        for bucket, digest in bucket_hashes.items():
            changed[BUCKET_COUNT + bucket] = digest
            dirty.add((BUCKET_COUNT + bucket) >> 1)
        while dirty:
            parents: set[int] = set()
            for index in dirty:
                left = changed.get(2 * index, self.nodes[2 * index])
                right = changed.get(2 * index + 1, self.nodes[2 * index + 1])
                changed[index] = node_hash(left, right)
                if index > 1:
                    parents.add(index >> 1)
            dirty = parents
        return changed.get(1, self.nodes[1]), changed

    def apply(self, changed: dict[int, bytes]) -> None:
        for index, digest in changed.items():
            self.nodes[index] = digest

    def siblings(self, bucket: int) -> list[bytes]:
        index = BUCKET_COUNT + bucket
        path = []
        while index > 1:
            path.append(self.nodes[index ^ 1])
            index >>= 1
        return path


@dataclass(frozen=True)
class ReadProof:
    """Proof for the keys of one bucket: the bucket's entries and the sibling path."""

    bucket: int
    entries: list[tuple[bytes, bytes]]
    siblings: list[bytes]

    def encode(self) -> bytes:
        return encode([self.bucket, [[k, v] for k, v in self.entries], self.siblings])

    @classmethod
    def decode(cls, data: bytes) -> ReadProof:
        try:
            bucket, entries, siblings = decode(data)
            return cls(bucket, [(bytes(k), bytes(v)) for k, v in entries], [bytes(s) for s in siblings])
        except (ValueError, TypeError) as exc:
            raise CodecError(f"malformed read proof: {exc}") from exc


def verify_read_proof(root: bytes, key: bytes, proof: ReadProof) -> bytes | None:
    """The value of `key` under state `root` (None if absent); raises ProofError if it doesn't verify."""
    if proof.bucket != bucket_of(key):
        raise ProofError("proof is for another bucket than the key's")
    if len(proof.siblings) != BUCKET_BITS:
        raise ProofError(f"proof must carry {BUCKET_BITS} sibling hashes")
    keys = [k for k, _ in proof.entries]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise ProofError("bucket entries are not strictly sorted")
    if any(bucket_of(k) != proof.bucket for k in keys):
        raise ProofError("bucket holds a key of another bucket")
    digest = bucket_hash(proof.entries)
    index = BUCKET_COUNT + proof.bucket
    for sibling in proof.siblings:
        digest = node_hash(sibling, digest) if index & 1 else node_hash(digest, sibling)
        index >>= 1
    if digest != root:
        raise ProofError("proof does not lead to the state root")
    return dict(proof.entries).get(key)
