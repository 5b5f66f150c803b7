"""Which descriptor finds what: backbone x layers x pooling on a labelled collection.

For each descriptor, every image of a label group queries the rest of its group:
mAP@10 and precision@1 of same-label retrieval, then k-means (k = number of labels) NMI
against the labels. Groups on the dev set: genre (5 genres, 971 works), WikiArt style
(27 styles, 198) and Indian school (19 schools, 188). Also: extraction images/s per backbone
pass and bytes per vector. Prints a Markdown table, writes JSON and a PNG chart.

Each backbone runs once over the collection with the union of the layers its descriptors
need; the descriptors are pooled from those maps with artsearch's own pooling code (the same
functions `artsearch index` uses, including the gram sketch and its fitted centre).

    python benchmarks/bench_backbones.py [--data ../shared/data/art-dev] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.backbones import BackboneSpec, WeightsSource  # noqa: E402
from artsearch.extract import Extractor  # noqa: E402
from artsearch.images import decode_image, read_file  # noqa: E402
from artsearch.pooling import FIT_SAMPLE, get_pooling, gram_projection  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "art-dev"


@dataclasses.dataclass(frozen=True)
class Descriptor:
    name: str
    backbone: str
    layers: tuple[str, ...]
    pooling: str


DESCRIPTORS = [
    Descriptor("lite0 final avg", "efficientnet-lite0", ("final",), "avg"),
    Descriptor("lite0 final gem", "efficientnet-lite0", ("final",), "gem"),
    Descriptor("lite0 multi-layer avg", "efficientnet-lite0", ("stage4", "stage6", "final"),
               "avg"),
    Descriptor("lite0 early stages meanstd", "efficientnet-lite0",
               ("stage2", "stage3", "stage4", "stage5"), "meanstd"),
    Descriptor("lite0 style meanstd", "efficientnet-lite0", ("stage4", "stage6", "final"),
               "meanstd"),
    Descriptor("lite0 style gram", "efficientnet-lite0", ("stage4", "stage6", "final"),
               "gram"),
    Descriptor("lite2 final avg", "efficientnet-lite2", ("final",), "avg"),
    Descriptor("vgg16-hed conv5_3 avg", "vgg16-hed", ("conv5_3",), "avg"),
    Descriptor("vgg16-hed gram", "vgg16-hed",
               ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"), "gram"),
    Descriptor("vgg16-hed meanstd", "vgg16-hed",
               ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"), "meanstd"),
    Descriptor("random lite0 final avg (floor)", "efficientnet-lite0-random", ("final",), "avg"),
]


def label_groups(data: Path, limit: int | None) -> dict[str, list[tuple[Path, str]]]:
    rows = list(csv.DictReader((data / "metadata.csv").open(encoding="utf-8")))
    groups: dict[str, list[tuple[Path, str]]] = {"genre": [], "wikiart style": [],
                                                 "indian school": []}
    for row in rows:
        path = data / row["path"]
        if row["genre"]:
            groups["genre"].append((path, row["genre"]))
        elif row["path"].startswith("wikiart"):
            groups["wikiart style"].append((path, row["style"]))
        elif row["path"].startswith("indian"):
            groups["indian school"].append((path, row["style"]))
    if limit:
        groups = {g: items[::max(1, len(items) // limit)][:limit] for g, items in groups.items()}
    return groups


# -- metrics --------------------------------------------------------------------------------

def retrieval(vectors: np.ndarray, labels: list[str], k: int = 10) -> tuple[float, float]:
    """mAP@k and precision@1 when each item queries all others (self excluded)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    lab = np.array(labels)
    order = np.argsort(-sims, axis=1)[:, :k]
    rel = lab[order] == lab[:, None]
    positives = np.array([(lab == x).sum() - 1 for x in lab])
    precision_at = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * rel).sum(axis=1) / np.maximum(1, np.minimum(positives, k))
    valid = positives > 0
    return float(ap[valid].mean()), float(rel[valid, 0].mean())


