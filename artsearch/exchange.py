"""Embeddings in and out: one space exported as Parquet or .npy for the tools around artsearch
(pandas, pyarrow, embedding-reader, autofaiss, clip-retrieval's layout), and vectors computed
elsewhere imported as a space.

Parquet (`--format parquet`): DIR/SPACE-00000.parquet, ... (100,000 rows each), columns
`id` (the artwork id), `path` (relative to the collection root), `sha256`, the catalogue
fields, `extra` (JSON text) and `embedding` (a fixed-size list of float32), the layout
embedding-reader reads as `file_format="parquet"`. The schema's metadata carries the space's
description under the key `artsearch`.

npy (`--format npy`): DIR/emb/SPACE-00000.npy (float32 rows) and DIR/metadata/SPACE-00000.parquet
(the same rows' columns without the vectors), aligned file by file and row by row, the layout
embedding-reader reads as `file_format="parquet_npy"`.

Both write DIR/_SPACE.export.json (the space, the files, an export id, provenance; the leading
underscore keeps pyarrow and pandas from reading it as data) and, for a fitted pooling,
DIR/_SPACE.pooling.npz, so an import into another index embeds new queries the same way.

An export never touches a file it did not write: its shards are written under temporary
names, renamed into place together, and only the files a previous export of the same space
recorded in its _SPACE.export.json are removed when no longer part of it. Every shard carries
the export id, and each npy metadata file the SHA-256 of its emb/ file, so an import refuses
a folder that a killed export left half old, half new, instead of pairing one work's row with
another's vector.

Imports are bounded (IMPORT_MAX_ROWS rows, IMPORT_MAX_BYTES of float32 vectors), read in
batches, normalised in float64, and all or nothing: a refused import binds no root, adds no
space and creates no database.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from artsearch.errors import ArtsearchError, IndexMismatchError
from artsearch.paths import check_space_name, inside
from artsearch.store import METADATA_FIELDS, Artwork, Embedding, Space
from artsearch.textsafe import one_line, terminal

if TYPE_CHECKING:
    from artsearch.index import ArtIndex

__all__ = ["FORMATS", "IMPORT_MAX_BYTES", "IMPORT_MAX_ROWS", "ImportReport", "export_space",
           "import_vectors", "read_vectors"]

FORMATS = ("parquet", "npy")
SHARD_ROWS = 100_000
EXPORT_VERSION = 2  # 2: export ids, npy metadata naming its emb/ file's SHA-256
COLUMNS = ("id", "path", "sha256", *METADATA_FIELDS, "extra")
# Tolerance on a vector's length before it is counted as "not unit length" and normalised.
UNIT_TOLERANCE = 1e-3
# What one import may hold: the vectors live in memory (FAISS's exact store) while they are
# added, so a file that claims more is refused before its data is read.
IMPORT_MAX_ROWS = 5_000_000
IMPORT_MAX_BYTES = 8 << 30  # of float32 vectors
BATCH_ROWS = 65_536
MAX_PATH_CHARS = 1024
POOLINGS = ("avg", "cavg", "max", "gem", "rmac", "meanstd", "gram")


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - the submodule is what reads and writes files
    except ImportError:
        raise ArtsearchError("Parquet needs pyarrow: pip install 'artsearch[exchange]'") from None
    return pa


def space_description(index: ArtIndex, space: Space) -> dict[str, Any]:
    """What an importer needs to recreate the space and to refuse mixing it with another."""
    return {"name": space.name, "backbone": space.backbone,
            "weights_sha256": space.weights_sha256, "layer": space.layer,
            "pooling": space.pooling, "dims": space.dims,
            "preprocessing": space.preprocessing,
            "pooling_file": bool((space.params or {}).get("pooling_file"))}


def _rows(index: ArtIndex, space: Space) -> Iterator[tuple[list[Artwork], np.ndarray]]:
    """(works, their vectors) in shards of SHARD_ROWS, ordered by path."""
    vec = index.vectors(space)
    with index.store.session() as s:
        pairs = s.execute(select(Artwork, Embedding.faiss_id)
                          .join(Embedding, Embedding.artwork_id == Artwork.id)
                          .where(Embedding.space_id == space.id)
                          .order_by(Artwork.path)).all()
    for start in range(0, len(pairs), SHARD_ROWS):
        chunk = pairs[start: start + SHARD_ROWS]
        yield ([a for a, _ in chunk],
               vec.vectors(np.array([f for _, f in chunk], np.int64)))


def _table(pa: Any, works: list[Artwork], vectors: np.ndarray | None,
           meta: dict[str, Any]) -> Any:
    cols: dict[str, Any] = {
        "id": pa.array([a.id for a in works], pa.int64()),
        "path": pa.array([a.path for a in works], pa.string()),
        "sha256": pa.array([a.sha256 for a in works], pa.string()),
    }
    for name in METADATA_FIELDS:
        cols[name] = pa.array([getattr(a, name) for a in works], pa.string())
    cols["extra"] = pa.array([json.dumps(a.extra, ensure_ascii=False) if a.extra else None
                              for a in works], pa.string())
    if vectors is not None:
        flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1))
        cols["embedding"] = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    table = pa.table(cols)
    return table.replace_schema_metadata({"artsearch": json.dumps(meta)})


def _sync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shard_names(space: str) -> re.Pattern[str]:
    """The files an export of `space` may record (and so may later remove): nothing else."""
    name = re.escape(space)
    return re.compile(rf"(?:{name}-\d{{5}}\.parquet|emb/{name}-\d{{5}}\.npy|"
                      rf"metadata/{name}-\d{{5}}\.parquet)")


def _record(out: Path, space: str) -> dict[str, Any] | None:
    """A previous export's record of `space` in `out`, when it is one of ours."""
    path = out / f"_{space}.export.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    _sync(tmp)
    os.replace(tmp, path)


