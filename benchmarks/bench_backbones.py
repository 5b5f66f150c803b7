"""Quality suite: which descriptor (backbone x layers x pooling) finds what, on any labelled
collection (a folder with a metadata.csv).

For each descriptor and label group, every image queries the rest of its group: mAP@10,
precision@1 and recall@10 of same-label retrieval, each with a 95% bootstrap interval over
queries; a linear probe's k-fold accuracy; k-means (k = number of labels) NMI and ARI against
the labels (mean over 3 seeds). Groups default to every label column, split by source; on the
dev set: genre (5 genres, 971 works), WikiArt style (27 styles, 198) and Indian school
(19 schools, 188). Also: extraction images/s per backbone pass and bytes per vector. Prints a
Markdown table, writes JSON, the table as .md, and a PNG chart.

Each backbone runs once over the collection with the union of the layers its descriptors
need; the descriptors are pooled from those maps with artsearch's own pooling code (the same
functions `artsearch index` uses, including the gram sketch and its fitted centre).

    python benchmarks/bench_backbones.py [--data DIR] [--group NAME=COLUMN[@SOURCE]] [--limit N]
        [--normalise none,centre,whiten] [--holdout-classes] [--duplicates N]
    python -m benchmarks run --suite quality    (the same)

--normalise adds a row per fitted normalisation of each descriptor (learnt on the whole
collection, or with --holdout-classes only on the works outside the judged group);
--duplicates N adds N altered copies that query the originals (near-duplicate P@1). Every
row carries a paired bootstrap interval of its mAP@10 against the group's best plain row.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import tempfile
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
from artsearch.metrics import ari, nmi  # noqa: E402
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
    size: int | None = None  # input size (`artsearch index --input-size`); None: default


DESCRIPTORS = [
    Descriptor("lite0 final avg", "efficientnet-lite0", ("final",), "avg"),
    Descriptor("lite0 final cavg", "efficientnet-lite0", ("final",), "cavg"),
    Descriptor("lite0 final gem", "efficientnet-lite0", ("final",), "gem"),
    Descriptor("lite0 final rmac", "efficientnet-lite0", ("final",), "rmac"),
    Descriptor("lite0 multi-layer avg", "efficientnet-lite0", ("stage4", "stage6", "final"),
               "avg"),
    Descriptor("lite0 early stages meanstd", "efficientnet-lite0",
               ("stage2", "stage3", "stage4", "stage5"), "meanstd"),
    Descriptor("lite0 style meanstd", "efficientnet-lite0", ("stage4", "stage6", "final"),
               "meanstd"),
    Descriptor("lite0 style meanstd @320", "efficientnet-lite0",
               ("stage4", "stage6", "final"), "meanstd", 320),
    Descriptor("lite0 final avg @320", "efficientnet-lite0", ("final",), "avg", 320),
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


DEV_GROUPS = ["genre=genre", "wikiart style=style@martigasol",
              "indian school=style@sreenatha"]


def default_groups(rows: list[dict[str, str]]) -> list[str]:
    """Label groups for any collection: each label column, split by source where a column
    is filled by several sources (different taxonomies); the dev set gets readable names."""
    sources = {r.get("source", "") for r in rows}
    if any("martigasol" in x for x in sources) and any("sreenatha" in x for x in sources):
        return DEV_GROUPS
    groups = []
    for column in ("genre", "style", "artist", "school", "period"):
        filled = {r.get("source", "") for r in rows if r.get(column)}
        if len(filled) <= 1:
            groups += [f"{column}={column}"] if filled else []
        else:
            groups += [f"{column} @ {src}={column}@{src}" for src in sorted(filled)]
    return groups


def label_groups(data: Path, limit: int | None, specs: list[str] | None = None
                 ) -> dict[str, list[tuple[Path, str]]]:
    """{group name: [(image, label)]} from `NAME=COLUMN[@SOURCE-SUBSTRING]` specs; labels
    with a single member are dropped (they can be neither retrieved nor probed)."""
    rows = list(csv.DictReader((data / "metadata.csv").open(encoding="utf-8")))
    groups: dict[str, list[tuple[Path, str]]] = {}
    for spec in specs or default_groups(rows):
        name, _, rule = spec.partition("=")
        column, _, source = (rule or name).partition("@")
        items = [(data / r["path"], r[column]) for r in rows
                 if r.get(column) and (not source or source in r.get("source", ""))]
        counts: dict[str, int] = {}
        for _, label in items:
            counts[label] = counts.get(label, 0) + 1
        items = [(p, lab) for p, lab in items if counts[lab] > 1]
        if limit:
            items = items[:: max(1, len(items) // limit)][:limit]
        if len({lab for _, lab in items}) > 1:
            groups[name.strip()] = items
    if not groups:
        raise SystemExit(f"{data}: no label column with two or more classes; "
                         "name one with --group NAME=COLUMN")
    return groups


# -- metrics --------------------------------------------------------------------------------

def retrieval(vectors: np.ndarray, labels: list[str], k: int = 10
              ) -> dict[str, np.ndarray]:
    """Per-query AP@k, P@1 and recall@k when each item queries all others (self excluded)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    lab = np.array(labels)
    order = np.argsort(-sims, axis=1)[:, :k]
    rel = lab[order] == lab[:, None]
    positives = np.array([(lab == x).sum() - 1 for x in lab])
    precision_at = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * rel).sum(axis=1) / np.maximum(1, np.minimum(positives, k))
    valid = positives > 0
    return {"map10": ap[valid], "p1": rel[valid, 0].astype(float),
            "recall10": rel[valid].sum(axis=1) / positives[valid]}


