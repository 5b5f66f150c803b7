"""Frames, borders and versions: different paintings that share a frame must be no pair, and
two versions of one composition are `related`, never a crop or a copy (issue 24).

    python benchmarks/bench_frames.py [--pairs 30] [--data DIR]

From the dev set (seeded): N pairs of different paintings, each pair put inside one
ornamented frame (a band of 11 % of the side cut from a third, busy painting — the same
frame for both) and, separately, inside one painted border (a 5 % band of a fourth
painting); as controls, each framed painting against itself re-encoded (90 % size, JPEG
q70), which must stay a pair. Versions: each first painting against its composition painted
again (`duplicates.fit.another_version`: motifs moved a few pixels by a smooth warp, then
repainted by the fast style network in the manner of the pair's fourth painting), and, as a
harder case, repainted with no warp at all (every edge where it was). Each pair goes
through `duplicates`' own verification (features, geometry, classify with the shipped
thresholds, and the pair's real cosine in the Lite0 content space). Reported: false pairs
among the frame and border negatives, the versions' types, the controls' recall, and the
share of shared keypoints that agree (`density`) for versions and for one derivative of each
first painting (the derivations in turn), against `duplicates.MIN_DENSITY`.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "art-dev"


def surround(painting: Any, surround_with: Any, band: float, side: int = 420) -> Any:
    """`painting` inside a band of `band` x side cut from `surround_with`."""
    out = surround_with.resize((side, side)).copy()
    width = int(side * band)
    out.paste(painting.resize((side - 2 * width, side - 2 * width)), (width, width))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    from PIL import Image

    from artsearch import backbones
    from artsearch.duplicates.find import MIN_DENSITY, Thresholds, classify, features, geometry
    from artsearch.duplicates.fit import DERIVATIONS, another_version, derive
    from artsearch.extract import Extractor
    from artsearch.stylize import stylize_fast

    with open(args.data / "metadata.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(5)
    chosen = rng.choice(len(rows), 4 * args.pairs, replace=False).tolist()

    def load(i: int) -> Any:
        with Image.open(args.data / rows[i]["path"]) as im:
            return im.convert("RGB")

    ex = Extractor(backbones.get("efficientnet-lite0"), precision="fp32", num_workers=0)
    t = Thresholds()
    results: dict[str, Counter[str]] = {"frame": Counter(), "border": Counter(),
                                        "control": Counter(), "version": Counter(),
                                        "repainted, unmoved": Counter()}
    warp = np.random.default_rng(6)
    # The share of shared keypoints that agree (Geometry.density), per kind of pair: what
    # MIN_DENSITY separates. Each first painting also gives one derivative (in turn).
    density: dict[str, list[float]] = {}
    for n in range(args.pairs):
        a, b, frame, border = (load(i) for i in chosen[4 * n:4 * n + 4])
        for kind, band, around in (("frame", 0.11, frame), ("border", 0.05, border)):
            x, y = surround(a, around, band), surround(b, around, band)
            vx, vy = ex.embed_images([x, y])
            g = geometry(features(x), features(y))
            results[kind][classify(g, float(vx @ vy), t) or "none"] += 1
        fa = features(a)
        for kind, other in (("version", another_version(a, border, warp)),
                            ("repainted, unmoved", stylize_fast(a, border,
                                                                size=max(a.size)).image)):
            va, vo = ex.embed_images([a, other])
            g = geometry(fa, features(other))
            results[kind][classify(g, float(va @ vo), t) or "none"] += 1
            if g.inliers >= t.min_inliers:
                density.setdefault(kind, []).append(g.density)
        how = DERIVATIONS[1 + n % (len(DERIVATIONS) - 1)]  # not "exact": no geometry
        g = geometry(fa, features(derive(a, how, warp)[0]))
        if g.inliers >= t.min_inliers:
            density.setdefault(f"derivative: {how}", []).append(g.density)
        x = surround(a, frame, 0.11)
        buf = io.BytesIO()
        x.resize((378, 378)).save(buf, "JPEG", quality=70)
        y = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        vx, vy = ex.embed_images([x, y])
        results["control"][classify(geometry(features(x), features(y)), float(vx @ vy), t)
                           or "none"] += 1
    out = {"machine": machine(), "pairs": args.pairs,
           "results": {k: dict(v) for k, v in results.items()},
           "false_pairs": {k: args.pairs - results[k]["none"] for k in ("frame", "border")},
           "control_recall": results["control"]["re-encoded"] / args.pairs,
           "versions_typed_as_copies": {k: sum(v for t, v in results[k].items()
                                              if t not in ("related", "none"))
                                        for k in ("version", "repainted, unmoved")},
           "density": {k: {"n": len(v), "min": round(min(v), 3), "max": round(max(v), 3),
                           "under_min_density": sum(x < MIN_DENSITY for x in v)}
                       for k, v in sorted(density.items())}}
    path = write_results("frames", out, args.out)
    print(f"frame negatives: {dict(results['frame'])}; border negatives: "
          f"{dict(results['border'])}; controls: {dict(results['control'])}; versions: "
          f"{dict(results['version'])}; repainted unmoved: "
          f"{dict(results['repainted, unmoved'])} -> {path}")
    for kind, row in out["density"].items():  # type: ignore[union-attr]
        print(f"  density {kind:<26} n={row['n']:>2}  {row['min']:.3f}-{row['max']:.3f}  "
              f"under {MIN_DENSITY}: {row['under_min_density']}")
    return out


if __name__ == "__main__":
    main()
