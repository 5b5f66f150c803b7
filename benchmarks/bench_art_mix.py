"""The art spaces as the product builds them, judged on the dev set: the untuned style space
(efficientnet-lite0 meanstd), `lite0-art` and `lite0-art-mix` (issue 32, item 5's rule).

Each space's vectors come from the product's own Extractor (the vectors `artsearch index`
stores). Per dev-set group (genre, WikiArt style, Indian school): mAP@10 with a paired
bootstrap 95 % interval against the untuned space; spherical k-means NMI with k = the number
of labels over --seeds seeds, plain and centred (as `cluster --centre yes`), with the mean
per-seed difference and its 95 % interval (t, over seeds); a 5-fold linear probe. WikiArt
style is also split into the styles lite0-art was taught (art-train's 11) and the rest.
Then the cost: milliseconds a picture to embed (decode included, one process, paired rounds
over the same pictures) and bytes per vector.

    python benchmarks/bench_art_mix.py [--seeds 10] [--timing 200]
    python benchmarks/bench_art_mix.py --timing 0 --shares M=0.7,0.7,0.7,0.3,0.3

`--crossfit` asks whether choosing shares would hold on works it did not look at: each group's
works are split in two halves (seeded); on one half the shares of a fixed grid (GRID) are
chosen (the highest sum of mAP@10 changes among those that lose no mAP@10 and no genre NMI
there), and judged on the other half against the untuned space; then the halves swap.

`--shares NAME=S4,S6,F,T6,TF` adds a space made from the untuned and lite0-art vectors with
those shares of stage4, stage6, final, tuned stage6 and tuned final (lite0-art-mix is
1,0.7,0.7,0.3,0.3). Shares chosen by looking at these dev figures are chosen on the set that
judges them: report them as exploration, never ship them on that evidence.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.extract import Extractor  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402
from benchmarks.bench_backbones import (  # noqa: E402
    DEFAULT_DATA,
    HERE,
    kmeans_agreement,
    label_groups,
    linear_probe,
    paired_difference,
    retrieval,
)
from benchmarks.train_art_head import embed as embed_with  # noqa: E402
from benchmarks.train_art_head import style_key

SPACES = ("efficientnet-lite0", "lite0-art", "lite0-art-mix")
PART_DIMS = (160, 384, 2560)  # Lite0 meanstd of stage4, stage6, final
ART_TRAIN = HERE.parents[1] / "shared" / "data" / "art-train"  # its 11 style folders


def taught_styles() -> set[str]:
    """The styles lite0-art was taught: art-train's folder names."""
    return {p.name for p in ART_TRAIN.iterdir() if p.is_dir()} if ART_TRAIN.is_dir() else set()


def extractor(name: str) -> Extractor:
    spec = backbones.get(name)
    return Extractor(spec, layer=spec.style_layers, pooling="meanstd", precision="fp32",
                     num_workers=0)


def embed(name: str, paths: list[Path]) -> np.ndarray:
    spec = backbones.get(name)
    return embed_with(spec, paths, "meanstd", spec.style_layers)


def seconds_a_picture(paths: list[Path], rounds: int = 2) -> dict[str, float]:
    """Each space's embedding time a picture, rounds interleaved so load hits all alike."""
    ex = {name: extractor(name) for name in SPACES}
    for e in ex.values():
        e.fit(paths[:8])
        list(e.iter_files(paths[:4]))  # built and warm
    spent = dict.fromkeys(SPACES, 0.0)
    for _ in range(rounds):
        for name, e in ex.items():
            started = time.perf_counter()
            for _batch in e.iter_files(paths):
                pass
            spent[name] += time.perf_counter() - started
    return {name: s / (rounds * len(paths)) for name, s in spent.items()}


def nmi_change(a: list[float], b: list[float]) -> tuple[float, tuple[float, float]]:
    d = np.asarray(a) - np.asarray(b)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return float(d.mean()), (float(d.mean() - half), float(d.mean() + half))


