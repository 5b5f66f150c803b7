"""Clustering runs as stored: each run (space, method, k, seed, parameters, agreement) and
every work's cluster and distance to its centre; written once by `artsearch cluster`, read by
the reports, the map and `cluster --replay`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from artsearch.errors import MetadataError
from artsearch.index.store import Artwork, ClusterAssignment, ClusterRun, Space

if TYPE_CHECKING:
    from artsearch.index.folder import ArtIndex

__all__ = ["StoredRun", "assignments", "load_run", "run_clusters", "runs", "save_run"]


def save_run(index: ArtIndex, sp: Space, *, method: str, k: int, seed: int,
             params: dict[str, Any], metrics: dict[str, Any], artwork_ids: Sequence[int],
             clusters: Sequence[int], distances: Sequence[float]) -> int:
    """Store a run and its assignments in one transaction; its id."""
    with index.store.session() as s, s.begin():
        run = ClusterRun(space_id=sp.id, method=method, k=k, seed=seed, params=params,
                         metrics=metrics)
        s.add(run)
        s.flush()
        s.add_all(ClusterAssignment(run_id=run.id, artwork_id=a, cluster=int(c),
                                    distance=float(d))
                  for a, c, d in zip(artwork_ids, clusters, distances, strict=True))
        run_id: int = run.id
    return run_id


def run_clusters(index: ArtIndex, run_id: int) -> dict[int, int]:
    """artwork id -> cluster (from 0; -1 unclustered) of a stored run."""
    with index.store.session() as s:
        return {int(a): int(c) for a, c in s.execute(
            select(ClusterAssignment.artwork_id, ClusterAssignment.cluster)
            .where(ClusterAssignment.run_id == run_id))}


@dataclass
class StoredRun:
    """A clustering run as stored: the run and its space, each work's cluster, the works."""

    run: Any  # ClusterRun: id, method, k, seed, params, metrics, created_at
    space: Any  # Space
    assigned: dict[int, int]  # artwork id -> cluster
    artworks: dict[int, Any]  # artwork id -> Artwork


def runs(index: ArtIndex) -> list[dict[str, Any]]:
    """Every stored run, oldest first: id, space, method, k, seed, date, agreement."""
    with index.store.session() as s:
        return [{"run": r.id, "space": name, "method": r.method, "k": r.k, "seed": r.seed,
                 "created": r.created_at.isoformat(timespec="seconds"), "agreement": r.metrics}
                for r, name in s.execute(select(ClusterRun, Space.name).join(
                    Space, Space.id == ClusterRun.space_id).order_by(ClusterRun.id))]


def load_run(index: ArtIndex, run_id: int) -> StoredRun:
    """One stored run with its assignments and works; refused if there is no such run."""
    with index.store.session() as s:
        run = s.get(ClusterRun, run_id)
        if run is None:
            raise MetadataError(f"no clustering run {run_id}; `artsearch clusters` lists them")
        space = s.get(Space, run.space_id)
        assigned = dict(s.execute(select(ClusterAssignment.artwork_id, ClusterAssignment.cluster)
                                  .where(ClusterAssignment.run_id == run_id)).all())
        arts = {a.id: a for a in s.scalars(select(Artwork).where(
            Artwork.id.in_(list(assigned))))}
    return StoredRun(run, space, assigned, arts)


def assignments(index: ArtIndex, run_id: int) -> list[dict[str, Any]]:
    """A run's works by cluster, nearest its centre first: path, cluster (stored number:
    from 0, -1 unclustered), cosine distance to the centre."""
    load_run(index, run_id)  # refuses an unknown run
    with index.store.session() as s:
        return [{"path": path, "cluster": c, "distance": round(d, 6)}
                for path, c, d in s.execute(
                    select(Artwork.path, ClusterAssignment.cluster, ClusterAssignment.distance)
                    .join(Artwork, Artwork.id == ClusterAssignment.artwork_id)
                    .where(ClusterAssignment.run_id == run_id)
                    .order_by(ClusterAssignment.cluster, ClusterAssignment.distance))]
