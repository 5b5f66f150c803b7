"""A FAISS index of one embedding space, saved atomically next to the SQLite store."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np

__all__ = ["DEFAULT_FACTORY", "VectorIndex", "write_index_atomically"]

# Exact inner product over unit vectors (= cosine), with stable 64-bit ids that survive removals.
DEFAULT_FACTORY = "IDMap2,Flat"


class VectorIndex:
    """Vectors keyed by FAISS id. Changes stay in memory until `save`."""

    def __init__(self, index: faiss.Index, path: Path, factory: str) -> None:
        self.index = index
        self.path = path
        self.factory = factory

    @classmethod
    def create(cls, path: Path, dims: int, factory: str = DEFAULT_FACTORY) -> VectorIndex:
        return cls(faiss.index_factory(dims, factory, faiss.METRIC_INNER_PRODUCT), path, factory)

    @classmethod
    def load_or_create(cls, path: Path, dims: int, factory: str = DEFAULT_FACTORY) -> VectorIndex:
        if not path.exists():
            return cls.create(path, dims, factory)
        index = faiss.read_index(str(path))
        if index.d != dims:
            raise ValueError(f"{path}: holds {index.d}-d vectors, expected {dims}")
        return cls(index, path, factory)

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

    def remove(self, ids: Iterable[int]) -> int:
        ids_arr = np.fromiter(ids, dtype=np.int64)
        if not len(ids_arr):
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids_arr)))

    def everything(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every stored vector, in storage order."""
        n = len(self)
        if not n:
            return np.zeros(0, np.int64), np.zeros((0, self.dims), np.float32)
        return self.ids(), self.index.index.reconstruct_n(0, n).astype(np.float32, copy=False)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), dims): the stored vectors of the given ids."""
        if not len(ids):
            return np.zeros((0, self.dims), np.float32)
        return np.stack([self.reconstruct(int(i)) for i in ids])

    def reconstruct(self, faiss_id: int) -> np.ndarray:
        return self.index.reconstruct(int(faiss_id)).astype(np.float32)

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
            params = faiss.SearchParameters(sel=selector)
        scores, ids = self.index.search(queries, k, params=params)
        return scores, ids

    def save(self) -> None:
        write_index_atomically(self.index, self.path)


def write_index_atomically(index: faiss.Index, path: Path) -> None:
    """Write to a temporary file, fsync it, rename over the old one, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        faiss.write_index(index, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
