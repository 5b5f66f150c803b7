"""Clustering runs: real groups are found, runs are stored and reproducible, k auto says why."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from artsearch.cli import cli
from artsearch.cluster import cluster_space
from artsearch.errors import MetadataError
from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from tests.helpers import FAKE, two_palettes


@pytest.fixture
def indexed(tmp_path: Path) -> Path:
    root = tmp_path / "coll"
    root.mkdir()
    meta = two_palettes(root)
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=meta,
                                                 extractor={"num_workers": 0}))
    return tmp_path / "idx"


def test_two_palettes_make_two_clusters_that_match_the_genre(indexed: Path) -> None:
    with ArtIndex(indexed) as idx:
        result = cluster_space(idx, k=2, seed=0)
    assert sorted(result.sizes) == [12, 12]
    genre = result.metrics["genre"]
    assert genre["nmi"] == 1.0 and genre["ari"] == 1.0 and genre["purity"] == 1.0


def test_the_same_seed_gives_the_same_assignments(indexed: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--index", str(indexed)]
    for _ in range(2):
        result = runner.invoke(cli, ["cluster", "--k", "4", "--seed", "7", *base, "--json"])
        assert result.exit_code == 0, result.output
    listing = json.loads(runner.invoke(cli, ["clusters", *base, "--json"]).output)
    assert [r["run"] for r in listing] == [1, 2] and listing[0]["k"] == 4
    exports = []
    for run in (1, 2):
        out = tmp_path / f"run{run}.csv"
        result = runner.invoke(cli, ["clusters", str(run), *base, "--csv", str(out)])
        assert result.exit_code == 0 and "wrote 24 assignments" in result.output
        with out.open() as fh:
            exports.append(sorted((r["path"], r["cluster"]) for r in csv.DictReader(fh)))
    assert exports[0] == exports[1] and len(exports[0]) == 24


def test_k_auto_is_chosen_by_silhouette_and_recorded(indexed: Path) -> None:
    with ArtIndex(indexed) as idx:
        result = cluster_space(idx, k="auto")
    choice = result.params["k_choice"]
    assert choice["criterion"] == "highest mean cosine silhouette"
    scores = {int(k): v for k, v in choice["silhouette"].items()}
    assert result.k == max(scores, key=lambda k: (scores[k], -k))
    assert set(scores) == set(range(2, 21))


def test_bad_requests_say_what_to_do(indexed: Path) -> None:
    with ArtIndex(indexed) as idx, pytest.raises(MetadataError, match="choose between 2 and 24"):
        cluster_space(idx, k=30)
    result = CliRunner().invoke(cli, ["clusters", "9", "--index", str(indexed)])
    assert result.exit_code == 1 and "no clustering run 9" in result.output
    result = CliRunner().invoke(cli, ["cluster", "--k", "many", "--index", str(indexed)])
    assert result.exit_code == 2 and "give a number of clusters or auto" in result.output


def test_stability_tells_real_groups_from_artefacts() -> None:
    import numpy as np

    from artsearch.cluster import kmeans_labels, stability

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 32)) * 3
    blobs = np.concatenate([c + rng.standard_normal((50, 32)) * 0.5 for c in centres])
    blobs = (blobs / np.linalg.norm(blobs, axis=1, keepdims=True)).astype(np.float32)
    assign, _ = kmeans_labels(blobs, 4, seed=0)
    real = stability(blobs, assign, 4, seed=0, runs=4)
    assert real["mean_ari"] > 0.95 and min(real["per_cluster_jaccard"]) > 0.9

    noise = rng.standard_normal((200, 32)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    assign, _ = kmeans_labels(noise, 6, seed=0)
    artefact = stability(noise, assign, 6, seed=0, runs=4)
    assert artefact["mean_ari"] < 0.6


def test_clusters_are_labelled_by_significantly_over_represented_values(indexed: Path) -> None:
    with ArtIndex(indexed) as idx:
        result = cluster_space(idx, k=2, seed=0, restarts=0)
    labels = sorted(entry["label"] for entry in result.metrics["clusters"])
    assert labels == ["seascape", "sunset"]
    top = result.metrics["clusters"][0]["over_represented"][0]
    assert top["field"] == "genre" and top["in_cluster"] == 12 and top["expected"] == 6.0
    assert top["p_adjusted"] < 1e-4


def test_hypergeometric_tail_matches_a_hand_count() -> None:
    from math import comb

    from artsearch.metrics import hypergeometric_tail

    # 3 of 4 drawn from 10 works of which 5 have the value: P(X >= 3).
    exact = sum(comb(5, i) * comb(5, 4 - i) for i in (3, 4)) / comb(10, 4)
    assert hypergeometric_tail(3, 4, 5, 10) == pytest.approx(exact)
    assert hypergeometric_tail(0, 4, 5, 10) == pytest.approx(1.0)
    assert hypergeometric_tail(5, 4, 5, 10) == 0.0


def blobs(seed: int = 0, n: int = 40, dims: int = 32, groups: int = 3):  # noqa: ANN201
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dims)) * 3
    x = np.concatenate([c + rng.standard_normal((n, dims)) * 0.4 for c in centres])
    truth = np.repeat(np.arange(groups), n)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "hdbscan"])
def test_every_method_recovers_separated_groups(method: str) -> None:
    from artsearch.cluster import _renumber, partition_labels, stability
    from artsearch.metrics import ari

    x, truth = blobs()
    assign = _renumber(partition_labels(x, method, 3, seed=0, min_cluster_size=10))
    assert ari(assign, truth) > 0.95
    assert list(_renumber(partition_labels(x, method, 3, seed=0, min_cluster_size=10))) == \
        list(assign)  # deterministic
    held = stability(x, assign, 3, seed=0, runs=3, method=method, min_cluster_size=10)
    assert held["mean_ari"] > 0.9 and min(held["per_cluster_jaccard"]) > 0.9
    assert held["method"].startswith("k-means restarted" if method == "kmeans"
                                     else f"{method} redone on 3 random 80% subsamples")


def test_hdbscan_leaves_stray_works_unclustered(tmp_path: Path) -> None:
    import numpy as np

    from artsearch.cluster import NOISE, centre_distances, hdbscan_labels

    # Two groups near one another, and three works far from both (random directions).
    rng = np.random.default_rng(0)
    base = rng.standard_normal(32)
    centres = base * 3 + rng.standard_normal((2, 32)) * 1.5
    x = np.concatenate([*(c + rng.standard_normal((40, 32)) * 0.15 for c in centres),
                        rng.standard_normal((3, 32))])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    assign = hdbscan_labels(x, min_cluster_size=10)
    assert set(assign[-3:]) == {NOISE} and (assign[:-3] != NOISE).mean() > 0.9
    distance = centre_distances(x, assign)
    assert distance[-3:].min() > distance[:-3].max()  # strays are far from every centre


def test_methods_through_the_cli_and_their_limits(indexed: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    base = ["--index", str(indexed), "--json"]
    ward = json.loads(runner.invoke(cli, ["cluster", "--method", "agglomerative", "--k", "2",
                                          *base]).output)
    assert sorted(ward["sizes"]) == [12, 12] and ward["agreement"]["genre"]["ari"] == 1.0
    assert ward["params"]["linkage"] == "ward"
    dense = runner.invoke(cli, ["cluster", "--method", "hdbscan", "--min-cluster-size", "5",
                                *base])
    assert dense.exit_code == 0, dense.output
    found = json.loads(dense.output)
    assert found["k"] >= 2 and sum(found["sizes"]) + found["noise"] == 24
    result = runner.invoke(cli, ["cluster", "--method", "hdbscan", "--k", "3", *base])
    assert result.exit_code == 2 and "use --min-cluster-size" in result.output
    monkeypatch.setattr("artsearch.cluster.AGGLOMERATIVE_MAX", 10)
    result = runner.invoke(cli, ["cluster", "--method", "agglomerative", "--k", "2", *base])
    assert result.exit_code == 1 and "use --method kmeans" in result.output


def test_clusters_are_numbered_by_size_and_centuries_read_from_dates() -> None:
    import numpy as np

    from artsearch.cluster import _renumber, century

    assert list(_renumber(np.array([2, 2, 0, 1, 1, 1, -1]))) == [1, 1, 2, 0, 0, 0, -1]
    assert [century(d) for d in ("1663", "c. 1650-55", "the 1600s", "17th century",
                                 "1901", "21st c.", "1200 BC", "undated", None)] == [
        "17th c.", "17th c.", "17th c.", "17th c.", "20th c.", "21st c.", None, None, None]


def test_agreement_skips_fields_that_identify_works(tmp_path: Path) -> None:
    root = tmp_path / "coll"
    root.mkdir()
    meta = two_palettes(root)
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join([lines[0] + ",source"] + [f"{line},https://x/{n}"
                                                         for n, line in enumerate(lines[1:])])
                    + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=meta,
                                                 extractor={"num_workers": 0}))
        result = cluster_space(idx, k=2, restarts=0)
    assert "genre" in result.metrics and "source" not in result.metrics


def test_centring_is_recorded_and_clusters_the_centred_vectors(indexed: Path) -> None:
    """--centre: what is clustered is the works' vectors minus their mean, re-normalised;
    by default only HDBSCAN centres (as measured), and every run records which it did."""
    from artsearch.cluster import _renumber, centred, kmeans_labels, space_matrix

    with ArtIndex(indexed) as idx:
        plain = cluster_space(idx, k=3, seed=1, restarts=0)
        centred_run = cluster_space(idx, k=3, seed=1, restarts=0, centre=True)
        density = cluster_space(idx, method="hdbscan", restarts=0)
        _, vectors = space_matrix(idx, "content")
    assert plain.params["centred"] is False and centred_run.params["centred"] is True
    assert density.params["centred"] is True
    by_hand = _renumber(kmeans_labels(centred(vectors), 3, 1)[0])
    assert np.bincount(by_hand).tolist() == centred_run.sizes
    x = centred(vectors)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    result = CliRunner().invoke(cli, ["cluster", "--index", str(indexed), "--method",
                                      "hdbscan", "--centre", "no", "--restarts", "0",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["params"]["centred"] is False


def test_clusters_are_named_by_what_they_hold_never_by_an_address(tmp_path: Path) -> None:
    """Sources as URLs (the dev set's) name no cluster; a cluster with nothing significant
    is named by a value most of it holds, with its share, or by its central work's title."""
    root = tmp_path / "coll"
    root.mkdir()
    two_palettes(root)
    names = sorted(p.name for p in root.glob("*.png"))
    rows = ["path,title,source,genre"] + [
        f"{n},Study {i},https://museum.example/objects/{i}.jpg,"
        f"{'sunset' if n.startswith('warm') and i % 4 else ''}"
        for i, n in enumerate(names)]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, metadata=root / "meta.csv",
                                                 extractor={"num_workers": 0}))
        labels = [c["label"] for c in cluster_space(idx, k=2, seed=0).metrics["clusters"]]
    assert all("http" not in lbl and "no distinctive metadata" not in lbl for lbl in labels)
    assert any(lbl.startswith("like “Study ") for lbl in labels)  # the cool half: no genre
    assert any("sunset" in lbl for lbl in labels)
