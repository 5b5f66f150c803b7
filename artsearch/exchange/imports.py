"""`artsearch import-vectors`: vectors computed elsewhere recorded as a space, all or nothing."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.errors import ArtsearchError, IndexMismatchError
from artsearch.exchange._common import MAX_PATH_CHARS
from artsearch.index.catalogue import work_hashes
from artsearch.index.store import METADATA_FIELDS
from artsearch.index.writer import record_imported
from artsearch.paths import check_space_name, inside
from artsearch.textsafe import one_line, terminal

if TYPE_CHECKING:
    from artsearch.index import ArtIndex

from artsearch.exchange.read import Vectors, read_vectors

__all__ = ["ImportReport", "import_vectors"]


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
    return work_hashes(index)


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
    pool = pooling or declared.get("pooling") or spec.default_pooling
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
    from artsearch.index.vectors import DEFAULT_FACTORY

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
        works = [(rel, plan.new.get(rel),
                  {f: _text(data.rows[i].get(f)) for f in METADATA_FIELDS})
                 for i, rel in zip(plan.kept, plan.paths, strict=True)]
        old_ids, new_ids, report.new_works, report.replaced = record_imported(
            index, space, works)
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