def export_space(index: ArtIndex, space_name: str, fmt: str, out: Path) -> dict[str, Any]:
    """Write every vector of a space with its work's id, path and catalogue; return a summary
    (the same as DIR/_SPACE.export.json). See the module for what makes it safe to re-run,
    to interrupt, and to point at a folder that holds other files."""
    from artsearch.provenance import provenance

    if fmt not in FORMATS:
        raise ArtsearchError(f"{fmt}: not an export format; choose one of {', '.join(FORMATS)}")
    pa = _pyarrow()
    import pyarrow.parquet as pq

    space = index.space(check_space_name(space_name))
    name = check_space_name(space.name, where=str(index.path))
    if not index.saved_count(space):
        raise ArtsearchError(f"space {name!r} of {index.path} holds no vectors yet; nothing to "
                             f"export (build it with `artsearch index FOLDER --index "
                             f"{index.path} --space {name}`)")
    desc = space_description(index, space)
    export_id = uuid.uuid4().hex
    meta = {"format": EXPORT_VERSION, "export_id": export_id, "space": desc}
    out.mkdir(parents=True, exist_ok=True)
    # Temporary files of an export that a kill interrupted: ours by their names alone.
    for leftover in [*out.glob(f".{name}-*.tmp"), *out.glob(f"emb/.{name}-*.tmp"),
                     *out.glob(f"metadata/.{name}-*.tmp")]:
        leftover.unlink(missing_ok=True)
    previous = _record(out, name)
    staged: list[tuple[Path, Path]] = []  # (temporary, final)

    def stage(final: Path) -> Path:
        final.parent.mkdir(exist_ok=True)
        tmp = final.with_name(f".{final.name}.{export_id[:12]}.tmp")
        staged.append((tmp, final))
        return tmp

    files: list[str] = []
    count = 0
    try:
        for n, (works, vectors) in enumerate(_rows(index, space)):
            stem = f"{name}-{n:05d}"
            if fmt == "parquet":
                tmp = stage(out / f"{stem}.parquet")
                pq.write_table(_table(pa, works, vectors, meta), tmp)
                files.append(f"{stem}.parquet")
            else:
                tmp = stage(out / "emb" / f"{stem}.npy")
                with tmp.open("wb") as fh:
                    np.save(fh, np.ascontiguousarray(vectors, np.float32))
                shard = {**meta, "emb_file": f"emb/{stem}.npy", "emb_sha256": _sha256(tmp),
                         "rows": len(works)}
                pq.write_table(_table(pa, works, None, shard),
                               stage(out / "metadata" / f"{stem}.parquet"))
                files += [f"emb/{stem}.npy", f"metadata/{stem}.parquet"]
            count += len(works)
        for tmp, _ in staged:
            _sync(tmp)
        record = out / f"_{name}.export.json"
        old_files = [f for f in (previous or {}).get("files") or []
                     if isinstance(f, str) and _shard_names(name).fullmatch(f)]
        # While the shards are renamed the record says so: a kill here leaves a folder that
        # import refuses (and that the next export cleans), never a silent mix.
        _write_json(record, {"format": EXPORT_VERSION, "export_id": export_id,
                             "status": "incomplete", "files": sorted(set(files + old_files))})
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as e:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        reason = e.strerror or one_line(e) or type(e).__name__
        raise ArtsearchError(f"{out}: the export could not be written ({reason}); free some "
                             "disk space or choose another folder, and run it again") from e
    if desc["pooling_file"]:
        shutil.copyfile(index.path / space.params["pooling_file"], out / f"_{name}.pooling.npz")
    summary = {**meta, "status": "complete", "format_name": fmt, "count": count,
               "files": files, "provenance": provenance(index, name, command="export")}
    _write_json(record, summary)
    keep = set(files)
    for old in old_files:  # only what an earlier export of this space recorded writing
        if old not in keep:
            (out / old).unlink(missing_ok=True)
    return summary


