"""An opened index folder: the SQLite store, one FAISS file per space, and the writer's lock."""

from __future__ import annotations

import fcntl
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, select

from artsearch.backbones import BackboneSpec
from artsearch.digest import sha256_file
from artsearch.errors import (
    IndexDamagedError,
    IndexLockedError,
    IndexMismatchError,
    IndexReadOnlyError,
    NotIndexedError,
    SchemaTooOldError,
)
from artsearch.index.store import Artwork, Embedding, Failure, Space, Store
from artsearch.paths import check_space_name, file_stem

if TYPE_CHECKING:
    from artsearch.index.vectors import VectorIndex

__all__ = ["DB_NAME", "ArtIndex", "Repair"]

DB_NAME = "artsearch.db"
_HELD: set[Path] = set()  # index folders whose writer's lock this process holds


@dataclass
class Repair:
    """What `ArtIndex.reconcile` had to fix after an interrupted run."""

    stray_vectors: int = 0  # in FAISS, unknown to SQLite: removed
    missing_vectors: int = 0  # in SQLite, absent from FAISS: rows dropped, re-embedded next run

    def __bool__(self) -> bool:
        return bool(self.stray_vectors or self.missing_vectors)


class ArtIndex:
    """One index folder. Readers may open it any time; a writer holds `lock()`."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        db = path / DB_NAME
        self._store: Store | None = None
        if not db.exists():
            if not create:
                from artsearch.home import suggest

                raise NotIndexedError(
                    f"{path}: no index here{suggest(path)}; build one with `artsearch index DIR "
                    f"--index {path}`")
            # Made by the first `lock()`: a run that finds nothing to index leaves nothing.
        else:
            readonly = not os.access(path, os.W_OK) or not os.access(db, os.W_OK)
            self._store = Store(db, upgrade=False, readonly=readonly)
        self._vectors: dict[str, Any] = {}  # space name -> VectorIndex; 'name#ann' -> AnnIndex
        self._lock_fd: int | None = None
        self.damaged: list[str] = []  # what `lock()` found broken and set aside, for the report
        self.cache: dict[str, Any] = {}  # answers the catalogue keeps while the works stay
        self._checked = False  # the schema was found current (readers check once)

    @property
    def exists(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> Store:
        """The SQLite store; a reader of an index made by an older artsearch is told to
        upgrade it, since only a writer, under the lock, may change the schema."""
        if self._store is None:
            raise NotIndexedError(f"{self.path}: no index here yet")
        if self._lock_fd is None and not self._checked:
            if not self._store.is_current():
                raise SchemaTooOldError(
                    f"{self.path}: made by an older artsearch; run `artsearch index FOLDER "
                    f"--index {self.path}` once to upgrade it (readers never change it)")
            self._checked = True
        return self._store

    # -- locking -----------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the writer's lock (the OS releases it if the process dies); then bring the
        schema up to date and clear what a killed writer left behind.

        A POSIX record lock, not flock: forked decoding workers do not inherit it, so a
        killed writer's orphaned workers cannot keep the index locked.
        """
        if self._lock_fd is not None:  # this ArtIndex already holds it
            return
        if self._store is not None and self._store.readonly:
            raise IndexReadOnlyError(
                f"{self.path}: the index folder is read-only; make it writable "
                f"(chmod u+w {self.path}) or copy it somewhere writable")
        self.path.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if key in _HELD:  # POSIX locks do not exclude a second holder in one process
                raise BlockingIOError
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise IndexLockedError(
                f"{self.path}: another artsearch process is writing this index; "
                "wait for it to finish"
            ) from None
        self._lock_fd = fd
        _HELD.add(key)
        if self._store is None:
            self._store = Store(self.path / DB_NAME, upgrade=False)
        self._store.upgrade()
        # Temporary files of a save that a kill interrupted: never renamed, never needed.
        for leftover in [*self.path.glob("*.faiss.*.tmp"), *self.path.glob("*.tmp.npz")]:
            leftover.unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the only descriptor releases the POSIX lock
            self._lock_fd = None
            _HELD.discard(self.path.resolve())
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> ArtIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def touch(self) -> None:
        """Record that the works or their catalogue changed (readers drop what they cached)."""
        self.store.set_setting("changed", repr(time.time()))

    def changed(self) -> str | None:
        return self.store.get_setting("changed")

    # -- collection root -----------------------------------------------------------------------

    @property
    def root(self) -> Path | None:
        if self._store is None:
            return None
        value = self.store.get_setting("root")
        return Path(value) if value else None

    def bind_root(self, root: Path, *, relocate: bool = False) -> None:
        """Record the collection folder the paths are relative to; refuse a different one."""
        root = root.resolve()
        current = self.root
        if current is None or relocate:
            self.store.set_setting("root", str(root))
        elif current != root:
            raise IndexMismatchError(
                f"{self.path} indexes the collection at {current}, not {root}; "
                "use another --index for a second collection, or --relocate if it moved"
            )

    # -- spaces --------------------------------------------------------------------------------

    def spaces(self) -> list[Space]:
        if self._store is None:
            return []
        with self.store.session() as s:
            return list(s.scalars(select(Space).order_by(Space.id)))

    def space(self, name: str) -> Space:
        with self.store.session() as s:
            space = s.scalar(select(Space).where(Space.name == name))
        if space is None:
            known = ", ".join(sp.name for sp in self.spaces()) or "none yet"
            raise NotIndexedError(
                f"{self.path}: no embedding space {name!r} (spaces: {known}); "
                f"build it with `artsearch index DIR --index {self.path} --space {name}`"
            )
        return space

    def ensure_space(
        self, name: str, spec: BackboneSpec, *, layers: tuple[str, ...], pooling: str,
        dims: int, factory: str,
    ) -> Space:
        """The named space, created on first use; refused if it was made differently."""
        check_space_name(name)  # it becomes file names in the index folder
        weights = spec.weights.checksum()  # locates and verifies the weights before any work
        with self.store.session() as s, s.begin():
            space = s.scalar(select(Space).where(Space.name == name))
            if space is None:
                space = Space(
                    name=name, backbone=spec.name, weights_sha256=weights,
                    layer=",".join(layers), pooling=pooling, dims=dims,
                    preprocessing=spec.preprocess.as_dict(), faiss_factory=factory,
                    next_faiss_id=0,
                    params={"weights": str(spec.weights.path) if spec.weights.path else None},
                )
                s.add(space)
                return space
        check_space(space, spec, layer=",".join(layers), pooling=pooling, weights=weights)
        return space

    def spec_for(self, space: Space, weights: Path | None = None) -> BackboneSpec:
        """The backbone a space was built with, with the checkpoint it recorded (or `weights`)
        and the input size it was built at."""
        from artsearch import backbones

        spec = backbones.resolve(space.backbone, weights or (space.params or {}).get("weights"))
        size = (space.preprocessing or {}).get("size")
        return spec.at_size(int(size)) if size else spec

    # -- fitted pooling ------------------------------------------------------------------------

    def pooling_params(self, space: Space) -> dict[str, np.ndarray] | None:
        """A fitted pooling's stored projection and centre, checked against its checksum."""
        meta = space.params or {}
        if not meta.get("pooling_file"):
            return None
        path = self.path / meta["pooling_file"]
        if not path.is_file() or sha256_file(path) != meta.get("pooling_sha256"):
            raise IndexMismatchError(
                f"{path}: the {space.pooling} projection of space {space.name!r} is missing or "
                "changed, so new vectors would not match the stored ones; restore the file, "
                "or rebuild the space under a new --space name")
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def save_pooling_params(self, space: Space, params: dict[str, np.ndarray]) -> None:
        """Store a fitted pooling beside the space (atomically), then record its checksum."""
        path = self.path / f"{check_space_name(space.name)}.pooling.npz"
        tmp = path.with_suffix(".tmp.npz")
        with tmp.open("wb") as fh:
            np.savez(fh, **params)  # type: ignore[arg-type]  # numpy's stub reads **kw as allow_pickle
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        with self.store.session() as s, s.begin():
            row = s.get(Space, space.id)
            assert row is not None
            row.params = {**(row.params or {}), "pooling_file": path.name,
                          "pooling_sha256": sha256_file(path)}
            space.params = row.params

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

    def info(self) -> dict[str, Any]:
        with self.store.session() as s:
            artworks = s.scalar(select(func.count()).select_from(Artwork)) or 0
            reasons = Counter(r.split(";")[0] for r in s.scalars(select(Failure.reason)))
            failures = s.scalar(select(func.count()).select_from(Failure)) or 0
            per_space = dict(s.execute(
                select(Embedding.space_id, func.count()).group_by(Embedding.space_id)).all())
        spaces = []
        for sp in self.spaces():
            files = [self.path / f"{file_stem(sp.name)}{suffix}"
                     for suffix in (".faiss", ".ann.faiss", ".pooling.npz")]
            saved = self.saved_count(sp)
            spaces.append({
                "name": sp.name, "backbone": sp.backbone, "weights_sha256": sp.weights_sha256,
                "layer": sp.layer, "pooling": sp.pooling, "dims": sp.dims,
                "faiss_factory": sp.faiss_factory, "embedded": saved,
                "being_written": per_space.get(sp.id, 0) - saved,
                "index_type": (sp.params or {}).get("index_type", "auto"),
                "ann": (sp.params or {}).get("ann"),
                "bytes": sum(f.stat().st_size for f in files if f.exists()),
            })
        db_bytes = sum(p.stat().st_size for p in self.path.glob(DB_NAME + "*"))
        return {
            "index": str(self.path),
            "root": str(self.root) if self.root else None,
            "schema": self.store.revision(),
            "artworks": artworks,
            "spaces": spaces,
            "failures": failures,
            "failure_reasons": dict(reasons.most_common(10)),
            "bytes": {"sqlite": db_bytes, "faiss": sum(sp["bytes"] for sp in spaces)},
        }


