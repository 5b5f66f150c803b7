"""Each space's vector files, kept honest: the exact FAISS index loaded only when it matches
the fingerprint recorded at its save (a writer sets a damaged one aside), saves recorded
pending then current, the approximate index rebuilt or dropped as the space changes, and
the rows and vectors reconciled after an interrupted run. `ArtIndex` (index/folder.py) is
the folder, its lock and its spaces; this is what it does with their files."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, select

from artsearch.errors import (
    IndexDamagedError,
)
from artsearch.index.store import Embedding, Space, Store
from artsearch.paths import check_space_name, file_stem

if TYPE_CHECKING:
    from artsearch.index.vectors import VectorIndex



@dataclass
class Repair:
    """What `ArtIndex.reconcile` had to fix after an interrupted run."""

    stray_vectors: int = 0  # in FAISS, unknown to SQLite: removed
    missing_vectors: int = 0  # in SQLite, absent from FAISS: rows dropped, re-embedded next run

    def __bool__(self) -> bool:
        return bool(self.stray_vectors or self.missing_vectors)



class VectorUpkeep:
    """The vector-file half of ArtIndex (its base class): what it needs of the folder."""

    path: Path
    damaged: list[str]
    _vectors: dict[str, Any]
    _lock_fd: int | None

    @property
    def store(self) -> Store:  # ArtIndex.store: the folder's SQLite store
        raise NotImplementedError

    def vectors(self, space: Space) -> VectorIndex:
        """The space's exact vectors, checked against the fingerprint recorded at their save.

        A file that fails the check (truncated, other dimensions, copied from another index)
        is refused to a reader with the fix; a writer (under `lock()`) moves it aside and
        starts the space's store afresh, and `reconcile` then re-embeds every work.
        """
        from artsearch.index.vectors import VectorIndex

        if space.name in self._vectors:
            return self._vectors[space.name]  # type: ignore[no-any-return]
        path = self.faiss_path(space)
        try:
            vec = self._load_checked(space, path)
        except IndexDamagedError as e:
            if self._lock_fd is None:
                raise IndexDamagedError(
                    f"{e}; run `artsearch index FOLDER --index {self.path} --space "
                    f"{space.name}` to rebuild it") from e
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            if path.exists():
                os.replace(path, aside)
                self.damaged.append(f"{e}; moved aside to {aside.name}, its works are "
                                    "re-embedded")
            else:
                self.damaged.append(f"{e}; its works are re-embedded")
            self._record_faiss(space, None)
            vec = VectorIndex.create(path, space.dims, space.faiss_factory)
        self._vectors[space.name] = vec
        return vec

    def _load_checked(self, space: Space, path: Path) -> VectorIndex:
        """Load the space's file if it is one this index saved. The fingerprint and the load
        read one open file (a save renames a new file into place, never rewrites the open
        one); a file that does not match is checked once more against the record as it is
        now, since a writer may have saved between our reading the record and the file."""
        from artsearch.index.vectors import VectorIndex, file_fingerprint, fingerprint_mismatch

        for attempt in range(2):
            record = (space.params or {}).get("faiss") or {}
            accepted = [fp for fp in (record.get("current"), record.get("pending")) if fp]
            try:
                fh = path.open("rb")
            except FileNotFoundError:
                if accepted and accepted[0].get("count"):
                    if attempt == 0:
                        space = self.fresh(space)
                        continue
                    raise IndexDamagedError(f"{path}: missing (it held "
                                            f"{accepted[0]['count']} vectors)") from None
                return VectorIndex.create(path, space.dims, space.faiss_factory)
            with fh:
                snapshot = Path(f"/proc/self/fd/{fh.fileno()}")
                snapshot = snapshot if snapshot.exists() else path
                if accepted and (size := fingerprint_mismatch(file_fingerprint(snapshot),
                                                              accepted)):
                    if attempt == 0:
                        space = self.fresh(space)
                        continue
                    raise IndexDamagedError(f"{path}: not the file this index saved ({size}; "
                                            "replaced or damaged)")
                return VectorIndex.load_or_create(snapshot, space.dims, space.faiss_factory,
                                                  name=path)
        raise AssertionError("unreachable")

    def fresh(self, space: Space) -> Space:
        """The space's row as the database holds it now."""
        with self.store.session() as s:
            row = s.get(Space, space.id)
        return row if row is not None else space

    def save_vectors(self, space: Space) -> None:
        """Save the space's vectors atomically and record the file's fingerprint: first as
        pending (before the rename), then as current."""
        vec = self.vectors(space)
        self._vectors.pop(f"{space.name}#id-maps", None)  # rows changed with the vectors
        fp = vec.save(before_rename=lambda new: self._record_faiss(space, new, pending=True))
        self._record_faiss(space, fp)

    def _record_faiss(self, space: Space, fp: dict[str, Any] | None, *,
                      pending: bool = False) -> None:
        self.record_file(space, "faiss", fp, pending=pending, next_id=True)

    def record_file(self, space: Space, key: str, fp: dict[str, Any] | None, *,
                    pending: bool = False, next_id: bool = False) -> None:
        """Record the fingerprint of one of the space's files (vectors: "faiss", regions:
        "regions") in its row: `pending` beside the current one, before the file is renamed
        into place, so that either file is recognised after a kill; None forgets it."""
        with self.store.session() as s, s.begin():
            row = s.get(Space, space.id)
            assert row is not None
            record = dict((row.params or {}).get(key) or {})
            extra = {"next_id": row.next_faiss_id} if next_id and fp is not None else {}
            if fp is None:
                record = {}
            elif pending:
                record["pending"] = {**fp, **extra}
            else:
                record = {"current": {**fp, **extra}}
            row.params = {**(row.params or {}), key: record}
            space.params = row.params

    def id_maps(self, space: Space) -> tuple[np.ndarray, np.ndarray]:
        """(FAISS ids, their artwork ids) of a space, read once per opened index."""
        key = f"{space.name}#id-maps"
        if key not in self._vectors:
            with self.store.session() as s:
                rows = s.execute(select(Embedding.faiss_id, Embedding.artwork_id).where(
                    Embedding.space_id == space.id)).all()
            pairs = np.array(rows, np.int64).reshape(-1, 2)
            self._vectors[key] = (pairs[:, 0].copy(), pairs[:, 1].copy())
        return self._vectors[key]  # type: ignore[no-any-return]

    def faiss_path(self, space: Space) -> Path:
        # A space recorded under an unsafe name (by an older artsearch) is refused, never
        # joined to a path.
        return self.path / f"{check_space_name(space.name, where=str(self.path))}.faiss"

    # -- approximate search ----------------------------------------------------------------------

    def _fingerprint(self, space: Space) -> list[int]:
        from artsearch.index.ann import fingerprint

        with self.store.session() as s:
            count = s.scalar(select(func.count()).select_from(Embedding).where(
                Embedding.space_id == space.id)) or 0
            row = s.get(Space, space.id)
            assert row is not None
            return fingerprint(count, row.next_faiss_id)

    def searcher(self, space: Space) -> tuple[Any, dict[str, Any]]:
        """The approximate index when one was built from the space as it is now, else the
        exact one; with a description of which (for query results)."""
        from artsearch.index.ann import AnnIndex

        cached = self._vectors.get(f"{space.name}#searcher")
        if cached is not None:  # decided once per opened index, like the loaded vectors
            return cached  # type: ignore[no-any-return]
        ann = (space.params or {}).get("ann")
        path = self.path / ann["file"] if ann else None
        if ann and path is not None and self._ann_intact(path, ann) \
                and ann["fingerprint"] == self._fingerprint(space):
            key = f"{space.name}#ann"
            if key not in self._vectors:
                self._vectors[key] = AnnIndex.load(
                    path, ann["type"], ann["param"], ann["recall10"],
                    ann.get("k_factor", 8))
            decided = (self._vectors[key], {"index": ann["type"], "param": ann["param"],
                                            "calibrated_recall10": ann["recall10"]})
        else:
            info: dict[str, Any] = {"index": "flat (exact)"}
            if ann:
                info["note"] = ("the approximate index is out of date; `artsearch index` "
                                "rebuilds it")
            decided = (self.vectors(space), info)
        self._vectors[f"{space.name}#searcher"] = decided
        return decided

    @staticmethod
    def _ann_intact(path: Path, record: dict[str, Any]) -> bool:
        """The approximate index file is the one that was built (older records: it exists)."""
        from artsearch.index.vectors import file_fingerprint

        if not path.is_file():
            return False
        expected = record.get("file_fingerprint")
        return expected is None or file_fingerprint(path) == expected

    def update_ann(self, space: Space, requested: str, *,
                   run_shards: Any = None) -> dict[str, Any] | None:
        """After a writing run: (re)build the approximate index the space's size calls for.

        IVF-PQ indexes of `ann.SHARD_MIN` vectors or more are built in shards
        (`ann.build_sharded`); `run_shards` encodes them elsewhere (a Ray cluster).
        Returns what was built, or None when the space stays exact or is already current.
        """
        from artsearch.index import ann as ann_mod
        from artsearch.index.ann import RECALL_BAR, build, build_sharded, choose

        vec = self.vectors(space)
        kind = choose(requested, len(vec), space.dims)
        current = (space.params or {}).get("ann")
        path = self.path / f"{space.name}.ann.faiss"
        record: dict[str, Any] | None = None
        fallback: dict[str, Any] | None = None
        if kind != "flat" and len(vec) >= 2:
            fp = self._fingerprint(space)
            if current and current["type"] == kind and current["fingerprint"] == fp \
                    and self._ann_intact(path, current):
                return None
            started = time.perf_counter()
            sharded = kind == "ivfpq" and len(vec) >= ann_mod.SHARD_MIN
            if sharded:
                ann = build_sharded(vec.rows, len(vec), space.dims, rows=ann_mod.SHARD_ROWS,
                                    run=run_shards)
            else:
                ids, vectors = vec.everything()
                ann = build(vectors, ids, kind)
            if requested == "auto" and ann.recall < RECALL_BAR:
                # auto never serves below the bar: the space stays exact, and says why.
                fallback = {"type": "flat", "note": (
                    f"{kind} reached only recall@10 {ann.recall:.3f} on this collection, "
                    f"below {RECALL_BAR}; searching exactly")}
            else:
                file_fp = ann.save(path)
                record = {"type": kind, "file": path.name, "fingerprint": fp,
                          "file_fingerprint": file_fp,
                          "param": ann.param, "k_factor": ann.k_factor,
                          "recall10": round(ann.recall, 4),
                          "build_seconds": round(time.perf_counter() - started, 2),
                          **({"shards": -(-len(vec) // ann_mod.SHARD_ROWS)} if sharded
                             else {})}
        elif current is None and (space.params or {}).get("index_type") == requested:
            return None
        with self.store.session() as s, s.begin():
            row = s.get(Space, space.id)
            assert row is not None
            params = {**(row.params or {}), "index_type": requested}
            params.pop("ann", None)
            if record is not None:
                params["ann"] = record
            row.params = params
            space.params = params
        if record is None:
            path.unlink(missing_ok=True)
        self._vectors.pop(f"{space.name}#ann", None)
        self._vectors.pop(f"{space.name}#searcher", None)
        return record or fallback

    # -- consistency ---------------------------------------------------------------------------

    def reconcile(self, space: Space) -> Repair:
        """Make FAISS and SQLite agree after a crash; a writer calls this under `lock()`.

        Vectors are saved after the SQLite rows that name them are committed, and FAISS ids
        are never reused, so an id found in both stores always holds the right vector. What
        one store has and the other lacks is the residue of an interrupted run.
        """
        vec = self.vectors(space)
        in_faiss = Counter(vec.ids().tolist())
        repeated = {i for i, n in in_faiss.items() if n > 1}
        with self.store.session() as s, s.begin():
            in_sql = set(s.scalars(
                select(Embedding.faiss_id).where(Embedding.space_id == space.id)))
            stray = (set(in_faiss) - in_sql) | repeated
            missing = (in_sql - set(in_faiss)) | repeated
            if missing:
                s.execute(delete(Embedding).where(
                    Embedding.space_id == space.id, Embedding.faiss_id.in_(missing)))
            top = max([*in_faiss, *in_sql], default=-1)
            row = s.get(Space, space.id)
            assert row is not None
            if row.next_faiss_id <= top:
                row.next_faiss_id = top + 1
        if stray:
            vec.remove(stray)
            self.save_vectors(space)
        return Repair(len(stray - repeated), len(missing - repeated) + len(repeated))

    # -- reporting -----------------------------------------------------------------------------

    def saved_count(self, space: Space) -> int:
        """Works whose vector is in the space's saved file: committed rows with an id below
        the next id recorded at the last save (ids are never reused). Rows committed since
        belong to an indexing run still under way."""
        record = ((space.params or {}).get("faiss") or {}).get("current")
        query = select(func.count()).select_from(Embedding).where(
            Embedding.space_id == space.id)
        if record is not None:
            query = query.where(Embedding.faiss_id < record["next_id"])
        elif not (self.path / f"{file_stem(space.name)}.faiss").exists():
            return 0
        with self.store.session() as s:
            return s.scalar(query) or 0