@dataclass
class Vectors:
    """Vectors read from an export or another tool, with their rows' keys and catalogue."""

    vectors: np.ndarray
    rows: list[dict[str, Any]]
    space: dict[str, Any] | None  # the artsearch description, when the files carry one
    pooling: Path | None = None  # a fitted pooling's parameters beside the files
    files: list[Path] = field(default_factory=list)
    normalised: int = 0  # vectors that were not of unit length
    bad: np.ndarray | None = None  # rows whose vector is zero or not finite


def _export_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ArtsearchError(f"{path}: not readable as an export record ({one_line(e)}); run "
                             "`artsearch export` again") from e
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ArtsearchError(f"{path}: not an export record (no list of files); run "
                             "`artsearch export` again")
    if record.get("status", "complete") != "complete":
        raise ArtsearchError(f"{path}: that export was interrupted, and its files may mix two "
                             "exports; run `artsearch export` again")
    return record


def _files(source: Path) -> tuple[list[Path], list[Path], dict[str, Any] | None]:
    """(Parquet files with vectors, or .npy files), (their aligned metadata files), and the
    export's record when artsearch wrote them."""
    record_path: Path | None = None
    if source.is_file() and source.name.endswith(".export.json"):
        record_path = source
        source = source.parent
    elif source.is_file():
        if source.suffix == ".parquet":
            return [source], [], None
        raise ArtsearchError(f"{source}: not a Parquet file; give a .parquet file or the folder "
                             "`artsearch export` wrote")
    elif not source.is_dir():
        raise ArtsearchError(f"{source}: no such file or folder")
    else:
        records = sorted(source.glob("_*.export.json"))
        if len(records) > 1:
            raise ArtsearchError(
                f"{source}: holds exports of several spaces "
                f"({', '.join(r.name[1:-len('.export.json')] for r in records)}); give one "
                f"record, e.g. {records[0]}")
        record_path = records[0] if records else None
    if record_path is not None:
        record = _export_record(record_path)
        names = [f for f in record["files"] if re.fullmatch(
            r"(?:emb/|metadata/)?[A-Za-z0-9][A-Za-z0-9_.-]*-\d{5}\.(?:parquet|npy)", f)]
        if len(names) != len(record["files"]):
            raise ArtsearchError(f"{record_path}: names files outside the export folder; run "
                                 "`artsearch export` again")
        missing = [n for n in names if not (source / n).is_file()]
        if missing:
            raise ArtsearchError(f"{source / missing[0]}: missing, but {record_path.name} lists "
                                 "it; copy the whole export folder, or export again")
        npys = [source / n for n in names if n.startswith("emb/")]
        if npys:
            return npys, [source / "metadata" / f"{p.stem}.parquet" for p in npys], record
        return [source / n for n in names], [], record
    npys = sorted((source / "emb").glob("*.npy")) if (source / "emb").is_dir() else []
    if npys:
        metas = [source / "metadata" / f"{p.stem}.parquet" for p in npys]
        missing = [m for m in metas if not m.is_file()]
        if missing:
            raise ArtsearchError(f"{missing[0]}: missing; each emb/NAME.npy needs its "
                                 "metadata/NAME.parquet with the rows' paths")
        return npys, metas, None
    parquets = sorted(p for p in source.glob("*.parquet") if not p.name.startswith("."))
    if not parquets:
        raise ArtsearchError(f"{source}: no .parquet files, and no emb/*.npy with "
                             "metadata/*.parquet; give what `artsearch export` wrote")
    return parquets, [], None


