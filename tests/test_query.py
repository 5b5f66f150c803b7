"""Search: self-match, filters applied inside the search, exclusion by field, JSON shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import ImageOps

from artsearch.errors import BadImageError, MetadataError, NotIndexedError
from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from artsearch.query import parse_where, search
from tests.helpers import FAKE, make_collection, painting

N = 40


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "coll"
    make_collection(root, N)
    rows = ["path,artist,genre,century"]
    for i in range(N):
        folder = "a" if i % 2 else "b"
        # Three rare "marine" works, and artists shared by groups of four.
        genre = "marine" if i in (5, 17, 33) else "landscape"
        rows.append(f"{folder}/work_{i:03d}.jpg,Artist {i // 4},{genre},{17 + i % 3}")
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    opts = IndexOptions(backbone=FAKE, metadata=tmp_path / "meta.csv",
                        extractor={"num_workers": 0})
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, opts)
    return root, tmp_path / "idx"


def test_every_indexed_image_finds_itself_first(indexed: tuple[Path, Path]) -> None:
    root, idx_dir = indexed
    with ArtIndex(idx_dir) as idx:
        for path in sorted(root.rglob("*.jpg")):
            result = search(idx, image=path, k=3)
            assert result.hits[0].path == path.relative_to(root).as_posix()
            assert result.hits[0].score == pytest.approx(1.0, abs=1e-5)
            assert result.query["indexed"] is True


def test_query_by_id_and_by_indexed_path_agree(indexed: tuple[Path, Path]) -> None:
    _, idx_dir = indexed
    with ArtIndex(idx_dir) as idx:
        by_path = search(idx, artwork="a/work_001.jpg", k=5)
        by_id = search(idx, artwork=by_path.hits[0].id, k=5)
    assert [h.path for h in by_path.hits] == [h.path for h in by_id.hits]
    assert [h.score for h in by_path.hits] == sorted((h.score for h in by_path.hits), reverse=True)


def test_an_outside_image_is_embedded(indexed: tuple[Path, Path], tmp_path: Path) -> None:
    root, idx_dir = indexed
    flipped = tmp_path / "flipped.png"
    ImageOps.mirror(ImageOps.flip(
        __import__("PIL.Image").Image.open(root / "b" / "work_010.jpg"))).save(flipped)
    with ArtIndex(idx_dir) as idx:
        result = search(idx, image=flipped, k=N)
    assert result.query["indexed"] is False
    assert len(result.hits) == N
    assert result.hits[0].score < 0.9999  # not answered from a stored vector


def test_a_rare_filter_still_returns_every_match(indexed: tuple[Path, Path]) -> None:
    _, idx_dir = indexed
    with ArtIndex(idx_dir) as idx:
        # Query a landscape: marines are not its neighbours, yet all three must come back.
        result = search(idx, artwork="b/work_000.jpg", k=10,
                        where=parse_where(["genre=Marine"]))
    assert sorted(h.path for h in result.hits) == ["a/work_005.jpg", "a/work_017.jpg",
                                                  "a/work_033.jpg"]
    assert any("only 3" in n for n in result.notes)


def test_filters_combine_and_reach_extra_fields(indexed: tuple[Path, Path]) -> None:
    _, idx_dir = indexed
    with ArtIndex(idx_dir) as idx:
        result = search(idx, artwork="b/work_000.jpg", k=N,
                        where=parse_where(["century=17", "century=19", "genre=landscape"]))
    assert result.hits
    for hit in result.hits:
        assert hit.genre == "landscape" and hit.extra and hit.extra["century"] in ("17", "19")
    expected = sum(1 for i in range(N) if i % 3 in (0, 2) and i not in (5, 17, 33))
    assert len(result.hits) == expected


def test_exclude_same_artist_drops_the_query_artists_works(indexed: tuple[Path, Path]) -> None:
    _, idx_dir = indexed
    with ArtIndex(idx_dir) as idx:
        result = search(idx, artwork="a/work_005.jpg", k=N, exclude_same=["artist"])
    assert len(result.hits) == N - 4
    assert all(h.artist != "Artist 1" for h in result.hits)


def test_exclude_same_needs_an_indexed_query(indexed: tuple[Path, Path], tmp_path: Path) -> None:
    root, idx_dir = indexed
    outside = tmp_path / "outside.jpg"
    painting(777).save(outside)
    with ArtIndex(idx_dir) as idx, pytest.raises(MetadataError, match="not an indexed artwork"):
        search(idx, image=outside, k=3, exclude_same=["artist"])


def test_bad_queries_say_what_to_do(indexed: tuple[Path, Path]) -> None:
    _, idx_dir = indexed
    with ArtIndex(idx_dir) as idx:
        with pytest.raises(NotIndexedError, match="no such artwork"):
            search(idx, artwork="nope.jpg")
        with pytest.raises(NotIndexedError, match="no embedding space 'style'"):
            search(idx, artwork="a/work_001.jpg", space="style")
        with pytest.raises(MetadataError, match="FIELD=VALUE"):
            parse_where(["genre"])


def test_results_are_unit_cosines(indexed: tuple[Path, Path]) -> None:
    _, idx_dir = indexed
    with ArtIndex(idx_dir) as idx:
        vec = idx.vectors(idx.space("content"))
        norms = np.linalg.norm(np.stack([vec.reconstruct(i) for i in vec.ids()]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_a_corrupt_query_image_is_named_in_the_error(indexed: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    _, idx_dir = indexed
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture")
    with ArtIndex(idx_dir) as idx, pytest.raises(BadImageError, match=r"bad\.jpg: not an image"):
        search(idx, image=bad, k=3)
