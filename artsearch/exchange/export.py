"""`artsearch export`: a space's vectors and catalogue out as Parquet or .npy, staged and
recorded (see the package)."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.digest import sha256_file
from artsearch.errors import ArtsearchError
from artsearch.exchange._common import EXPORT_VERSION, FORMATS, SHARD_ROWS, pyarrow
from artsearch.index.catalogue import embedded_pairs
from artsearch.index.store import METADATA_FIELDS, Artwork, Space
from artsearch.paths import check_space_name
from artsearch.textsafe import one_line

if TYPE_CHECKING:
    from artsearch.index import ArtIndex

__all__ = ["export_space", "space_description"]


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
    pairs = embedded_pairs(index, space)
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
    pa = pyarrow()
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
                shard = {**meta, "emb_file": f"emb/{stem}.npy", "emb_sha256": sha256_file(tmp),
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


