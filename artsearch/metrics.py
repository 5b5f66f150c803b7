"""Agreement between a partition and labels, and cluster quality: numpy only.

Used by `artsearch cluster` (agreement with catalogued fields, choosing k) and by the
benchmark suites, so both report the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["ari", "hypergeometric_tail", "nmi", "purity", "silhouette"]


def _codes(a: Sequence[object] | np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(a).astype(str), return_inverse=True)[1]


def _table(a: Sequence[object] | np.ndarray, b: Sequence[object] | np.ndarray) -> np.ndarray:
    ai, bi = _codes(a), _codes(b)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    return table


def nmi(a: Sequence[object] | np.ndarray, b: Sequence[object] | np.ndarray) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (as scikit-learn):
    0 = the partitions say nothing about each other, 1 = the same partition."""
    p = _table(a, b)
    p /= p.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (pa[:, None] * pb[None, :])[nz])).sum())
    ha = -float((pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hb = -float((pb[pb > 0] * np.log(pb[pb > 0])).sum())
    return 0.0 if ha + hb == 0 else 2 * mi / (ha + hb)


def ari(a: Sequence[object] | np.ndarray, b: Sequence[object] | np.ndarray) -> float:
    """Adjusted Rand index (Hubert and Arabie): pair agreement corrected for chance;
    0 = chance level, 1 = the same partition."""
    table = _table(a, b)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    n = table.sum()
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    top = (rows + cols) / 2 - expected
    return 0.0 if top == 0 else (index - expected) / top


def purity(clusters: Sequence[object] | np.ndarray, labels: Sequence[object] | np.ndarray
           ) -> float:
    """Share of works whose label is their cluster's most common label."""
    table = _table(clusters, labels)
    return float(table.max(axis=1).sum() / table.sum())


def silhouette(vectors: np.ndarray, clusters: np.ndarray) -> float:
    """Mean silhouette with cosine distance (unit vectors): how much closer each work is to
    its own cluster than to the nearest other one; -1 to 1, higher is better."""
    dist = 1.0 - vectors @ vectors.T
    ids = np.unique(clusters)
    if len(ids) < 2:
        return 0.0
    mean_to = np.stack([dist[:, clusters == c].mean(axis=1) for c in ids], axis=1)
    own = np.searchsorted(ids, clusters)
    sizes = np.array([(clusters == c).sum() for c in ids])
    n_own = sizes[own]
    # Mean distance to the other members of one's own cluster (excluding oneself).
    a = mean_to[np.arange(len(vectors)), own] * n_own / np.maximum(n_own - 1, 1)
    mean_to[np.arange(len(vectors)), own] = np.inf
    b = mean_to.min(axis=1)
    s = np.where(n_own > 1, (b - a) / np.maximum(a, b), 0.0)
    return float(s.mean())


def hypergeometric_tail(hits: int, drawn: int, successes: int, population: int) -> float:
    """P(X >= hits) for X ~ Hypergeometric(population, successes, drawn): the chance that a
    random group of `drawn` works holds at least `hits` of the `successes` works with a value."""
    def log_choose(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    top = min(drawn, successes)
    if hits > top:
        return 0.0
    base = log_choose(population, drawn)
    terms = [log_choose(successes, i) + log_choose(population - successes, drawn - i) - base
             for i in range(max(hits, 0), top + 1)
             if drawn - i <= population - successes]
    if not terms:
        return 0.0
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms))