def nmi(a: list[str] | np.ndarray, b: list[str] | np.ndarray) -> float:
    """Normalised mutual information (arithmetic-mean normalisation, as scikit-learn)."""
    _, ai = np.unique(np.asarray(a), return_inverse=True)
    _, bi = np.unique(np.asarray(b), return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1)
    p = joint / joint.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / (pa[:, None] * pb[None, :])[nz])).sum())
    ha = -float((pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hb = -float((pb[pb > 0] * np.log(pb[pb > 0])).sum())
    return 0.0 if ha + hb == 0 else 2 * mi / (ha + hb)


def kmeans_nmi(vectors: np.ndarray, labels: list[str], seeds: int = 3) -> float:
    import faiss

    k = len(set(labels))
    scores = []
    for seed in range(seeds):
        km = faiss.Kmeans(vectors.shape[1], k, niter=25, seed=seed, spherical=True,
                          verbose=False, min_points_per_centroid=1)
        km.train(np.ascontiguousarray(vectors, dtype=np.float32))
        _, assign = km.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        scores.append(nmi(assign[:, 0], labels))
    return float(np.mean(scores))


# -- descriptors ----------------------------------------------------------------------------

def random_lite0() -> BackboneSpec:
    """Lite0's architecture with seeded random weights: what features give with no learning."""
    lite0 = backbones.get("efficientnet-lite0")

    def build(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
        import timm

        from artsearch.backbones._modules import EfficientNetStages

        torch.manual_seed(0)
        return EfficientNetStages(timm.create_model(spec.architecture).eval(), layers).eval()

    return dataclasses.replace(lite0, name="efficientnet-lite0-random",
                               weights=WeightsSource("random init, seed 0"), build=build)


def extract(spec: BackboneSpec, descriptors: list[Descriptor], paths: list[Path]
            ) -> tuple[dict[str, np.ndarray], float]:
    """One pass over `paths`; returns each descriptor's (N, d) unit vectors and images/s."""
    union = tuple(dict.fromkeys(n for d in descriptors for n in d.layers))
    ex = Extractor(spec, layer=union, pooling="avg")
    pos = {n: i for i, n in enumerate(union)}
    params = {d.name: gram_projection([spec.layers[n] for n in d.layers])
              for d in descriptors if d.pooling == "gram"}
    parts: dict[str, list[list[np.ndarray]]] = {d.name: [] for d in descriptors}
    done = 0
    started = time.perf_counter()
    for pixels in ex._pixel_batches(paths):
        fmaps = ex.feature_maps(pixels)
        with torch.inference_mode():
            for d in descriptors:
                pool = get_pooling(d.pooling)
                raw = [pool.pool(fmaps[pos[n]], params.get(d.name, {}), i).cpu().numpy()
                       for i, n in enumerate(d.layers)]
                parts[d.name].append(raw)
        done += len(pixels)
        print(f"\r  {spec.name}: {done}/{len(paths)}", end="", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    if done != len(paths):
        raise SystemExit(f"{spec.name}: only {done} of {len(paths)} images decoded")
    out = {}
    sample = np.arange(len(paths))[:: max(1, len(paths) // FIT_SAMPLE)][:FIT_SAMPLE]
    for d in descriptors:
        layers = [np.concatenate([batch[i] for batch in parts[d.name]])
                  for i in range(len(d.layers))]
        if get_pooling(d.pooling).fitted:  # the centre, learnt as `artsearch index` learns it
            layers = [x - x[sample].mean(0) for x in layers]
        if len(layers) > 1:
            layers = [x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12) for x in layers]
        v = np.concatenate(layers, axis=1)
        out[d.name] = (v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)).astype(
            np.float32)
    return out, len(paths) / seconds


def colour_histograms(paths: list[Path]) -> tuple[np.ndarray, float]:
    """Baseline: a 12 x 4 x 4 HSV histogram of the 128 px picture, square-rooted (Hellinger)."""
    started = time.perf_counter()
    rows = []
    for path in paths:
        img, _ = decode_image(read_file(path), min_side=128)
        img.thumbnail((128, 128), Image.Resampling.BILINEAR)
        hsv = np.asarray(img.convert("HSV"), dtype=np.int32).reshape(-1, 3)
        idx = (hsv[:, 0] * 12 // 256) * 16 + (hsv[:, 1] * 4 // 256) * 4 + hsv[:, 2] * 4 // 256
        hist = np.bincount(idx, minlength=192).astype(np.float32)
        rows.append(np.sqrt(hist / hist.sum()))
    v = np.stack(rows)
    return v / np.linalg.norm(v, axis=1, keepdims=True), len(paths) / (time.perf_counter() -
                                                                        started)


# -- report ---------------------------------------------------------------------------------

def table(results: list[dict[str, Any]], groups: list[str]) -> str:
    head = ["descriptor", "dims", "bytes/vec", "img/s"]
    for g in groups:
        head += [f"{g} mAP@10", f"{g} P@1", f"{g} NMI"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["name"], str(r["dims"]), str(r["bytes_per_vector"]), f"{r['images_per_s']:.1f}"]
        for g in groups:
            m = r["groups"][g]
            cells += [f"{m['map10']:.3f}", f"{m['p1']:.3f}", f"{m['nmi']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results: list[dict[str, Any]], groups: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(groups)
    x = np.arange(len(results))
    for j, g in enumerate(groups):
        ax.bar(x + j * width, [r["groups"][g]["map10"] for r in results], width, label=g)
    ax.set_xticks(x + width * (len(groups) - 1) / 2)
    ax.set_xticklabels([r["name"] for r in results], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("same-label retrieval mAP@10")
    ax.set_title("Descriptors on the dev collection: which finds the same genre, style, school")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None, help="images per group (quick runs)")
    ap.add_argument("--only", default=None, help="comma-separated descriptor names to run")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if not (args.data / "metadata.csv").is_file():
        raise SystemExit(f"{args.data}: no metadata.csv; pass --data DIR of a labelled folder")
    groups = label_groups(args.data, args.limit)
    paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
    row_of = {p: i for i, p in enumerate(paths)}
    wanted = [d for d in DESCRIPTORS
              if not args.only or d.name in {x.strip() for x in args.only.split(",")}]
    specs: dict[str, Callable[[], BackboneSpec]] = {
        "efficientnet-lite0-random": random_lite0}
    vectors: dict[str, np.ndarray] = {}
    speed: dict[str, float] = {}
    for name in dict.fromkeys(d.backbone for d in wanted):
        spec = specs.get(name, lambda name=name: backbones.get(name))()
        mine = [d for d in wanted if d.backbone == name]
        got, ips = extract(spec, mine, paths)
        vectors.update(got)
        speed.update({d.name: ips for d in mine})
    if not args.only or "colour histogram (baseline)" in args.only:
        vectors["colour histogram (baseline)"], speed["colour histogram (baseline)"] = \
            colour_histograms(paths)
    results = []
    for name, v in vectors.items():
        entry: dict[str, Any] = {"name": name, "dims": v.shape[1],
                                 "bytes_per_vector": 4 * v.shape[1],
                                 "images_per_s": speed[name], "groups": {}}
        for g, items in groups.items():
            rows = [row_of[p] for p, _ in items]
            labels = [lab for _, lab in items]
            m, p1 = retrieval(v[rows], labels)
            entry["groups"][g] = {"map10": m, "p1": p1, "nmi": kmeans_nmi(v[rows], labels),
                                  "n": len(rows), "labels": len(set(labels))}
        results.append(entry)
    names = list(groups)
    text = table(results, names)
    print(text)
    report = {"machine": machine(), "data": str(args.data), "limit": args.limit,
              "groups": {g: len(items) for g, items in groups.items()}, "results": results}
    path = write_results("backbones", report, args.out)
    png = path.with_suffix(".png")
    chart(results, names, png)
    print(f"\nwrote {path} and {png}")


if __name__ == "__main__":
    main()
