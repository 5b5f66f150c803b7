"""Unsupervised grouping of a space, stored as a numbered run.

Three methods, each on the space's unit vectors:
- kmeans: spherical k-means through FAISS (best of NREDO starts); stability = restarts
  from other seeds.
- agglomerative: Ward linkage (SciPy), the tree cut at k; deterministic, so stability =
  re-clustering 80% subsamples.
- hdbscan: scikit-learn's HDBSCAN on a PCA projection to HDBSCAN_DIMS dimensions (density
  is meaningless in 1,000+ dimensions); it finds the number of groups itself and leaves
  works that belong to none as noise (cluster -1). Stability as for agglomerative.

Centring: the vectors of a collection share a common direction (every painting's features
are alike in what makes them paintings), which a cosine keeps counting. `centre` subtracts
the mean of the clustered works and re-normalises before clustering; by default it is on
where the dev set measured it paying (CENTRE_DEFAULT; benchmarks/README.md, quality suite)
and recorded in the run's params either way.

Clusters are numbered by size, largest first. A run records the space, method, k (and how it
was chosen), the seed, each artwork's cluster and cosine distance to its cluster's centre,
how the clusters agree with every catalogue field that is filled in (NMI, ARI, purity), and
per-cluster labels from over-represented catalogue values. The same seed on the same space
gives the same assignments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from artsearch.errors import MetadataError
from artsearch.index import ArtIndex
from artsearch.index.catalogue import artworks, century, faiss_artworks, field_value
from artsearch.index.clusters import StoredRun, assignments, load_run, runs, save_run
from artsearch.metrics import ari, hypergeometric_tail, nmi, purity, silhouette

__all__ = ["AUTO_K_RANGE", "CENTRE_DEFAULT", "METHODS", "ClusterResult", "StoredRun",
           "assignments", "centred", "century",
           "cluster_space", "field_value", "load_run", "runs", "space_matrix"]

METHODS = ("kmeans", "agglomerative", "hdbscan")
AUTO_K_RANGE = (2, 20)  # --k auto tries these k (inclusive), capped below the collection size
SILHOUETTE_SAMPLE = 2_000  # works the silhouette of each candidate k is measured on
LABEL_FIELDS = ("genre", "style", "artist", "century", "source")
SIGNIFICANCE = 0.01  # Bonferroni-corrected p-value under which a value labels a cluster
NITER = 25
NREDO = 3  # k-means runs per clustering, keeping the best objective: one can be unlucky
AGGLOMERATIVE_MAX = 20_000  # Ward needs n^2/2 distances in memory: 1.6 GB at 20,000 works
HDBSCAN_DIMS = 50
SUBSAMPLE = 0.8  # share of works each stability re-clustering sees (agglomerative, hdbscan)
NOISE = -1
# Whether each method centres by default, as measured on the dev set (benchmarks/README.md):
# HDBSCAN gained NMI on all three label groups of the content space (mixed on the style
# space); k-means and Ward moved both ways (benchmarks/bench_centring.py).
CENTRE_DEFAULT = {"kmeans": False, "agglomerative": False, "hdbscan": True}
# Where a space's backbone measured otherwise: the art spaces, centred, gained NMI on every
# dev group or moved none (`bench_centring.py --index`; lite0-art k-means +0.002 / +0.009 /
# +0.012 genre / WikiArt / Indian, Ward +0.002 / +0.022 / +0.022; lite0-art-mix k-means
# +0.000 / +0.016 / +0.023). Mixed results keep the method's default.
CENTRE_BY_BACKBONE = {"lite0-art": {"kmeans": True, "agglomerative": True},
                      "lite0-art-mix": {"kmeans": True}}


def auto_centre(backbone: str, method: str) -> bool:
    """Whether `--centre auto` centres a space of this backbone for this method."""
    return CENTRE_BY_BACKBONE.get(backbone, {}).get(method, CENTRE_DEFAULT[method])


@dataclass
class ClusterResult:
    run_id: int
    k: int
    sizes: list[int]
    metrics: dict[str, Any]
    params: dict[str, Any]
    noise: int = 0


def _renumber(assign: np.ndarray) -> np.ndarray:
    """Clusters numbered by size, largest first (ties: the one whose first work comes first);
    noise stays -1."""
    ids = [c for c in np.unique(assign) if c != NOISE]
    ids.sort(key=lambda c: (-(assign == c).sum(), int(np.argmax(assign == c))))
    out = np.full_like(assign, NOISE)
    for new, old in enumerate(ids):
        out[assign == old] = new
    return out


def kmeans_labels(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means; returns (cluster per row, cosine distance to its centre)."""
    km = faiss.Kmeans(vectors.shape[1], k, niter=NITER, nredo=NREDO, seed=seed,
                      spherical=True, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=10**9)
    km.train(vectors)
    sims, assign = km.index.search(vectors, 1)
    return assign[:, 0].astype(np.int64), 1.0 - sims[:, 0]


