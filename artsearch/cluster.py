"""Unsupervised grouping of a space: k-means through FAISS, stored as a numbered run.

A run records the space, method, k (and how it was chosen), the seed, each artwork's
cluster and cosine distance to its centre, and how the clusters agree with every catalogue
field that is filled in (NMI, ARI, purity). The same seed on the same space gives the same
assignments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from sqlalchemy import select

from artsearch.errors import MetadataError
from artsearch.index import ArtIndex
from artsearch.metrics import ari, hypergeometric_tail, nmi, purity, silhouette
from artsearch.store import Artwork, ClusterAssignment, ClusterRun, Embedding

__all__ = ["AUTO_K_RANGE", "ClusterResult", "cluster_space"]

AUTO_K_RANGE = (2, 20)  # --k auto tries these k (inclusive), capped below the collection size
SILHOUETTE_SAMPLE = 2_000  # works the silhouette of each candidate k is measured on
LABEL_FIELDS = ("genre", "style", "artist", "date", "source")
SIGNIFICANCE = 0.01  # Bonferroni-corrected p-value under which a value labels a cluster
NITER = 25
NREDO = 3  # k-means runs per clustering, keeping the best objective: one can be unlucky


@dataclass
class ClusterResult:
    run_id: int
    k: int
    sizes: list[int]
    metrics: dict[str, Any]
    params: dict[str, Any]


def _kmeans(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means; returns (cluster per row, cosine distance to its centre)."""
    km = faiss.Kmeans(vectors.shape[1], k, niter=NITER, nredo=NREDO, seed=seed,
                      spherical=True, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=10**9)
    km.train(vectors)
    sims, assign = km.index.search(vectors, 1)
    return assign[:, 0].astype(np.int64), 1.0 - sims[:, 0]


def stability(vectors: np.ndarray, assign: np.ndarray, k: int, seed: int, runs: int
              ) -> dict[str, Any]:
    """How much the clustering holds when k-means restarts from other seeds.

    Overall: mean ARI between this run and each restart. Per cluster: the mean, over
    restarts, of the best Jaccard overlap between its members and any restart cluster (after
    Hennig's cluster-wise stability): near 1 = a robust group, below ~0.6 = an artefact of one
    run that should not be read as a finding.
    """
    if runs < 1:
        return {}
    aris, per_cluster = [], np.zeros(k)
    members = [set(np.flatnonzero(assign == c)) for c in range(k)]
    for r in range(1, runs + 1):
        other, _ = _kmeans(vectors, k, seed + r)
        aris.append(ari(assign, other))
        theirs = [set(np.flatnonzero(other == c)) for c in range(k)]
        for c, mine in enumerate(members):
            per_cluster[c] += max((len(mine & t) / len(mine | t) for t in theirs if t),
                                  default=0.0) if mine else 0.0
    return {"method": f"k-means restarted with seeds {seed + 1}..{seed + runs}",
            "mean_ari": round(float(np.mean(aris)), 4),
            "per_cluster_jaccard": [round(float(x / runs), 4) for x in per_cluster]}