def bootstrap_ci(values: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling queries with replacement."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (reps, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def linear_probe(vectors: np.ndarray, labels: list[str], folds: int = 5, seed: int = 0
                 ) -> list[float]:
    """Accuracy of a multinomial logistic regression per stratified fold (L-BFGS, L2 1e-4)."""
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    folds = max(2, min(folds, int(np.bincount(y).min())))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), int)
    for c in range(len(classes)):  # stratified: deal each class's members round the folds
        members = rng.permutation(np.flatnonzero(y == c))
        fold_of[members] = np.arange(len(members)) % folds
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    target = torch.from_numpy(y)
    scores = []
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        head = _fit_probe(x[train], target[train], len(classes), seed)
        with torch.no_grad():
            scores.append(float((head(x[test]).argmax(1) == target[test]).float().mean()))
    return scores


def _fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-4 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def kmeans_agreement(vectors: np.ndarray, labels: list[str], seeds: int = 3,
                     centre: bool = False) -> dict[str, list[float]]:
    """k-means (k = number of labels, spherical) NMI and ARI against the labels, per seed;
    `centre`: on vectors centred on their mean and re-normalised, by the function
    `artsearch cluster --centre yes` uses."""
    import faiss

    from artsearch.cluster import centred

    k = len(set(labels))
    out: dict[str, list[float]] = {"nmi": [], "ari": []}
    data = np.ascontiguousarray(centred(vectors) if centre else vectors, dtype=np.float32)
    for seed in range(seeds):
        km = faiss.Kmeans(vectors.shape[1], k, niter=25, seed=seed, spherical=True,
                          verbose=False, min_points_per_centroid=1)
        km.train(data)
        _, assign = km.index.search(data, 1)
        out["nmi"].append(nmi(assign[:, 0], labels))
        out["ari"].append(ari(assign[:, 0], labels))
    return out