def _ward_tree(vectors: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage

    if len(vectors) > AGGLOMERATIVE_MAX:
        raise MetadataError(
            f"--method agglomerative: {len(vectors):,} works is more than Ward linkage can "
            f"hold in memory here (up to {AGGLOMERATIVE_MAX:,}); use --method kmeans")
    tree: np.ndarray = linkage(vectors.astype(np.float64), method="ward")
    return tree


def _cut(tree: np.ndarray, k: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    labels: np.ndarray = fcluster(tree, k, criterion="maxclust").astype(np.int64) - 1
    return labels


def pca(vectors: np.ndarray, dims: int, fit_rows: int | None = None, seed: int = 0
        ) -> np.ndarray:
    """Projection onto the top `dims` principal axes (covariance eigenvectors; deterministic,
    sign fixed so each axis's largest loading is positive). With `fit_rows`, the axes are
    those of a seeded sample of that many rows (a map of 100,000 works in seconds, not a
    minute), and every row is projected onto them."""
    fit = vectors
    if fit_rows is not None and len(vectors) > fit_rows:
        fit = vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), fit_rows,
                                                                 replace=False))]
    mean = fit.mean(axis=0, dtype=np.float64)
    x = fit.astype(np.float64) - mean
    dims = min(dims, x.shape[1], max(len(x) - 1, 1))
    values, axes = np.linalg.eigh(x.T @ x)
    axes = axes[:, np.argsort(values)[::-1][:dims]]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(dims)])
    if fit is vectors:
        projected: np.ndarray = (x @ axes).astype(np.float32)
        return projected
    # In slices: the float64 copy of every row would be gigabytes at 100,000 x 3,104.
    out = np.empty((len(vectors), dims), np.float32)
    for i in range(0, len(vectors), 20_000):
        out[i:i + 20_000] = (vectors[i:i + 20_000].astype(np.float64) - mean) @ axes
    return out