def choose_k(vectors: np.ndarray, seed: int) -> tuple[int, dict[int, float]]:
    """k with the highest mean silhouette (cosine) over AUTO_K_RANGE, measured on a fixed
    sample of the works (ties go to the smaller k)."""
    rng = np.random.default_rng(seed)
    rows = (np.arange(len(vectors)) if len(vectors) <= SILHOUETTE_SAMPLE
            else np.sort(rng.choice(len(vectors), SILHOUETTE_SAMPLE, replace=False)))
    lo, hi = AUTO_K_RANGE
    scores = {}
    for k in range(lo, min(hi, len(vectors) - 1) + 1):
        assign, _ = _kmeans(vectors, k, seed)
        scores[k] = round(silhouette(vectors[rows], assign[rows]), 4)
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def cluster_space(index: ArtIndex, space: str = "content", *, k: int | str = "auto",
                  method: str = "kmeans", seed: int = 0, restarts: int = 5) -> ClusterResult:
    """Cluster every artwork of a space and store the run; see the module docstring."""
    if method != "kmeans":
        raise MetadataError(f"--method {method}: only kmeans is available so far")
    sp = index.space(space)
    ids, vectors = index.vectors(sp).everything()
    with index.store.session() as s:
        by_faiss = dict(s.execute(select(Embedding.faiss_id, Embedding.artwork_id).where(
            Embedding.space_id == sp.id)).all())
    keep = np.array([int(i) in by_faiss for i in ids], bool)
    ids, vectors = ids[keep], np.ascontiguousarray(vectors[keep])
    order = np.argsort([by_faiss[int(i)] for i in ids])  # artwork order: stable across runs
    ids, vectors = ids[order], vectors[order]
    artwork_ids = [by_faiss[int(i)] for i in ids]
    n = len(artwork_ids)
    params: dict[str, Any] = {"niter": NITER, "nredo": NREDO, "spherical": True,
                              "artworks": n}
    if k == "auto":
        if n < 3:
            raise MetadataError(f"space {space!r} has {n} artworks; clustering needs at least 3")
        chosen, scores = choose_k(vectors, seed)
        params["k_choice"] = {"criterion": "highest mean cosine silhouette",
                              "range": list(AUTO_K_RANGE), "silhouette": scores}
    else:
        chosen = int(k)
        if not 2 <= chosen <= n:
            raise MetadataError(f"--k {chosen}: choose between 2 and {n} (the artworks in "
                                f"space {space!r}), or --k auto")
    assign, distance = _kmeans(vectors, chosen, seed)
    params["stability"] = stability(vectors, assign, chosen, seed, restarts)
    metrics = _agreement(index, artwork_ids, assign)
    metrics["clusters"] = _labels(index, artwork_ids, assign, chosen)
    with index.store.session() as s, s.begin():
        run = ClusterRun(space_id=sp.id, method=method, k=chosen, seed=seed, params=params,
                         metrics=metrics)
        s.add(run)
        s.flush()
        s.add_all(ClusterAssignment(run_id=run.id, artwork_id=a, cluster=int(c),
                                    distance=float(d))
                  for a, c, d in zip(artwork_ids, assign, distance, strict=True))
        run_id = run.id
    sizes = np.bincount(assign, minlength=chosen).tolist()
    return ClusterResult(run_id, chosen, sizes, metrics, params)


def _agreement(index: ArtIndex, artwork_ids: list[int], assign: np.ndarray) -> dict[str, Any]:
    """NMI, ARI and purity against each catalogue field, over the works that have it."""
    with index.store.session() as s:
        arts = {a.id: a for a in s.scalars(select(Artwork).where(Artwork.id.in_(artwork_ids)))}
    out: dict[str, Any] = {}
    for field in LABEL_FIELDS:
        values = [arts[a].field(field) for a in artwork_ids]
        rows = [i for i, v in enumerate(values) if v]
        labels = [values[i] for i in rows]
        if len(rows) < 2 or len(set(labels)) < 2:
            continue
        out[field] = {"works": len(rows), "labels": len(set(labels)),
                      "nmi": round(nmi(assign[rows], labels), 4),
                      "ari": round(ari(assign[rows], labels), 4),
                      "purity": round(purity(assign[rows], labels), 4)}
    return out


def _labels(index: ArtIndex, artwork_ids: list[int], assign: np.ndarray, k: int
            ) -> list[dict[str, Any]]:
    """Per cluster: catalogue values over-represented against the whole collection.

    Each (cluster, field, value) with at least 2 works in the cluster is tested with the
    hypergeometric upper tail; p-values are Bonferroni-corrected for the number of tests.
    A cluster's label joins its two most significant values, or says it has none.
    """
    with index.store.session() as s:
        arts = {a.id: a for a in s.scalars(select(Artwork).where(Artwork.id.in_(artwork_ids)))}
    tests: list[tuple[int, str, str, int, int, int, int]] = []
    for field in LABEL_FIELDS:
        values = [arts[a].field(field) for a in artwork_ids]
        known = [i for i, v in enumerate(values) if v]
        if not known:
            continue
        population = len(known)
        totals: dict[str, int] = {}
        for i in known:
            totals[values[i]] = totals.get(values[i], 0) + 1
        for c in range(k):
            inside = [i for i in known if assign[i] == c]
            counts: dict[str, int] = {}
            for i in inside:
                counts[values[i]] = counts.get(values[i], 0) + 1
            for value, hits in counts.items():
                if hits >= 2:
                    tests.append((c, field, str(value), hits, len(inside), totals[value],
                                  population))
    out: list[dict[str, Any]] = [{"cluster": c, "over_represented": []} for c in range(k)]
    for c, field, value, hits, drawn, successes, population in tests:
        p = min(1.0, hypergeometric_tail(hits, drawn, successes, population) * len(tests))
        if p < SIGNIFICANCE:
            out[c]["over_represented"].append({
                "field": field, "value": value, "in_cluster": hits, "of": drawn,
                "expected": round(drawn * successes / population, 1), "p_adjusted": p})
    for entry in out:
        entry["over_represented"].sort(key=lambda e: e["p_adjusted"])
        top = entry["over_represented"][:2]
        entry["label"] = " · ".join(f"{e['value']}" for e in top) or "no distinctive metadata"
    return out
