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

Both write DIR/_SPACE.export.json (the space, the files, provenance; the leading underscore
keeps pyarrow and pandas from reading it as data) and, for a fitted pooling,
DIR/_SPACE.pooling.npz, so an import into another index embeds new queries the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from artsearch.errors import ArtsearchError, IndexMismatchError
from artsearch.store import METADATA_FIELDS, Artwork, Embedding, Space

if TYPE_CHECKING:
    from artsearch.index import ArtIndex

__all__ = ["FORMATS", "ImportReport", "export_space", "import_vectors", "read_vectors"]

FORMATS = ("parquet", "npy")
SHARD_ROWS = 100_000
EXPORT_VERSION = 1
COLUMNS = ("id", "path", "sha256", *METADATA_FIELDS, "extra")
# Tolerance on a vector's length before it is counted as "not unit length" and normalised.
UNIT_TOLERANCE = 1e-3


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


def _replace(tmp: Path, path: Path) -> None:
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def export_space(index: ArtIndex, space_name: str, fmt: str, out: Path) -> dict[str, Any]:
    """Write every vector of a space with its work's id, path and catalogue; return a summary
    (the same as DIR/_SPACE.export.json). Files are written beside their final names and
    renamed into place, so an interrupted export never leaves a half-written shard."""
    from artsearch.provenance import provenance

    if fmt not in FORMATS:
        raise ArtsearchError(f"{fmt}: not an export format; choose one of {', '.join(FORMATS)}")
    pa = _pyarrow()
    import pyarrow.parquet as pq

    space = index.space(space_name)
    desc = space_description(index, space)
    meta = {"format": EXPORT_VERSION, "space": desc}
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        (out / "emb").mkdir(exist_ok=True)
        (out / "metadata").mkdir(exist_ok=True)
    files: list[str] = []
    count = 0
    for n, (works, vectors) in enumerate(_rows(index, space)):
        stem = f"{space.name}-{n:05d}"
        if fmt == "parquet":
            path = out / f"{stem}.parquet"
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(_table(pa, works, vectors, meta), tmp)
            _replace(tmp, path)
            files.append(path.name)
        else:
            emb = out / "emb" / f"{stem}.npy"
            tmp = emb.with_name(f".{emb.name}.tmp")
            with tmp.open("wb") as fh:
                np.save(fh, np.ascontiguousarray(vectors, np.float32))
            _replace(tmp, emb)
            table = out / "metadata" / f"{stem}.parquet"
            tmp = table.with_name(f".{table.name}.tmp")
            pq.write_table(_table(pa, works, None, meta), tmp)
            _replace(tmp, table)
            files += [f"emb/{emb.name}", f"metadata/{table.name}"]
        count += len(works)
    # Shards of an earlier, larger export of this space would be read as part of this one.
    keep = set(files)
    for old in [*out.glob(f"{space.name}-*.parquet"), *out.glob(f"emb/{space.name}-*.npy"),
                *out.glob(f"metadata/{space.name}-*.parquet")]:
        if old.relative_to(out).as_posix() not in keep:
            old.unlink()
    if desc["pooling_file"]:
        shutil.copyfile(index.path / space.params["pooling_file"],
                        out / f"_{space.name}.pooling.npz")
    summary = {**meta, "format_name": fmt, "count": count, "files": files,
               "provenance": provenance(index, space.name, command="export")}
    (out / f"_{space.name}.export.json").write_text(json.dumps(summary, indent=1),
                                                   encoding="utf-8")
    return summary


@dataclass
class Vectors:
    """Vectors read from an export or another tool, with their rows' keys and catalogue."""

    vectors: np.ndarray
    rows: list[dict[str, Any]]
    space: dict[str, Any] | None  # the artsearch description, when the files carry one
    pooling: Path | None = None  # a fitted pooling's parameters beside the files
    files: list[Path] = field(default_factory=list)


def _files(source: Path) -> tuple[list[Path], list[Path]]:
    """(Parquet files with vectors, or .npy files) and (their aligned metadata files)."""
    if source.is_file():
        if source.suffix == ".parquet":
            return [source], []
        raise ArtsearchError(f"{source}: not a Parquet file; give a .parquet file or the folder "
                             "`artsearch export` wrote")
    if not source.is_dir():
        raise ArtsearchError(f"{source}: no such file or folder")
    npys = sorted((source / "emb").glob("*.npy")) if (source / "emb").is_dir() else []
    if npys:
        metas = [source / "metadata" / f"{p.stem}.parquet" for p in npys]
        missing = [m for m in metas if not m.is_file()]
        if missing:
            raise ArtsearchError(f"{missing[0]}: missing; each emb/NAME.npy needs its "
                                 "metadata/NAME.parquet with the rows' paths")
        return npys, metas
    parquets = sorted(p for p in source.glob("*.parquet") if not p.name.startswith("."))
    if not parquets:
        raise ArtsearchError(f"{source}: no .parquet files, and no emb/*.npy with "
                             "metadata/*.parquet; give what `artsearch export` wrote")
    return parquets, []


