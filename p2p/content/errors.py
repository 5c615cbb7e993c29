"""Named errors of the content store."""

from __future__ import annotations


class ContentError(Exception):
    """Base class for content store errors."""


class InvalidCid(ContentError, ValueError):
    """A string or byte sequence that does not parse as a supported CID."""


class InvalidBlock(ContentError):
    """Block bytes that do not hash to their CID, or do not decode as the expected format."""


class ContentNotFound(ContentError):
    """Content that is not stored locally and that no connected peer provides."""


class FetchTimeout(ContentError):
    """A fetch that did not complete within its time bound."""


class UnsupportedOption(ContentError):
    """An import option (CID version, raw leaves, chunker...) that this store does not implement."""
