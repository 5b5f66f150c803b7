"""Incremental indexing of a collection folder into one embedding space of an index."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from artsearch import backbones
from artsearch.errors import ArtsearchError, BadImageError, PruneRefusedError
from artsearch.images import DEFAULT_MAX_BYTES, IMAGE_EXTENSIONS, FileEntry, hash_file, scan
from artsearch.index import ArtIndex, Repair
from artsearch.index.metadata import MetadataImport, apply_metadata, read_metadata_csv
from artsearch.index.store import Artwork, Embedding, Failure, Space, utcnow

if TYPE_CHECKING:
    from artsearch.extract import Extractor

__all__ = ["IndexOptions", "IndexReport", "index_collection"]


@dataclass
class IndexOptions:
    """How to build or update one space; the CLI's `index` options map onto these."""

    space: str = "content"
    backbone: str | None = None  # None: the space's own, or the default for a new space
    weights: Path | None = None  # a checkpoint for backbones that take one
    layer: str | None = None  # None: the space's own, or the backbone's default
    pooling: str | None = None  # None: the space's own, or avg
    input_size: int | None = None  # None: the space's own, or the backbone's default
    index_type: str | None = None  # auto | flat | hnsw | ivfpq; None: the space's own, or auto
    prune: bool = False
    force: bool = False  # prune even when most of the collection seems gone
    relocate: bool = False
    follow_links: bool = False  # index what links leading out of the collection point to
    metadata: Path | None = None
    checkpoint_seconds: float = 30.0
    progress: bool = False
    extractor: dict[str, Any] = field(default_factory=dict)  # device, precision, batch_size...
    engine: Any = None  # None: this process; a distributed.RayOptions: a Ray cluster


@dataclass
class IndexReport:
    """What one run did. `failed` holds (path, one-line reason) for this run's bad files."""

    scanned: int = 0
    unchanged: int = 0
    embedded: int = 0
    moved: int = 0
    copied: int = 0
    missing: list[str] = field(default_factory=list)
    pruned: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    repaired: Repair = field(default_factory=Repair)
    damaged: list[str] = field(default_factory=list)  # vector files found broken, set aside
    metadata: MetadataImport | None = None
    total: int = 0  # artworks with a vector in this space after the run
    ann: dict[str, Any] | None = None  # the approximate index this run built, if any
    seconds: float = 0.0
    embed_seconds: float = 0.0
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds else 0.0


@dataclass
class _Job:
    entry: FileEntry
    artwork_id: int | None  # None: a new artwork row is made when its vector is ready