def judge(vectors: dict[str, np.ndarray], groups: dict[str, list[tuple[Path, str]]],
          row: dict[Path, int], seeds: int) -> list[dict[str, Any]]:
    rows = []
    for g, items in groups.items():
        idx = np.array([row[p] for p, _ in items])
        labels = [lab for _, lab in items]
        per = {}
        for name, v in vectors.items():
            per[name] = {"ap": retrieval(v[idx], labels)["map10"],
                         "nmi": kmeans_agreement(v[idx], labels, seeds)["nmi"],
                         "nmi_centred": kmeans_agreement(v[idx], labels, seeds,
                                                         centre=True)["nmi"],
                         "probe": float(np.mean(linear_probe(v[idx], labels)))}
        base = per[next(iter(vectors))]
        subsets = {"": np.ones(len(labels), bool)}
        styles = taught_styles() if "style" in g and "wikiart" in g else set()
        if styles:
            taught = np.array([style_key(x) in styles for x in labels])
            subsets.update({": taught styles": taught, ": styles not taught": ~taught})
        for name in vectors:
            m = per[name]
            for suffix, mask in subsets.items():
                d, ci = paired_difference(m["ap"][mask], base["ap"][mask])
                rec: dict[str, Any] = {"space": name, "group": g + suffix,
                                       "works": int(mask.sum()),
                                       "map10": float(m["ap"][mask].mean()),
                                       "change": d, "ci95": ci}
                if not suffix:
                    for key in ("nmi", "nmi_centred"):
                        change, interval = nmi_change(m[key], base[key])
                        rec |= {key: float(np.mean(m[key])), f"{key}_change": change,
                                f"{key}_ci95": interval}
                    rec |= {"probe": m["probe"], "probe_change": m["probe"] - base["probe"]}
                rows.append(rec)
    return rows


