"""Local features for `artsearch duplicates`: RootSIFT against ORB (issue 24; AKAZE is not in
the main modules of OpenCV 5, which opencv-python ships, so it is not measured).

    python benchmarks/bench_features.py [--works 180] [--data DIR]

N dev-set works (seeded) each get one derivative, the derivations of `duplicates.fit` in
turn (exact pixels, JPEG, resize, colour, rotation, halftone, mirror, crop, detail), and
each is paired with its nearest other work in the Lite0 content space (the hard negative
`duplicates --calibrate` uses). For each detector: seconds of features per picture (the
picture and its mirror image), seconds per pair verified, descriptor bytes per picture, and
precision and recall per type with thresholds fitted on one half of the examples and judged
on the other (`calibrate`, `split_halves`), so each detector gets the thresholds that suit
it. Same examples, same pictures, for every detector.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "art-dev"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--works", type=int, default=180)
    ap.add_argument("--detectors", nargs="+", default=["rootsift", "orb"])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    from PIL import Image

    from artsearch.duplicates.find import classify, features, geometry, shortlist
    from artsearch.duplicates.fit import (
        DERIVATIONS,
        Example,
        calibrate,
        derive,
        scores,
        split_halves,
    )
    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import artworks
    from artsearch.indexer import IndexOptions, index_collection

    with open(args.data / "metadata.csv", encoding="utf-8") as f:
        n_rows = sum(1 for _ in csv.DictReader(f))
    with (tempfile.TemporaryDirectory(prefix="artsearch-features-") as tmp,
          ArtIndex(Path(tmp) / "idx", create=True) as idx):
        index_collection(args.data, idx, IndexOptions(progress=False))
        arts = {a.id: a for a in artworks(idx)}
        nearest: dict[int, tuple[int, float]] = {}
        for a, b, s in shortlist(idx, "content", -1.0, 5):
            if arts[a].sha256 != arts[b].sha256:
                for x, y in ((a, b), (b, a)):
                    if x not in nearest or s > nearest[x][1]:
                        nearest[x] = (y, s)
    rng = np.random.default_rng(3)
    chosen = sorted(rng.choice(sorted(arts), min(args.works, len(arts)), replace=False).tolist())

    def load(art_id: int) -> Any:
        with Image.open(args.data / arts[art_id].path) as im:
            return im.convert("RGB")

    originals = {i: load(i) for i in chosen}
    others = {nearest[i][0]: load(nearest[i][0]) for i in chosen if i in nearest}
    copies = []
    for n, i in enumerate(chosen):
        how = DERIVATIONS[n % len(DERIVATIONS)]
        copy, truth = derive(originals[i], how, rng)
        copies.append((i, copy, truth, how))

    results: dict[str, Any] = {}
    for name in args.detectors:
        pictures = {**originals, **others}
        t = time.perf_counter()
        feats = {i: features(img, name) for i, img in pictures.items()}
        copy_feats = [features(c, name) for _, c, _, _ in copies]
        feat_s = (time.perf_counter() - t) / (len(pictures) + len(copies))
        size = np.mean([f.descriptors.nbytes + (f.mirrored_descriptors.nbytes if
                                                f.mirrored_descriptors is not None else 0)
                        for f in feats.values() if f.descriptors is not None])
        t = time.perf_counter()
        examples = []
        for (i, _, truth, how), fc in zip(copies, copy_feats, strict=True):
            examples.append(Example(geometry(feats[i], fc), 1.0, truth, how))
            if i in nearest:
                j, cos = nearest[i]
                examples.append(Example(geometry(feats[i], feats[j]), cos, None, "negative"))
        pair_s = (time.perf_counter() - t) / len(examples)
        fit, held = split_halves(examples)
        fitted = calibrate(fit)
        table = scores(held, fitted)
        by_how = {how: round(float(np.mean([
            (e.truth or "none") == (classify(e.geometry, e.cosine, fitted) or "none")
            for e in held if e.how == how])), 3)
            for how in (*DERIVATIONS, "negative") if any(e.how == how for e in held)}
        results[name] = {"feature_s_per_picture": round(feat_s, 4),
                         "verify_s_per_pair": round(pair_s, 4),
                         "descriptor_bytes_per_picture": int(size),
                         "thresholds": asdict(fitted), "held_out": table,
                         "held_out_right_by_derivation": by_how}
        print(f"{name}: {feat_s * 1000:.0f} ms a picture, {pair_s * 1000:.1f} ms a pair, "
              f"{size / 1024:.0f} KiB of descriptors a picture", flush=True)
        for kind, row in table.items():
            print(f"  {kind:<11} pairs {row['pairs']:>3}  precision "
                  f"{_f(row['precision'])}  recall {_f(row['recall'])}", flush=True)
    out = {"machine": machine(), "works": len(chosen), "dev_set_works": n_rows,
           "results": results}
    path = write_results("features", out, args.out)
    print(f"results: {path}")
    return out


def _f(v: float | None) -> str:
    return "  –  " if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
