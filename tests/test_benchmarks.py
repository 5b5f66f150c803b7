"""The benchmark suites' metrics, checked against cases whose answers are known."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from artsearch.metrics import ari, nmi, purity, silhouette
from benchmarks.bench_ann import synthetic
from benchmarks.bench_backbones import (
    bootstrap_ci,
    copy_retrieval,
    copy_sources,
    default_groups,
    linear_probe,
    paired_difference,
    retrieval,
    whitened,
    whitening,
)

ROOT = Path(__file__).resolve().parents[1]


def test_agreement_scores_at_their_extremes() -> None:
    labels = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    renamed = ["x"] * 10 + ["y"] * 10 + ["z"] * 10
    assert nmi(labels, renamed) == pytest.approx(1.0) and ari(labels, renamed) == pytest.approx(1)
    rng = np.random.default_rng(0)
    shuffled = list(rng.permutation(labels))
    assert abs(ari(labels, shuffled)) < 0.1 and nmi(labels, shuffled) < 0.2
    assert purity(labels, renamed) == 1.0 and purity(["x"] * 30, labels) == pytest.approx(1 / 3)


def test_silhouette_separates_tight_from_mixed_clusters() -> None:
    rng = np.random.default_rng(3)
    centres = np.eye(4, 16) * 5
    x = np.concatenate([c + rng.standard_normal((20, 16)) * 0.3 for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.repeat(np.arange(4), 20)
    assert silhouette(x, truth) > 0.7
    assert silhouette(x, rng.permutation(truth)) < 0.05


def test_retrieval_metrics_by_hand() -> None:
    # Four unit vectors: 0 and 1 close together, 2 and 3 close together.
    vectors = np.array([[1, 0], [0.9, 0.436], [0, 1], [0.2, 0.98]], np.float32)
    m = retrieval(vectors, ["a", "a", "b", "b"], k=2)
    assert m["p1"].tolist() == [1, 1, 1, 1]
    np.testing.assert_allclose(m["map10"], [1, 1, 1, 1])
    np.testing.assert_allclose(m["recall10"], [1, 1, 1, 1])
    m = retrieval(vectors, ["a", "b", "a", "b"], k=2)
    assert m["p1"].tolist() == [0, 0, 0, 0]
    # Items 1 and 3 find their partner at rank 2 (AP 1/2); items 0 and 2 not in the top 2.
    np.testing.assert_allclose(m["map10"], [0, 0.5, 0, 0.5])
    np.testing.assert_allclose(m["recall10"], [0, 1, 0, 1])


def test_bootstrap_interval_holds_the_mean_and_narrows_with_data() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.random(30), rng.random(3000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 4


def test_linear_probe_learns_separable_classes_and_not_noise() -> None:
    rng = np.random.default_rng(2)
    labels = [str(i % 3) for i in range(90)]
    centres = rng.standard_normal((3, 16)) * 4
    x = np.stack([centres[int(lab)] + rng.standard_normal(16) for lab in labels])
    assert np.mean(linear_probe(x, labels)) > 0.95
    noise = rng.standard_normal((90, 16))
    assert np.mean(linear_probe(noise, labels)) < 0.6


def test_default_groups_split_label_columns_by_source() -> None:
    rows = [{"path": "a", "genre": "portrait", "style": "", "source": "s1"},
            {"path": "b", "genre": "", "style": "cubism", "source": "s1"},
            {"path": "c", "genre": "", "style": "mughal", "source": "s2"}]
    assert default_groups(rows) == ["genre=genre", "style @ s1=style@s1", "style @ s2=style@s2"]


def test_synthetic_vectors_look_like_real_embeddings() -> None:
    x = synthetic(1357, 1280, seed=1)
    sims = x @ x.T
    np.fill_diagonal(sims, -1)
    ranked = -np.sort(-sims, axis=1)
    # The dev set's Lite0 vectors: random pairs 0.32, nearest 0.64, 10th nearest 0.55.
    assert 0.28 < sims[sims > -1].mean() < 0.36
    assert 0.58 < ranked[:, 0].mean() < 0.70 and 0.50 < ranked[:, 9].mean() < 0.60


def test_the_entry_point_explains_itself() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "--suite {quality,speed,ann,all}" in out and "--quick" in out


def test_whitening_is_invertible_and_shrinkage_damps_only_weak_directions() -> None:
    rng = np.random.default_rng(0)
    spread = np.array([10.0, 5.0, 1.0, 0.1, 0.01])
    x = rng.standard_normal((4000, 5)) * spread + 3.0
    mean, axes, scale = whitening(x, shrink=0.0)
    y = (x - mean) @ axes / scale
    assert np.allclose(np.cov(y.T, bias=True), np.eye(5), atol=1e-6)  # white: identity
    y = whitened(x[:50], x, shrink=0.1)  # unit rows; the direction of x - mean comes back
    back = (y * whitening(x, 0.1)[2]) @ whitening(x, 0.1)[1].T
    want = x[:50] - mean
    cos = (back * want).sum(1) / np.linalg.norm(back, axis=1) / np.linalg.norm(want, axis=1)
    assert np.allclose(cos, 1.0, atol=1e-9)
    _, _, shrunk = whitening(x, shrink=0.1)
    variances = np.var(((x - mean) @ axes) / shrunk, axis=0)  # ascending eigenvalues
    # lambda / (lambda + 0.1 mean lambda): strong axes stay near 1, weak ones are damped
    values = (scale ** 2)
    assert np.allclose(variances, values / (values + 0.1 * values.mean()), rtol=1e-6)
    assert np.all(np.diff(variances) > 0) and variances[-1] > 0.95 and variances[0] < 0.01


def test_paired_difference_and_copy_retrieval_by_hand() -> None:
    a, b = np.array([0.5, 0.6, 0.7, 0.8]), np.array([0.4, 0.6, 0.6, 0.8])
    d, (lo, hi) = paired_difference(a, b)
    assert d == pytest.approx(0.05) and 0 <= lo <= d <= hi <= 0.1
    rng = np.random.default_rng(1)
    base = rng.standard_normal((10, 8))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    rows = copy_sources(10, 3)
    assert rows.tolist() == [0, 3, 6]
    copies = base[rows] + 0.01 * rng.standard_normal((3, 8))
    got = copy_retrieval(np.vstack([base, copies]), 10)
    assert got == {"copies": 3, "p1": 1.0, "mean_rank": 1.0}
    wrong = copy_retrieval(np.vstack([base, base[[1, 4, 7]]]), 10)
    assert wrong["p1"] == 0.0
