"""Approximate search for large spaces, derived from the exact store.

Every space keeps its exact `IDMap2,Flat` FAISS file: the source of truth that indexing runs
update batch by batch, crash-safely. When a space is large enough that exact search gets
slow, an approximate index is built from it at the end of a writing run and saved beside it
(`SPACE.ann.faiss`). Building from the exact store, rather than maintaining the approximate
index incrementally, keeps the crash-safety argument in one place; the cost is a rebuild
after each run that changed the space (seconds at 100k vectors, minutes at 1M; see
benchmarks/README.md).

Each build is *calibrated* on the collection itself: 200 stored vectors are searched exactly
and approximately, and the search parameter (HNSW efSearch, IVF nprobe) is raised until
recall@10 reaches RECALL_BAR. The setting and the recall it reached are recorded in the
space. A query uses the approximate index only when it was built from the current state of
the space (a fingerprint of count and next id); otherwise, and for filtered queries, it
searches exactly, so answers are never silently stale.

`--index-type auto` follows the rule in `choose`, set from benchmarks/bench_ann.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

__all__ = ["INDEX_TYPES", "RECALL_BAR", "AnnIndex", "build", "choose", "fingerprint"]

INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
RECALL_BAR = 0.95
CALIBRATION_QUERIES = 200
REFINE_K_FACTOR = 8  # IVF-PQ ranks 8 x k candidates by PQ, then re-ranks them by 8-bit codes
K = 10

# The auto rule (benchmarks/README.md, ANN suite; 2-core CPU, 1280-d):
FLAT_MAX = 100_000  # exact search stays under ~20 ms per query up to here
FLAT_DIMS = 1280  # ... at this width; exact search reads every vector, so wider spaces
# (a 3,104-d meanstd style space) turn approximate sooner, at the same bytes scanned
# (bench_serve: two exact 100k scans of 1280-d and 3104-d took 142 ms a page).
HNSW_MAX_BYTES = 8 << 30  # HNSW keeps full vectors plus links: up to this much memory


def choose(requested: str, n: int, dims: int) -> str:
    """The index type a space of n vectors gets: exact while exact is fast enough (up to
    FLAT_MAX vectors of FLAT_DIMS or fewer dimensions; proportionally fewer wider ones), then HNSW
    while its memory (full vectors plus graph links) fits the budget, then IVF-PQ with an
    8-bit re-ranking stage (about a quarter of the memory of full vectors)."""
    if requested != "auto":
        return requested
    if n <= FLAT_MAX * min(1.0, FLAT_DIMS / max(dims, 1)):
        return "flat"
    if n * (4 * dims + 2 * 32 * 4) <= HNSW_MAX_BYTES:
        return "hnsw"
    return "ivfpq"


def factory(kind: str, n: int, dims: int) -> str:
    if kind == "hnsw":
        return "HNSW32"
    nlist = 1 << max(6, round(np.log2(2 * np.sqrt(max(n, 1)))))  # ~2 sqrt(n), a power of two
    # PQ codes of 8 dimensions per byte for wide vectors (160 bytes at 1280-d), finer for
    # narrow ones, where 8 would leave too few bytes to rank candidates usefully.
    per_byte = 8 if dims >= 512 else 2
    sub = dims // per_byte if dims % per_byte == 0 else dims
    return f"IVF{nlist},PQ{sub},Refine(SQ8)"


def fingerprint(count: int, next_id: int) -> list[int]:
    """What a built index must match to be used: vectors in the space, and the next id."""
    return [int(count), int(next_id)]


@dataclass
class AnnIndex:
    """A built approximate index with its calibrated search parameter."""

    index: faiss.Index
    kind: str
    param: int
    recall: float
    k_factor: int = REFINE_K_FACTOR  # IVF-PQ: candidates re-ranked per result

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        _set_param(self.index, self.kind, self.param, self.k_factor)
        k = max(1, min(k, int(self.index.ntotal)))
        return self.index.search(queries, k)  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self, path: Path) -> dict[str, Any]:
        """Write atomically; returns the file's fingerprint (`vectors.file_fingerprint`)."""
        from artsearch.vectors import write_index_atomically

        return write_index_atomically(self.index, path)

    @classmethod
    def load(cls, path: Path, kind: str, param: int, recall: float,
             k_factor: int = REFINE_K_FACTOR) -> AnnIndex:
        return cls(faiss.read_index(str(path)), kind, param, recall, k_factor)


