"""The real default backbone on the real dev collection (../shared/data/art-dev)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from sqlalchemy import select

from artsearch import backbones
from artsearch.extract import Extractor
from artsearch.index import ArtIndex
from artsearch.index.store import Artwork, Embedding
from artsearch.indexer import IndexOptions, IndexReport, index_collection
from artsearch.query import search
from tests.helpers import DEV, requires_dev

pytestmark = [pytest.mark.slow, pytest.mark.integration, requires_dev()]
ROOT = Path(__file__).resolve().parents[1]
N_DEV = 1357


@pytest.fixture(scope="module")
def dev_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IndexReport]:
    path = tmp_path_factory.mktemp("dev") / "idx"
    with ArtIndex(path, create=True) as idx:
        report = index_collection(DEV, idx, IndexOptions(metadata=DEV / "metadata.csv"))
    return path, report


@pytest.fixture(scope="module")
def lite0() -> Extractor:
    return Extractor(backbones.get("efficientnet-lite0"), num_workers=0)


def test_every_dev_image_is_indexed(dev_index: tuple[Path, IndexReport]) -> None:
    _, report = dev_index
    assert report.failed == []
    assert (report.scanned, report.embedded, report.total) == (N_DEV, N_DEV, N_DEV)
    assert report.metadata is not None and report.metadata.matched == N_DEV


def test_an_immediate_rerun_embeds_nothing(dev_index: tuple[Path, IndexReport]) -> None:
    path, _ = dev_index
    with ArtIndex(path) as idx:
        again = index_collection(DEV, idx, IndexOptions())
    assert (again.embedded, again.unchanged, again.total, again.runtime) == (0, N_DEV, N_DEV, {})


def test_indexed_images_find_themselves_first(dev_index: tuple[Path, IndexReport]) -> None:
    path, _ = dev_index
    with ArtIndex(path) as idx:
        with idx.store.session() as s:
            paths = sorted(s.scalars(select(Artwork.path)))
        for rel in random.Random(0).sample(paths, 100):
            result = search(idx, image=DEV / rel, k=3)
            assert result.query["indexed"] and result.hits[0].path == rel


def test_flipped_and_cropped_copies_find_their_original(
    dev_index: tuple[Path, IndexReport], lite0: Extractor, tmp_path: Path
) -> None:
    path, _ = dev_index
    with ArtIndex(path) as idx:
        with idx.store.session() as s:
            paths = sorted(s.scalars(select(Artwork.path)))
        misses = []
        for i, rel in enumerate(random.Random(1).sample(paths, 30)):
            img = Image.open(DEV / rel).convert("RGB")
            w, h = img.size
            variants = {
                "flip": ImageOps.mirror(img),
                "crop": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
            }
            for name, variant in variants.items():
                copy = tmp_path / f"{i}_{name}.png"
                variant.save(copy)
                result = search(idx, image=copy, k=5, make_extractor=lambda _sp: lite0)
                assert not result.query["indexed"]
                if rel not in [hit.path for hit in result.hits]:
                    misses.append((rel, name))
    assert misses == []


def test_bf16_features_stay_faithful_to_fp32(dev_index: tuple[Path, IndexReport]) -> None:
    path, report = dev_index
    if report.runtime.get("precision") != "bf16":
        pytest.skip("this machine indexes in fp32 (no native bf16), so there is nothing to hold")
    with ArtIndex(path) as idx:
        space = idx.space("content")
        vec = idx.vectors(space)
        with idx.store.session() as s:
            rows = s.execute(select(Artwork.path, Embedding.faiss_id).join(Embedding)
                             .order_by(Artwork.path)).all()
    bf16 = np.stack([vec.reconstruct(fid) for _, fid in rows])
    fp32_ex = Extractor(backbones.get("efficientnet-lite0"), precision="fp32")
    fp32 = np.zeros_like(bf16)
    for batch in fp32_ex.iter_files([DEV / rel for rel, _ in rows]):
        fp32[batch.indices] = batch.vectors
    cosine = np.sum(bf16 * fp32, axis=1)
    assert cosine.mean() >= 0.995, cosine.mean()

    def top10(x: np.ndarray) -> np.ndarray:
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :10]

    a, b = top10(bf16), top10(fp32)
    overlap = np.mean([len(set(a[i]) & set(b[i])) / 10 for i in range(len(rows))])
    assert overlap >= 0.9, overlap


def _consistent(index_dir: Path) -> tuple[int, int]:
    with ArtIndex(index_dir) as idx:
        ids = idx.vectors(idx.space("content")).ids().tolist()
        with idx.store.session() as s:
            rows = s.execute(select(Artwork.path, Embedding.faiss_id).join(Embedding)).all()
            artworks = s.scalars(select(Artwork.path)).all()
    assert len(ids) == len(set(ids)), "a vector is in FAISS twice"
    assert sorted(ids) == sorted(fid for _, fid in rows), "FAISS and SQLite disagree"
    assert len(artworks) == len(set(artworks))
    return len(rows), len(artworks)


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_mid_run_then_rerun_is_consistent_and_complete(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    src = sorted(p for p in DEV.rglob("*.jpg"))
    subset = tmp_path / "subset"
    for p in rng.sample(src, 300):
        dest = subset / p.relative_to(DEV)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    index_dir = tmp_path / "idx"
    cmd = [sys.executable, "-m", "artsearch", "index", str(subset), "--index", str(index_dir),
           "--checkpoint", "0.2", "--batch-size", "16", "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    faiss_file = index_dir / "content.faiss"
    deadline = time.monotonic() + 120
    while not faiss_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.6))  # early in embedding, so a faster machine still is mid-run
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial, _ = _consistent_or_repairable(index_dir)
    assert 0 < partial < 300

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _consistent(index_dir) == (300, 300)


def _consistent_or_repairable(index_dir: Path) -> tuple[int, int]:
    """Right after a kill the stores may disagree; count what SQLite holds."""
    with ArtIndex(index_dir) as idx, idx.store.session() as s:
        rows = s.execute(select(Embedding.faiss_id)).all()
        arts = s.scalars(select(Artwork.path)).all()
    return len(rows), len(arts)


def test_dev_clusters_follow_genre_and_the_report_is_complete(
        dev_index: tuple[Path, IndexReport], tmp_path: Path) -> None:
    import json

    from artsearch.cluster import cluster_space
    from artsearch.reports.clusters import cluster_report

    path, _ = dev_index
    with ArtIndex(path) as idx:
        first = cluster_space(idx, k=5, seed=0, restarts=2)
        again = cluster_space(idx, k=5, seed=0, restarts=0)
        summary = cluster_report(idx, first.run_id, tmp_path / "report")
        with idx.store.session() as s:
            from artsearch.index.store import ClusterAssignment
            runs = [sorted(s.execute(select(ClusterAssignment.artwork_id,
                                            ClusterAssignment.cluster)
                                     .where(ClusterAssignment.run_id == r)).all())
                    for r in (first.run_id, again.run_id)]
    assert runs[0] == runs[1]  # the same seed, the same assignments
    assert first.metrics["genre"]["nmi"] > 0.5 and first.metrics["genre"]["ari"] > 0.4
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(data["clusters"]) == 5 and len(data["points"]) == N_DEV
    # 122 dev-set works are public domain; the rest are "unknown (research use only)",
    # whose pictures a report must not carry.
    assert (summary.thumbnails, summary.withheld, summary.unreadable) == (122, N_DEV - 122, [])
    assert data["map"]["method"].startswith("t-SNE")


def test_dev_audit_names_hubs_and_source_coverage(dev_index: tuple[Path, IndexReport]) -> None:
    from artsearch.audit import audit

    path, _ = dev_index
    with ArtIndex(path) as idx:
        result = audit(idx, "content")
    h = result["hubness"]
    assert len(h["top"]) == 10 and h["works"] == N_DEV
    assert h["top"][0]["occurrences"] >= h["top"][-1]["occurrences"] > 10  # above the mean
    sources = {r["value"] for r in result["coverage"]["source"]}
    assert len(sources) == 3
    assert sum(r["works"] for r in result["coverage"]["source"]) == N_DEV
    assert any(line.startswith("By source") for line in result["reading"])


def test_dev_probe_and_one_finetune_epoch(dev_index: tuple[Path, IndexReport],
                                          tmp_path: Path) -> None:
    from artsearch.classify import TrainOptions, load_model, train
    from artsearch.images import decode_image, read_file
    from artsearch.reports.classify import classify_report

    path, _ = dev_index
    genre = {"source": "github.com/dads7202/assignment2"}
    with ArtIndex(path) as idx:
        probe = train(idx, TrainOptions(label="genre", where=genre), tmp_path / "probe.pt")
        classify_report(idx, probe, tmp_path / "probe-report", group_fields=["source"])
        m = probe.metrics
        assert m["test"]["accuracy"] > 0.75 > 3 * m["majority_baseline"]
        # Temperature scaling minimises the validation log-loss (not the ECE, which is only
        # reported): what it guarantees is a finite positive T and a log-loss no higher.
        cal = m["calibration"]
        assert 0 < cal["temperature"] < float("inf")
        assert cal["val_nll_after"] <= cal["val_nll_before"]
        indian = {"source": "github.com/sreenatha123/digital_humanities_project"}
        ft = train(idx, TrainOptions(label="style", where=indian, method="finetune",
                                     epochs=1), tmp_path / "ft.pt")
    assert ft.metrics["finetune"]["freeze_until"] == "stage6"
    assert len(ft.metrics["history"]) == 1 and ft.metrics["test"]["accuracy"] > 0.2
    clf = load_model(tmp_path / "ft.pt")
    test = [DEV / ft.data.paths[i] for i in ft.split["test"][:8]]
    side = clf.spec.preprocess.resize
    probs = clf.probabilities([decode_image(read_file(p), min_side=side)[0] for p in test])
    assert np.allclose(probs, ft.test_probs[:8], atol=2e-3)