def _schema_meta(path: Path, schema: Any) -> dict[str, Any] | None:
    """The artsearch block of a file's schema metadata, checked; None when it has none."""
    raw = (schema.metadata or {}).get(b"artsearch")
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("space"), dict):
        raise ArtsearchError(f"{path}: its 'artsearch' metadata is not an export's description "
                             "of a space; export it again, or remove that metadata and declare "
                             "the space with --backbone")
    return meta


def _description(path: Path, space: dict[str, Any]) -> dict[str, Any]:
    """An export's space description with every field checked before it is used."""
    def bad(what: str) -> ArtsearchError:
        return ArtsearchError(f"{path}: its space description has {what}; export it again, or "
                              "declare the space with --backbone, --layer, --pooling and "
                              "--input-size")

    out: dict[str, Any] = {}
    if "name" in space:
        try:
            out["name"] = check_space_name(space["name"])
        except ArtsearchError:
            raise bad(f"an unusable space name {terminal(repr(space['name'])[:80])}") from None
    for key in ("backbone", "weights_sha256", "layer"):
        value = space.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 500):
            raise bad(f"a {key} that is not a name")
        out[key] = value
    pooling = space.get("pooling")
    if pooling is not None and pooling not in POOLINGS:
        raise bad(f"an unknown pooling {terminal(repr(pooling)[:40])}")
    out["pooling"] = pooling
    prep = space.get("preprocessing")
    size = prep.get("size") if isinstance(prep, dict) else None
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                             or not 32 <= size <= 1024):
        raise bad(f"a picture size {terminal(repr(size)[:40])} (not a whole number of pixels "
                  "from 32 to 1024)")
    out["preprocessing"] = {"size": size} if size is not None else None
    out["pooling_file"] = space.get("pooling_file") is True
    return out


def _check_size(path: Path, rows: int, dims: int, total: list[int]) -> None:
    total[0] += rows
    if total[0] > IMPORT_MAX_ROWS or total[0] * dims * 4 > IMPORT_MAX_BYTES:
        raise ArtsearchError(
            f"{path}: the import would hold more than {IMPORT_MAX_ROWS:,} rows or "
            f"{IMPORT_MAX_BYTES >> 30} GiB of vectors ({total[0]:,} x {dims}); split it and "
            "import the parts one at a time")