def index_collection(
    root: Path,
    index: ArtIndex,
    options: IndexOptions | None = None,
    *,
    make_extractor: Callable[[], Extractor] | None = None,
) -> IndexReport:
    """Bring `options.space` of `index` up to date with the images under `root`.

    Only new or changed files are embedded (size and mtime first, then the content hash);
    moved files keep their vectors; identical copies reuse them. Bad files are recorded in
    `failures` and skipped. Work is committed batch by batch, so an interrupted run loses
    at most the batch in flight, and the next run repairs and resumes.
    """
    opts = options or IndexOptions()
    started = time.perf_counter()
    if not root.is_dir():
        raise ArtsearchError(f"{root}: not a folder; give the folder that holds the images")
    if opts.metadata is not None:  # a bad catalogue fails before any work, not after it
        catalogue = read_metadata_csv(opts.metadata)
    entries, scan_failures = scan(root, follow_links=opts.follow_links)
    if not entries and not index.exists:
        raise ArtsearchError(
            f"{root}: no image files found ({', '.join(sorted(IMAGE_EXTENSIONS))}, in any "
            "subfolder but hidden ones); nothing was indexed and no index was created"
            + (f" ({len(scan_failures)} unreadable entries)" if scan_failures else ""))
    index.lock()
    existing = next((sp for sp in index.spaces() if sp.name == opts.space), None)
    if opts.backbone is None and existing is not None:
        spec = index.spec_for(existing, opts.weights)  # a re-run keeps the space's backbone
    else:
        spec = backbones.resolve(opts.backbone or backbones.DEFAULT_BACKBONE, opts.weights)
    if opts.input_size is not None:
        spec = spec.at_size(opts.input_size)
    elif existing is not None and existing.backbone == spec.name:
        spec = spec.at_size(int((existing.preprocessing or {}).get("size")
                                or spec.preprocess.size))  # a re-run keeps the space's size
    same = existing is not None and existing.backbone == spec.name
    pooling = opts.pooling or (existing.pooling if same and existing else spec.default_pooling)
    layers = spec.parse_layers(
        opts.layer or (existing.layer if same and existing and not opts.pooling else None),
        pooling)
    if make_extractor is None:
        def make_extractor() -> Extractor:
            from artsearch.extract import Extractor

            local = Extractor(spec, layer=layers, pooling=pooling, **opts.extractor)
            if opts.engine is None:
                return local
            from artsearch.distributed import RayExtractor

            return RayExtractor(local, opts.engine)  # type: ignore[return-value]

    dims = spec.dims(layers, pooling)

    old_root = index.root
    index.bind_root(root, relocate=opts.relocate)
    from artsearch.index.vectors import DEFAULT_FACTORY

    space = index.ensure_space(opts.space, spec, layers=layers, pooling=pooling, dims=dims,
                               factory=DEFAULT_FACTORY)
    report = IndexReport()
    report.repaired = index.reconcile(space)
    report.damaged = list(index.damaged)
    report.scanned = len(entries)
    vec = index.vectors(space)
    max_bytes = opts.extractor.get("max_bytes", DEFAULT_MAX_BYTES)
    try:
        try:
            with index.store.session() as s, s.begin():
                jobs = _plan(s, space, root, entries, report, vec, opts, max_bytes)
                _record_failures(s, [(f.rel, f.reason) for f in scan_failures])
                report.failed.extend((f.rel, f.reason) for f in scan_failures)
        except PruneRefusedError:
            if opts.relocate and old_root is not None:  # a refused run moves nothing
                index.bind_root(old_root, relocate=True)
            raise
        if jobs:
            _embed(index, space, jobs, report, make_extractor, opts)
    finally:
        # Also on Ctrl-C or an error: every batch committed to SQLite reaches the file.
        if vec.dirty:
            index.save_vectors(space)
    with index.store.session() as s, s.begin():
        if opts.metadata is not None:
            report.metadata = apply_metadata(s, catalogue)
        # Failures of files that are gone, or that indexed this time, are history.
        present = {e.rel for e in entries} | {f.rel for f in scan_failures}
        for failure in s.scalars(select(Failure)):
            if failure.path not in present:
                s.delete(failure)
        report.total = s.scalar(select(func.count()).select_from(Embedding).where(
            Embedding.space_id == space.id)) or 0
    if (report.embedded or report.moved or report.copied or report.pruned
            or report.metadata is not None or report.repaired):
        index.touch()
    space = index.space(opts.space)
    requested = opts.index_type or (space.params or {}).get("index_type") or "auto"
    runner = None
    if opts.engine is not None:
        from artsearch.distributed import ray_shard_runner

        runner = ray_shard_runner(opts.engine.address)
    report.ann = index.update_ann(space, requested, run_shards=runner)
    report.seconds = time.perf_counter() - started
    return report


# --prune refuses, without --force, to remove more than this share of the indexed works: an
# empty or unmounted folder looks exactly like a collection whose every file was deleted.
PRUNE_MAX_SHARE = 0.5