def hdbscan_labels(vectors: np.ndarray, min_cluster_size: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    reduced = pca(vectors, HDBSCAN_DIMS)
    labels: np.ndarray = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(reduced)
    return labels


def partition_labels(vectors: np.ndarray, method: str, k: int, seed: int, min_cluster_size: int
               ) -> np.ndarray:
    if method == "kmeans":
        return kmeans_labels(vectors, k, seed)[0]
    if method == "agglomerative":
        return _cut(_ward_tree(vectors), k)
    return hdbscan_labels(vectors, min_cluster_size)


def centre_distances(vectors: np.ndarray, assign: np.ndarray) -> np.ndarray:
    """Cosine distance of each work to its cluster's mean direction (noise: to the nearest
    cluster's)."""
    ids = [c for c in np.unique(assign) if c != NOISE]
    if not ids:
        return np.ones(len(vectors), np.float32)
    centres = np.stack([vectors[assign == c].mean(axis=0) for c in ids])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    sims = vectors @ centres.T
    own = np.array([ids.index(c) if c != NOISE else -1 for c in assign])
    best = np.where(own >= 0, sims[np.arange(len(vectors)), np.maximum(own, 0)],
                    sims.max(axis=1))
    distances: np.ndarray = (1.0 - best).astype(np.float32)
    return distances


def _jaccards(mine: np.ndarray, other: np.ndarray, k: int) -> np.ndarray:
    """Per cluster of `mine`: the best Jaccard overlap with any (non-noise) cluster of
    `other`, over the same works."""
    out = np.zeros(k)
    theirs = [set(np.flatnonzero(other == c)) for c in np.unique(other) if c != NOISE]
    for c in range(k):
        members = set(np.flatnonzero(mine == c))
        if members:
            out[c] = max((len(members & t) / len(members | t) for t in theirs), default=0.0)
    return out


def stability(vectors: np.ndarray, assign: np.ndarray, k: int, seed: int, runs: int,
              method: str = "kmeans", min_cluster_size: int = 5) -> dict[str, Any]:
    """How much the clustering holds when it is redone.

    k-means: restarts from other seeds over all works. agglomerative and hdbscan, which are
    deterministic: re-clustering of `runs` random 80% subsamples, compared on the works each
    one saw. Overall: mean ARI between this run and each redo. Per cluster: the mean, over
    redos, of the best Jaccard overlap between its members and any redo cluster (after
    Hennig's cluster-wise stability): near 1 = a robust group, below ~0.6 = an artefact of
    one run that should not be read as a finding.
    """
    if runs < 1:
        return {}
    aris, per_cluster = [], np.zeros(k)
    rng = np.random.default_rng(seed)
    for r in range(1, runs + 1):
        if method == "kmeans":
            rows = np.arange(len(vectors))
            other = kmeans_labels(vectors, k, seed + r)[0]
        else:
            rows = np.sort(rng.choice(len(vectors), max(int(SUBSAMPLE * len(vectors)), 2),
                                      replace=False))
            other = partition_labels(vectors[rows], method, k, seed + r,
                               max(2, round(min_cluster_size * SUBSAMPLE)))
        aris.append(ari(assign[rows], other))
        per_cluster += _jaccards(assign[rows], other, k)
    how = (f"k-means restarted with seeds {seed + 1}..{seed + runs}" if method == "kmeans"
           else f"{method} redone on {runs} random {SUBSAMPLE:.0%} subsamples (seed {seed})")
    return {"method": how, "runs": runs, "mean_ari": round(float(np.mean(aris)), 4),
            "per_cluster_jaccard": [round(float(x / runs), 4) for x in per_cluster]}


def choose_k(vectors: np.ndarray, seed: int, method: str = "kmeans"
             ) -> tuple[int, dict[int, float]]:
    """k with the highest mean silhouette (cosine) over AUTO_K_RANGE, measured on a fixed
    sample of the works (ties go to the smaller k)."""
    rng = np.random.default_rng(seed)
    rows = (np.arange(len(vectors)) if len(vectors) <= SILHOUETTE_SAMPLE
            else np.sort(rng.choice(len(vectors), SILHOUETTE_SAMPLE, replace=False)))
    tree = _ward_tree(vectors) if method == "agglomerative" else None
    lo, hi = AUTO_K_RANGE
    scores = {}
    for k in range(lo, min(hi, len(vectors) - 1) + 1):
        assign = kmeans_labels(vectors, k, seed)[0] if tree is None else _cut(tree, k)
        scores[k] = round(silhouette(vectors[rows], assign[rows]), 4)
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def centred(vectors: np.ndarray) -> np.ndarray:
    """Vectors minus their mean, each re-normalised to unit length (float32)."""
    x = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    unit: np.ndarray = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(
        np.float32)
    return unit


def space_matrix(index: ArtIndex, space: str) -> tuple[list[int], np.ndarray]:
    """A space's artwork ids (ascending) and their unit vectors, row for row."""
    sp = index.space(space)
    ids, vectors = index.vectors(sp).everything()
    by_faiss = faiss_artworks(index, sp)
    keep = np.array([int(i) in by_faiss for i in ids], bool)
    ids, vectors = ids[keep], vectors[keep]
    order = np.argsort([by_faiss[int(i)] for i in ids])  # artwork order: stable across runs
    vectors = np.ascontiguousarray(vectors[order], dtype=np.float32)
    return [by_faiss[int(i)] for i in ids[order]], vectors


def cluster_space(index: ArtIndex, space: str = "content", *, k: int | str | None = "auto",
                  method: str = "kmeans", seed: int = 0, restarts: int = 5,
                  min_cluster_size: int | None = None, centre: bool | None = None
                  ) -> ClusterResult:
    """Cluster every artwork of a space and store the run; see the module docstring
    (`centre` None: `auto_centre` for the space's backbone and the method)."""
    if method not in METHODS:
        raise MetadataError(f"--method {method}: choose one of {', '.join(METHODS)}")
    sp = index.space(space)
    artwork_ids, vectors = space_matrix(index, space)
    n = len(artwork_ids)
    if n < 3:
        raise MetadataError(f"space {space!r} has {n} artworks; clustering needs at least 3")
    centre = auto_centre(sp.backbone, method) if centre is None else centre
    if centre:
        vectors = centred(vectors)
    params: dict[str, Any] = {"artworks": n, "centred": centre}
    if method == "kmeans":
        params |= {"niter": NITER, "nredo": NREDO, "spherical": True}
    elif method == "agglomerative":
        params |= {"linkage": "ward", "library": "scipy"}
    if method == "hdbscan":
        if k not in (None, "auto"):
            raise MetadataError("--k does not apply to --method hdbscan (it finds the number "
                                "of groups itself); set --min-cluster-size instead")
        mcs = min_cluster_size or max(5, n // 100)
        if mcs > n:
            raise MetadataError(
                f"HDBSCAN with --min-cluster-size {mcs} needs at least {mcs} works; space "
                f"{space!r} has {n}: give a smaller --min-cluster-size, or use --method kmeans")
        params |= {"min_cluster_size": mcs, "pca_dims": min(HDBSCAN_DIMS, vectors.shape[1]),
                   "library": "scikit-learn"}
        assign = _renumber(hdbscan_labels(vectors, mcs))
        chosen = int(assign.max()) + 1
        if chosen == 0:
            raise MetadataError(f"HDBSCAN found no group among {n} works with "
                                f"--min-cluster-size {mcs}; lower it, or use --method kmeans")
    else:
        mcs = min_cluster_size or 5
        if k in (None, "auto"):
            chosen, scores = choose_k(vectors, seed, method)
            params["k_choice"] = {"criterion": "highest mean cosine silhouette",
                                  "range": list(AUTO_K_RANGE), "silhouette": scores}
        else:
            chosen = int(k)
            if not 2 <= chosen <= n:
                raise MetadataError(f"--k {chosen}: choose between 2 and {n} (the artworks in "
                                    f"space {space!r}), or --k auto")
        assign = _renumber(partition_labels(vectors, method, chosen, seed, mcs))
        chosen = int(assign.max()) + 1  # a Ward cut can hold fewer groups than asked on ties
    distance = centre_distances(vectors, assign)
    params["stability"] = stability(vectors, assign, chosen, seed, restarts, method, mcs)
    metrics = _agreement(index, artwork_ids, assign)
    metrics["clusters"] = _labels(index, artwork_ids, assign, chosen, distance)
    run_id = save_run(index, sp, method=method, k=chosen, seed=seed, params=params,
                      metrics=metrics, artwork_ids=artwork_ids, clusters=assign.tolist(),
                      distances=distance.tolist())
    sizes = np.bincount(assign[assign != NOISE], minlength=chosen).tolist()
    return ClusterResult(run_id, chosen, sizes, metrics, params,
                         noise=int((assign == NOISE).sum()))


def _agreement(index: ArtIndex, artwork_ids: list[int], assign: np.ndarray) -> dict[str, Any]:
    """NMI, ARI and purity against each catalogue field, over the works that have it (and
    belong to a cluster: HDBSCAN's noise is left out); fields with more distinct values than
    half those works are skipped."""
    arts = {a.id: a for a in artworks(index, artwork_ids)}
    out: dict[str, Any] = {}
    for field in LABEL_FIELDS:
        values = [field_value(arts[a], field) for a in artwork_ids]
        rows = [i for i, v in enumerate(values) if v and assign[i] != NOISE]
        labels = [values[i] for i in rows]
        # Mostly-unique values (a URL, an inventory number) identify works, they do not
        # group them: agreement with them means nothing.
        if len(rows) < 2 or not 2 <= len(set(labels)) <= len(rows) / 2:
            continue
        out[field] = {"works": len(rows), "labels": len(set(labels)),
                      "nmi": round(nmi(assign[rows], labels), 4),
                      "ari": round(ari(assign[rows], labels), 4),
                      "purity": round(purity(assign[rows], labels), 4)}
    return out


def _labels(index: ArtIndex, artwork_ids: list[int], assign: np.ndarray, k: int,
            distance: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Per cluster: catalogue values over-represented against the whole collection.

    Each (cluster, field, value) with at least 2 works in the cluster is tested with the
    hypergeometric upper tail; p-values are Bonferroni-corrected for the number of tests.
    A cluster's label joins its two most significant values. One with none is named by
    what it holds most (a value held by at least DOMINANT of its works, with its share),
    else by its most central work's title. Addresses and paths never name a cluster.
    """
    arts = {a.id: a for a in artworks(index, artwork_ids)}
    tests: list[tuple[int, str, str, int, int, int, int]] = []
    for field in LABEL_FIELDS:
        values = [_nameable(field_value(arts[a], field)) for a in artwork_ids]
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
        if not entry["over_represented"]:
            entry["fallback"] = _what_it_holds(arts, artwork_ids, assign, entry["cluster"],
                                               distance)
    return distinct_labels(out)


DOMINANT = 0.4  # share of a cluster's works a value needs to name it without significance


def _nameable(value: Any) -> Any:
    """A catalogue value that can name a group: not an address or a file path."""
    text = str(value or "")
    if "://" in text or text.startswith(("/", "\\")) or re.search(
            r"\.(jpe?g|png|tiff?|webp|gif|json|html?)$", text, re.IGNORECASE):
        return None
    return value


def _what_it_holds(arts: dict[int, Any], artwork_ids: list[int], assign: np.ndarray,
                   cluster: int, distance: np.ndarray | None) -> str | None:
    rows = [i for i, c in enumerate(assign) if c == cluster]
    if not rows:
        return None
    best: tuple[float, str, str] | None = None
    for field in LABEL_FIELDS:
        counts: dict[str, int] = {}
        for i in rows:
            value = _nameable(field_value(arts[artwork_ids[i]], field))
            if value:
                counts[str(value)] = counts.get(str(value), 0) + 1
        if counts:
            value, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
            share = n / len(rows)
            if share >= DOMINANT and (best is None or share > best[0]):
                best = (share, field, value)
    if best is not None:
        return f"{best[2]} · {best[0]:.0%} {best[1]}"
    central = min(rows, key=lambda i: float(distance[i])) if distance is not None else rows[0]
    art = arts[artwork_ids[central]]
    title = _nameable(art.title) or art.title
    return f"like “{title}”" if title else None


NO_LABEL = "no distinctive metadata"


def distinct_labels(entries: list[dict[str, Any]], words: int = 2) -> list[dict[str, Any]]:
    """Give each entry a "label": its `words` most significant values, joined.

    Clusters that would share a label take their next most significant values until they
    differ (up to four); any still alike are numbered ("landscape · 1 of 2"), so no two
    clusters read the same. Clusters with nothing over-represented say so, as they are.
    """
    def label(entry: dict[str, Any], n: int) -> str:
        values = list(dict.fromkeys(e["value"] for e in entry["over_represented"]))
        return " · ".join(values[:n]) or entry.get("fallback") or NO_LABEL

    for entry in entries:
        entry["label"] = label(entry, words)
    for n in range(words + 1, 5):
        groups: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            groups.setdefault(entry["label"], []).append(entry)
        clashes = [g for lbl, g in groups.items() if len(g) > 1 and lbl != NO_LABEL]
        if not clashes:
            break
        for group in clashes:
            for entry in group:
                entry["label"] = label(entry, n)
    groups = {}
    for entry in entries:
        groups.setdefault(entry["label"], []).append(entry)
    for lbl, group in groups.items():
        if len(group) > 1 and lbl != NO_LABEL:
            for i, entry in enumerate(group, 1):
                entry["label"] = f"{lbl} · {i} of {len(group)}"
    return entries


# -- stored runs: kept by artsearch.index.clusters ----------------------------------------------

def replay_run(index: ArtIndex, run_id: int) -> dict[str, Any]:
    """Cluster a stored run's works again with its stored method, k, seed and centring, and
    compare: does the run reproduce on the vectors as they are now?"""
    stored = load_run(index, run_id)
    run, params = stored.run, stored.run.params or {}
    ids, vectors = space_matrix(index, stored.space.name)
    keep = [i for i, a in enumerate(ids) if a in stored.assigned]
    ids, vectors = [ids[i] for i in keep], vectors[keep]
    if len(ids) < 3:
        raise MetadataError(f"run {run_id}: fewer than 3 of its works are still indexed")
    if params.get("centred"):
        vectors = centred(vectors)
    if run.method == "hdbscan":
        assign = _renumber(hdbscan_labels(vectors, int(params["min_cluster_size"])))
    else:
        assign = _renumber(partition_labels(vectors, run.method, int(run.k), int(run.seed),
                                      int(params.get("min_cluster_size", 5))))
    then = np.array([stored.assigned[a] for a in ids])
    return {"run": run_id, "space": stored.space.name, "method": run.method, "k": run.k,
            "seed": run.seed, "centred": bool(params.get("centred")),
            "made": run.created_at.isoformat(timespec="seconds"), "works": len(ids),
            "gone": len(stored.assigned) - len(ids),
            "identical": bool(np.array_equal(assign, then)),
            "ari": round(ari(then, assign), 6),
            "changed": int((assign != then).sum())}
