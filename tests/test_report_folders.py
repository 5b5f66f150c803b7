"""Report folders: a report writes only into a folder that is new, empty or an earlier
report's; only the files it wrote are copied into the index; the app serves only those."""

from __future__ import annotations

from pathlib import Path

import pytest

from artsearch.index import ArtIndex
from artsearch.reports.page import MARKER, report_files
from tests.helpers import FAKE, index_args, invoke, painting


@pytest.fixture
def indexed(collection: Path, tmp_path: Path) -> Path:
    assert invoke(*index_args(collection, "--index", str(tmp_path / "idx"), "-q"))[0] == 0
    return tmp_path / "idx"


def someones_folder(tmp_path: Path) -> Path:
    """A folder of the user's own: a page, notes and a subfolder of pictures."""
    home = tmp_path / "home"
    (home / "thumbs").mkdir(parents=True)
    (home / "index.html").write_text("my own page")
    (home / "notes.txt").write_text("my notes")
    (home / "thumbs" / "1.jpg").write_bytes(b"my picture")
    return home


def untouched(home: Path) -> bool:
    return (sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
            == ["index.html", "notes.txt", "thumbs", "thumbs/1.jpg"]
            and (home / "index.html").read_text() == "my own page"
            and (home / "thumbs" / "1.jpg").read_bytes() == b"my picture")


@pytest.mark.parametrize("command", [
    ["cluster", "--k", "2", "--restarts", "0", "--report", "{dir}"],
    ["clusters", "1", "--report", "{dir}"],
    ["duplicates", "--report", "{dir}"],
    ["audit", "--report", "{dir}"],
    ["train", "--label", "genre", "--report", "{dir}"],
    ["query", "a/work_001.jpg", "--region", "0,0,0.5,0.5", "--report", "{dir}"],
    ["query", "a/work_001.jpg", "--explain", "{dir}"],
    ["layers", "{picture}", "--backbone", FAKE, "--out", "{dir}"],
    ["learn", "--label", "genre", "--out", "{tmp}/m.pt", "--report", "{dir}"],
])
def test_every_report_refuses_a_folder_holding_other_files(indexed: Path, tmp_path: Path,
                                                            command: list[str]) -> None:
    home = someones_folder(tmp_path)
    picture = tmp_path / "p.jpg"
    painting(3).save(picture)
    args = [a.format(dir=home, picture=picture, tmp=tmp_path) for a in command]
    code, out, err = invoke(*args, "--index", str(indexed))
    assert code != 0 and "holds files no artsearch report wrote" in err, out + err
    assert str(home) in err and len(err.strip().splitlines()) == 1, err
    assert untouched(home)


def test_the_default_report_folder_of_learn_and_train_is_checked_before_the_work(
        indexed: Path, tmp_path: Path) -> None:
    (tmp_path / "m-report").mkdir()
    (tmp_path / "m-report" / "mine.txt").write_text("mine")
    for command in (["learn", "--label", "genre"], ["train", "--label", "genre"]):
        code, out, err = invoke(*command, "--out", str(tmp_path / "m.pt"), "--index",
                                str(indexed))
        assert code == 1 and "m-report: holds files no artsearch report wrote" in err, err
        assert not (tmp_path / "m.pt").exists()  # refused before any learning
    assert (tmp_path / "m-report" / "mine.txt").read_text() == "mine"


def test_a_report_is_rewritten_in_its_own_folder_and_lists_what_it_wrote(
        indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):  # the second run writes over the first report: its own folder
        code, said, err = invoke("cluster", "--k", "2", "--restarts", "0", "--report",
                                 str(out), "--show-licences", "all", "--index", str(indexed))
        assert code == 0, said + err
    listed = report_files(out)
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.is_file() and p.name != MARKER)
    assert listed == on_disk and "index.html" in listed
    assert sum(f.startswith("thumbs/") for f in listed) == 12


def test_only_the_reports_own_files_reach_the_index_and_the_app(indexed: Path,
                                                               tmp_path: Path) -> None:
    """A report folder that later gains other files (the user's, dropped in beside it): the
    next run writes there, but copies into the index and serves only what it wrote."""
    from tests.helpers import client

    out = tmp_path / "out"
    assert invoke("cluster", "--k", "2", "--restarts", "0", "--report", str(out),
                  "--index", str(indexed))[0] == 0
    (out / "secret.txt").write_text("private")
    (out / "thumbs").mkdir(exist_ok=True)
    (out / "thumbs" / "99.jpg").write_bytes(b"not a thumbnail")
    (out / "big").mkdir()
    (out / "big" / "data.bin").write_bytes(b"x" * 1000)
    code, said, err = invoke("cluster", "--k", "2", "--restarts", "0", "--report", str(out),
                             "--index", str(indexed))
    assert code == 0, said + err
    with ArtIndex(indexed) as idx:
        runs = sorted((idx.path / "reports").glob("cluster-run-2-*"))
    assert len(runs) == 1 and runs[0].name.endswith("-default")
    copied = {p.relative_to(runs[0]).as_posix() for p in runs[0].rglob("*") if p.is_file()}
    assert "index.html" in copied and "secret.txt" not in copied
    assert "thumbs/99.jpg" not in copied and not any(c.startswith("big/") for c in copied)

    # The app: a file placed in the index's copy is not served either.
    (runs[0] / "planted.txt").write_text("planted")
    c = client(indexed)
    assert c.get("/clusters/2/index.html").status_code == 200
    assert c.get("/clusters/2/planted.txt").status_code == 404
    assert c.get("/clusters/2/report.json").status_code == 200
