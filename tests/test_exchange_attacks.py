"""Import, export, output paths and the smaller commands against the second hardening round's
attacks (issue 22), each reproduced at its call site: hostile Parquet and .npy files, a
kill between an export's renames, a full disk, output paths under files, a save racing a
reader."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from artsearch.errors import ArtsearchError
from artsearch.index import ArtIndex
from artsearch.index.store import Space
from tests.helpers import FAKE, index_args, invoke, make_collection, painting, stored_vectors

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def indexed(collection: Path, tmp_path: Path) -> Path:
    assert invoke(*index_args(collection, "--index", str(tmp_path / "a"), "-q"))[0] == 0
    return tmp_path / "a"


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def vectors_table(paths: list[str], vectors: list[list[float]], meta: object = None,
                  kind: object = None) -> object:
    table = pa.table({"path": paths, "embedding": pa.array(vectors, kind or pa.list_(
        pa.float32()))})
    if meta is not None:
        raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
        table = table.replace_schema_metadata({"artsearch": raw})
    return table


# -- high 1: a space name is one plain name, wherever it comes from ------------------------------

@pytest.mark.parametrize("name", ["../victim/content", "/tmp/elsewhere", "../../../../x",
                                  "a/b", "..", "", ".hidden", "x" * 65, "co\x00ntent"])
def test_space_names_that_could_leave_the_index_are_refused(indexed: Path, tmp_path: Path,
                                                            name: str) -> None:
    victim = tmp_path / "victim"
    assert invoke("export", str(tmp_path / "exp"), "--index", str(indexed))[0] == 0
    meta = json.loads((tmp_path / "exp" / "_content.export.json").read_text())
    table = pq.read_table(tmp_path / "exp" / "content-00000.parquet")
    shard = dict(json.loads(table.schema.metadata[b"artsearch"]))
    shard["space"] = {**shard["space"], "name": name}
    hostile = tmp_path / "hostile.parquet"
    pq.write_table(table.replace_schema_metadata({"artsearch": json.dumps(shard)}), hostile)
    before = files_under(tmp_path)
    code, _, err = invoke("import-vectors", str(hostile), "--index", str(victim))
    assert code == 1 and "space name" in err and "\x00" not in err
    code, _, err = invoke("import-vectors", str(tmp_path / "exp"), "--index", str(victim),
                          "--space", name)
    assert code != 0 and "space name" in err
    assert files_under(tmp_path) == before  # nothing written, not even the new index
    assert meta["count"] == 12


def test_a_space_recorded_under_an_unsafe_name_is_never_joined_to_a_path(
        indexed: Path, tmp_path: Path) -> None:
    # As an older artsearch's import could leave it:
    with ArtIndex(indexed) as idx, idx.store.session() as s, s.begin():
        s.execute(update(Space).values(name="../../escaped"))
    before = files_under(tmp_path)
    code, _, err = invoke("export", str(tmp_path / "out"), "--index", str(indexed),
                          "--space", "../../escaped")
    assert code == 2 and "space name" in err
    with ArtIndex(indexed) as idx, pytest.raises(ArtsearchError, match="not a space name"):
        from artsearch.exchange import export_space

        export_space(idx, "../../escaped", "parquet", tmp_path / "out")
    code, out, _ = invoke("info", "--index", str(indexed))
    assert code == 0 and "../../escaped" in out  # still described, never opened
    assert files_under(tmp_path) - before <= {"out"}  # at most the (empty) folder asked for


# -- high 3 and 4: an export touches only what it wrote, and a torn one is refused ----------------

def test_export_never_deletes_files_it_did_not_write(indexed: Path, collection: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "emb").mkdir(parents=True)
    mine = {"content-backup-2023.parquet": b"a user's file",
            "emb/content-old.npy": b"another", "content-00007.parquet": b"not artsearch's"}
    for rel, data in mine.items():
        (out / rel).write_bytes(data)
    for fmt in ("parquet", "npy", "parquet"):
        assert invoke("export", str(out), "--index", str(indexed), "--format", fmt)[0] == 0
    for rel, data in mine.items():
        assert (out / rel).read_bytes() == data
    # The npy export's own files were recorded, so the last export removed them.
    assert not (out / "emb" / "content-00000.npy").exists()
    record = json.loads((out / "_content.export.json").read_text())
    assert record["files"] == ["content-00000.parquet"] and record["status"] == "complete"
    # Import reads what the record lists, never the user's look-alike files.
    code, said, err = invoke("import-vectors", str(out), "--index", str(tmp_path / "b"),
                             "--root", str(collection))
    assert code == 0 and "12 imported" in said, said + err


def test_a_kill_between_an_exports_renames_leaves_a_folder_import_refuses(
        indexed: Path, collection: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch import exchange
    from artsearch.exchange import export as exchange_export

    out = tmp_path / "out"
    assert invoke("export", str(out), "--index", str(indexed), "--format", "npy")[0] == 0
    # New works change every row's position in the path order; re-export and die after the
    # first rename (the new emb/ file in place, the old metadata/ still there).
    make_collection(collection, n=6, start=100)
    assert invoke(*index_args(collection, "--index", str(indexed), "-q"))[0] == 0
    real = os.replace
    calls: list[str] = []

    def dies_after_the_first_shard(src: object, dst: object) -> None:
        if str(src).endswith(".tmp") and not str(dst).endswith(".json"):
            calls.append(str(dst))
            if len(calls) == 2:
                raise KeyboardInterrupt  # as kill -9 would stop it, mid-way
        real(src, dst)

    monkeypatch.setattr(exchange_export.os, "replace", dies_after_the_first_shard)
    with ArtIndex(indexed) as idx, pytest.raises(KeyboardInterrupt):
        exchange.export_space(idx, "content", "npy", out)
    monkeypatch.setattr(exchange_export.os, "replace", real)
    assert calls[0].endswith("emb/content-00000.npy")
    code, said, err = invoke("import-vectors", str(out), "--index", str(tmp_path / "b"),
                             "--root", str(collection))
    assert code == 1 and "interrupted" in err, said + err
    assert not (tmp_path / "b").exists()
    # A folder whose emb/ file was swapped for another export's is refused too.
    assert invoke("export", str(out), "--index", str(indexed), "--format", "npy")[0] == 0
    other = tmp_path / "other"
    make_collection(tmp_path / "c2", n=18)
    assert invoke(*index_args(tmp_path / "c2", "--index", str(other), "-q"))[0] == 0
    assert invoke("export", str(tmp_path / "out2"), "--index", str(other), "--format",
                  "npy")[0] == 0
    (out / "emb" / "content-00000.npy").write_bytes(
        (tmp_path / "out2" / "emb" / "content-00000.npy").read_bytes())
    code, _, err = invoke("import-vectors", str(out), "--index", str(tmp_path / "b"),
                          "--root", str(collection))
    assert code == 1 and "not the file" in err and "interrupted" in err
    # Run again, the export is whole and imports: every work gets its own vector.
    assert invoke("export", str(out), "--index", str(indexed), "--format", "npy")[0] == 0
    code, said, err = invoke("import-vectors", str(out), "--index", str(tmp_path / "b"),
                             "--root", str(collection))
    assert code == 0, said + err
    truth, got = stored_vectors(indexed), stored_vectors(tmp_path / "b")
    assert got.keys() == truth.keys()
    assert all(np.allclose(got[p], truth[p], atol=1e-6) for p in truth)


def test_an_export_to_a_full_disk_is_one_line_and_leaves_the_last_export(
        indexed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch.exchange import export as exchange_export

    out = tmp_path / "out"
    assert invoke("export", str(out), "--index", str(indexed), "--format", "npy")[0] == 0
    before = {p: (out / p).read_bytes() for p in files_under(out)}

    def full(*_a: object, **_k: object) -> None:
        raise OSError("write failed: No space left on device")  # numpy's: errno None

    monkeypatch.setattr(exchange_export.np, "save", full)
    code, _, err = invoke("export", str(out), "--index", str(indexed), "--format", "npy")
    assert code == 1 and "could not be written" in err and "Traceback" not in err
    assert {p: (out / p).read_bytes() for p in files_under(out)} == before  # no .tmp left


def test_export_refuses_an_empty_dir_name_and_an_empty_space(indexed: Path,
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("export", "", "--index", str(indexed))
    assert code == 1 and "an empty path" in err and not list(tmp_path.glob("*.parquet"))
    with ArtIndex(indexed) as idx:
        idx.lock()
        vec = idx.vectors(idx.space("content"))
        vec.remove(vec.ids())
        from artsearch.index.store import Embedding

        with idx.store.session() as s, s.begin():
            s.query(Embedding).delete()
        idx.save_vectors(idx.space("content"))
    code, _, err = invoke("export", str(tmp_path / "e"), "--index", str(indexed))
    assert code == 1 and "holds no vectors" in err


# -- medium: hostile import files ----------------------------------------------------------------

def test_finite_huge_and_tiny_vectors_are_normalised_not_zeroed(collection: Path,
                                                                tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 48))
    scaled = [base[0] * 1e20, base[1] * 1e-30, base[2] / np.linalg.norm(base[2])]
    src = tmp_path / "v.parquet"
    pq.write_table(vectors_table(["a/work_001.jpg", "b/work_002.jpg", "a/work_003.jpg"],
                                 [v.tolist() for v in scaled], kind=pa.list_(pa.float64())),
                   src)
    code, said, err = invoke("import-vectors", str(src), "--index", str(tmp_path / "b"),
                             "--root", str(collection), "--backbone", FAKE, "-s", "x")
    assert code == 0 and "3 imported" in said and "2 normalised" in said, said + err
    got = stored_vectors(tmp_path / "b", "x")
    for path, v in zip(["a/work_001.jpg", "b/work_002.jpg"], base[:2], strict=True):
        assert np.allclose(got[path], v / np.linalg.norm(v), atol=1e-6)


@pytest.mark.parametrize(("meta", "match"), [
    (b"{not json", "not an export's description"),
    ({"format": 1}, "not an export's description"),
    ({"space": "content"}, "not an export's description"),
    ({"space": {"name": "x", "backbone": FAKE, "preprocessing": {"size": "abc"}}},
     "picture size 'abc'"),
    ({"space": {"name": "x", "backbone": 12}}, "backbone that is not a name"),
    ({"space": {"name": "x", "backbone": FAKE, "pooling": "evil"}}, "unknown pooling"),
])
def test_hostile_schema_metadata_is_one_line(collection: Path, tmp_path: Path, meta: object,
                                             match: str) -> None:
    src = tmp_path / "v.parquet"
    pq.write_table(vectors_table(["a/work_001.jpg"], [[0.5] * 48], meta), src)
    code, _, err = invoke("import-vectors", str(src), "--index", str(tmp_path / "b"),
                          "--root", str(collection))
    assert code == 1 and match in err and "--input-size" not in err.split(";")[0]
    assert not (tmp_path / "b").exists()


def test_ragged_complex_and_oversized_inputs_are_refused_before_anything_changes(
        collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch.exchange import read as exchange_read

    def refused(src: Path, match: str, *extra: str) -> None:
        code, _, err = invoke("import-vectors", str(src), "--index", str(tmp_path / "b"),
                              "--root", str(collection), "--backbone", FAKE, "-s", "x", *extra)
        assert code == 1 and match in err, err
        assert not (tmp_path / "b").exists()  # no database, no root, no space

    ragged = tmp_path / "ragged.parquet"
    pq.write_table(vectors_table(["a/work_001.jpg", "b/work_002.jpg"],
                                 [[0.1] * 48, [0.1] * 47]), ragged)
    refused(ragged, "row 1 has a vector of 47 numbers")
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({"path": ["a/work_001.jpg"], "embedding": ["0.1,0.2"]}), text)
    refused(text, "not lists of real numbers")
    npy = tmp_path / "npy"
    (npy / "emb").mkdir(parents=True)
    (npy / "metadata").mkdir()
    pq.write_table(pa.table({"path": ["a/work_001.jpg"]}), npy / "metadata" / "v.parquet")
    for array, match in [(np.float32(3.0), "shape ()"), (np.zeros((1, 48, 2)), "shape (1, 48, 2)"),
                         (np.ones((1, 48), np.complex64), "complex64 values")]:
        np.save(npy / "emb" / "v.npy", array)
        refused(npy, match)
    # A header that claims 477 GiB over a few bytes of data is refused from the header.
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 48), np.float32))
    header["shape"] = (1_000_000_000, 128)
    with (npy / "emb" / "v.npy").open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    refused(npy, "not a readable .npy file")
    # Row counts over the documented limit are refused from the file's metadata.
    many = tmp_path / "many.parquet"
    pq.write_table(vectors_table([f"p{i}.jpg" for i in range(5)], [[0.1] * 48] * 5), many)
    monkeypatch.setattr(exchange_read, "IMPORT_MAX_ROWS", 4)
    refused(many, "more than 4 rows")
    # And a source of which no row can be imported changes nothing either.
    monkeypatch.setattr(exchange_read, "IMPORT_MAX_ROWS", 5_000_000)
    refused(many, "none of its 5 rows can be imported")


def test_rows_with_unusable_paths_are_skipped_with_their_reason(collection: Path,
                                                                tmp_path: Path) -> None:
    paths = ["a/work_001.jpg", "a/\x00evil.jpg", "x" * 5000, "../../etc/hostname",
             "/etc/hostname"]
    src = tmp_path / "v.parquet"
    pq.write_table(vectors_table(paths, [[0.2] * 48] * 5), src)
    code, said, err = invoke("import-vectors", str(src), "--index", str(tmp_path / "b"),
                             "--root", str(collection), "--backbone", FAKE, "-s", "x")
    assert code == 0 and "1 imported" in said and "4 skipped" in said
    assert "control characters" in err and "a path of 5,000 characters" in err
    assert "\x00" not in err and len(max(err.splitlines(), key=len)) < 300


# -- medium: every output path is checked before the work -----------------------------------------

@pytest.mark.parametrize("command", [
    ["export", "{blocked}/dir"],
    ["cluster", "--k", "2", "--restarts", "0", "--report", "{blocked}/dir"],
    ["cluster", "--k", "2", "--restarts", "0", "--iiif-out", "{blocked}/m.json"],
    ["query", "a/work_001.jpg", "--iiif-out", "{blocked}/m.json"],
    ["query", "a/work_001.jpg", "--explain", "{blocked}/dir"],
    ["duplicates", "--csv", "{blocked}/p.csv"],
    ["duplicates", "--report", "{blocked}/dir"],
    ["audit", "--report", "{blocked}/dir"],
    ["clusters", "--csv", "{blocked}/c.csv"],
    ["train", "--label", "genre", "--out", "{blocked}/m.pt"],
    ["layers", "{picture}", "--backbone", FAKE, "--out", "{blocked}/dir"],
    ["stylize", "{picture}", "--style", "{picture}", "--out", "{blocked}/s.png"],
])
def test_output_paths_under_a_file_are_refused_before_any_work(indexed: Path,
                                                               tmp_path: Path,
                                                               command: list[str]) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    picture = tmp_path / "p.jpg"
    painting(3).save(picture)
    args = [a.format(blocked=blocked, picture=picture) for a in command]
    code, out, err = invoke(*args, "--index", str(indexed))
    assert code == 1 and "a-file is a file, not a folder" in err, out + err
    assert len(err.strip().splitlines()) == 1


def test_missing_output_folders_are_made(indexed: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "m.json"
    code, out, err = invoke("query", "a/work_001.jpg", "--index", str(indexed), "-k", "2",
                            "--iiif-out", str(target))
    assert code == 0 and target.is_file(), out + err


# -- medium: the smaller commands ----------------------------------------------------------------

def test_huge_ids_and_tampered_citations_are_one_line(indexed: Path, tmp_path: Path) -> None:
    picture = tmp_path / "p.jpg"
    painting(3).save(picture)
    code, _, err = invoke("stylize", str(picture), "--style-id", "1" * 23, "--index",
                          str(indexed))
    assert code == 2 and "not in the range" in err
    code, _, err = invoke("show", "9" * 23, "--index", str(indexed))
    assert code == 1 and "no such clustering run" in err
    code, out, err = invoke("query", "a/work_001.jpg", "--index", str(indexed), "--cite")
    cid = re.search(r"q-[0-9a-f]{12}", out + err).group()
    cited = indexed / "citations" / f"{cid}.json"
    record = json.loads(cited.read_text())
    for bad in ("not json", "{}", json.dumps({**record, "question": {
            **record["question"], "k": "ten"}}), json.dumps({**record, "results": [
            {"id": 10**30, "rank": 1, "score": 1.0, "path": "x"}]})):
        cited.write_text(bad)
        code, _, err = invoke("show", cid, "--index", str(indexed))
        assert code == 1 and "cite the query again" in err, err


def test_gatys_refuses_a_picture_too_narrow_for_vgg(tmp_path: Path) -> None:
    from PIL import Image

    from artsearch.errors import BadImageError
    from artsearch.stylize import _to_tensor

    with pytest.raises(BadImageError, match="under the 32 px VGG16 needs"):
        _to_tensor(Image.new("RGB", (20, 20000)), 256, "cpu")


def test_hdbscan_on_fewer_works_than_its_cluster_size_is_one_line(tmp_path: Path) -> None:
    make_collection(tmp_path / "three", n=3)
    assert invoke(*index_args(tmp_path / "three", "--index", str(tmp_path / "i"), "-q"))[0] == 0
    code, _, err = invoke("cluster", "--method", "hdbscan", "--index", str(tmp_path / "i"))
    assert code == 1 and "needs at least 5 works" in err


def test_a_refused_prune_with_relocate_keeps_the_root(indexed: Path, collection: Path,
                                                      tmp_path: Path) -> None:
    elsewhere = tmp_path / "mostly-empty"
    make_collection(elsewhere, n=1)
    code, _, err = invoke(*index_args(elsewhere, "--index", str(indexed), "--prune",
                                      "--relocate"))
    assert code == 1 and "--prune would remove" in err
    with ArtIndex(indexed) as idx:
        assert idx.root == collection.resolve()


def test_calibrating_on_more_works_than_the_index_holds_is_refused(tmp_path: Path) -> None:
    make_collection(tmp_path / "three", n=3)
    assert invoke(*index_args(tmp_path / "three", "--index", str(tmp_path / "i"), "-q"))[0] == 0
    code, _, err = invoke("duplicates", "--calibrate", "10", "--index", str(tmp_path / "i"))
    assert code == 1 and "at least 10 works" in err and "1.00" not in err


# -- medium: a save racing a reader --------------------------------------------------------------

def test_a_save_between_reading_the_record_and_the_file_is_not_damage(
        indexed: Path, collection: Path) -> None:
    with ArtIndex(indexed) as reader:
        stale = reader.space("content")  # the record as it was
        make_collection(collection, n=3, start=200)  # a writer saves a new file meanwhile
        assert invoke(*index_args(collection, "--index", str(indexed), "-q"))[0] == 0
        vec = reader.vectors(stale)
        assert len(vec) == 15


def test_a_replaced_file_of_the_same_size_is_still_damage(indexed: Path,
                                                          tmp_path: Path) -> None:
    from artsearch.errors import IndexDamagedError

    path = indexed / "content.faiss"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with ArtIndex(indexed) as idx, pytest.raises(IndexDamagedError,
                                                 match="the same size, .* other content"):
        idx.vectors(idx.space("content"))


def test_terminal_lines_escape_bidirectional_overrides() -> None:
    from artsearch.textsafe import one_line, terminal

    assert terminal("photo\u202egpj.exe") == "photo\\u202egpj.exe"
    assert one_line("redirect loop\nThe last 30x error message was:\nFound") == \
        "redirect loop The last 30x error message was: Found"


def test_no_fixable_os_error_escapes_as_a_traceback(indexed: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch import exchange

    def gone(*_a: object, **_k: object) -> None:
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", "/some/where")

    monkeypatch.setattr(exchange, "export_space", gone)
    code, _, err = invoke("export", str(tmp_path / "o"), "--index", str(indexed))
    assert code == 1 and "/some/where: Not a directory; a part of that path is a file" in err


def test_the_style_loss_line_never_claims_a_zero_fold_fall(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch import stylize
    from artsearch.stylize import Stylised

    picture = tmp_path / "p.png"
    painting(1).save(picture)
    for styles, expected in [((0.0, 0.0), "style loss 0 -> 0)"), ((4.0, 1.0), "(4x lower)"),
                             ((1.0, 0.8), "(20% lower)")]:
        history = [{"style": v, "content": 0.0} for v in styles]
        def fake(*_a: object, history: list = history, **_k: object) -> Stylised:
            return Stylised(painting(1), "gatys", {}, {}, history, 0.1)

        monkeypatch.setattr(stylize, "stylize_gatys", fake)
        code, out, err = invoke("stylize", str(picture), "--style", str(picture), "--out",
                                str(tmp_path / "o.png"), "--steps", "1")
        assert code == 0 and expected in out and "0x lower" not in out, out + err