def shared(untuned: np.ndarray, tuned: np.ndarray, shares: list[float]) -> np.ndarray:
    """A space of the five layer parts (untuned stage4, stage6, final; tuned stage6, final)
    with the given shares of the cosine."""
    def parts(v: np.ndarray) -> list[np.ndarray]:
        edges = np.cumsum((0, *PART_DIMS))
        out = [v[:, a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
        return [p / np.linalg.norm(p, axis=1, keepdims=True).clip(1e-12) for p in out]

    u, t = parts(untuned), parts(tuned)
    v = np.hstack([np.sqrt(s) * x for s, x in zip(shares, [*u, t[1], t[2]], strict=True)])
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


GRID = [(s4, 1 - t6, 1 - tf, t6, tf) for s4 in (0.5, 0.7, 1.0) for t6 in (0.0, 0.3)
        for tf in (0.0, 0.3, 0.5)]


def measures(v: np.ndarray, base: np.ndarray, labels: list[str], seeds: int,
             probe: bool = False) -> dict[str, Any]:
    """One group's changes against `base` on the same works."""
    d, ci = paired_difference(retrieval(v, labels)["map10"], retrieval(base, labels)["map10"])
    n, nci = nmi_change(kmeans_agreement(v, labels, seeds)["nmi"],
                        kmeans_agreement(base, labels, seeds)["nmi"])
    out = {"map10_change": d, "map10_ci95": ci, "nmi_change": n, "nmi_ci95": nci}
    if probe:
        out["probe_change"] = float(np.mean(linear_probe(v, labels))
                                    - np.mean(linear_probe(base, labels)))
    return out


def crossfit(vectors: dict[str, np.ndarray], groups: dict[str, list[tuple[Path, str]]],
             row: dict[Path, int], seeds: int, seed: int = 0) -> list[dict[str, Any]]:
    """Shares chosen on one half of each group's works, judged on the other, both ways."""
    rng = np.random.default_rng(seed)
    halves: dict[str, list[np.ndarray]] = {}
    for g, items in groups.items():
        order = rng.permutation(len(items))
        halves[g] = [np.sort(order[: len(items) // 2]), np.sort(order[len(items) // 2:])]
    untuned, tuned = vectors["efficientnet-lite0"], vectors["lite0-art"]
    spaces = {shares: shared(untuned, tuned, list(shares)) for shares in GRID}
    folds = []
    for choose_on, judge_on in ((0, 1), (1, 0)):
        scored = []
        for shares, v in spaces.items():
            m = {}
            for g, items in groups.items():
                pick = halves[g][choose_on]
                idx = np.array([row[items[i][0]] for i in pick])
                labels = [items[i][1] for i in pick]
                m[g] = measures(v[idx], untuned[idx], labels, seeds)
            keeps = all(x["map10_change"] >= 0 for x in m.values()) and all(
                x["nmi_change"] >= 0 for g, x in m.items() if "genre" in g)
            scored.append((keeps, sum(x["map10_change"] for x in m.values()), shares))
        keeps, _, best = max(scored)
        judged = {}
        for g, items in groups.items():
            pick = halves[g][judge_on]
            idx = np.array([row[items[i][0]] for i in pick])
            labels = [items[i][1] for i in pick]
            judged[g] = measures(spaces[best][idx], untuned[idx], labels, seeds, probe=True)
        folds.append({"chosen_on_half": choose_on, "shares": list(best),
                      "kept_everything_where_chosen": keeps, "judged": judged})
        print(f"chosen on half {choose_on}: shares {best} (kept all there: {keeps}); on the "
              "other half:", flush=True)
        for g, x in judged.items():
            print(f"  {g}: mAP@10 {x['map10_change']:+.3f} [{x['map10_ci95'][0]:+.3f}, "
                  f"{x['map10_ci95'][1]:+.3f}], NMI {x['nmi_change']:+.3f} "
                  f"[{x['nmi_ci95'][0]:+.3f}, {x['nmi_ci95'][1]:+.3f}], probe "
                  f"{x['probe_change']:+.3f}", flush=True)
    return folds


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| space | group | works | mAP@10 (change [95 %]) | NMI (change [95 %]) | "
           "NMI centred | probe |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ap = f"{r['map10']:.3f} ({r['change']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}])"
        nmi = cen = probe = ""
        if "nmi" in r:
            lo, hi = r["nmi_ci95"]
            nmi = f"{r['nmi']:.3f} ({r['nmi_change']:+.3f} [{lo:+.3f}, {hi:+.3f}])"
            cen = f"{r['nmi_centred']:.3f} ({r['nmi_centred_change']:+.3f})"
            probe = f"{r['probe']:.3f} ({r['probe_change']:+.3f})"
        out.append(f"| {r['space']} | {r['group']} | {r['works']} | {ap} | {nmi} | {cen} | "
                   f"{probe} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, default=10, help="k-means seeds per group")
    ap.add_argument("--timing", type=int, default=200, metavar="N",
                    help="pictures timed per space (0: no timing)")
    ap.add_argument("--shares", action="append", default=[], metavar="NAME=S4,S6,F,T6,TF",
                    help="add a space with these layer shares (exploration; see above)")
    ap.add_argument("--crossfit", action="store_true",
                    help="choose shares on half the works, judge on the other half")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    groups = label_groups(args.data, None, None)
    paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
    row = {p: i for i, p in enumerate(paths)}
    started = time.perf_counter()
    vectors = {name: embed(name, paths) for name in SPACES}
    print(f"embedded {len(paths)} pictures in 3 spaces: {time.perf_counter() - started:.0f} s",
          flush=True)
    for text in args.shares:
        name, _, values = text.partition("=")
        vectors[f"shares {name}"] = shared(vectors["efficientnet-lite0"],
                                           vectors["lite0-art"],
                                           [float(x) for x in values.split(",")])
    if args.crossfit:
        folds = crossfit(vectors, groups, row, args.seeds)
        print(write_results("art-mix-crossfit", {"machine": machine(), "seeds": args.seeds,
                                                 "grid": GRID, "folds": folds}, args.out))
        return {"folds": folds}
    rows = judge(vectors, groups, row, args.seeds)
    print(table(rows))
    results: dict[str, Any] = {"machine": machine(), "works": len(paths), "seeds": args.seeds,
                               "rows": rows,
                               "bytes_per_vector": {n: int(v.shape[1] * 4)
                                                    for n, v in vectors.items()}}
    if args.timing:
        step = max(1, len(paths) // args.timing)
        ms = seconds_a_picture(paths[::step][: args.timing])
        results["ms_a_picture"] = {n: 1000 * s for n, s in ms.items()}
        for n in SPACES:
            print(f"{n}: {1000 * ms[n]:.1f} ms a picture, "
                  f"{results['bytes_per_vector'][n]:,} B a vector")
    print(write_results("art-mix-shares" if args.shares else "art-mix", results, args.out))
    return results


if __name__ == "__main__":
    main()
