"""Everyday accidents that once lost or corrupted an index (issue 11), each reproduced.

Kills and full disks are injected at the call sites where they strike (a migration step, a
FAISS write, the extractor's batch loop), so each test is exact and takes milliseconds.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import select

from artsearch.cli import cli
from artsearch.errors import (
    IndexDamagedError,
    MetadataError,
    NotIndexedError,
    PruneRefusedError,
    SchemaTooOldError,
)
from artsearch.index import ArtIndex
from artsearch.index.store import Artwork, Embedding, Failure, Store
from artsearch.indexer import IndexOptions, IndexReport, index_collection
from artsearch.query import parse_mix, search
from tests.helpers import FAKE, make_collection, painting

ROOT = Path(__file__).resolve().parents[1]


def run(root: Path, index_dir: Path, make_extractor=None, **kw: object) -> IndexReport:  # noqa: ANN001
    opts = IndexOptions(backbone=FAKE, extractor={"num_workers": 0, "batch_size": 5},
                        **kw)  # type: ignore[arg-type]
    with ArtIndex(index_dir, create=True) as idx:
        return index_collection(root, idx, opts, make_extractor=make_extractor)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def rows(index_dir: Path) -> dict[str, tuple[int, str]]:
    """path -> (faiss id, sha256 of the embedded content), checking FAISS holds each id."""
    with ArtIndex(index_dir) as idx:
        vec = idx.vectors(idx.space("content"))
        with idx.store.session() as s:
            found = {p: (f, h) for p, f, h in s.execute(
                select(Artwork.path, Embedding.faiss_id, Embedding.sha256).join(Embedding))}
        assert sorted(vec.ids().tolist()) == sorted(f for f, _ in found.values())
    return found


class Interrupting:
    """An extractor factory whose batch loop calls `at(batch_number)` after each batch is
    committed, and can raise there (Ctrl-C, a kill)."""

    def __init__(self, at) -> None:  # noqa: ANN001
        self.at = at

    def __call__(self):  # noqa: ANN204
        from artsearch.backbones import resolve
        from artsearch.extract import Extractor

        inner = Extractor(resolve(FAKE), pooling="avg", num_workers=0, batch_size=5)
        at = self.at

        class Wrapped:
            pool, params = inner.pool, inner.params

            def describe(self) -> dict[str, object]:
                return inner.describe()

            def iter_files(self, paths: list[Path]) -> Iterator[object]:
                for n, batch in enumerate(inner.iter_files(paths), 1):
                    yield batch
                    at(n)  # runs once the loop body has committed batch n

        return Wrapped()


# -- 1: migrations are all or nothing, and only a writer runs them ------------------------------

def test_a_migration_killed_half_way_leaves_the_old_schema(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic import op

    db = tmp_path / "artsearch.db"
    Store(db, upgrade=False).upgrade("0003")
    real = op.create_table
    calls = []

    def dies_on_second_table(*a: object, **kw: object) -> object:
        calls.append(a[0])
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(op, "create_table", dies_on_second_table)
    with pytest.raises(OSError, match="No space"):
        Store(db)
    monkeypatch.setattr(op, "create_table", real)
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)
    assert calls and "cluster_runs" not in tables  # the first table was rolled back too
    store = Store(db)  # and the next attempt completes
    assert store.revision() == store.head()


def test_a_reader_never_upgrades_an_older_index(tmp_path: Path) -> None:
    Store(tmp_path / "artsearch.db", upgrade=False).upgrade("0003")
    with ArtIndex(tmp_path) as idx, pytest.raises(SchemaTooOldError,
                                                 match="run `artsearch index"):
        idx.spaces()
    code, _, err = invoke("info", "--index", str(tmp_path))
    assert code == 1 and "older artsearch" in err
    with sqlite3.connect(tmp_path / "artsearch.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)
    with ArtIndex(tmp_path) as idx:  # a writer upgrades, under the lock
        idx.lock()
        assert idx.store.revision() == Store.head()


# -- 2: --prune on an empty (unmounted) folder --------------------------------------------------

def test_prune_of_most_of_the_index_is_refused_before_anything_changes(
        collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    before = rows(tmp_path / "idx")
    away = tmp_path / "away"
    shutil.move(collection, away)
    collection.mkdir()  # the mount point of a drive that is not mounted
    with pytest.raises(PruneRefusedError, match="would remove 12 of 12 .* add --force"):
        run(collection, tmp_path / "idx", prune=True)
    assert rows(tmp_path / "idx") == before
    code, _, err = invoke("index", str(collection), "--index", str(tmp_path / "idx"),
                          "--prune", "--workers", "0")
    assert code == 1 and "--force" in err and len(err.strip().splitlines()) == 1
    shutil.rmtree(collection)
    shutil.move(away, collection)
    (collection / "a" / "work_001.jpg").unlink()  # one really gone: pruned without --force
    assert run(collection, tmp_path / "idx", prune=True).pruned == 1
    make_collection(tmp_path / "few", 3, start=100)
    report = run(tmp_path / "few", tmp_path / "idx", prune=True, force=True, relocate=True)
    assert report.pruned == 11 and report.total == 3


# -- 3: a file name that is not UTF-8 -----------------------------------------------------------

def test_a_non_utf8_file_name_is_skipped_with_a_reason_and_the_run_goes_on(
        collection: Path, tmp_path: Path) -> None:
    bad = os.path.join(os.fsencode(collection / "a"), b"caf\xe9.jpg")
    painting(50).save(os.fsdecode(bad), format="JPEG")
    report = run(collection, tmp_path / "idx")
    assert report.total == 12
    assert report.failed == [("a/caf\\xe9.jpg", pytest.approx(report.failed[0][1]))]
    assert "not valid UTF-8" in report.failed[0][1] and "rename it" in report.failed[0][1]
    with ArtIndex(tmp_path / "idx") as idx, idx.store.session() as s:
        assert [f.path for f in s.scalars(select(Failure))] == ["a/caf\\xe9.jpg"]


# -- 4: a file that changes while it is being indexed; --max-bytes -----------------------------

def test_the_stored_hash_is_of_the_bytes_that_were_embedded(
        collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import artsearch.index.writer as indexing

    target = collection / "b" / "work_000.jpg"
    real_hash = indexing.hash_file

    def hash_then_change(path: Path, max_bytes: int) -> str:
        digest = real_hash(path, max_bytes)
        if path == target:  # the file is rewritten after it was hashed, before it is decoded
            painting(777).save(target, quality=92)
        return digest

    monkeypatch.setattr(indexing, "hash_file", hash_then_change)
    run(collection, tmp_path / "idx")
    final = hashlib.sha256(target.read_bytes()).hexdigest()
    stored = rows(tmp_path / "idx")["b/work_000.jpg"][1]
    assert stored == final
    with ArtIndex(tmp_path / "idx") as idx, idx.store.session() as s:
        art = s.scalar(select(Artwork).where(Artwork.path == "b/work_000.jpg"))
        assert art is not None and art.sha256 == final
    # And the vector is that version's: querying the final file finds itself exactly.
    with ArtIndex(tmp_path / "idx") as idx:
        hit = search(idx, image=target, k=1).hits[0]
    assert hit.path == "b/work_000.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_files_over_max_bytes_are_skipped_unread(collection: Path, tmp_path: Path) -> None:
    big = collection / "a" / "work_001.jpg"
    opts = IndexOptions(backbone=FAKE, extractor={"num_workers": 0,
                                                  "max_bytes": big.stat().st_size - 1})
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        report = index_collection(collection, idx, opts)
    reasons = dict(report.failed)
    assert "raise --max-bytes" in reasons["a/work_001.jpg"]
    assert report.total == sum(p.stat().st_size < big.stat().st_size
                               for p in collection.rglob("*.jpg"))


# -- 5: Ctrl-C keeps every committed batch ------------------------------------------------------

def test_ctrl_c_saves_every_finished_batch(collection: Path, tmp_path: Path) -> None:
    def stop(n: int) -> None:
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(collection, tmp_path / "idx", make_extractor=Interrupting(stop),
            checkpoint_seconds=3600)
    assert len(rows(tmp_path / "idx")) == 10  # two batches of five, in SQLite and in FAISS
    again = run(collection, tmp_path / "idx")
    assert (again.embedded, again.unchanged, again.repaired.missing_vectors) == (2, 10, 0)


# -- 6: a damaged or foreign FAISS file ---------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "foreign", "delete"])
def test_a_damaged_vector_file_is_refused_then_rebuilt(
        collection: Path, tmp_path: Path, damage: str) -> None:
    run(collection, tmp_path / "idx")
    faiss_file = tmp_path / "idx" / "content.faiss"
    if damage == "truncate":
        faiss_file.write_bytes(faiss_file.read_bytes()[:-500])
    elif damage == "foreign":  # the same size and dimensions, other pictures
        other = tmp_path / "other"
        make_collection(other, 12, start=40)
        run(other, tmp_path / "idx2")
        shutil.copy(tmp_path / "idx2" / "content.faiss", faiss_file)
    else:
        faiss_file.unlink()
    with ArtIndex(tmp_path / "idx") as idx, pytest.raises(IndexDamagedError,
                                                         match="artsearch index"):
        search(idx, artwork=1, k=3)
    code, _, err = invoke("query", "--id", "1", "--index", str(tmp_path / "idx"))
    assert code == 1 and "content.faiss" in err and len(err.strip().splitlines()) == 1
    report = run(collection, tmp_path / "idx")
    assert report.damaged and report.embedded == 12 and report.total == 12
    assert len(rows(tmp_path / "idx")) == 12
    if damage != "delete":
        assert list((tmp_path / "idx").glob("content.faiss.damaged-*"))  # kept, not deleted
    with ArtIndex(tmp_path / "idx") as idx:
        assert search(idx, artwork=1, k=1).hits[0].id == 1


def test_a_kill_between_rename_and_record_leaves_a_usable_file(
        collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(collection, tmp_path / "idx")
    make_collection(collection, 3, start=60)
    with ArtIndex(tmp_path / "idx") as idx:
        real = idx._record_faiss

        def killed_after_rename(space, fp, *, pending=False):  # noqa: ANN001, ANN202
            if not pending:
                raise KeyboardInterrupt  # the file is renamed; its record never lands
            return real(space, fp, pending=pending)

        monkeypatch.setattr(idx, "_record_faiss", killed_after_rename)
        opts = IndexOptions(extractor={"num_workers": 0})
        with pytest.raises(KeyboardInterrupt):
            index_collection(collection, idx, opts)
    monkeypatch.undo()
    assert len(rows(tmp_path / "idx")) == 15  # the pending record vouches for the new file
    assert run(collection, tmp_path / "idx").damaged == []


# -- 7: readers while a writer works ------------------------------------------------------------

def test_readers_see_only_what_is_saved_while_an_index_run_writes(
        collection: Path, tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def look(n: int) -> None:
        if n != 1:
            return
        with ArtIndex(tmp_path / "idx") as reader:  # batch 1 committed, nothing saved yet
            info = reader.info()["spaces"][0]
            seen["info"] = (info["embedded"], info["being_written"])
            with pytest.raises(NotIndexedError, match="still being written"):
                search(reader, artwork=1, k=3)
            with pytest.raises(NotIndexedError, match="holds no saved vectors yet"):
                search(reader, image=collection / "a" / "work_001.jpg", k=3)
            seen["by_image"] = "refused"  # nothing saved: no answer at all, not "no results"

    run(collection, tmp_path / "idx", make_extractor=Interrupting(look),
        checkpoint_seconds=3600)
    assert seen["info"] == (0, 5)
    assert seen["by_image"] == "refused"
    with ArtIndex(tmp_path / "idx") as idx:
        assert idx.info()["spaces"][0]["embedded"] == 12


# -- 8: temporary files of a killed save --------------------------------------------------------

def test_leftover_temporary_files_are_removed_by_the_next_writer(
        collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    junk = [tmp_path / "idx" / "content.faiss.x1y2.tmp", tmp_path / "idx" / "style.tmp.npz"]
    for j in junk:
        j.write_bytes(b"half a file")
    with ArtIndex(tmp_path / "idx") as idx:
        idx.info()
    assert all(j.exists() for j in junk)  # a reader leaves them alone
    run(collection, tmp_path / "idx")
    assert not any(j.exists() for j in junk)


# -- 9, 10: pixel bounds ------------------------------------------------------------------------

def test_an_extreme_strip_is_cropped_before_it_is_resized(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch.backbones import Preprocess
    from artsearch.extract import prepare

    asked: list[tuple[int, int]] = []
    real = Image.Image.resize

    def spy(self: Image.Image, size: tuple[int, int], *a: object, **kw: object) -> Image.Image:
        asked.append(size)
        return real(self, size, *a, **kw)

    monkeypatch.setattr(Image.Image, "resize", spy)
    pre = Preprocess(size=224, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3)
    out = prepare(Image.new("RGB", (80_000, 4), (200, 10, 10)), pre)
    assert tuple(out.shape) == (3, 224, 224) and int(out[0, 100, 100]) == 200
    assert max(w * h for w, h in asked) <= 4 * 256 * 256 * 1.01  # not 5 million x 256
    # An ordinary picture is resized exactly as before.
    asked.clear()
    prepare(Image.new("RGB", (400, 300)), pre)
    assert asked == [(341, 256)]


def test_max_pixels_above_pillows_own_limit_takes_effect(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from artsearch.errors import BadImageError
    from artsearch.images import decode_image

    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow refuses above 2,000
    img, size = decode_image(buf.getvalue(), max_pixels=20_000)
    assert size == (100, 100) and Image.MAX_IMAGE_PIXELS == 1_000
    with pytest.raises(BadImageError, match="raise --max-pixels"):
        decode_image(buf.getvalue(), max_pixels=5_000)


# -- 11: --mix ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["content=inf,style=1", "content=nan,style=1",
                                  "content=1,content=2", "", "content=1"])
def test_bad_mixes_are_refused(text: str) -> None:
    with pytest.raises(MetadataError, match="--mix"):
        parse_mix(text)


def test_query_json_is_always_valid_json(collection: Path) -> None:
    invoke("index", str(collection), "--backbone", FAKE, "--workers", "0")
    code, out, _ = invoke("query", "--id", "1", "-k", "3", "--json")
    assert code == 0 and json.loads(out, parse_constant=lambda c: pytest.fail(c))
    code, _, err = invoke("query", "--id", "1", "--mix", "")
    assert code == 2 and "--mix" in err  # a usage error, as click gives (issue 25)


# -- 12: one line instead of a traceback --------------------------------------------------------

def test_a_full_disk_while_saving_is_one_line_and_loses_nothing(
        collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    index = str(tmp_path / "idx")
    invoke("index", str(collection), "--backbone", FAKE, "--workers", "0", "--index", index)
    make_collection(collection, 3, start=80)

    def full(*a: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(faiss, "write_index", full)
    code, _, err = invoke("index", str(collection), "--workers", "0", "--index", index)
    assert code == 1 and "No space left on device; free some disk space" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    with ArtIndex(tmp_path / "idx") as idx:  # the last saved file is intact and answers
        assert len(idx.vectors(idx.space("content"))) == 12
        assert search(idx, artwork=1, k=1).hits[0].id == 1
    code, out, _ = invoke("index", str(collection), "--workers", "0", "--index", index)
    assert code == 0 and "15 artworks indexed" in out
    assert len(rows(tmp_path / "idx")) == 15


def test_a_full_disk_while_committing_is_one_line_and_loses_nothing(
        collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import artsearch.index.store as store

    index = str(tmp_path / "idx")
    invoke("index", str(collection), "--backbone", FAKE, "--workers", "0", "--index", index)
    make_collection(collection, 40, start=200)
    real = store._on_connect

    def tight(readonly: bool):  # noqa: ANN202 - SQLite may not grow the file any more
        inner = real(readonly)

        def connect(conn, record):  # noqa: ANN001, ANN202
            inner(conn, record)
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages}")
        return connect

    monkeypatch.setattr(store, "_on_connect", tight)
    code, _, err = invoke("index", str(collection), "--workers", "0", "--index", index)
    assert code == 1 and "database or disk is full; free some disk space" in err, err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert len(rows(tmp_path / "idx")) >= 12  # what was saved before is all there
    code, out, _ = invoke("index", str(collection), "--workers", "0", "--index", index)
    assert code == 0 and "52 artworks indexed" in out


def test_an_id_beyond_64_bits_is_a_usage_error(collection: Path) -> None:
    invoke("index", str(collection), "--backbone", FAKE, "--workers", "0")
    code, _, err = invoke("query", "--id", str(2**70))
    assert code == 2 and "--id" in err


def test_a_read_only_index_answers_reads_and_refuses_writes(
        collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "idx"
    run(collection, index)
    real = os.access

    def no_writes(path: object, mode: int, **kw: object) -> bool:
        if mode & os.W_OK and str(path).startswith(str(index)):
            return False  # root writes anything, so a read-only folder is simulated here
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", no_writes)
    before = sorted(p.name for p in index.iterdir())
    code, out, _ = invoke("info", "--index", str(index))
    assert code == 0 and "artworks  12" in out
    code, out, _ = invoke("query", "--id", "1", "-k", "2", "--index", str(index))
    assert code == 0 and out.splitlines()[1].split()[0] == "1"
    code, _, err = invoke("index", str(collection), "--index", str(index), "--workers", "0")
    assert code == 1 and "read-only" in err
    assert sorted(p.name for p in index.iterdir()) == before  # no -wal, -shm or lock made


@pytest.mark.parametrize("change", ["drop_key", "wrong_shape", "zero_t", "nan_t"])
def test_a_damaged_model_file_is_one_line(tmp_path: Path, change: str) -> None:
    import torch

    from artsearch.classify import ModelError, load_model
    from tests.helpers import palettes_index

    index = palettes_index(tmp_path)
    invoke("train", "--index", str(index), "--label", "genre", "--out",
           str(tmp_path / "m.pt"))
    model = torch.load(tmp_path / "m.pt", weights_only=True)
    if change == "drop_key":
        del model["head_bias"]
    elif change == "wrong_shape":
        model["head_weight"] = model["head_weight"][:, :5]
    else:
        model["temperature"] = 0.0 if change == "zero_t" else float("nan")
    torch.save(model, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="damaged model file"):
        load_model(tmp_path / "bad.pt")
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    code, _, err = invoke("classify", str(tmp_path / "x.png"), "--model", str(tmp_path / "bad.pt"))
    assert code == 1 and "damaged model file" in err and "Traceback" not in err


# -- 13: unknown fields, unknown paths ----------------------------------------------------------

def test_a_filter_on_a_field_no_work_has_names_the_fields_there_are(collection: Path) -> None:
    meta = collection / "meta.csv"
    meta.write_text("path,artist,inventory\na/work_001.jpg,Rubens,INV-1\n")
    invoke("index", str(collection), "--backbone", FAKE, "--workers", "0", "--metadata",
           str(meta))
    code, _, err = invoke("query", "--id", "1", "--where", "painter=rubens")
    assert code == 1 and "field 'painter': no indexed work has it" in err
    assert "artist" in err and "inventory" in err
    code, _, err = invoke("query", "--id", "1", "--exclude-same", "painter")
    assert code == 1 and "'painter'" in err
    code, out, _ = invoke("query", "--id", "1", "-k", "2", "--where", "inventory=inv-1")
    assert code == 0 and "a/work_001.jpg" in out
    code, _, err = invoke("query", "no/such/thing.jpg")
    assert code == 1 and "no such artwork" in err and "no such file" not in err.lower()


# -- 14: the catalogue ----------------------------------------------------------------------------

def test_catalogue_long_fields_repeats_and_early_refusal(
        collection: Path, tmp_path: Path) -> None:
    meta = collection / "meta.csv"
    long_text = "x" * 200_000
    meta.write_text(f'path,title,description\na/work_001.jpg,One,"{long_text}"\n'
                    "a/work_003.jpg,First\na/work_003.jpg,Second\na/work_003.jpg,Third\n")
    code, out, err = invoke("index", str(collection), "--backbone", FAKE, "--workers", "0",
                            "--metadata", str(meta))
    assert code == 0, err
    # Three rows of one path: one path repeated, not two (issue 22).
    assert "1 paths have more than one row (the last is kept), e.g. a/work_003.jpg" in err
    with ArtIndex(Path(os.environ["ARTSEARCH_HOME"]) / "default") as idx, \
            idx.store.session() as s:
        arts = {a.path: a for a in s.scalars(select(Artwork))}
    assert arts["a/work_003.jpg"].title == "Third"
    assert arts["a/work_001.jpg"].field("description") == long_text
    bad = tmp_path / "bad.csv"
    bad.write_text("file,title\nx.jpg,X\n")

    def never() -> None:
        pytest.fail("the catalogue must be checked before any image is embedded")

    with ArtIndex(tmp_path / "idx", create=True) as idx, pytest.raises(MetadataError,
                                                                       match="no 'path'"):
        index_collection(collection, idx, IndexOptions(backbone=FAKE, metadata=bad),
                         make_extractor=never)
    assert not (tmp_path / "idx").exists()


# -- 15, 16: terminal and spreadsheet injection; the report's embedded data ---------------------

def test_catalogue_text_cannot_drive_the_terminal_or_a_spreadsheet(
        collection: Path, tmp_path: Path) -> None:
    from artsearch.textsafe import csv_cell

    meta = collection / "meta.csv"
    meta.write_text('path,title\na/work_001.jpg,"Evil\x1b]0;pwned\x07\x1b[2J"\n')
    invoke("index", str(collection), "--backbone", FAKE, "--workers", "0", "--metadata",
           str(meta))
    code, out, _ = invoke("query", "--id", "1", "-k", "1")
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "Evil\\x1b]0;" in out
    assert [csv_cell(v) for v in ("=HYPERLINK(1)", "+1", "-2", "@SUM", "ok", 3)] == [
        "'=HYPERLINK(1)", "'+1", "'-2", "'@SUM", "ok", 3]
    (collection / "=cmd.jpg").write_bytes((collection / "a" / "work_001.jpg").read_bytes())
    invoke("index", str(collection), "--workers", "0")
    invoke("cluster", "--k", "2", "--restarts", "0")
    invoke("clusters", "1", "--csv", str(tmp_path / "out.csv"))
    text = (tmp_path / "out.csv").read_text()
    assert "'=cmd.jpg" in text and "\n=cmd" not in text


def test_embedded_map_data_cannot_end_its_script() -> None:
    from artsearch.reports.clusters import _json_for_script

    value = {"title": "</script><!--<script>alert(1)//&\u2028\u2029"}
    text = _json_for_script(value)
    assert not any(c in text for c in "<>&\u2028\u2029")
    assert json.loads(text) == value


# -- 17, 18, 19: newcomer traps -----------------------------------------------------------------

def test_an_empty_or_wrong_folder_creates_no_index(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    code, _, err = invoke("index", str(tmp_path / "empty"), "--index", str(tmp_path / "idx"))
    assert code == 1 and "no image files found (.bmp, .gif" in err
    assert not (tmp_path / "idx").exists()
    make_collection(tmp_path / "right", 3)
    code, out, _ = invoke("index", str(tmp_path / "right"), "--backbone", FAKE, "--workers",
                          "0", "--index", str(tmp_path / "idx"))
    assert code == 0 and "3 artworks indexed" in out


def test_classify_finds_the_models_index_and_says_when_nothing_is_unlabelled(
        tmp_path: Path) -> None:
    from tests.helpers import palettes_index

    index = palettes_index(tmp_path)
    model = str(tmp_path / "m.pt")
    invoke("train", "--index", str(index), "--label", "genre", "--out", model)
    code, out, err = invoke("classify", "--unlabelled", "--model", model, "--write",
                            "genre_predicted")
    assert code == 0 and "nothing to classify: every indexed work has a genre" in out, err
    code, out, _ = invoke("info", "--index", str(index), "--works")
    assert code == 0 and "night_0.png" in out


def test_the_project_declares_its_licence_as_spdx() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()


def test_vectors_of_a_collection_are_unchanged_by_the_fingerprints(
        collection: Path, tmp_path: Path) -> None:
    run(collection, tmp_path / "idx")
    with ArtIndex(tmp_path / "idx") as idx:
        sp = idx.space("content")
        record = sp.params["faiss"]["current"]
        assert record["count"] == 12 and record["dims"] == 48 and record["next_id"] == 12
        assert "pending" not in sp.params["faiss"]
        ids, vectors = idx.vectors(sp).everything()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5) and len(ids) == 12


def test_where_means_one_thing_in_query_and_train(tmp_path: Path) -> None:
    """Case-insensitive, a repeated field is "any of", and `century` comes from `date`."""
    from artsearch.classify import labelled_works
    from artsearch.index.catalogue import matching_ids

    root = tmp_path / "coll"
    paths = make_collection(root, 12)
    meta = root / "meta.csv"
    meta.write_text("path,genre,date,source\n" + "".join(
        f"{p.relative_to(root).as_posix()},{'landscape' if i % 2 else 'portrait'},"
        f"{1650 + 100 * (i % 3)},{'Museum A' if i < 6 else 'museum b'}\n"
        for i, p in enumerate(paths)))
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=meta,
                                                 extractor={"num_workers": 0}))
        both = matching_ids(idx, {"source": ["museum a", "MUSEUM B"]})
        c17 = matching_ids(idx, {"century": ["17th C."]})
        assert len(both) == 12 and len(c17) == 4
        hits = search(idx, artwork=1, k=12, where={"century": ["17th c."]}).hits
        assert len(hits) == 4
        data = labelled_works(idx, "content", "genre", 2, where={"source": ["MUSEUM A"]})
        assert len(data.artwork_ids) == 6
