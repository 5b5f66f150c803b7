"""An opened index folder: the SQLite store, one FAISS file per space, and the writer's lock."""

from __future__ import annotations

import fcntl
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from artsearch.backbones import BackboneSpec
from artsearch.digest import sha256_file
from artsearch.errors import (
    IndexLockedError,
    IndexMismatchError,
    IndexReadOnlyError,
    NotIndexedError,
    SchemaTooOldError,
)
from artsearch.index.store import Artwork, Embedding, Failure, Space, Store
from artsearch.index.upkeep import Repair, VectorUpkeep
from artsearch.paths import check_space_name, file_stem

if TYPE_CHECKING:
    pass

__all__ = ["DB_NAME", "ArtIndex", "Repair"]

DB_NAME = "artsearch.db"
_HELD: set[Path] = set()  # index folders whose writer's lock this process holds


class ArtIndex(VectorUpkeep):
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
