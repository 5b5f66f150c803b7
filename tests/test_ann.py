"""Approximate indexes: the auto rule, calibrated recall, and never answering from a stale one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete

from artsearch.index import ArtIndex
from artsearch.index.ann import RECALL_BAR, build, choose
from artsearch.index.store import Embedding
from artsearch.indexer import IndexOptions, index_collection
from artsearch.query import search
from tests.helpers import FAKE, clustered, make_collection


def test_auto_is_exact_then_hnsw_then_ivfpq() -> None:
    assert choose("auto", 1_000, 1280) == "flat"
    assert choose("auto", 100_000, 1280) == "flat"
    assert choose("auto", 500_000, 1280) == "hnsw"
    assert choose("auto", 5_000_000, 1280) == "ivfpq"  # full vectors would need 25 GB
    assert choose("hnsw", 10, 1280) == "hnsw"  # an explicit choice is kept
    # Wider vectors cost more to scan: the same bytes, so fewer of them stay exact.
    assert choose("auto", 41_000, 3104) == "flat" and choose("auto", 42_000, 3104) == "hnsw"
    assert choose("auto", 100_000, 48) == "flat"  # narrow ones never turn approximate sooner


@pytest.mark.parametrize("kind", ["hnsw", pytest.param("ivfpq", marks=pytest.mark.slow)])
def test_builds_reach_the_recall_bar_on_their_own_data(kind: str) -> None:
    # Small enough for the fast suite (IVF-PQ training dominates); benchmarks/bench_ann.py
    # measures the same at 100k and 1M.
    everything = clustered(6_050, 32)
    vectors, queries = everything[:6_000], everything[6_000:]  # fresh, same distribution
    ids = np.arange(6_000, dtype=np.int64) * 3 + 7  # FAISS ids need not be contiguous
    ann = build(vectors, ids, kind)
    assert ann.recall >= RECALL_BAR and len(ann) == 6_000
    _, found = ann.search(queries, 10)
    exact = queries @ vectors.T
    truth = ids[np.argsort(-exact, axis=1)[:, :10]]
    measured = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert measured >= 0.9  # fresh queries: close to the calibrated figure


def test_an_index_run_builds_uses_and_retires_the_approximate_index(tmp_path: Path) -> None:
    root = tmp_path / "coll"
    make_collection(root, 40)
    opts = IndexOptions(backbone=FAKE, index_type="hnsw", extractor={"num_workers": 0})
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        report = index_collection(root, idx, opts)
        assert report.ann is not None and report.ann["type"] == "hnsw"
        assert (tmp_path / "idx" / "content.ann.faiss").is_file()
        approx = search(idx, artwork=5, k=10)
        exact = search(idx, artwork=5, k=10, where={"path": [p.path for p in approx.hits]})
    assert approx.search["index"] == "hnsw" and exact.search["index"] == "flat (exact)"
    assert [h.id for h in approx.hits] == [h.id for h in exact.hits]

    with ArtIndex(tmp_path / "idx") as idx:  # a re-run with nothing new keeps it
        again = index_collection(root, idx, IndexOptions(extractor={"num_workers": 0}))
        assert again.ann is None and idx.space("content").params["index_type"] == "hnsw"
        with idx.store.session() as s, s.begin():  # the space changes behind its back
            s.execute(delete(Embedding).where(Embedding.faiss_id == 0))
        stale = search(idx, artwork=5, k=10)
    assert stale.search["index"] == "flat (exact)" and "out of date" in stale.search["note"]

    with ArtIndex(tmp_path / "idx") as idx:  # back to exact: the file goes
        index_collection(root, idx, IndexOptions(index_type="flat",
                                                 extractor={"num_workers": 0}))
        assert "ann" not in idx.space("content").params
    assert not (tmp_path / "idx" / "content.ann.faiss").exists()


def test_auto_searches_exactly_rather_than_below_the_bar(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import artsearch.index.ann

    monkeypatch.setattr(artsearch.index.ann, "FLAT_MAX", 10)  # 30 works: auto picks HNSW
    monkeypatch.setattr(artsearch.index.ann, "RECALL_BAR", 1.01)  # a bar no index can reach
    root = tmp_path / "coll"
    make_collection(root, 30)
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        report = index_collection(root, idx, IndexOptions(backbone=FAKE,
                                                          extractor={"num_workers": 0}))
        assert report.ann is not None and report.ann["type"] == "flat"
        assert "below 1.01; searching exactly" in report.ann["note"]
        assert "ann" not in idx.space("content").params
        assert search(idx, artwork=3, k=5).search["index"] == "flat (exact)"
    assert not (tmp_path / "idx" / "content.ann.faiss").exists()


@pytest.mark.heavy
def test_shards_merge_into_the_index_one_pass_would_build() -> None:
    import faiss

    from artsearch.index.ann import fill_shard, merge_shards

    vectors = clustered(6_000, 32, seed=3)
    ids = np.arange(6_000, dtype=np.int64) * 5 + 1
    inner = faiss.index_factory(32, "IVF64,PQ16,Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
    inner.train(vectors[:4_000])
    trained = faiss.serialize_index(inner).tobytes()
    whole = faiss.deserialize_index(np.frombuffer(fill_shard(trained, ids, vectors), np.uint8))
    parts = [faiss.deserialize_index(np.frombuffer(fill_shard(trained, ids[a:b], vectors[a:b]),
                                                   np.uint8))
             for a, b in [(0, 1_000), (1_000, 3_500), (3_500, 6_000)]]
    merged = merge_shards(parts)
    assert merged.ntotal == 6_000
    assert np.array_equal(faiss.vector_to_array(merged.id_map), ids)
    for index in (whole, merged):
        top = faiss.downcast_index(faiss.downcast_index(index).index)
        top.k_factor = 16
        faiss.extract_index_ivf(top).nprobe = 8
    got, want = merged.search(vectors[:50], 10), whole.search(vectors[:50], 10)
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0])


@pytest.mark.slow
def test_a_large_space_is_built_in_shards_and_calibrated(tmp_path: Path) -> None:
    """The sharded build over an exact store's rows, as `update_ann` calls it above
    SHARD_MIN (that switch itself needs a million vectors and is left to bench_shards.py)."""
    from artsearch.index import ann
    from artsearch.index.vectors import VectorIndex

    vectors = clustered(8_050, 32, seed=5)
    store = VectorIndex.create(tmp_path / "v.faiss", 32)
    store.add(range(8_000), vectors[:8_000])
    built = ann.build_sharded(store.rows, 8_000, 32, rows=2_500)
    assert len(built) == 8_000 and built.recall >= RECALL_BAR
    _, found = built.search(vectors[8_000:], 10)
    truth = np.argsort(-(vectors[8_000:] @ vectors[:8_000].T), axis=1)[:, :10]
    measured = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert measured >= 0.9  # fresh queries: close to the calibrated figure


def parquet_collection(tmp_path: Path, n: int, seed: int, dims: int = 48) -> Path:
    """A collection of n placeholder files and their clustered vectors in tmp_path/v.parquet
    (the files only need to exist: the vectors come from the Parquet); its folder."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    root = tmp_path / "coll"
    root.mkdir()
    names = [f"w{i:05d}.png" for i in range(n)]
    for name in names:
        (root / name).write_bytes(name.encode())
    vectors = clustered(n, dims, seed=seed)
    pq.write_table(pa.table({"path": names, "embedding": pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), dims)}), tmp_path / "v.parquet")
    return root


