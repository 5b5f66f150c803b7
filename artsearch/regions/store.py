"""The region index's storage and building (see artsearch.regions for what regions are).

One file per space, `regions/space-ID.npz` in the index folder, replaced atomically (and
every CHECKPOINT_SECONDS of a long run): the FAISS index, each region's work id and box, each
work's whole picture described as one fragment, and the content hash of every work
described, so a re-run adds new and changed works and drops removed ones. Up to EXACT_UP_TO
regions the index is exact; above, it is the smallest code (product, then 4- and 8-bit
scalar quantisation) that keeps the whole-picture ANN's recall bar for the ten best works of
sample queries.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.errors import IndexDamagedError
from artsearch.index.ann import RECALL_BAR
from artsearch.index.catalogue import space_works
from artsearch.regions.describe import (
    CANDIDATES,
    SCALES,
    STRIDE,
    describe_regions,
    query_vector,
    region_extractor,
    region_layer,
)

if TYPE_CHECKING:
    from artsearch.index import ArtIndex
    from artsearch.index.store import Space

__all__ = ["BuildReport", "build_regions", "has_regions", "load_regions", "region_summary",
           "regions_file"]

EXACT_UP_TO = 50_000  # regions searched exactly; above, quantised
TRAIN_SAMPLE = 100_000
WORK_RECALL_BAR = RECALL_BAR  # a code must keep this share of each query's ten best works
CHECKPOINT_SECONDS = 120.0
FORMAT = 2


@dataclass
class BuildReport:
    space: str
    works: int = 0          # works described after the run
    added: int = 0
    removed: int = 0
    regions: int = 0
    seconds: float = 0.0
    structure: str = ""
    work_recall: float | None = None  # PQ only: share of exact top-10 works kept
    skipped: list[tuple[str, str]] = field(default_factory=list)
    damaged: str | None = None  # a damaged file set aside before the run, said in one line





@dataclass
class _Regions:
    index: Any               # faiss index, row i = region i
    owners: np.ndarray       # (n,) int64 artwork id
    boxes: np.ndarray        # (n, 4) float32
    works: dict[int, str]    # artwork id -> content hash described
    meta: dict[str, Any]
    # artwork id -> the whole picture described as one fragment (as a query is): what
    # `duplicates` asks of the regions to find the works a work may be a detail of
    whole: dict[int, np.ndarray] = field(default_factory=dict)


def regions_file(index: ArtIndex, sp: Space) -> Path:
    return index.path / "regions" / f"space-{sp.id}.npz"


def _identity(index: ArtIndex, sp: Space) -> dict[str, Any]:
    """What the descriptors depend on: a change means describing every work again."""
    spec = index.spec_for(sp)
    return {"format": FORMAT, "space_id": sp.id, "backbone": sp.backbone,
            "weights_sha256": sp.weights_sha256, "layer": region_layer(spec),
            "scales": [list(s) for s in SCALES], "stride": STRIDE, "precision": "fp32"}




def has_regions(index: ArtIndex, sp: Space) -> bool:
    return regions_file(index, sp).is_file()


_CACHE: dict[Path, tuple[tuple[int, int], _Regions]] = {}


def load_regions(index: ArtIndex, sp: Space, *, cached: bool = False) -> _Regions | None:
    """The stored regions, checked against the fingerprint recorded when they were saved;
    `cached` (queries, which never change them) keeps the last one read per file until the
    file is replaced. A file that fails the check, or cannot be read whole, raises
    IndexDamagedError naming the file and the fix."""
    path = regions_file(index, sp)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    if cached and path in _CACHE and _CACHE[path][0] == stamp:
        return _CACHE[path][1]
    try:
        stored = _read_checked(index, sp, path)
    except IndexDamagedError as e:
        raise IndexDamagedError(f"{e}; run `artsearch index FOLDER --index {index.path} "
                                f"--space {sp.name} --regions` to set it aside and describe "
                                "the works again") from None
    if cached:
        if len(_CACHE) >= 4:
            _CACHE.clear()
        _CACHE[path] = (stamp, stored)
    return stored


def _read_checked(index: ArtIndex, sp: Space, path: Path) -> _Regions:
    """Read the region file through one open handle: its fingerprint first (against the
    record as it is, then as the database holds it now, since a writer may have saved in
    between), then its arrays; any failure to read it whole is damage."""
    import zipfile
    import zlib

    import faiss

    from artsearch.index.vectors import file_fingerprint, fingerprint_mismatch

    with path.open("rb") as fh:
        snapshot = Path(f"/proc/self/fd/{fh.fileno()}")
        snapshot = snapshot if snapshot.exists() else path
        found = file_fingerprint(snapshot)
        for attempt in range(2):
            record = (sp.params or {}).get("regions") or {}
            accepted = [fp for fp in (record.get("current"), record.get("pending")) if fp]
            if (size := fingerprint_mismatch(found, accepted)) is None:
                break
            if attempt == 0:
                sp = index.fresh(sp)
                continue
            raise IndexDamagedError(f"{path}: not the region file this index saved ({size}; "
                                    "replaced or damaged)")
        try:
            with np.load(snapshot, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                ids = z["work_ids"].tolist()
                works = dict(zip(ids, z["work_sha"].tolist(), strict=True))
                whole = dict(zip(ids, z["work_vecs"].astype(np.float32), strict=True))
                stored = _Regions(faiss.deserialize_index(z["faiss"]),
                                  z["owners"].astype(np.int64), z["boxes"].astype(np.float32),
                                  works, meta, whole)
        except (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError,
                zipfile.BadZipFile, zlib.error) as e:
            raise IndexDamagedError(f"{path}: damaged, it cannot be read "
                                    f"({type(e).__name__}: {str(e)[:80]})") from None
    if stored.index.ntotal != len(stored.owners) or len(stored.boxes) != len(stored.owners):
        raise IndexDamagedError(f"{path}: damaged, the region index does not match its boxes")
    return stored


def _set_aside(index: ArtIndex, sp: Space) -> str:
    """Move a damaged region file aside (.damaged-DATE) and forget its record; the line
    that says so."""
    path = regions_file(index, sp)
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    index.record_file(sp, "regions", None)
    _CACHE.pop(path, None)
    return f"moved aside to {aside.name}; every work is described again"


def _save(index: ArtIndex, sp: Space, r: _Regions) -> None:
    """Write the file under a temporary name, fsync it, record its fingerprint as pending,
    rename it into place, fsync the folder, record it as current."""
    import faiss

    from artsearch.index.vectors import file_fingerprint, fsync_folder

    path = regions_file(index, sp)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    ids = np.array(sorted(r.works), np.int64)
    with open(tmp, "wb") as f:
        np.savez(f, faiss=faiss.serialize_index(r.index), owners=r.owners,
                 boxes=r.boxes.astype(np.float16), work_ids=ids,
                 work_sha=np.array([r.works[i] for i in ids.tolist()], dtype="U64"),
                 work_vecs=np.array([r.whole[i] for i in ids.tolist()], np.float16).reshape(
                     len(ids), -1),
                 meta=np.frombuffer(json.dumps(r.meta).encode(), np.uint8))
        f.flush()
        os.fsync(f.fileno())
    fp = file_fingerprint(tmp)
    index.record_file(sp, "regions", fp, pending=True)
    os.replace(tmp, path)
    fsync_folder(path.parent)
    index.record_file(sp, "regions", fp)


# -- building --------------------------------------------------------------------------------


def build_regions(index: ArtIndex, space: str,
                  progress: Callable[[int, int], None] | None = None,
                  checkpoint_seconds: float = CHECKPOINT_SECONDS) -> BuildReport:
    """Describe the space's new and changed works by regions; drop removed ones.

    Each work's file is read through the collection's own reader (a link leading out of
    the collection is skipped, with its reason in the report). What is described is saved
    every `checkpoint_seconds`, so an interrupted run loses at most that much: a re-run
    describes only the works still missing."""
    from artsearch.images import decoded, read_work

    index.lock()
    start = time.perf_counter()
    sp = index.space(space)
    report = BuildReport(space)
    identity = _identity(index, sp)
    try:
        current = load_regions(index, sp)
    except IndexDamagedError as e:  # a writer sets it aside and starts again
        report.damaged = f"{str(e).split('; run ', 1)[0]}; {_set_aside(index, sp)}"
        current = None
    if current is not None and {k: current.meta.get(k) for k in identity} != identity:
        current = None  # another backbone, weights or layout: describe everything again
    works = space_works(index, sp)
    old = current.works if current is not None else {}
    gone = {a for a, sha in old.items() if a not in works or works[a][1] != sha}
    todo = sorted(a for a, (_, sha) in works.items() if old.get(a) != sha)
    if current is not None and gone:
        current = _merge(current, gone, None, np.zeros(0, np.int64), np.zeros((0, 4)), {}, {})
    ex = region_extractor(index, sp) if todo else None
    min_side = round(max(s for s, _ in SCALES) * index.spec_for(sp).preprocess.size / 224)
    vecs: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    described: dict[int, str] = {}
    whole: dict[int, np.ndarray] = {}
    last_save = time.perf_counter()

    def save() -> None:
        nonlocal current
        if vecs:
            current = _merge(current, set(), np.concatenate(vecs), np.concatenate(owners),
                             np.concatenate(boxes), described, whole)
            whole.clear()
            vecs.clear()
            owners.clear()
            boxes.clear()
            described.clear()
        if current is not None:
            current.meta = {**identity, "structure": current.meta.get("structure", "flat"),
                            "work_recall": current.meta.get("work_recall"),
                            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _save(index, sp, current)

    for n, art in enumerate(todo, 1):
        rel, sha = works[art]
        img = decoded(read_work(index.root, rel), min_side=min_side)
        if img is None:
            report.skipped.append((rel, "not readable inside the collection (moved, changed, "
                                        "or a link leading out of it); re-run `artsearch "
                                        "index`"))
        else:
            assert ex is not None
            v, b = describe_regions(ex, img)
            vecs.append(v)
            boxes.append(b)
            owners.append(np.full(len(v), art, np.int64))
            described[art] = sha
            whole[art] = query_vector(ex, img)[0]
            report.added += 1
        if time.perf_counter() - last_save >= checkpoint_seconds:
            save()
            last_save = time.perf_counter()
        if progress is not None:
            progress(n, len(todo))
    if todo or gone:
        save()
    report.removed = len(gone)
    if current is not None:
        report.works, report.regions = len(current.works), int(current.index.ntotal)
        report.structure = current.meta["structure"]
        report.work_recall = current.meta["work_recall"]
    report.seconds = time.perf_counter() - start
    return report


def _merge(current: _Regions | None, gone: set[int], new_v: np.ndarray | None,
           new_o: np.ndarray, new_b: np.ndarray, described: dict[int, str],
           new_whole: dict[int, np.ndarray]) -> _Regions | None:
    """`current` less the works in `gone`, plus new regions: added to its codes when it is
    quantised, else to its exact vectors (quantised once they pass EXACT_UP_TO)."""
    import faiss

    if current is None and new_v is None:
        return None
    if current is not None and gone:
        keep = ~np.isin(current.owners, np.fromiter(gone, np.int64))
        # remove_ids keeps the order of what stays, so boxes and owners stay row-aligned.
        current.index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(~keep).astype(np.int64)))
        current.owners, current.boxes = current.owners[keep], current.boxes[keep]
        current.works = {a: s for a, s in current.works.items() if a not in gone}
        current.whole = {a: v for a, v in current.whole.items() if a not in gone}
    if new_v is None:
        assert current is not None
        return current
    if current is not None and current.meta.get("structure", "flat") != "flat":
        current.index.add(new_v)  # codes: encoded with what the structure learnt
        return _Regions(current.index, np.concatenate([current.owners, new_o]),
                        np.concatenate([current.boxes, new_b]),
                        {**current.works, **described}, current.meta,
                        {**current.whole, **new_whole})
    if current is not None and current.index.ntotal:
        all_v = np.concatenate([current.index.reconstruct_n(0, current.index.ntotal), new_v])
        all_o = np.concatenate([current.owners, new_o])
        all_b = np.concatenate([current.boxes, new_b])
        works = {**current.works, **described}
        whole = {**current.whole, **new_whole}
    else:
        all_v, all_o, all_b = new_v, new_o, new_b
        works, whole = dict(described), dict(new_whole)
    structure, recall, built = _structure(all_v, all_o)
    return _Regions(built, all_o, all_b, works, {"structure": structure, "work_recall": recall},
                    whole)


# Quantisers tried in order of size (bytes a region): product codes of d/8 and d/4 bytes,
# 4- and 8-bit scalar codes, half floats.
def _quantisers(d: int) -> list[tuple[str, Callable[[], Any]]]:
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    sq = faiss.ScalarQuantizer
    out: list[tuple[str, Callable[[], Any]]] = [
        (f"PQ{m}", partial(faiss.IndexPQ, d, m, 8, ip))
        for m in (d // 8, d // 4) if m >= 1 and d % m == 0]
    out += [(name, partial(faiss.IndexScalarQuantizer, d, q, ip))
            for name, q in (("SQ4", sq.QT_4bit), ("SQ8", sq.QT_8bit), ("SQfp16", sq.QT_fp16))]
    return out


def _structure(vectors: np.ndarray, owners: np.ndarray) -> tuple[str, float | None, Any]:
    """Exact search while it is cheap; above EXACT_UP_TO regions, the smallest code that
    keeps RECALL_BAR (the whole-picture ANN's bar) of the exact top-10 works, for
    CALIBRATION_QUERIES stored regions asked as queries; exact again if none does."""
    import faiss

    from artsearch.index.ann import CALIBRATION_QUERIES

    d = vectors.shape[1]
    flat = faiss.IndexFlatIP(d)
    flat.add(vectors)
    if len(vectors) <= EXACT_UP_TO:
        return "flat", None, flat
    rng = np.random.default_rng(0)
    train = vectors[rng.choice(len(vectors), min(len(vectors), TRAIN_SAMPLE), replace=False)]
    probe = vectors[rng.choice(len(vectors), CALIBRATION_QUERIES, replace=False)]
    exact = _top_works(flat, probe, owners)
    for name, make in _quantisers(d):
        coded = make()
        coded.train(train)
        coded.add(vectors)
        found = _top_works(coded, probe, owners)
        recall = float(np.mean([len(a & b) / max(1, len(a)) for a, b in
                                zip(exact, found, strict=True)]))
        if recall >= WORK_RECALL_BAR:
            return name, round(recall, 4), coded
    return "flat", None, flat


def _top_works(index: Any, queries: np.ndarray, owners: np.ndarray, k: int = 10
               ) -> list[set[int]]:
    _, ids = index.search(queries, CANDIDATES)
    out = []
    for row in ids:
        seen: list[int] = []
        for j in row:
            if j >= 0 and (o := int(owners[j])) not in seen:
                seen.append(o)
                if len(seen) == k:
                    break
        out.append(set(seen))
    return out


def region_summary(index: ArtIndex, sp: Space) -> dict[str, Any] | None:
    """What `artsearch info` says about a space's region index ({"damaged": why} for a
    file that fails its check)."""
    try:
        stored = load_regions(index, sp)
    except IndexDamagedError as e:
        return {"damaged": str(e)}
    if stored is None:
        return None
    size = regions_file(index, sp).stat().st_size
    return {"works": len(stored.works), "regions": int(stored.index.ntotal),
            "structure": stored.meta.get("structure"), "layer": stored.meta.get("layer"),
            "bytes": size, "built": stored.meta.get("built")}