def _npy(path: Path) -> np.ndarray:
    """An .npy file mapped, not read: its header is checked against the file's size first."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ArtsearchError(f"{path}: not a readable .npy file ({one_line(e, 160)}); export "
                             "it again") from e
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        shape = getattr(array, "shape", ())
        raise ArtsearchError(f"{path}: holds an array of shape {tuple(shape)}; vectors must "
                             "be a 2-d array, one row per work")
    if array.dtype.kind not in "fiu":
        raise ArtsearchError(f"{path}: holds {array.dtype} values; vectors must be real "
                             "numbers (float32 or float64)")
    return array


def _vector_column(path: Path, schema: Any, column: str) -> int | None:
    """The vector column's fixed length (None when a list of any length); refused when it is
    not a list of real numbers."""
    pa = _pyarrow()
    if column not in schema.names:
        raise ArtsearchError(f"{path}: no {column!r} column (columns: "
                             f"{', '.join(schema.names)}); name the vectors' column with "
                             "--column")
    kind = schema.field(column).type
    fixed = pa.types.is_fixed_size_list(kind)
    if not (fixed or pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
            pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise ArtsearchError(f"{path}: column {column!r} holds {kind}, not lists of real "
                             "numbers")
    return int(kind.list_size) if fixed else None


def _list_batch(path: Path, values: Any, first_row: int, dims: int | None) -> np.ndarray:
    """One batch of a Parquet list column as an (n, dims) array, refusing ragged rows."""
    import pyarrow.compute as pc

    values = values.combine_chunks() if hasattr(values, "combine_chunks") else values
    n = len(values)
    if values.null_count:
        at = first_row + next(i for i, v in enumerate(values.is_null().to_pylist()) if v)
        raise ArtsearchError(f"{path}: row {at} has no vector; remove the row")
    lengths = np.asarray(pc.list_value_length(values).to_numpy(zero_copy_only=False))
    width = dims if dims is not None else (int(lengths[0]) if n else 0)
    if n and (lengths != width).any():
        at = first_row + int(np.argmax(lengths != width))
        raise ArtsearchError(f"{path}: row {at} has a vector of {int(lengths[at - first_row])} "
                             f"numbers, the others {width}; every vector must have the same "
                             "length")
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, np.float64).reshape(n, width)


def _unit(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Unit-length float32 rows of `block`, computed in float64 (a finite 1e20 must not
    overflow to a zero vector, nor a tiny one underflow); (rows, bad row mask, rows that were
    not unit length)."""
    wide = np.asarray(block, np.float64)
    with np.errstate(all="ignore"):
        finite = np.isfinite(wide).all(axis=1)
        # Divided by its largest entry first, a row's norm is between 1 and sqrt(dims).
        scale = np.where(finite, np.abs(wide).max(axis=1, initial=0.0), 0.0)
        ok = finite & (scale > 0)
        scaled = wide / np.where(ok, scale, 1.0)[:, None]
        length = np.where(ok, np.linalg.norm(scaled, axis=1), 1.0)
        unit = np.where(ok[:, None], scaled / length[:, None], 0.0)
        off = ok & (np.abs(length * scale - 1) > UNIT_TOLERANCE)
    return unit.astype(np.float32), ~ok, int(off.sum())


