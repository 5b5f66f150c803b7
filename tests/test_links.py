"""Links out of the collection (issue 23): the indexer does not follow them unless asked, and
a link placed in the collection, or a work's file swapped for one after indexing, is read by
no route, report or command (one checking function: artsearch.paths.work_file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import client, index_args, invoke, make_collection, painting


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the collection with a picture someone should not see served."""
    folder = tmp_path / "private"
    folder.mkdir()
    painting(77, (120, 90)).save(folder / "secret.jpg")
    return folder


def test_the_indexer_reports_links_out_and_follows_them_only_when_asked(
        collection: Path, outside: Path, tmp_path: Path) -> None:
    (collection / "a" / "linked.jpg").symlink_to(outside / "secret.jpg")
    (collection / "elsewhere").symlink_to(outside, target_is_directory=True)
    (collection / "b" / "inside.jpg").symlink_to(collection / "a" / "work_001.jpg")
    code, out, err = invoke(*index_args(collection, "--index", str(tmp_path / "i")))
    assert code == 0, out + err
    assert "skipped a/linked.jpg: a link to" in err and "outside the collection" in err
    assert "skipped elsewhere: a link to" in err and "--follow-links" in err
    assert "13 artworks indexed" in out  # the link within the collection is followed
    code, out, err = invoke(*index_args(collection, "--index", str(tmp_path / "j"),
                                        "--follow-links"))
    assert code == 0 and "15 artworks indexed" in out, out + err


def test_a_work_swapped_for_a_link_is_served_by_no_route_or_report(
        collection: Path, outside: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch import images

    read: list[Path] = []
    real = images.read_file

    def recording(path: Path, *a: object, **k: object) -> bytes:
        read.append(Path(path))
        return real(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(images, "read_file", recording)
    index = tmp_path / "idx"
    meta = tmp_path / "meta.csv"
    meta.write_text("path,license\n" + "".join(f"{p.relative_to(collection).as_posix()},CC0\n"
                                                for p in sorted(collection.rglob("*.jpg"))))
    assert invoke(*index_args(collection, "--index", str(index), "--metadata", str(meta),
                              "-q"))[0] == 0
    victim = collection / "a" / "work_001.jpg"
    victim.unlink()
    victim.symlink_to(outside / "secret.jpg")  # swapped after indexing
    c = client(index)
    works = {w["path"]: w["id"] for w in c.get("/api/works", params={"per_page": 100}
                                               ).json()["works"]}
    bad, good = works["a/work_001.jpg"], works["b/work_002.jpg"]
    assert c.get(f"/image/{bad}").status_code == 404
    assert c.get(f"/image/{good}").status_code == 200
    thumb = c.get(f"/thumb/{bad}")
    assert thumb.status_code != 200 or thumb.content != c.get(f"/thumb/{good}").content
    assert c.get(f"/explain/{good}/{bad}/b.png").status_code == 404
    assert c.get(f"/explain/{bad}/{good}/a.png").status_code == 404
    # Reports: the cluster report's thumbnail of that work is not made from the link.
    report = tmp_path / "report"
    code, out, err = invoke("cluster", "--index", str(index), "-k", "2", "--restarts", "0",
                            "--report", str(report), "--show-licences", "all")
    assert code == 0, out + err
    secret = (outside / "secret.jpg").read_bytes()
    made = list(report.rglob("*.jpg"))
    assert made and all(f"{bad}.jpg" != p.name for p in made)
    assert all(p.read_bytes() != secret for p in made)
    # Duplicates and stylize --style-id never read it either.
    code, out, err = invoke("duplicates", "--index", str(index), "--json")
    assert code == 0, out + err
    assert read and victim not in read  # every reader above went through the check
    content = tmp_path / "content.jpg"
    painting(5).save(content)
    code, _, err = invoke("stylize", str(content), "--style-id", str(bad), "--index",
                          str(index), "--method", "fast", "--out", str(tmp_path / "s.png"))
    assert code == 1 and "leads outside the collection" in err


def test_the_checking_function_refuses_every_way_out(collection: Path,
                                                     outside: Path) -> None:
    from artsearch.errors import BadImageError
    from artsearch.paths import inside, work_file

    (collection / "up").symlink_to(outside, target_is_directory=True)
    for rel in ("../private/secret.jpg", str(outside / "secret.jpg"), "up/secret.jpg",
                "a/\x00.jpg", ""):
        assert inside(collection, rel) is None
        with pytest.raises(BadImageError):
            work_file(collection, rel)
    assert work_file(collection, "a/work_001.jpg") == collection / "a" / "work_001.jpg"
    make_collection(collection / "sub", n=1)  # within: followed
    assert inside(collection, "sub/b/work_000.jpg") is not None
