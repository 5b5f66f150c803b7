"""The one way artsearch hashes content: SHA-256, streamed, in hex. Works' files (their
identity in an index), weights files (checked against their published checksum), exported
shards and pooling files all use it; a weights file is hashed once per process."""

from __future__ import annotations

import hashlib
from io import BufferedReader
from pathlib import Path

__all__ = ["sha256_bytes", "sha256_file", "sha256_file_cached", "sha256_stream"]

_CACHE: dict[tuple[str, int, float], str] = {}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(fh: BufferedReader) -> str:
    """SHA-256 of what is left of an open binary file, read in blocks."""
    return hashlib.file_digest(fh, "sha256").hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's content, streamed: memory stays small whatever its size."""
    with path.open("rb") as fh:
        return sha256_stream(fh)


def sha256_file_cached(path: Path) -> str:
    """sha256_file, remembered per (path, size, mtime) for the life of the process (weights
    files: checked at every space's first use, hashed once)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _CACHE:
        _CACHE[key] = sha256_file(path)
    return _CACHE[key]
