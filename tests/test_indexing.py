"""Incremental indexing with the fake backbone: what is embedded, reused, kept and repaired."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from artsearch.errors import IndexLockedError, IndexMismatchError
from artsearch.index import ArtIndex
from artsearch.index.store import Artwork, Embedding, Failure
from artsearch.indexer import IndexOptions, IndexReport, index_collection
from tests.helpers import FAKE, make_collection, painting


def run(root: Path, index_dir: Path, **kw: object) -> IndexReport:
    opts = IndexOptions(backbone=kw.pop("backbone", FAKE),
                        extractor={"num_workers": 0, "batch_size": 5}, **kw)  # type: ignore[arg-type]
    with ArtIndex(index_dir, create=True) as idx:
        return index_collection(root, idx, opts)


def consistent(index_dir: Path) -> dict[str, int]:
    """Assert SQLite and FAISS agree exactly; return path -> faiss id."""
    with ArtIndex(index_dir) as idx:
        space = idx.space("content")
        ids = idx.vectors(space).ids()
        with idx.store.session() as s:
            rows = s.execute(select(Artwork.path, Embedding.faiss_id).join(Embedding)).all()
    assert len(ids) == len(set(ids.tolist())), "duplicate ids in FAISS"
    assert sorted(ids.tolist()) == sorted(fid for _, fid in rows)
    return dict(rows)  # type: ignore[arg-type]


def test_first_run_embeds_everything_and_rerun_nothing(collection: Path, tmp_path: Path) -> None:
    first = run(collection, tmp_path / "idx")
    assert (first.scanned, first.embedded, first.total, first.failed) == (12, 12, 12, [])
    second = run(collection, tmp_path / "idx")
    assert (second.embedded, second.unchanged, second.total) == (0, 12, 12)
    assert len(consistent(tmp_path / "idx")) == 12


def test_changed_file_is_reembedded_under_a_new_id(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    before = consistent(tmp_path / "idx")
    painting(999).save(collection / "a" / "work_001.jpg")
    report = run(collection, tmp_path / "idx")
    assert (report.embedded, report.unchanged, report.total) == (1, 11, 12)
    after = consistent(tmp_path / "idx")
    assert after["a/work_001.jpg"] != before["a/work_001.jpg"]
    assert {p: i for p, i in after.items() if p != "a/work_001.jpg"} == {
        p: i for p, i in before.items() if p != "a/work_001.jpg"}


def test_touched_file_is_hashed_not_reembedded(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    path = collection / "b" / "work_000.jpg"
    path.touch()
    report = run(collection, tmp_path / "idx")
    assert (report.embedded, report.unchanged) == (0, 12)


def test_moved_file_keeps_its_vector_and_metadata(collection: Path, tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("path,artist\na/work_001.jpg,Rembrandt\n")
    run(collection, tmp_path / "idx", metadata=csv)
    before = consistent(tmp_path / "idx")
    (collection / "c").mkdir()
    shutil.move(collection / "a" / "work_001.jpg", collection / "c" / "renamed.jpg")
    report = run(collection, tmp_path / "idx")
    assert (report.moved, report.embedded, report.missing, report.total) == (1, 0, [], 12)
    after = consistent(tmp_path / "idx")
    assert after["c/renamed.jpg"] == before["a/work_001.jpg"]
    with ArtIndex(tmp_path / "idx") as idx, idx.store.session() as s:
        art = s.scalar(select(Artwork).where(Artwork.path == "c/renamed.jpg"))
        assert art is not None and art.artist == "Rembrandt"


def test_identical_copy_reuses_the_vector(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    shutil.copy(collection / "a" / "work_001.jpg", collection / "copy.jpg")
    report = run(collection, tmp_path / "idx")
    assert (report.copied, report.embedded, report.total) == (1, 0, 13)
    ids = consistent(tmp_path / "idx")
    with ArtIndex(tmp_path / "idx") as idx:
        vec = idx.vectors(idx.space("content"))
        np.testing.assert_array_equal(vec.reconstruct(ids["copy.jpg"]),
                                      vec.reconstruct(ids["a/work_001.jpg"]))


def test_missing_files_are_kept_until_prune(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    (collection / "a" / "work_003.jpg").unlink()
    kept = run(collection, tmp_path / "idx")
    assert (kept.missing, kept.total) == (["a/work_003.jpg"], 12)
    pruned = run(collection, tmp_path / "idx", prune=True)
    assert (pruned.pruned, pruned.total) == (1, 11)
    assert "a/work_003.jpg" not in consistent(tmp_path / "idx")


def test_bad_files_are_recorded_and_the_run_goes_on(collection: Path, tmp_path: Path) -> None:
    (collection / "empty.jpg").write_bytes(b"")
    (collection / "text.png").write_text("hello")
    good = (collection / "a" / "work_001.jpg").read_bytes()
    (collection / "cut.jpg").write_bytes(good[: len(good) // 3])
    report = run(collection, tmp_path / "idx")
    assert report.total == 12
    assert sorted(p for p, _ in report.failed) == ["cut.jpg", "empty.jpg", "text.png"]
    with ArtIndex(tmp_path / "idx") as idx, idx.store.session() as s:
        stored = {f.path: f.reason for f in s.scalars(select(Failure))}
    assert stored.keys() == {"cut.jpg", "empty.jpg", "text.png"}
    # Fixing a file clears its failure; removing one clears it too.
    painting(50).save(collection / "cut.jpg")
    (collection / "empty.jpg").unlink()
    report = run(collection, tmp_path / "idx")
    assert report.embedded == 1 and [p for p, _ in report.failed] == ["text.png"]
    with ArtIndex(tmp_path / "idx") as idx, idx.store.session() as s:
        assert [f.path for f in s.scalars(select(Failure))] == ["text.png"]


def test_a_file_that_turns_corrupt_keeps_its_old_vector(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    before = consistent(tmp_path / "idx")
    (collection / "a" / "work_001.jpg").write_bytes(b"garbage")
    report = run(collection, tmp_path / "idx")
    assert [p for p, _ in report.failed] == ["a/work_001.jpg"]
    assert consistent(tmp_path / "idx") == before


def test_metadata_csv_fills_fields_and_extra(collection: Path, tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("path,title,artist,genre,museum\n"
                   "a/work_001.jpg,Night Watch,Rembrandt,history,Rijksmuseum\n"
                   "./b/work_000.jpg,,Vermeer,genre,\n"
                   "not/there.jpg,x,y,z,w\n")
    report = run(collection, tmp_path / "idx", metadata=csv)
    assert report.metadata is not None
    assert (report.metadata.rows, report.metadata.matched) == (3, 2)
    assert report.metadata.unmatched == ["not/there.jpg"]
    with ArtIndex(tmp_path / "idx") as idx, idx.store.session() as s:
        arts = {a.path: a for a in s.scalars(select(Artwork))}
    assert arts["a/work_001.jpg"].title == "Night Watch"
    assert arts["a/work_001.jpg"].extra == {"museum": "Rijksmuseum"}
    assert (arts["b/work_000.jpg"].artist, arts["b/work_000.jpg"].title) == ("Vermeer", None)


def test_reconcile_repairs_both_directions(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    ids = consistent(tmp_path / "idx")
    with ArtIndex(tmp_path / "idx") as idx:
        space = idx.space("content")
        vec = idx.vectors(space)
        # A crash after FAISS was saved but before SQLite committed leaves a stray vector...
        vec.add([10_000], np.ones((1, 48), np.float32) / np.sqrt(48))
        # ...and a crash after SQLite committed but before FAISS was saved loses one.
        vec.remove([ids["a/work_001.jpg"]])
        idx.save_vectors(space)
    report = run(collection, tmp_path / "idx")
    assert (report.repaired.stray_vectors, report.repaired.missing_vectors) == (1, 1)
    assert report.embedded == 1 and report.total == 12
    after = consistent(tmp_path / "idx")
    assert 10_000 not in after.values() and after["a/work_001.jpg"] > 10_000


def test_second_writer_is_refused(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    with ArtIndex(tmp_path / "idx") as first:
        first.lock()
        with pytest.raises(IndexLockedError, match="another artsearch process"):
            run(collection, tmp_path / "idx")


def test_a_space_refuses_another_backbone(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="space 'content' was built with fake-colour"):
        run(collection, tmp_path / "idx", backbone="efficientnet-lite0")


def test_an_index_refuses_another_collection(collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    other = tmp_path / "other"
    make_collection(other, 3)
    with pytest.raises(IndexMismatchError, match="--relocate"):
        run(other, tmp_path / "idx")
    report = run(other, tmp_path / "idx", relocate=True, prune=True, force=True)
    assert report.total == 3