def _plan(
    s: Session, space: Space, root: Path, entries: list[FileEntry], report: IndexReport,
    vec: Any, opts: IndexOptions, max_bytes: int,
) -> list[_Job]:
    """Sort files into unchanged, moved, copied and to-embed; apply the cheap cases at once."""
    artworks = {a.path: a for a in s.scalars(select(Artwork))}
    embedded = {e.artwork_id: e for e in s.scalars(
        select(Embedding).where(Embedding.space_id == space.id))}
    on_disk = {e.rel for e in entries}
    # Artworks whose file is gone, by content: candidates for a move.
    vanished: dict[str, list[Artwork]] = {}
    by_sha: dict[str, Artwork] = {}
    for known in artworks.values():
        if known.id in embedded and embedded[known.id].sha256 == known.sha256:
            by_sha.setdefault(known.sha256, known)
            if known.path not in on_disk:
                vanished.setdefault(known.sha256, []).append(known)

    jobs: list[_Job] = []
    copies: list[tuple[int, int]] = []  # (new faiss id, source faiss id): added after checks
    for entry in entries:
        art = artworks.get(entry.rel)
        emb = embedded.get(art.id) if art else None
        current = emb is not None and art is not None and emb.sha256 == art.sha256
        if art and current and art.size == entry.size and art.mtime == entry.mtime:
            report.unchanged += 1
            continue
        if art is None and not by_sha:  # a first run: the extractor hashes what it reads
            jobs.append(_Job(entry, None))
            continue
        try:
            sha = hash_file(entry.path, max_bytes)
        except BadImageError as e:
            _record_failures(s, [(entry.rel, str(e))])
            report.failed.append((entry.rel, str(e)))
            continue
        if art is not None:
            if art.sha256 == sha and current:  # touched, not changed
                art.size, art.mtime = entry.size, entry.mtime
                report.unchanged += 1
            else:
                jobs.append(_Job(entry, art.id))
            continue
        if vanished.get(sha):  # the same content left another path: a move
            moved = vanished[sha].pop()
            del artworks[moved.path]
            moved.path, moved.size, moved.mtime = entry.rel, entry.size, entry.mtime
            artworks[entry.rel] = moved
            report.moved += 1
            continue
        source = by_sha.get(sha)
        if source is not None:  # an identical copy: reuse the vector
            new = _new_artwork(entry, sha, source.width, source.height)
            s.add(new)
            s.flush()
            faiss_id = _next_id(s, space)
            copies.append((faiss_id, embedded[source.id].faiss_id))
            s.add(Embedding(space_id=space.id, artwork_id=new.id, faiss_id=faiss_id, sha256=sha))
            report.copied += 1
            continue
        jobs.append(_Job(entry, None))

    gone = [art for art in artworks.values() if art.path not in on_disk]
    if opts.prune and gone and not opts.force and len(gone) > PRUNE_MAX_SHARE * len(artworks):
        # Raised before anything changed: the transaction rolls back, FAISS is untouched.
        raise PruneRefusedError(
            f"--prune would remove {len(gone):,} of {len(artworks):,} indexed works whose files "
            f"are not under {root} ({len(entries):,} image files found "
            "there); if the folder is right and they really are gone, add --force")
    for source_id, target in ((src, new) for new, src in copies):
        vec.add([target], vec.reconstruct(source_id)[None])
    for art in gone:
        if opts.prune:
            emb = embedded.get(art.id)
            if emb is not None:
                vec.remove([emb.faiss_id])
            s.delete(art)
            report.pruned += 1
        else:
            report.missing.append(art.path)
    return jobs


def _embed(
    index: ArtIndex, space: Space, jobs: list[_Job], report: IndexReport,
    make_extractor: Callable[[], Extractor], opts: IndexOptions,
) -> None:
    """Embed the jobs batch by batch; each batch is one SQLite transaction.

    The hash, size and time stored with each vector are those of the bytes the extractor
    decoded, so a file that changed while being indexed is never recorded as the version
    it was not.
    """
    vec = index.vectors(space)
    extractor = make_extractor()
    report.runtime = extractor.describe()
    if extractor.pool.fitted:
        stored = index.pooling_params(space)
        if stored is None:  # a new space: learn the pooling's centre once, then keep it
            index.save_pooling_params(
                space, extractor.fit(sorted((j.entry.path for j in jobs), key=str)))
        else:
            extractor.params = stored
    last_save = time.monotonic()
    started = time.perf_counter()
    with _progress(len(jobs), opts.progress) as bar:
        for batch in extractor.iter_files([j.entry.path for j in jobs]):
            with index.store.session() as s, s.begin():
                old_ids, new_ids = _store_batch(s, space, jobs, batch)
                done = [jobs[i].entry.rel for i in batch.indices]
                if done:
                    s.execute(delete(Failure).where(Failure.path.in_(done)))
                bad = [(jobs[i].entry.rel, reason) for i, reason in batch.failures]
                _record_failures(s, bad)
            report.failed.extend(bad)
            # Only a committed batch changes FAISS (in memory; on disk at the next save), so
            # a failed commit leaves nothing behind to repair.
            vec.remove(old_ids)
            vec.add(new_ids, batch.vectors)
            report.embedded += len(batch.indices)
            bar.update(len(batch.indices) + len(batch.failures))
            if time.monotonic() - last_save >= opts.checkpoint_seconds:
                index.save_vectors(space)
                last_save = time.monotonic()
    report.embed_seconds = time.perf_counter() - started
    report.runtime = extractor.describe()  # as it ran (a Ray pool's size is known now)