def check_space(
    space: Space, spec: BackboneSpec, *, layer: str, pooling: str, weights: str | None = None
) -> None:
    """Refuse to mix vectors from a different backbone, weights, layer or pooling."""
    weights = weights or spec.weights.checksum()
    if space.backbone == spec.name and weights != space.weights_sha256:
        raise IndexMismatchError(
            f"space {space.name!r} was built with {space.backbone} weights "
            f"{space.weights_sha256[:12]}, but the weights found now are {weights[:12]} "
            f"({spec.weights.description}); install or pass (--weights) the ones it was built "
            "with, or rebuild under another --space name")
    made = (space.backbone, space.layer, space.pooling)
    asked = (spec.name, layer, pooling)
    size = (space.preprocessing or {}).get("size")
    if made == asked and size and int(size) != spec.preprocess.size:
        raise IndexMismatchError(
            f"space {space.name!r} was built from {size} px pictures, but this run reads "
            f"{spec.preprocess.size} px; drop --input-size (the space keeps its own), or "
            "choose another --space name")
    if made != asked:
        raise IndexMismatchError(
            f"space {space.name!r} was built with {space.backbone} (layer {space.layer}, "
            f"{space.pooling} pooling) but this run uses {spec.name} (layer {layer}, {pooling} "
            "pooling); choose another --space name, or another --index"
        )
