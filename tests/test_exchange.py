"""Embeddings in and out: exports read back exactly by pandas and pyarrow, and an imported
space answers queries as the space it came from did; mixing is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from artsearch.errors import ArtsearchError, IndexMismatchError
from artsearch.index import ArtIndex
from artsearch.query import search
from tests.helpers import FAKE, TRAINABLE, index_args, invoke, make_collection, stored_vectors

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def indexed(collection: Path, tmp_path: Path) -> Path:
    meta = tmp_path / "meta.csv"
    meta.write_text("path,title,license\na/work_001.jpg,Sunset,public domain\n")
    assert invoke(*index_args(collection, "--index", str(tmp_path / "a"),
                              "--metadata", str(meta), "-q"))[0] == 0
    return tmp_path / "a"


def test_parquet_export_round_trips_ids_and_vectors_exactly(indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    code, said, _ = invoke("export", str(out), "--index", str(indexed))
    assert code == 0, said
    frame = pd.read_parquet(out)  # the folder, as pandas and embedding-reader take it
    assert len(frame) == 12
    truth = stored_vectors(indexed)
    with ArtIndex(indexed) as idx:
        from artsearch.index.catalogue import embedded_works

        ids = {a.path: a.id for a in embedded_works(idx, "content")}
    for row in frame.itertuples():
        assert row.id == ids[row.path]
        assert np.array_equal(np.asarray(row.embedding, np.float32), truth[row.path])
    assert frame.set_index("path").loc["a/work_001.jpg", "title"] == "Sunset"
    meta = json.loads(pq.read_schema(next(out.glob("*.parquet"))).metadata[b"artsearch"])
    assert meta["space"]["backbone"] == FAKE
    assert json.loads((out / "_content.export.json").read_text())["count"] == 12


def test_npy_export_is_aligned_with_its_metadata(indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "npy"
    assert invoke("export", str(out), "--index", str(indexed), "--format", "npy")[0] == 0
    vectors = np.load(out / "emb" / "content-00000.npy")
    table = pq.read_table(out / "metadata" / "content-00000.parquet")
    assert "embedding" not in table.column_names
    truth = stored_vectors(indexed)
    assert vectors.dtype == np.float32 and len(vectors) == table.num_rows == 12
    for path, v in zip(table.column("path").to_pylist(), vectors, strict=True):
        assert np.array_equal(v, truth[path])


@pytest.mark.parametrize(("fmt", "pooling"), [("parquet", "avg"), ("npy", "avg"),
                                               ("parquet", "cavg")])
def test_an_imported_space_answers_queries_as_its_source(indexed: Path, collection: Path,
                                                         tmp_path: Path, fmt: str,
                                                         pooling: str) -> None:
    if pooling != "avg":  # a fitted pooling: its centre must travel with the vectors
        indexed = tmp_path / "fitted"
        assert invoke(*index_args(collection, "--index", str(indexed), "--pooling", pooling,
                                  "-q"))[0] == 0
    out = tmp_path / "export"
    assert invoke("export", str(out), "--index", str(indexed), "--format", fmt)[0] == 0
    other = tmp_path / "b"
    code, said, err = invoke("import-vectors", str(out), "--index", str(other),
                             "--root", str(collection))
    assert code == 0, said + err
    assert "space 'content': 12 vectors (12 imported, 12 new works)" in said
    # A picture that is not in either index: both must embed it and rank alike.
    query = tmp_path / "q.jpg"
    make_collection(tmp_path / "q", n=1, start=40)
    next((tmp_path / "q").rglob("*.jpg")).rename(query)
    with ArtIndex(indexed) as a, ArtIndex(other) as b:
        ra = search(a, image=query, k=12)
        rb = search(b, image=query, k=12)
    assert [h.path for h in ra.hits] == [h.path for h in rb.hits]
    assert np.allclose([h.score for h in ra.hits], [h.score for h in rb.hits], atol=1e-6)
    # Catalogue fields travel with the vectors, and a second import changes nothing new.
    with ArtIndex(other) as b:
        from artsearch.index.catalogue import find_artwork

        assert find_artwork(b, path="a/work_001.jpg").title == ("Sunset" if pooling == "avg"
                                                                 else None)
    code, said, _ = invoke("import-vectors", str(out), "--index", str(other))
    assert "12 imported, 12 replaced a vector" in said
    assert stored_vectors(other).keys() == stored_vectors(indexed).keys()


def test_import_refuses_mixing_spaces(indexed: Path, collection: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert invoke("export", str(out), "--index", str(indexed))[0] == 0
    other = tmp_path / "b"
    assert invoke(*index_args(collection, "--index", str(other), "--backbone", TRAINABLE,
                              "-q"))[0] == 0
    before = stored_vectors(other)
    with ArtIndex(other) as b, pytest.raises(IndexMismatchError, match="was built with"):
        from artsearch.exchange import import_vectors

        import_vectors(b, out, "content")
    assert {p: v.tobytes() for p, v in stored_vectors(other).items()} == \
        {p: v.tobytes() for p, v in before.items()}  # nothing changed
    # Vectors from another tool, declared as a backbone whose dims they do not have.
    table = pa.table({"path": ["a/work_001.jpg"],
                      "embedding": pa.array([[0.1] * 7], pa.list_(pa.float32()))})
    odd = tmp_path / "odd.parquet"
    pq.write_table(table, odd)
    code, said, err = invoke("import-vectors", str(odd), "--index", str(other),
                             "--space", "odd", "--backbone", FAKE)
    assert code == 1 and "7-d vectors, but fake-colour" in err
    code, _, err = invoke("import-vectors", str(odd), "--index", str(other), "--space", "odd")
    assert code == 1 and "declare it with --backbone" in err


def test_import_skips_rows_it_cannot_trust(indexed: Path, collection: Path,
                                           tmp_path: Path) -> None:
    truth = stored_vectors(indexed)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((collection / "a" / "work_001.jpg").read_bytes())
    rows = {"path": ["a/work_001.jpg", "gone.jpg", "b/work_002.jpg", str(outside),
                     "../outside.jpg"],
            "sha256": [None, None, "0" * 64, None, None],
            "embedding": [truth["a/work_001.jpg"].tolist()] * 5}
    src = tmp_path / "some.parquet"
    pq.write_table(pa.table(rows), src)
    other = tmp_path / "b"
    code, said, err = invoke("import-vectors", str(src), "--index", str(other), "--root",
                             str(collection), "--backbone", FAKE, "--space", "x")
    assert code == 0, said + err
    assert "skipped gone.jpg: no such file under" in err
    assert "skipped b/work_002.jpg: the file differs" in err
    assert f"skipped {outside}: no such file under" in err  # a row may not reach outside
    assert "skipped ../outside.jpg: no such file under" in err
    assert list(stored_vectors(other, "x")) == ["a/work_001.jpg"]
    with ArtIndex(other) as b, pytest.raises(ArtsearchError, match="no 'vec' column"):
        from artsearch.exchange import import_vectors

        import_vectors(b, src, "x", column="vec", backbone=FAKE)