def _inner(index: faiss.Index) -> Any:
    """The index under an IDMap wrapper (or the index itself when it has none)."""
    top = faiss.downcast_index(index)
    return faiss.downcast_index(top.index) if isinstance(top, faiss.IndexIDMap) else top


def _set_param(index: faiss.Index, kind: str, value: int,
               k_factor: int = REFINE_K_FACTOR) -> None:
    inner = _inner(index)
    if kind == "hnsw":
        inner.hnsw.efSearch = value
    else:
        inner.k_factor = k_factor
        faiss.extract_index_ivf(inner).nprobe = value


def build(vectors: np.ndarray, ids: np.ndarray, kind: str, *, seed: int = 0) -> AnnIndex:
    """Build and calibrate an approximate index over (ids, vectors)."""
    n, dims = vectors.shape
    inner = faiss.index_factory(dims, factory(kind, n, dims), faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        faiss.downcast_index(inner).hnsw.efConstruction = 80
    else:
        nlist = faiss.extract_index_ivf(inner).nlist
        rng = np.random.default_rng(seed)
        sample = vectors[rng.choice(n, min(n, 64 * nlist), replace=False)]
        inner.train(sample)
    index = faiss.IndexIDMap(inner)
    for start in range(0, n, 100_000):
        index.add_with_ids(vectors[start: start + 100_000], ids[start: start + 100_000])
    param, recall, k_factor = calibrate(index, kind, vectors, ids, seed=seed)
    return AnnIndex(index, kind, param, recall, k_factor)


def calibrate(index: faiss.Index, kind: str, vectors: np.ndarray, ids: np.ndarray, *,
              seed: int = 0) -> tuple[int, float, int]:
    """The cheapest search setting whose recall@10 on stored vectors reaches RECALL_BAR:
    (efSearch or nprobe, recall reached, IVF-PQ re-ranking factor).

    IVF-PQ has two knobs: nprobe (lists searched) and k_factor (PQ candidates re-ranked by
    the 8-bit codes); at 1M vectors nprobe alone plateaus below the bar (benchmarks/README.md),
    so k_factor is raised in turn. Each sampled vector's own id is dropped from both result
    lists, so the easy self-match does not flatter the recall. If nothing reaches the bar,
    the best setting tried is returned with its recall.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(n, min(n, CALIBRATION_QUERIES), replace=False)
    queries = np.ascontiguousarray(vectors[rows])
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth_rows = exact.search(queries, K + 1)
    truth = [[ids[r] for r in row if r != q][:K] for row, q in zip(truth_rows, rows,
                                                                     strict=True)]
    if kind == "hnsw":
        grid = [(ef, 0) for ef in (16, 32, 64, 128, 256, 512, 1024)]
    else:
        nlist = faiss.extract_index_ivf(_inner(index)).nlist
        probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= nlist]
        grid = [(p, kf) for kf in (REFINE_K_FACTOR, 4 * REFINE_K_FACTOR, 16 * REFINE_K_FACTOR)
                for p in probes]
    best = (grid[-1][0], 0.0, grid[-1][1])
    for value, k_factor in grid:
        _set_param(index, kind, value, k_factor or REFINE_K_FACTOR)
        _, found = index.search(queries, K + 1)
        got = float(np.mean([len(set(f[f != ids[q]][:K]) & set(t)) / K
                             for f, t, q in zip(found, truth, rows, strict=True)]))
        if got >= RECALL_BAR:
            return value, got, k_factor or REFINE_K_FACTOR
        if got > best[1]:
            best = (value, got, k_factor or REFINE_K_FACTOR)
    return best
