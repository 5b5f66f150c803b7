"""A FAISS index of one embedding space, saved atomically next to the SQLite store."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

__all__ = [
    "DEFAULT_FACTORY", "VectorIndex", "current_umask", "file_fingerprint",
    "fingerprint_mismatch", "fsync_folder", "write_index_atomically",
]

# Exact inner product over unit vectors (= cosine), with stable 64-bit ids that survive removals.
DEFAULT_FACTORY = "IDMap2,Flat"


class VectorIndex:
    """Vectors keyed by FAISS id. Changes stay in memory until `save`."""

    def __init__(self, index: faiss.Index, path: Path, factory: str) -> None:
        self.index: Any = index  # an IndexIDMap2: FAISS's types know the base class only
        self.path = path
        self.factory = factory
        self.dirty = False  # changed in memory since the last load or save

    @classmethod
    def create(cls, path: Path, dims: int, factory: str = DEFAULT_FACTORY) -> VectorIndex:
        return cls(faiss.index_factory(dims, factory, faiss.METRIC_INNER_PRODUCT), path, factory)

    @classmethod
    def load_or_create(cls, path: Path, dims: int, factory: str = DEFAULT_FACTORY, *,
                       name: Path | None = None) -> VectorIndex:
        """The saved index, or an empty one where none was saved yet; a file FAISS cannot
        read, or one of other dimensions, raises IndexDamagedError with the reason. `path`
        may be an open file's /proc/self/fd entry; `name` is then where it is saved."""
        from artsearch.errors import IndexDamagedError

        name = name or path
        if not path.exists():
            return cls.create(name, dims, factory)
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:  # truncated, or not a FAISS file at all
            first = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
            raise IndexDamagedError(f"{name}: not a readable FAISS file ({first[:120]})") from e
        if index.d != dims:
            raise IndexDamagedError(f"{name}: holds {index.d}-d vectors, the space has {dims}")
        if not isinstance(faiss.downcast_index(index), faiss.IndexIDMap2):
            raise IndexDamagedError(f"{name}: not an exact vector store (no id map)")
        return cls(index, name, factory)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dims(self) -> int:
        return int(self.index.d)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        ids_arr = np.fromiter(ids, dtype=np.int64)
        if len(ids_arr):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids_arr)
            self.dirty = True

    def remove(self, ids: Iterable[int]) -> int:
        ids_arr = np.fromiter(ids, dtype=np.int64)
        if not len(ids_arr):
            return 0
        removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids_arr)))
        self.dirty = self.dirty or removed > 0
        return removed

    def everything(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every stored vector, in storage order."""
        n = len(self)
        if not n:
            return np.zeros(0, np.int64), np.zeros((0, self.dims), np.float32)
        return self.ids(), self.index.index.reconstruct_n(0, n).astype(np.float32, copy=False)

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the rows start..stop in storage order (one shard of a build)."""
        stop = min(stop, len(self))
        ids = faiss.vector_to_array(self.index.id_map)[start:stop].astype(np.int64)
        return ids, self.index.index.reconstruct_n(start, stop - start).astype(np.float32,
                                                                                copy=False)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), dims): the stored vectors of the given ids."""
        if not len(ids):
            return np.zeros((0, self.dims), np.float32)
        return np.stack([self.reconstruct(int(i)) for i in ids])

    def reconstruct(self, faiss_id: int) -> np.ndarray:
        """One stored vector; KeyError when this file does not hold it (yet)."""
        try:
            vector: np.ndarray = self.index.reconstruct(int(faiss_id)).astype(np.float32)
            return vector
        except RuntimeError as e:
            raise KeyError(faiss_id) from e

    def has(self, faiss_id: int) -> bool:
        try:
            self.index.reconstruct(int(faiss_id))
        except RuntimeError:
            return False
        return True

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; `allowed` restricts results to those ids.

        The restriction is applied inside the search, so a filter that matches few items
        still yields up to k of them rather than whatever survived a truncated list.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self) if allowed is None else len(allowed)))
        params = None
        if allowed is not None:
            if not len(allowed):
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            params = faiss.SearchParameters()
            params.sel = selector
        scores, ids = self.index.search(queries, k, params=params)
        return scores, ids

    def fingerprint(self) -> dict[str, Any]:
        return {"count": len(self), "dims": self.dims}

    def save(self, before_rename: Callable[[dict[str, Any]], None] | None = None
             ) -> dict[str, Any]:
        """Write the file atomically; returns its fingerprint (see `file_fingerprint`)."""
        fp = write_index_atomically(self.index, self.path, before_rename, self.fingerprint())
        self.dirty = False
        return fp


# A fingerprint reads a fixed number of blocks, whatever the file's size: cheap enough to check
# on every open, and a file from another index, or a truncated one, differs in it.
_BLOCK = 64 << 10
_BLOCKS = 16


def file_fingerprint(path: Path) -> dict[str, Any]:
    """{"bytes", "sample"}: the file's size and a SHA-256 over its first and last 64 KiB and
    16 blocks evenly spaced between them."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        if size <= _BLOCK * (_BLOCKS + 2):
            digest.update(fh.read())
        else:
            offsets = [0, *(size * i // (_BLOCKS + 1) for i in range(1, _BLOCKS + 1)),
                       size - _BLOCK]
            for offset in offsets:
                fh.seek(offset)
                digest.update(fh.read(_BLOCK))
    return {"bytes": size, "sample": digest.hexdigest()}


def fingerprint_mismatch(found: dict[str, Any], accepted: list[dict[str, Any]]) -> str | None:
    """None when `found` (a file_fingerprint) is one of the `accepted` recorded ones, or none
    is recorded; else how it differs from the first, for a message."""
    if not accepted or any(fp.get("bytes") == found["bytes"] and fp.get("sample") ==
                           found["sample"] for fp in accepted):
        return None
    if found["bytes"] != accepted[0].get("bytes"):
        return f"{found['bytes']:,} bytes, expected {accepted[0].get('bytes', 0):,}"
    return f"the same size, {found['bytes']:,} bytes, other content"


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(current)
    return current


def write_index_atomically(
    index: faiss.Index, path: Path,
    before_rename: Callable[[dict[str, Any]], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write to a temporary file, fsync it, rename over the old one, fsync the folder.

    `before_rename` gets the new file's fingerprint (plus `extra`) while the old file is still
    in place, so the caller can record both as acceptable: a kill between the rename and the
    caller's next record then leaves a file the index still recognises.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        faiss.write_index(index, tmp)
        # mkstemp makes the file 0600; a vector file is as readable as the database beside it.
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        fp = {**file_fingerprint(Path(tmp)), **(extra or {})}
        if before_rename is not None:
            before_rename(fp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return fp
