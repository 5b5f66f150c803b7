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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

__all__ = ["INDEX_TYPES", "RECALL_BAR", "SHARD_MIN", "AnnIndex", "build", "build_sharded",
           "choose", "encode_here", "fill_shard", "fingerprint", "merge_shards"]

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
# IVF-PQ indexes of this many vectors or more are built in shards (`build_sharded`): the
# quantisers are trained once on a sample, each shard is encoded on its own (in parallel on a
# Ray cluster), and the shards are merged; no step holds more than one shard of full vectors.
SHARD_MIN = 1_000_000
SHARD_ROWS = 500_000


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


def _nlist(n: int) -> int:
    """IVF lists for n vectors: about 2 sqrt(n), a power of two, at least 64."""
    return 1 << max(6, int(round(np.log2(2 * np.sqrt(max(n, 1))))))


def factory(kind: str, n: int, dims: int) -> str:
    if kind == "hnsw":
        return "HNSW32"
    nlist = _nlist(n)
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
        found: tuple[np.ndarray, np.ndarray] = self.index.search(queries, k)
        return found

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self, path: Path) -> dict[str, Any]:
        """Write atomically; returns the file's fingerprint (`vectors.file_fingerprint`)."""
        from artsearch.index.vectors import write_index_atomically

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


def _train(kind: str, n: int, dims: int, sample: np.ndarray) -> faiss.Index:
    inner = faiss.index_factory(dims, factory(kind, n, dims), faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        hnsw: Any = faiss.downcast_index(inner)  # FAISS's types know the base class only
        hnsw.hnsw.efConstruction = 80
    else:
        # Polysemous training only re-numbers the PQ centroids for Hamming-distance filtering,
        # which artsearch never turns on; it was 93 % of the training time at 100k x 1280-d
        # (140 s of 150 s; bench_shards.py), and the distances are the same without it.
        ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(inner))
        ivf.do_polysemous_training = False
        inner.train(np.ascontiguousarray(sample, np.float32))
    return inner


def _training_rows(kind: str, n: int, dims: int, seed: int) -> np.ndarray:
    """Which rows train the quantisers: 64 per IVF list, drawn once, sorted."""
    if kind == "hnsw":
        return np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, min(n, 64 * _nlist(n)), replace=False))


def build(vectors: np.ndarray, ids: np.ndarray, kind: str, *, seed: int = 0) -> AnnIndex:
    """Build and calibrate an approximate index over (ids, vectors)."""
    n, dims = vectors.shape
    inner = _train(kind, n, dims, vectors[_training_rows(kind, n, dims, seed)])
    index = faiss.IndexIDMap(inner)
    for start in range(0, n, 100_000):
        index.add_with_ids(vectors[start: start + 100_000], ids[start: start + 100_000])
    param, recall, k_factor = calibrate(index, kind, vectors, ids, seed=seed)
    return AnnIndex(index, kind, param, recall, k_factor)


# -- built in shards -------------------------------------------------------------------------

Shard = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (start, stop) -> (ids, vectors)


def fill_shard(trained: bytes, ids: np.ndarray, vectors: np.ndarray) -> bytes:
    """Encode one shard into a copy of the trained, empty index; returns it serialised (what
    a Ray task sends back)."""
    index = faiss.IndexIDMap(faiss.deserialize_index(np.frombuffer(trained, np.uint8)))
    for start in range(0, len(ids), 100_000):
        index.add_with_ids(np.ascontiguousarray(vectors[start: start + 100_000], np.float32),
                           np.ascontiguousarray(ids[start: start + 100_000], np.int64))
    serialised: bytes = faiss.serialize_index(index).tobytes()
    return serialised


def _merge_into(index: faiss.Index, part: faiss.Index) -> None:
    """Append `part`'s vectors and ids to `index` (both IDMap over Refine(IVF-PQ, SQ8)).

    FAISS merges IVF lists (`merge_from`) and flat code arrays, but not a Refine wrapper; so
    the coarse IVF-PQ part and the 8-bit re-ranking codes are merged each on their own, with
    the IVF part's internal numbers offset so that they still point at their re-ranking codes.
    """
    first: Any = faiss.downcast_index(index)  # FAISS's types know the base class only
    second: Any = faiss.downcast_index(part)
    top: Any = faiss.downcast_index(first.index)
    other: Any = faiss.downcast_index(second.index)
    offset = top.ntotal
    faiss.downcast_index(top.base_index).merge_from(
        faiss.downcast_index(other.base_index), offset)
    faiss.downcast_index(top.refine_index).merge_from(
        faiss.downcast_index(other.refine_index), 0)
    top.ntotal = top.base_index.ntotal
    ids = np.concatenate([faiss.vector_to_array(first.id_map),
                          faiss.vector_to_array(second.id_map)]).astype(np.int64)
    first.ntotal = top.ntotal
    faiss.copy_array_to_vector(ids, first.id_map)


