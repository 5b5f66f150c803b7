"""Reading vectors from an export or another tool's Parquet: checked, bounded, in batches."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.digest import sha256_file
from artsearch.errors import ArtsearchError
from artsearch.exchange._common import (
    BATCH_ROWS,
    COLUMNS,
    IMPORT_MAX_BYTES,
    IMPORT_MAX_ROWS,
    POOLINGS,
    UNIT_TOLERANCE,
    pyarrow,
)
from artsearch.paths import check_space_name
from artsearch.textsafe import one_line, terminal

if TYPE_CHECKING:
    pass

__all__ = ["Vectors", "read_vectors"]


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
    checked: dict[str, Any] = record
    return checked


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
    pa = pyarrow()
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
    pyarrow()
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
                if meta and meta.get("emb_sha256") and meta["emb_sha256"] != sha256_file(path):
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