def read_vectors(source: Path, *, column: str = "embedding") -> Vectors:
    """Read an export (either format) or any Parquet with a path column and a vector column:
    checked, bounded, batch by batch, each vector made unit length (see `_unit`)."""
    _pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, metas, record = _files(source)
    blocks: list[np.ndarray] = []
    bad: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    described: dict[str, Any] | None = None
    normalised = 0
    dims_seen: set[int] = set()
    total = [0]
    export_id = (record or {}).get("export_id")
    for i, path in enumerate(data):
        meta_path = metas[i] if metas else path
        try:
            table_file = pq.ParquetFile(meta_path)
            schema = table_file.schema_arrow
            meta = _schema_meta(meta_path, schema)
            if export_id and (meta or {}).get("export_id") != export_id:
                raise ArtsearchError(
                    f"{meta_path}: from another export than {source}'s record (an export was "
                    "interrupted, or files were mixed); run `artsearch export` again")
            if "path" not in schema.names:
                raise ArtsearchError(f"{meta_path}: no 'path' column; each row needs the "
                                     "image's path relative to the collection root")
            n_rows = table_file.metadata.num_rows
            if metas:
                array = _npy(path)
                if meta and meta.get("emb_sha256") and meta["emb_sha256"] != _sha256(path):
                    raise ArtsearchError(
                        f"{path}: not the file {meta_path.name} was written with (an export "
                        "was interrupted, or the folders were mixed); run `artsearch export` "
                        "again")
                if len(array) != n_rows:
                    raise ArtsearchError(f"{path}: {len(array)} vectors for {n_rows} rows of "
                                         f"{meta_path}; the files are not aligned")
                dims: int | None = array.shape[1]
                _check_size(path, n_rows, dims or 1, total)
                for start in range(0, n_rows, BATCH_ROWS):
                    unit, wrong, off = _unit(array[start: start + BATCH_ROWS])
                    blocks.append(unit)
                    bad.append(wrong)
                    normalised += off
                keep = [c for c in COLUMNS if c in schema.names]
                rows.extend(table_file.read(columns=keep).to_pylist())
            else:
                dims = _vector_column(path, schema, column)
                _check_size(path, n_rows, dims or 1, total)
                keep = [c for c in COLUMNS if c in schema.names and c != column]
                first = 0
                for batch in table_file.iter_batches(batch_size=BATCH_ROWS,
                                                     columns=[*keep, column]):
                    values = _list_batch(path, batch.column(column), first, dims)
                    if dims is None:  # a list of any length: the first batch says
                        dims = values.shape[1]
                        _check_size(path, 0, dims, total)
                    unit, wrong, off = _unit(values)
                    blocks.append(unit)
                    bad.append(wrong)
                    normalised += off
                    rows.extend(batch.select(keep).to_pylist() if keep else
                                [{} for _ in range(batch.num_rows)])
                    first += batch.num_rows
        except ArtsearchError:
            raise
        except (OSError, ValueError, pa.ArrowException) as e:
            raise ArtsearchError(f"{path}: not readable ({one_line(e, 200)})") from e
        if dims is not None:
            dims_seen.add(dims)
        if meta and described is None:
            described = _description(meta_path, meta["space"])
    if len(dims_seen) > 1:
        raise ArtsearchError(f"{source}: files hold vectors of {sorted(dims_seen)} dimensions; "
                             "import one space at a time")
    width = next(iter(dims_seen), 0)
    folder = source if source.is_dir() else source.parent
    pooling = None
    if described and described.get("name"):
        candidate = folder / f"_{described['name']}.pooling.npz"
        pooling = candidate if candidate.is_file() else None
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32)
    return Vectors(vectors, rows, described, pooling, data, normalised,
                   np.concatenate(bad) if bad else np.zeros(0, bool))


@dataclass
class ImportReport:
    space: str = ""
    rows: int = 0
    imported: int = 0
    replaced: int = 0  # works that had a vector in the space already
    new_works: int = 0  # works added to the index from files under its root
    normalised: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    total: int = 0
    ann: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass
class _Plan:
    kept: list[int] = field(default_factory=list)  # row numbers to import
    paths: list[str] = field(default_factory=list)  # their paths
    new: dict[str, tuple[str, int, float]] = field(default_factory=dict)  # path -> sha, size, mtime
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _row_path(value: object) -> tuple[str, str | None]:
    """(the row's path as stored, or why it cannot be one)."""
    if not isinstance(value, str) or not value:
        return terminal(str(value))[:80], "no path"
    if len(value) > MAX_PATH_CHARS:
        return terminal(value[:60]) + "…", f"a path of {len(value):,} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return terminal(value), "a path with control characters"
    rel = PurePosixPath(value.replace("\\", "/")).as_posix().removeprefix("./")
    return rel, None