def merge_shards(parts: Iterable[faiss.Index | bytes]) -> faiss.Index:
    """One index holding every shard's vectors, in the parts' order, with their ids; parts
    (indexes, or serialised ones) are merged as they come, so only one is held apart."""
    merged = None
    for part in parts:
        if isinstance(part, bytes):
            part = faiss.deserialize_index(np.frombuffer(part, np.uint8))
        if merged is None:
            merged = part  # the object that owns the index (a downcast view does not)
        else:
            _merge_into(merged, part)
        del part
    if merged is None:
        raise ValueError("no shards to merge")
    return merged


ShardRunner = Callable[[bytes, Shard, list[tuple[int, int]]], Iterable[bytes]]


def encode_here(trained: bytes, shard: Shard, bounds: list[tuple[int, int]]
                ) -> Iterator[bytes]:
    """Encode the shards one after another in this process (FAISS uses every core)."""
    for lo, hi in bounds:
        yield fill_shard(trained, *shard(lo, hi))


def build_sharded(shard: Shard, n: int, dims: int, *, rows: int = SHARD_ROWS, seed: int = 0,
                  run: ShardRunner | None = None) -> AnnIndex:
    """Build and calibrate an IVF-PQ index over n vectors read a shard at a time.

    `shard(start, stop)` returns (ids, vectors) of rows start..stop. The quantisers are
    trained once on a sample gathered shard by shard; `run(trained, shard, bounds)` encodes
    the shards (default `encode_here`; `artsearch.distributed.ray_shard_runner` makes Ray
    tasks of them) and the parts are merged. Calibration is as in `build`, against exact
    search done shard by shard, so no step holds more than one shard of full vectors.
    """
    kind = "ivfpq"
    bounds = [(lo, min(lo + rows, n)) for lo in range(0, n, rows)]
    wanted = _training_rows(kind, n, dims, seed)
    rng = np.random.default_rng(seed + 1)
    probe_rows = np.sort(rng.choice(n, min(n, CALIBRATION_QUERIES), replace=False))
    sample, queries, query_ids = [], [], []
    for lo, hi in bounds:
        ids, vectors = shard(lo, hi)
        sample.append(vectors[wanted[(wanted >= lo) & (wanted < hi)] - lo])
        pick = probe_rows[(probe_rows >= lo) & (probe_rows < hi)] - lo
        queries.append(vectors[pick])
        query_ids.append(ids[pick])
    trained = faiss.serialize_index(_train(kind, n, dims, np.concatenate(sample))).tobytes()
    del sample
    q = np.ascontiguousarray(np.concatenate(queries), np.float32)
    qids = np.concatenate(query_ids)
    index = merge_shards((run or encode_here)(trained, shard, bounds))
    # Exact neighbours of the calibration queries, shard by shard, best K + 1 kept.
    best_s = np.full((len(q), K + 1), -np.inf, np.float32)
    best_i = np.full((len(q), K + 1), -1, np.int64)
    for lo, hi in bounds:
        ids, vectors = shard(lo, hi)
        s, r = faiss.knn(q, vectors, K + 1, metric=faiss.METRIC_INNER_PRODUCT)
        both_s = np.concatenate([best_s, s], axis=1)
        both_i = np.concatenate([best_i, ids[r]], axis=1)
        order = np.argsort(-both_s, axis=1, kind="stable")[:, : K + 1]
        best_s = np.take_along_axis(both_s, order, 1)
        best_i = np.take_along_axis(both_i, order, 1)
    truth = [[i for i in row if i != own][:K] for row, own in zip(best_i, qids, strict=True)]
    param, recall, k_factor = _calibrate(index, kind, q, qids, truth)
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
    # Brute force without copying the vectors into an index (they may be most of the RAM).
    _, truth_rows = faiss.knn(queries, np.ascontiguousarray(vectors, np.float32), K + 1,
                              metric=faiss.METRIC_INNER_PRODUCT)
    truth = [[ids[r] for r in row if r != q][:K] for row, q in zip(truth_rows, rows,
                                                                     strict=True)]
    return _calibrate(index, kind, queries, ids[rows], truth)


def _calibrate(index: faiss.Index, kind: str, queries: np.ndarray, query_ids: np.ndarray,
               truth: list[list[int]]) -> tuple[int, float, int]:
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
        got = float(np.mean([len(set(f[f != own][:K]) & set(t)) / K
                             for f, t, own in zip(found, truth, query_ids, strict=True)]))
        if got >= RECALL_BAR:
            return value, got, k_factor or REFINE_K_FACTOR
        if got > best[1]:
            best = (value, got, k_factor or REFINE_K_FACTOR)
    return best