def read_vectors(source: Path, *, column: str = "embedding") -> Vectors:
    """Read an export (either format) or any Parquet with a path column and a vector column."""
    _pyarrow()
    import pyarrow.parquet as pq

    data, metas = _files(source)
    blocks: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    described: dict[str, Any] | None = None
    for i, path in enumerate(data):
        try:
            if metas:
                vectors = np.load(path, allow_pickle=False)
                table = pq.read_table(metas[i])
            else:
                table = pq.read_table(path)
                if column not in table.column_names:
                    raise ArtsearchError(
                        f"{path}: no {column!r} column (columns: "
                        f"{', '.join(table.column_names)}); name the vectors' column with "
                        "--column")
                vectors = np.asarray(table.column(column).combine_chunks().flatten(),
                                     np.float32).reshape(table.num_rows, -1)
        except (OSError, ValueError) as e:
            raise ArtsearchError(f"{path}: not readable ({e})") from e
        if vectors.ndim != 2 or len(vectors) != table.num_rows:
            raise ArtsearchError(f"{path}: {len(vectors)} vectors for {table.num_rows} rows of "
                                 "metadata; the files are not aligned")
        if "path" not in table.column_names:
            raise ArtsearchError(f"{metas[i] if metas else path}: no 'path' column; each row "
                                 "needs the image's path relative to the collection root")
        meta = (table.schema.metadata or {}).get(b"artsearch")
        if meta and described is None:
            described = json.loads(meta)["space"]
        keep = [c for c in COLUMNS if c in table.column_names]
        rows.extend(table.select(keep).to_pylist())
        blocks.append(vectors.astype(np.float32, copy=False))
    dims = {b.shape[1] for b in blocks}
    if len(dims) > 1:
        raise ArtsearchError(f"{source}: files hold vectors of {sorted(dims)} dimensions; "
                             "import one space at a time")
    folder = source if source.is_dir() else source.parent
    pooling = None
    if described:
        candidate = folder / f"_{described['name']}.pooling.npz"
        pooling = candidate if candidate.is_file() else None
    return Vectors(np.concatenate(blocks), rows, described, pooling, data)


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
    root, and refused when its content hash differs from the row's `sha256`.
    """
    from artsearch import backbones
    from artsearch.images import hash_file
    from artsearch.index import check_space
    from artsearch.pooling import get_pooling

    started = time.perf_counter()
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
    report = ImportReport(rows=len(data.rows), space=space_name)
    index.lock()
    if root is not None:
        index.bind_root(root)
    if index.root is None:
        raise ArtsearchError(f"{index.path}: a new index needs the collection folder the paths "
                             "are relative to; give --root FOLDER")
    collection = index.root
    existing = next((sp for sp in index.spaces() if sp.name == space_name), None)
    if existing is not None:
        check_space(existing, spec, layer=",".join(layers), pooling=pool, weights=weights)
    from artsearch.vectors import DEFAULT_FACTORY

    space = index.ensure_space(space_name, spec, layers=layers, pooling=pool, dims=dims,
                               factory=DEFAULT_FACTORY)
    index.reconcile(space)
    if data.pooling is not None and get_pooling(pool).fitted \
            and index.pooling_params(space) is None:
        with np.load(data.pooling) as params:
            index.save_pooling_params(space, {k: params[k] for k in params.files})
    vectors = data.vectors
    norms = np.linalg.norm(vectors, axis=1)
    finite = np.isfinite(vectors).all(axis=1) & (norms > 0)
    off = finite & (np.abs(norms - 1) > UNIT_TOLERANCE)
    report.normalised = int(off.sum())
    vectors = np.where(finite[:, None], vectors / np.where(norms > 0, norms, 1)[:, None], 0)
    vec = index.vectors(space)
    seen: set[str] = set()
    try:
        with index.store.session() as s, s.begin():
            works = {a.path: a for a in s.scalars(select(Artwork))}
            row = s.get(Space, space.id)
            assert row is not None
            old_ids: list[int] = []
            new_ids: list[int] = []
            kept: list[int] = []
            for i, item in enumerate(data.rows):
                rel = PurePosixPath(str(item.get("path") or "").replace("\\", "/")).as_posix()
                rel = rel.removeprefix("./")
                if not finite[i]:
                    report.skipped.append((rel, "the vector is zero or not finite"))
                    continue
                if rel in seen:
                    report.skipped.append((rel, "a second row for this path (the first is kept)"))
                    continue
                seen.add(rel)
                art = works.get(rel)
                want = item.get("sha256")
                if art is None:
                    file = collection / rel
                    inside = bool(rel) and not PurePosixPath(rel).is_absolute() \
                        and ".." not in PurePosixPath(rel).parts \
                        and file.resolve().is_relative_to(collection.resolve())
                    if not inside or not file.is_file():  # a row may not name a file elsewhere
                        report.skipped.append((rel, f"no such file under {collection}"))
                        continue
                    sha = hash_file(file)
                    if want and want != sha:
                        report.skipped.append((rel, "the file differs from the one the vector "
                                                    "was computed from (sha256)"))
                        continue
                    st = file.stat()
                    art = Artwork(path=rel, sha256=sha, size=st.st_size, mtime=st.st_mtime,
                                  **{f: item.get(f) for f in METADATA_FIELDS})
                    s.add(art)
                    s.flush()
                    works[rel] = art
                    report.new_works += 1
                elif want and want != art.sha256:
                    report.skipped.append((rel, "the indexed file differs from the one the "
                                                "vector was computed from (sha256)"))
                    continue
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
                kept.append(i)
        # As in indexing: FAISS changes only after the rows that name its ids are committed.
        vec.remove(old_ids)
        vec.add(new_ids, vectors[kept])
        report.imported = len(kept)
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