def _plan(data: Vectors, collection: Path, works: dict[str, tuple[int, str]],
          hashes: dict[tuple[str, int, float], str]) -> _Plan:
    """Which rows can be imported, against the works `works` (path -> (id, sha256)) and the
    files under `collection`; reads nothing but the files it hashes (cached in `hashes`)."""
    from artsearch.images import hash_file

    plan = _Plan()
    seen: set[str] = set()
    for i, item in enumerate(data.rows):
        rel, problem = _row_path(item.get("path"))
        if problem:
            plan.skipped.append((rel, problem))
            continue
        if data.bad is not None and data.bad[i]:
            plan.skipped.append((rel, "the vector is zero or not finite"))
            continue
        if rel in seen:
            plan.skipped.append((rel, "a second row for this path (the first is kept)"))
            continue
        seen.add(rel)
        want = item.get("sha256")
        known = works.get(rel)
        if known is None:
            file = inside(collection, rel)
            if file is None or not file.is_file():  # a row may not name a file elsewhere
                plan.skipped.append((rel, f"no such file under {collection}"))
                continue
            st = file.stat()
            key = (rel, st.st_size, st.st_mtime)
            if key not in hashes:
                hashes[key] = hash_file(file)
            if want and want != hashes[key]:
                plan.skipped.append((rel, "the file differs from the one the vector was "
                                          "computed from (sha256)"))
                continue
            plan.new[rel] = (hashes[key], st.st_size, st.st_mtime)
        elif want and want != known[1]:
            plan.skipped.append((rel, "the indexed file differs from the one the vector was "
                                      "computed from (sha256)"))
            continue
        plan.kept.append(i)
        plan.paths.append(rel)
    return plan


def _works(index: ArtIndex) -> dict[str, tuple[int, str]]:
    if not index.exists:
        return {}
    with index.store.session() as s:
        return {p: (i, h) for i, p, h in s.execute(
            select(Artwork.id, Artwork.path, Artwork.sha256))}


