"""Incremental indexing of a collection folder into one embedding space of an index."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch import backbones
from artsearch.errors import ArtsearchError, PruneRefusedError
from artsearch.images import DEFAULT_MAX_BYTES, IMAGE_EXTENSIONS, scan
from artsearch.index import ArtIndex, Repair
from artsearch.index.metadata import MetadataImport, read_metadata_csv
from artsearch.index.store import Space
from artsearch.index.writer import Job, finish_run, plan_run, store_batch

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
            planned = plan_run(index, space, root, entries, vec, prune=opts.prune,
                               force=opts.force, max_bytes=max_bytes,
                               scan_failures=[(f.rel, f.reason) for f in scan_failures])
            jobs = planned.jobs
            for name in ("unchanged", "moved", "copied", "pruned"):
                setattr(report, name, getattr(report, name) + getattr(planned, name))
            report.missing += planned.missing
            report.failed += planned.failed
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
    report.metadata, report.total = finish_run(
        index, space, catalogue if opts.metadata is not None else None,
        present={e.rel for e in entries} | {f.rel for f in scan_failures})
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


def _embed(
    index: ArtIndex, space: Space, jobs: list[Job], report: IndexReport,
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
            old_ids, new_ids, bad = store_batch(index, space, jobs, batch)
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


def _progress(total: int, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """The command line's one bar, for embedding (artsearch.progress)."""
    from artsearch.progress import progress_bar

    return progress_bar(total, desc="embedding", unit="img", enabled=enabled)