def _store_batch(s: Session, space: Space, jobs: list[_Job], batch: Any
                 ) -> tuple[list[int], list[int]]:
    """Record one embedded batch: ids taken in one go, new works inserted in bulk, changed
    works re-pointed at their new vectors. Returns (replaced FAISS ids, new FAISS ids)."""
    row = s.get(Space, space.id)
    assert row is not None
    known = {a.id: a for a in s.scalars(select(Artwork).where(Artwork.id.in_(
        [jobs[i].artwork_id for i in batch.indices if jobs[i].artwork_id])))}
    old_ids: list[int] = []
    new_ids: list[int] = []
    fresh: list[dict[str, Any]] = []  # new artworks, with their vector's id and hash
    now = utcnow()
    for i, (w, h), read in zip(batch.indices, batch.sizes, batch.reads, strict=True):
        faiss_id = row.next_faiss_id
        row.next_faiss_id += 1
        new_ids.append(faiss_id)
        art = known.get(jobs[i].artwork_id or -1)
        if art is None:
            fresh.append({"path": jobs[i].entry.rel, "sha256": read.sha256, "size": read.size,
                          "mtime": read.mtime, "width": w, "height": h, "added_at": now,
                          "updated_at": now, "faiss_id": faiss_id})
            continue
        art.sha256, art.width, art.height = read.sha256, w, h
        art.size, art.mtime = read.size, read.mtime
        old = s.get(Embedding, (space.id, art.id))
        if old is not None:  # re-embedded: the row points at the new vector
            old_ids.append(old.faiss_id)
            old.faiss_id, old.sha256 = faiss_id, read.sha256
        else:
            s.add(Embedding(space_id=space.id, artwork_id=art.id, faiss_id=faiss_id,
                            sha256=read.sha256))
    if fresh:  # one INSERT ... RETURNING for the batch, not an ORM flush per work
        ids = s.scalars(insert(Artwork).returning(Artwork.id, sort_by_parameter_order=True),
                        [{k: v for k, v in f.items() if k != "faiss_id"} for f in fresh]).all()
        s.execute(insert(Embedding), [
            {"space_id": space.id, "artwork_id": a, "faiss_id": f["faiss_id"],
             "sha256": f["sha256"]} for a, f in zip(ids, fresh, strict=True)])
    return old_ids, new_ids


def _new_artwork(entry: FileEntry, sha: str, width: int | None, height: int | None) -> Artwork:
    now = utcnow()
    return Artwork(path=entry.rel, sha256=sha, size=entry.size, mtime=entry.mtime,
                   width=width, height=height, added_at=now, updated_at=now)


def _next_id(s: Session, space: Space) -> int:
    row = s.get(Space, space.id)
    assert row is not None
    faiss_id = row.next_faiss_id
    row.next_faiss_id = faiss_id + 1
    return faiss_id


def _record_failures(s: Session, failures: list[tuple[str, str]]) -> None:
    """Record (path, reason) pairs, the last reason per path winning: existing rows are read
    in chunks and new ones added together (100,000 failed canvases take seconds)."""
    latest = dict(failures)
    if not latest:
        return
    now = utcnow()
    paths = list(latest)
    existing: dict[str, Failure] = {}
    for start in range(0, len(paths), 500):
        existing.update((f.path, f) for f in s.scalars(
            select(Failure).where(Failure.path.in_(paths[start: start + 500]))))
    for rel, reason in latest.items():
        row = existing.get(rel)
        if row is None:
            s.add(Failure(path=rel, reason=reason, at=now))
        else:
            row.reason, row.at = reason, now


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar with throughput on a terminal; a no-op otherwise."""
    from tqdm import tqdm

    with tqdm(total=total, unit="img", desc="embedding", disable=not enabled,
              dynamic_ncols=True, smoothing=0.1) as bar:
        yield bar