def import_vectors(
    index: ArtIndex, source: Path, space_name: str | None = None, *, root: Path | None = None,
    backbone: str | None = None, layer: str | None = None, pooling: str | None = None,
    input_size: int | None = None, column: str = "embedding",
) -> ImportReport:
    """Record vectors computed elsewhere as space `space_name`.

    The space is declared by the files (an artsearch export) or by `backbone`, `layer`,
    `pooling` and `input_size`; it must be a backbone artsearch can run, so that query
    pictures land in the same space. A declaration that differs from an existing space of
    that name, weights other than those installed here, or vectors of other dimensions are
    refused before anything changes. Rows are matched to works by path (relative to the
    collection root); a path the index does not hold yet is added when its file is under the
    root, and refused when its content hash differs from the row's `sha256`. When no row can
    be imported, nothing changes at all.
    """
    from artsearch import backbones
    from artsearch.index import check_space
    from artsearch.pooling import get_pooling

    started = time.perf_counter()
    if space_name is not None:
        check_space_name(space_name, where="--space")
    data = read_vectors(source, column=column)
    declared = data.space or {}
    name = backbone or declared.get("backbone")
    if not name:
        raise ArtsearchError(f"{source}: the files do not say which backbone made the vectors; "
                             "declare it with --backbone (and --layer, --pooling, "
                             "--input-size as they were computed)")
    spec = backbones.resolve(name)
    size = input_size or (declared.get("preprocessing") or {}).get("size")
    if size:
        spec = spec.at_size(int(size))
    pool = pooling or declared.get("pooling") or "avg"
    layers = spec.parse_layers(layer or declared.get("layer"), pool)
    dims = spec.dims(layers, pool)
    weights = spec.weights.checksum()
    if declared.get("weights_sha256") and declared["weights_sha256"] != weights:
        raise IndexMismatchError(
            f"{source}: computed with {name} weights {declared['weights_sha256'][:12]}, but the "
            f"weights installed here are {weights[:12]}; query pictures would land elsewhere. "
            "Install the same weights, or re-index the pictures here")
    if data.vectors.shape[1] != dims:
        raise IndexMismatchError(
            f"{source}: {data.vectors.shape[1]}-d vectors, but {name} (layer "
            f"{','.join(layers)}, {pool} pooling) makes {dims}-d ones; declare the layer and "
            "pooling they were computed with")
    if get_pooling(pool).fitted and data.pooling is None:
        raise ArtsearchError(
            f"{source}: {pool} pooling is fitted to its collection, and its parameters "
            f"(_{declared.get('name', 'SPACE')}.pooling.npz) are not beside the files; export "
            "the space again with `artsearch export`")

    space_name = space_name or declared.get("name") or "imported"
    report = ImportReport(rows=len(data.rows), space=space_name,
                          normalised=data.normalised)
    # Everything that can refuse is asked before the index changes: the root, the space,
    # and whether any row can be imported at all.
    collection = (root or index.root)
    if collection is None:
        raise ArtsearchError(f"{index.path}: a new index needs the collection folder the paths "
                             "are relative to; give --root FOLDER")
    collection = collection.resolve()
    if root is not None and index.root is not None and index.root != collection:
        raise IndexMismatchError(
            f"{index.path} indexes the collection at {index.root}, not {collection}; import "
            "into another --index, or leave out --root")
    existing = next((sp for sp in index.spaces() if sp.name == space_name), None)
    if existing is not None:
        check_space(existing, spec, layer=",".join(layers), pooling=pool, weights=weights)
    hashes: dict[tuple[str, int, float], str] = {}
    plan = _plan(data, collection, _works(index), hashes)
    if not plan.kept:
        first = plan.skipped[0] if plan.skipped else ("", "the files hold no rows")
        raise ArtsearchError(
            f"{source}: none of its {len(data.rows):,} rows can be imported (e.g. "
            f"{first[0]}: {first[1]}); nothing was changed")

    index.lock()
    index.bind_root(collection)
    from artsearch.vectors import DEFAULT_FACTORY

    space = index.ensure_space(space_name, spec, layers=layers, pooling=pool, dims=dims,
                               factory=DEFAULT_FACTORY)
    index.reconcile(space)
    if data.pooling is not None and get_pooling(pool).fitted \
            and index.pooling_params(space) is None:
        try:
            with np.load(data.pooling, allow_pickle=False) as params:
                fitted = {k: np.asarray(params[k]) for k in params.files}
        except (OSError, ValueError, EOFError) as e:
            raise ArtsearchError(f"{data.pooling}: not readable ({one_line(e, 160)}); export "
                                 "the space again") from e
        index.save_pooling_params(space, fitted)
    plan = _plan(data, collection, _works(index), hashes)  # again, now under the lock
    report.skipped = plan.skipped
    vec = index.vectors(space)
    try:
        with index.store.session() as s, s.begin():
            by_path = {a.path: a for a in s.scalars(select(Artwork))}
            row = s.get(Space, space.id)
            assert row is not None
            old_ids: list[int] = []
            new_ids: list[int] = []
            for i, rel in zip(plan.kept, plan.paths, strict=True):
                art = by_path.get(rel)
                if art is None:
                    sha, size_bytes, mtime = plan.new[rel]
                    item = data.rows[i]
                    art = Artwork(path=rel, sha256=sha, size=size_bytes, mtime=mtime,
                                  **{f: _text(item.get(f)) for f in METADATA_FIELDS})
                    s.add(art)
                    s.flush()
                    by_path[rel] = art
                    report.new_works += 1
                old = s.get(Embedding, (space.id, art.id))
                if old is not None:
                    old_ids.append(old.faiss_id)
                    s.delete(old)
                    s.flush()
                    report.replaced += 1
                s.add(Embedding(space_id=space.id, artwork_id=art.id,
                                faiss_id=row.next_faiss_id, sha256=art.sha256))
                new_ids.append(row.next_faiss_id)
                row.next_faiss_id += 1
        # As in indexing: FAISS changes only after the rows that name its ids are committed.
        vec.remove(old_ids)
        vec.add(new_ids, data.vectors[plan.kept])
        report.imported = len(plan.kept)
    finally:
        if vec.dirty:
            index.save_vectors(space)
    if report.imported or report.new_works:
        index.touch()
    space = index.space(space_name)
    report.total = len(vec)
    report.ann = index.update_ann(space, (space.params or {}).get("index_type") or "auto")
    report.seconds = time.perf_counter() - started
    return report


def _text(value: object) -> str | None:
    """A catalogue cell from a file: text, or None (numbers kept as their text)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)