@pytest.mark.slow
def test_update_ann_switches_to_the_sharded_build_at_shard_min(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A space whose vectors came in through import-vectors (no model run needed), with the
    thresholds lowered: `update_ann` must build IVF-PQ in shards and record them."""
    from artsearch.exchange import import_vectors
    from artsearch.index import ann

    root = parquet_collection(tmp_path, 8_000, seed=11)
    monkeypatch.setattr(ann, "SHARD_MIN", 5_000)
    monkeypatch.setattr(ann, "SHARD_ROWS", 2_500)
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        import_vectors(idx, tmp_path / "v.parquet", "content", root=root, backbone=FAKE)
        record = idx.update_ann(idx.space("content"), "ivfpq")
        assert record is not None and record["shards"] == 4 and record["recall10"] >= RECALL_BAR
        approx = search(idx, artwork=7, k=10)
    assert approx.search["index"] == "ivfpq" and len(approx.hits) == 10


def test_imported_vectors_get_the_index_their_size_calls_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """import-vectors applies `index`'s automatic choice (issue 34): past the exact-search
    size, the space is served by HNSW at the recall bar, without asking."""
    from artsearch.exchange import import_vectors
    from artsearch.index import ann

    root = parquet_collection(tmp_path, 4_000, seed=5)
    monkeypatch.setattr(ann, "FLAT_MAX", 1_000)
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        report = import_vectors(idx, tmp_path / "v.parquet", "content", root=root,
                                backbone=FAKE)
        assert report.ann is not None and report.ann["type"] == "hnsw"
        assert report.ann["recall10"] >= RECALL_BAR
        found = search(idx, artwork=7, k=10)
    assert found.search["index"] == "hnsw" and len(found.hits) == 10
