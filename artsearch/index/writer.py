"""The index's one writer for runs: what `artsearch index` (and a IIIF ingest, and vector
imports) record, each step one transaction — the plan of a run (unchanged, moved, copied,
to embed, pruned), each embedded batch, the failures, and the run's end. FAISS changes
only after the rows naming its ids are committed (the callers' rule; see indexing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from artsearch.errors import BadImageError, PruneRefusedError
from artsearch.images import FileEntry, hash_file
from artsearch.index.metadata import MetadataImport, apply_metadata
from artsearch.index.store import Artwork, Embedding, Failure, Space, utcnow

if TYPE_CHECKING:
    from artsearch.index.folder import ArtIndex

__all__ = ["PRUNE_MAX_SHARE", "Job", "Plan", "add_vectors", "add_works", "finish_run",
           "plan_run", "record_failures", "record_failures_now", "record_imported",
           "store_batch"]


@dataclass
class Job:
    entry: FileEntry
    artwork_id: int | None  # None: a new artwork row is made when its vector is ready


@dataclass
class Plan:
    """What planning a run found and did: the files to embed, and the cheap cases applied."""

    jobs: list[Job] = field(default_factory=list)
    unchanged: int = 0
    moved: int = 0
    copied: int = 0
    pruned: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


# --prune refuses, without --force, to remove more than this share of the indexed works: an
# empty or unmounted folder looks exactly like a collection whose every file was deleted.
PRUNE_MAX_SHARE = 0.5


def plan_run(index: ArtIndex, space: Space, root: Path, entries: list[FileEntry], vec: Any, *,
             prune: bool, force: bool, max_bytes: int,
             scan_failures: list[tuple[str, str]]) -> Plan:
    """Sort files into unchanged, moved, copied and to-embed, and apply the cheap cases (and
    the scan's failures) in one transaction; a refused prune changes nothing."""
    with index.store.session() as s, s.begin():
        report = _plan(s, space, root, entries, vec, prune, force, max_bytes)
        record_failures(s, scan_failures)
        report.failed.extend(scan_failures)
    return report


def _plan(s: Session, space: Space, root: Path, entries: list[FileEntry], vec: Any,
          prune: bool, force: bool, max_bytes: int) -> Plan:
    report = Plan()
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

    jobs = report.jobs
    copies: list[tuple[int, int]] = []  # (new faiss id, source faiss id): added after checks
    for entry in entries:
        art = artworks.get(entry.rel)
        emb = embedded.get(art.id) if art else None
        current = emb is not None and art is not None and emb.sha256 == art.sha256
        if art and current and art.size == entry.size and art.mtime == entry.mtime:
            report.unchanged += 1
            continue
        if art is None and not by_sha:  # a first run: the extractor hashes what it reads
            jobs.append(Job(entry, None))
            continue
        try:
            sha = hash_file(entry.path, max_bytes)
        except BadImageError as e:
            record_failures(s, [(entry.rel, str(e))])
            report.failed.append((entry.rel, str(e)))
            continue
        if art is not None:
            if art.sha256 == sha and current:  # touched, not changed
                art.size, art.mtime = entry.size, entry.mtime
                report.unchanged += 1
            else:
                jobs.append(Job(entry, art.id))
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
        jobs.append(Job(entry, None))

    gone = [art for art in artworks.values() if art.path not in on_disk]
    if prune and gone and not force and len(gone) > PRUNE_MAX_SHARE * len(artworks):
        # Raised before anything changed: the transaction rolls back, FAISS is untouched.
        raise PruneRefusedError(
            f"--prune would remove {len(gone):,} of {len(artworks):,} indexed works whose files "
            f"are not under {root} ({len(entries):,} image files found "
            "there); if the folder is right and they really are gone, add --force")
    for source_id, target in ((src, new) for new, src in copies):
        vec.add([target], vec.reconstruct(source_id)[None])
    for art in gone:
        if prune:
            emb = embedded.get(art.id)
            if emb is not None:
                vec.remove([emb.faiss_id])
            s.delete(art)
            report.pruned += 1
        else:
            report.missing.append(art.path)
    return report


def store_batch(index: ArtIndex, space: Space, jobs: list[Job], batch: Any
                ) -> tuple[list[int], list[int], list[tuple[str, str]]]:
    """Record one embedded batch in one transaction: its works' rows and vectors' ids, its
    failures, and the end of earlier failures of the files it embedded. Returns (replaced
    FAISS ids, new FAISS ids, this batch's (path, reason) failures)."""
    with index.store.session() as s, s.begin():
        old_ids, new_ids = _store_rows(s, space, jobs, batch)
        done = [jobs[i].entry.rel for i in batch.indices]
        if done:
            s.execute(delete(Failure).where(Failure.path.in_(done)))
        bad = [(jobs[i].entry.rel, reason) for i, reason in batch.failures]
        record_failures(s, bad)
    return old_ids, new_ids, bad


def _store_rows(s: Session, space: Space, jobs: list[Job], batch: Any
                ) -> tuple[list[int], list[int]]:
    """Ids taken in one go, new works inserted in bulk, changed works re-pointed at their
    new vectors."""
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


def record_failures(s: Session, failures: list[tuple[str, str]]) -> None:
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


def finish_run(index: ArtIndex, space: Space, catalogue: Any, present: set[str]
               ) -> tuple[MetadataImport | None, int]:
    """End a run in one transaction: apply the catalogue (None: none given), forget the
    failures of files that are gone or indexed this time; (what the catalogue did, the works
    with a vector in the space)."""
    with index.store.session() as s, s.begin():
        imported = apply_metadata(s, catalogue) if catalogue is not None else None
        for failure in s.scalars(select(Failure)):
            if failure.path not in present:
                s.delete(failure)
        total = s.scalar(select(func.count()).select_from(Embedding).where(
            Embedding.space_id == space.id)) or 0
    return imported, total


def record_imported(index: ArtIndex, space: Space,
                    works: list[tuple[str, tuple[str, int, float] | None, dict[str, Any]]]
                    ) -> tuple[list[int], list[int], int, int]:
    """Record vectors made elsewhere (`artsearch import-vectors`) in one transaction: per
    work (path, (sha256, size, mtime) for a work new to the index or None, its catalogue
    fields for a new one), a new FAISS id, replacing the space's old vector of it. Returns
    (replaced FAISS ids, new FAISS ids, new works, replaced vectors)."""
    new_works = replaced = 0
    with index.store.session() as s, s.begin():
        by_path = {a.path: a for a in s.scalars(select(Artwork))}
        row = s.get(Space, space.id)
        assert row is not None
        old_ids: list[int] = []
        new_ids: list[int] = []
        for rel, new, fields in works:
            art = by_path.get(rel)
            if art is None:
                assert new is not None, f"{rel}: a new work needs its hash, size and time"
                sha, size_bytes, mtime = new
                art = Artwork(path=rel, sha256=sha, size=size_bytes, mtime=mtime, **fields)
                s.add(art)
                s.flush()
                by_path[rel] = art
                new_works += 1
            old = s.get(Embedding, (space.id, art.id))
            if old is not None:
                old_ids.append(old.faiss_id)
                s.delete(old)
                s.flush()
                replaced += 1
            s.add(Embedding(space_id=space.id, artwork_id=art.id,
                            faiss_id=row.next_faiss_id, sha256=art.sha256))
            new_ids.append(row.next_faiss_id)
            row.next_faiss_id += 1
    return old_ids, new_ids, new_works, replaced


def add_works(index: ArtIndex, rows: list[dict[str, Any]]) -> list[int]:
    """Insert artwork rows (column -> value) in bulk, in one transaction; their ids, in
    order (benchmarks build large synthetic indexes with it)."""
    with index.store.session() as s, s.begin():
        return list(s.scalars(insert(Artwork).returning(Artwork.id,
                                                        sort_by_parameter_order=True), rows))


def add_vectors(index: ArtIndex, space: Space, rows: list[tuple[int, str]]) -> list[int]:
    """Give each (artwork id, content hash) a new FAISS id in the space, in one transaction;
    the ids, in order. The caller adds the vectors to FAISS after (the writer's rule)."""
    with index.store.session() as s, s.begin():
        row = s.get(Space, space.id)
        assert row is not None
        first = row.next_faiss_id
        ids = list(range(first, first + len(rows)))
        if rows:
            s.execute(insert(Embedding), [
                {"space_id": space.id, "artwork_id": a, "faiss_id": f, "sha256": sha}
                for (a, sha), f in zip(rows, ids, strict=True)])
        row.next_faiss_id = first + len(rows)
    return ids


def record_failures_now(index: ArtIndex, failures: list[tuple[str, str]]) -> None:
    """record_failures in a transaction of its own."""
    with index.store.session() as s, s.begin():
        record_failures(s, failures)