def centred_on(vectors: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Vectors minus the mean of `fit` (works a normalisation learns from), re-normalised."""
    x = vectors - fit.mean(axis=0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def whitening(fit: np.ndarray, shrink: float = 0.1
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA whitening learnt on `fit`: (mean, axes, scale), y = (x - mean) @ axes / scale, with
    each eigenvalue shrunk towards their mean (scale_i = sqrt(lambda_i + shrink * mean
    lambda)), so directions of almost no variance are not blown up."""
    mean = fit.mean(axis=0, dtype=np.float64)
    x = fit - mean
    values, axes = np.linalg.eigh(x.T @ x / len(x))
    values = values.clip(0)
    return mean, axes, np.sqrt(values + shrink * values.mean())


def whitened(vectors: np.ndarray, fit: np.ndarray, shrink: float = 0.1) -> np.ndarray:
    """`vectors` whitened as learnt on `fit` (see `whitening`), re-normalised."""
    mean, axes, scale = whitening(fit, shrink)
    y = (vectors - mean) @ axes / scale
    return (y / np.linalg.norm(y, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def paired_difference(a: np.ndarray, b: np.ndarray, reps: int = 1000, seed: int = 0
                      ) -> tuple[float, tuple[float, float]]:
    """Mean of a - b over the same queries, and its 95% paired bootstrap interval: two
    descriptors differ where the interval excludes 0."""
    d = a - b
    return float(d.mean()), bootstrap_ci(d, reps, seed)


# -- descriptors ----------------------------------------------------------------------------

def random_lite0() -> BackboneSpec:
    """Lite0's architecture with seeded random weights: what features give with no learning."""
    lite0 = backbones.get("efficientnet-lite0")

    def build(spec: BackboneSpec, layers: tuple[str, ...]) -> torch.nn.Module:
        import timm

        from artsearch.backbones.taps import EfficientNetStages

        torch.manual_seed(0)
        return EfficientNetStages(timm.create_model(spec.architecture).eval(), layers).eval()

    return dataclasses.replace(lite0, name="efficientnet-lite0-random",
                               weights=WeightsSource("random init, seed 0"), build=build)


def extract(spec: BackboneSpec, descriptors: list[Descriptor], paths: list[Path],
            fit_n: int | None = None) -> tuple[dict[str, np.ndarray], float]:
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
    fit_n = fit_n or len(paths)  # a fitted pooling learns its centre from these first rows
    sample = np.arange(fit_n)[:: max(1, fit_n // FIT_SAMPLE)][:FIT_SAMPLE]
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


def evaluate(v: np.ndarray, variant: str, groups: dict[str, list[tuple[Path, str]]],
             row_of: dict[Path, int], *, probe: bool, holdout: bool,
             kept: dict[tuple[str, str], np.ndarray], label: str) -> dict[str, Any]:
    """One descriptor (after an optional fitted normalisation) on every label group.

    A normalisation is learnt on the whole collection, as `artsearch index` would learn it
    (no labels are used); with `holdout`, on the works outside the group being judged only
    (another source, other classes), so what it learnt cannot come from the judged classes.
    """
    entry: dict[str, Any] = {"groups": {}}
    everything = np.arange(len(v))
    for g, items in groups.items():
        rows = np.array([row_of[p] for p, _ in items])
        labels = [lab for _, lab in items]
        fit = np.setdiff1d(everything, rows) if holdout else everything
        x = (v if variant == "none" else centred_on(v, v[fit]) if variant == "centre"
             else whitened(v, v[fit]))[rows]
        queries = retrieval(x, labels)
        kept[(label, g)] = queries["map10"]
        m: dict[str, Any] = {"n": len(rows), "labels": len(set(labels))}
        for metric, values in queries.items():
            m[metric] = float(values.mean())
            m[f"{metric}_ci95"] = bootstrap_ci(values)
        for centre in (False, True):
            agreement = kmeans_agreement(x, labels, centre=centre)
            for metric, values in agreement.items():
                key = metric + ("_centred" if centre else "")
                m[key], m[f"{key}_sd"] = float(np.mean(values)), float(np.std(values))
        if probe:
            acc = linear_probe(x, labels)
            m["probe_acc"], m["probe_acc_sd"] = float(np.mean(acc)), float(np.std(acc))
            m["probe_folds"] = len(acc)
        entry["groups"][g] = m
    return entry


def compare(results: list[dict[str, Any]], per_query: dict[tuple[str, str], np.ndarray]
            ) -> None:
    """Per group: each row's mAP@10 minus that of the best plain descriptor (today's best),
    with a paired bootstrap interval over the same queries."""
    plain = [r for r in results if r["normalise"] == "none"]
    for g in results[0]["groups"]:
        best = max(plain, key=lambda r: r["groups"][g]["map10"])["name"]
        for r in results:
            d, ci = paired_difference(per_query[(r["name"], g)], per_query[(best, g)])
            r["groups"][g]["vs_best"] = {"best": best, "map10_diff": d, "ci95": ci}


def copy_retrieval(v: np.ndarray, originals: int) -> dict[str, float]:
    """Near-duplicate search: rows after `originals` are altered copies (see `derivatives`)
    of rows copy_sources(originals, copies); each queries the originals. P@1 and mean rank
    of its own."""
    base, copies = v[:originals], v[originals:]
    sims = copies @ base.T
    own = sims[np.arange(len(copies)), copy_sources(originals, len(copies))]
    rank = 1 + (sims > own[:, None]).sum(axis=1)
    return {"copies": len(copies), "p1": float((rank == 1).mean()),
            "mean_rank": float(rank.mean())}


def copy_sources(originals: int, n: int) -> np.ndarray:
    """The rows `derivatives` copies: every originals/n-th."""
    return np.arange(originals)[:: max(1, originals // n)][:n]


def derivatives(paths: list[Path], n: int, out: Path, seed: int = 0) -> list[Path]:
    """Altered copies of every len(paths)/n-th work: a random 50-80% crop, half of them
    mirrored, re-encoded as JPEG quality 40-80, saturation x0.7-1.3."""
    from PIL import ImageEnhance, ImageOps

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i, path in enumerate(paths[j] for j in copy_sources(len(paths), n)):
        img, _ = decode_image(read_file(path), min_side=64)
        w, h = img.size
        share = rng.uniform(0.5, 0.8)
        cw, ch = int(w * share), int(h * share)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.crop((left, top, left + cw, top + ch))
        if i % 2:
            img = ImageOps.mirror(img)
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3))
        target = out / f"copy-{i:04d}.jpg"
        img.save(target, quality=int(rng.integers(40, 81)))
        made.append(target)
    return made


# -- report ---------------------------------------------------------------------------------

def table(results: list[dict[str, Any]], groups: list[str]) -> str:
    """One row per descriptor and group: the mean, and the 95% bootstrap interval."""
    head = ["descriptor", "dims", "img/s", "group", "mAP@10 [95% CI]",
            "vs best plain [95% CI]", "P@1 [95% CI]", "probe acc (k-fold)", "k-means NMI",
            "NMI centred", "ARI", "copies P@1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for g in groups:
            m = r["groups"][g]
            probe = (f"{m['probe_acc']:.3f} ± {m['probe_acc_sd']:.3f}" if "probe_acc" in m
                     else "-")
            vs = m.get("vs_best") or {}
            diff = (f"{vs['map10_diff']:+.3f} [{vs['ci95'][0]:+.3f}, {vs['ci95'][1]:+.3f}]"
                    if vs and vs["best"] != r["name"] else "(best)" if vs else "-")
            copies = r.get("copies")
            lines.append("| " + " | ".join([
                r["name"], str(r["dims"]), f"{r['images_per_s']:.1f}", g,
                f"{m['map10']:.3f} [{m['map10_ci95'][0]:.3f}, {m['map10_ci95'][1]:.3f}]",
                diff, f"{m['p1']:.3f} [{m['p1_ci95'][0]:.3f}, {m['p1_ci95'][1]:.3f}]",
                probe, f"{m['nmi']:.3f} ± {m['nmi_sd']:.3f}",
                f"{m['nmi_centred']:.3f} ± {m['nmi_centred_sd']:.3f}", f"{m['ari']:.3f}",
                f"{copies['p1']:.3f}" if copies else "-"]) + " |")
    return "\n".join(lines)


def chart(results: list[dict[str, Any]], groups: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    width = 0.8 / len(groups)
    x = np.arange(len(results))
    for j, g in enumerate(groups):
        means = np.array([r["groups"][g]["map10"] for r in results])
        ci = np.array([r["groups"][g]["map10_ci95"] for r in results]).T
        ax.bar(x + j * width, means, width, label=g,
               yerr=np.abs(ci - means), capsize=2, error_kw={"linewidth": 0.8})
    ax.set_xticks(x + width * (len(groups) - 1) / 2)
    ax.set_xticklabels([r["name"] for r in results], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("same-label retrieval mAP@10 (95% bootstrap CI)")
    ax.set_title("Descriptors on the dev collection: which finds the same genre, style, school")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None, help="images per group (quick runs)")
    ap.add_argument("--only", default=None, help="comma-separated descriptor names to run")
    ap.add_argument("--group", action="append", metavar="NAME=COLUMN[@SOURCE]",
                    help="a label group (repeat); default: every label column, split by source")
    ap.add_argument("--no-probe", action="store_true", help="skip the k-fold linear probe")
    ap.add_argument("--normalise", default="none", metavar="LIST",
                    help="comma-separated: none, centre, whiten (fitted normalisations, each "
                         "a row per descriptor)")
    ap.add_argument("--holdout-classes", action="store_true",
                    help="fit normalisations only on works outside the group being judged")
    ap.add_argument("--duplicates", type=int, default=0, metavar="N",
                    help="also: N altered copies (crop, mirror, JPEG, colour) query the "
                         "originals; P@1 and mean rank per descriptor")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if not (args.data / "metadata.csv").is_file():
        raise SystemExit(f"{args.data}: no metadata.csv; pass --data DIR of a labelled folder")
    groups = label_groups(args.data, args.limit, args.group)
    paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
    scratch = tempfile.TemporaryDirectory()
    copies = derivatives(paths, args.duplicates, Path(scratch.name)) if args.duplicates else []
    row_of = {p: i for i, p in enumerate(paths)}
    wanted = [d for d in DESCRIPTORS
              if not args.only or d.name in {x.strip() for x in args.only.split(",")}]
    specs: dict[str, Callable[[], BackboneSpec]] = {
        "efficientnet-lite0-random": random_lite0}
    vectors: dict[str, np.ndarray] = {}
    speed: dict[str, float] = {}
    for name, size in dict.fromkeys((d.backbone, d.size) for d in wanted):
        spec = specs.get(name, lambda name=name: backbones.get(name))()
        spec = spec.at_size(size) if size else spec
        mine = [d for d in wanted if (d.backbone, d.size) == (name, size)]
        got, ips = extract(spec, mine, paths + copies, len(paths))
        vectors.update(got)
        speed.update({d.name: ips for d in mine})
    if not args.only or "colour histogram (baseline)" in args.only:
        vectors["colour histogram (baseline)"], speed["colour histogram (baseline)"] = \
            colour_histograms(paths + copies)
    variants = [x.strip() for x in args.normalise.split(",") if x.strip()]
    results = []
    per_query: dict[tuple[str, str], np.ndarray] = {}
    for name, v in vectors.items():
        for variant in variants:
            label = name if variant == "none" else f"{name} +{variant}"
            entry = evaluate(v[:len(paths)], variant, groups, row_of, probe=not args.no_probe,
                             holdout=args.holdout_classes, kept=per_query, label=label)
            entry |= {"name": label, "dims": v.shape[1], "bytes_per_vector": 4 * v.shape[1],
                      "images_per_s": speed[name], "normalise": variant}
            if args.duplicates and variant == "none":
                entry["copies"] = copy_retrieval(v, len(paths))
            results.append(entry)
    compare(results, per_query)
    names = list(groups)
    text = table(results, names)
    print(text)
    report = {"machine": machine(), "data": str(args.data), "limit": args.limit,
              "normalise": variants, "holdout_classes": args.holdout_classes,
              "duplicates": len(copies),
              "groups": {g: len(items) for g, items in groups.items()}, "results": results}
    path = write_results("quality", report, args.out)
    path.with_suffix(".md").write_text(text + "\n")
    png = path.with_suffix(".png")
    chart(results, names, png)
    print(f"\nwrote {path}, {path.with_suffix('.md').name} and {png.name}")
    return report


if __name__ == "__main__":
    main()
