"""A newcomer's first hour (issue 25): which index a command uses, names that are nearly
right, the small inconsistencies of the command line, and a package that builds quietly."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.helpers import index_args, invoke, make_collection


def build(collection: Path, name: str) -> None:
    assert invoke(*index_args(collection, "--index", name, "-q"))[0] == 0


def test_the_only_index_is_the_default_and_indexes_lists_them(
        collection: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(collection, "example")
    code, out, _ = invoke("info")  # no --index: the only index there is
    assert code == 0 and str(isolated_home / "example") in out
    code, out, _ = invoke("indexes")
    assert code == 0 and "* example" in out and "12 works" in out
    other = collection.parent / "other"
    make_collection(other, n=3)
    build(other, "second")
    code, _, err = invoke("info")  # two indexes: no guess, the usual default
    assert code == 1 and "no index here" in err
    monkeypatch.setenv("ARTSEARCH_INDEX", "second")
    code, out, _ = invoke("info")
    assert code == 0 and str(isolated_home / "second") in out
    data = json.loads(invoke("indexes", "--json")[1])
    assert [(r["name"], r["default"], r["works"]) for r in data["indexes"]] == [
        ("example", False, 12), ("second", True, 3)]


def test_a_mistyped_index_name_gets_a_suggestion(collection: Path) -> None:
    build(collection, "example")
    code, _, err = invoke("query", "a/work_001.jpg", "--index", "exmaple")
    assert code == 1 and "did you mean --index example?" in err


def test_hints_carry_the_index_they_were_given(collection: Path, tmp_path: Path) -> None:
    build(collection, str(tmp_path / "idx"))
    code, _, err = invoke("query", "a/work_001.jpg", "--index", str(tmp_path / "idx"),
                          "--space", "styel")
    assert code == 1 and f"--index {tmp_path / 'idx'} --space styel" in err


def test_cluster_takes_k_as_query_does(collection: Path) -> None:
    build(collection, "example")
    code, out, err = invoke("cluster", "-k", "2", "--restarts", "0")
    assert code == 0 and "kmeans, k=2" in out, out + err


def test_vector_files_are_as_readable_as_the_database(collection: Path,
                                                      isolated_home: Path) -> None:
    old = os.umask(0o022)
    try:
        build(collection, "example")
    finally:
        os.umask(old)
    folder = isolated_home / "example"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in (folder / "artsearch.db", folder / "content.faiss")}
    assert modes["content.faiss"] == modes["artsearch.db"] == 0o644


def test_serve_open_says_when_no_browser_starts(collection: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    import uvicorn

    build(collection, "example")
    monkeypatch.setattr(webbrowser, "open", lambda url: False)  # a headless machine
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    code, _, err = invoke("serve", "--open")
    assert code == 0 and "no web browser could be started here; open http://127.0.0.1" in err


def test_an_interrupted_run_says_how_many_works_it_kept(collection: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from artsearch import indexer

    build(collection, "example")
    make_collection(collection, n=3, start=40)

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "_embed", interrupted)
    code, _, err = invoke(*index_args(collection))
    assert code == 130 and "every finished batch is saved (12 works in space 'content')" in err


def test_the_package_builds_without_warnings(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(root)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in (done.stdout + done.stderr).lower()
    import zipfile

    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "artsearch/web/templates/base.html" in names
    assert "artsearch/backbones/weights/README.md" in names


def test_options_written_wrongly_exit_2_as_clicks_own(collection: Path) -> None:
    build(collection, "example")
    for args in (["query", "a/work_001.jpg", "--mix", "content"],
                 ["query", "a/work_001.jpg", "--where", "genre"],
                 ["query", "a/work_001.jpg", "-k", "0"],  # click's own
                 ["query", "--text", "  "]):
        code, _, err = invoke(*args)
        assert code == 2, (args, err)


def test_the_version_is_one_and_released_in_the_changelog() -> None:
    import tomllib

    import artsearch

    root = Path(__file__).resolve().parents[1]
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    assert artsearch.__version__ == version
    assert f"## {version} — " in (root / "CHANGELOG.md").read_text()
