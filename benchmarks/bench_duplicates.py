"""Typed near-duplicates on the dev set: precision and recall per type, end to end.

Derivatives of N dev-set works (exact copies, JPEG, resize, colour shift, small rotation,
halftone, mirror, crops of 20-80 % of the area, details of 4-12 % enlarged; one derivation
per work, in turn) are added to the whole dev set and indexed with the product's own
`artsearch index --regions` code; `artsearch duplicates` (find_duplicates, shortlist k=10,
with and without the region index's candidates) then runs over the whole index. Each
derivative's pair with its original must come out with its type; each chosen work's
nearest *other* dev-set work of the same catalogue group (the hardest negative the dev set
has: it holds too few artists for same-artist pairs) must not come out as a duplicate, nor
may any derivative pair with a work it was not made from.

Thresholds: fitted by `calibrate_index` on an index of the dev set alone (derivatives of 200
other random works, made with another seed), exactly as `artsearch duplicates --calibrate
200` does; the built-in defaults are scored too.

    python benchmarks/bench_duplicates.py [--works 270] [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch.duplicates.find import TYPES, Thresholds, find_duplicates, shortlist  # noqa: E402
from artsearch.duplicates.fit import DERIVATIONS, calibrate_index, derive  # noqa: E402
from artsearch.index import ArtIndex  # noqa: E402
from artsearch.indexer import IndexOptions, index_collection  # noqa: E402
from artsearch.regions.store import build_regions  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "art-dev"


def build(data: Path, folder: Path, works: int, seed: int) -> tuple[dict[str, Any], Path]:
    """The dev set (linked) plus derivatives; truth: derivative path -> (original, type)."""
    from PIL import Image

    rows = list(csv.DictReader((data / "metadata.csv").open(encoding="utf-8")))
    coll = folder / "coll"
    (coll / "deriv").mkdir(parents=True)
    for r in rows:
        target = coll / "orig" / r["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        # A hard link (or a copy across file systems), not a symbolic one: artsearch neither
        # indexes nor reads through links that lead out of a collection.
        try:
            os.link((data / r["path"]).resolve(), target)
        except OSError:
            shutil.copyfile(data / r["path"], target)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(rows), works, replace=False).tolist())
    truth: dict[str, Any] = {}
    meta = [{"path": f"orig/{r['path']}", "group": _group(r), "license": r["license"]}
            for r in rows]
    for n, i in enumerate(chosen):
        how = DERIVATIONS[n % len(DERIVATIONS)]
        src = data / rows[i]["path"]
        name = f"deriv/{n:04d}_{how}"
        if how == "exact" and n % 2:  # a byte-for-byte copy ...
            name += src.suffix
            shutil.copyfile(src, coll / name)
            kind = "exact"
        else:  # ... or the same pixels in another format, or a true derivative
            img, kind = derive(Image.open(src).convert("RGB"), how, rng)
            name += ".png" if how == "exact" else ".jpg"
            img.save(coll / name, quality=95)
        truth[name] = {"original": f"orig/{rows[i]['path']}", "type": kind, "how": how,
                       "group": _group(rows[i])}
        meta.append({"path": name, "group": _group(rows[i]), "license": rows[i]["license"]})
    with (coll / "meta.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["path", "group", "license"])
        w.writeheader()
        w.writerows(meta)
    return truth, coll


def _group(row: dict[str, str]) -> str:
    return next((f"{k}:{row[k]}" for k in ("style", "genre", "source") if row.get(k)), "")


def hard_negatives(idx: ArtIndex, truth: dict[str, Any]) -> list[tuple[str, str, float]]:
    """For each original that has a derivative: its nearest other original of its group."""
    from artsearch.index.catalogue import artworks

    arts = {a.id: a for a in artworks(idx)}
    group = {a.id: (a.extra or {}).get("group") for a in arts.values()}
    originals = {t["original"] for t in truth.values()}
    best: dict[str, tuple[str, float]] = {}
    for a, b, s in shortlist(idx, "content", -1.0, 30):
        pa, pb = arts[a].path, arts[b].path
        if not (pa.startswith("orig/") and pb.startswith("orig/")) or group[a] != group[b] \
                or arts[a].sha256 == arts[b].sha256:
            continue
        for x, y in ((pa, pb), (pb, pa)):
            if x in originals and (x not in best or s > best[x][1]):
                best[x] = (y, s)
    return [(x, y, s) for x, (y, s) in sorted(best.items())]


def reachability(idx: ArtIndex, truth: dict[str, Any], space: str = "content"
                 ) -> dict[str, Any]:
    """For each derivative pair: its cosine and its rank (the better of the two directions)
    in the space; and the share of pairs a shortlist of k neighbours above a cosine keeps."""
    from artsearch.cluster import space_matrix
    from artsearch.index.catalogue import artworks

    ids, x = space_matrix(idx, space)
    row = {a.path: ids.index(a.id) for a in artworks(idx)}
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    ranks = (-sims).argsort(axis=1).argsort(axis=1) + 1  # 1 = nearest other work
    per: dict[str, list[tuple[float, int]]] = {}
    for d, t in truth.items():
        a, b = row[t["original"]], row[d]
        per.setdefault(t["how"], []).append((float(sims[a, b]),
                                             int(min(ranks[a, b], ranks[b, a]))))
    grid = {}
    for k in (1, 2, 3, 5, 10, 20):
        for floor in (0.5, 0.6, 0.7):
            grid[f"k={k},cos>={floor}"] = {
                how: round(sum(1 for c, r in v if r <= k and c >= floor) / len(v), 3)
                for how, v in per.items()}
    return {"pairs": {h: {"cosine_median": float(np.median([c for c, _ in v])),
                          "rank_median": float(np.median([r for _, r in v]))}
                      for h, v in per.items()}, "shortlist_recall": grid}


def score(examined: list[Any], truth: dict[str, Any],
          negatives: list[tuple[str, str, float]]) -> dict[str, Any]:
    """Precision and recall per type. Pairs among dev-set works that come out typed are
    real duplicates in the dev set (all were checked by eye, see benchmarks/README.md): they
    and their derivatives' pairs have no synthetic truth and are listed, not scored."""
    pairs = [p for p in examined if p.type]
    found = {frozenset((p.path_a, p.path_b)): p for p in pairs}
    shortlisted = {frozenset((p.path_a, p.path_b)) for p in examined}
    among = [p for key, p in found.items() if all(x.startswith("orig/") for x in key)]
    known = {frozenset((p.path_a, p.path_b)) for p in among}
    linked: dict[str, set[str]] = {}
    for p in among:
        linked.setdefault(p.path_a, set()).add(p.path_b)
        linked.setdefault(p.path_b, set()).add(p.path_a)
    negatives = [n for n in negatives if frozenset(n[:2]) not in known]
    true_of: dict[frozenset[str], str | None] = {
        frozenset((t["original"], d)): t["type"] for d, t in truth.items()}
    for a, b, _ in negatives:
        true_of.setdefault(frozenset((a, b)), None)
    judged = []  # (truth, predicted, how)
    how_of = {frozenset((t["original"], d)): t["how"] for d, t in truth.items()}
    for key, t in true_of.items():
        p = found.get(key)
        judged.append((t, p.type if p else None, how_of.get(key, "negative")))
    def transitive(key: frozenset[str]) -> bool:  # a derivative of X with X's dev-set twin
        d = next((x for x in key if x.startswith("deriv/")), None)
        other = next((x for x in key if x != d), None)
        return d is not None and other in linked.get(truth[d]["original"], set())

    spurious = [p for key, p in found.items() if key not in true_of and p.type
                and any(x.startswith("deriv/") for x in key) and not transitive(key)]
    for p in spurious:
        judged.append((None, p.type, "spurious"))
    table: dict[str, Any] = {}
    for kind in (*TYPES, None):
        tp = sum(1 for t, p, _ in judged if t == p == kind)
        n_true = sum(1 for t, _, _ in judged if t == kind)
        n_pred = sum(1 for _, p, _ in judged if p == kind)
        table[kind or "none"] = {"pairs": n_true, "predicted": n_pred,
                                 "precision": tp / n_pred if n_pred else None,
                                 "recall": tp / n_true if n_true else None}
    by_how = {}
    for how in (*DERIVATIONS, "negative"):
        got = [(t, p) for t, p, h in judged if h == how]
        keys = [k for k, t in true_of.items() if how_of.get(k, "negative") == how]
        by_how[how] = {"pairs": len(got), "right": sum(1 for t, p in got if t == p),
                       "as": dict(Counter(str(p) for _, p in got)),
                       "shortlisted": sum(1 for k in keys if k in shortlisted)}
    return {"table": table, "by_derivation": by_how,
            "spurious": [p.as_dict() for p in spurious],
            "dev_set_pairs": [p.as_dict() for p in among],
            "negatives_scored": len(negatives)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--works", type=int, default=270, help="derivatives to make")
    ap.add_argument("--calibrate", type=int, default=200, help="works to calibrate on")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--reach-only", action="store_true",
                    help="only measure how far derivatives are from their originals")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="artsearch-dups-") as tmp:
        folder = Path(tmp)
        truth, coll = build(args.data, folder, args.works, seed=7)
        if args.reach_only:  # how far derivatives are, in spaces of several poolings
            reach = {}
            with ArtIndex(folder / "bench", create=True) as idx:
                for pooling in ("avg", "gem"):
                    index_collection(coll, idx, IndexOptions(
                        metadata=coll / "meta.csv", space=pooling, pooling=pooling))
                    reach[pooling] = reachability(idx, truth, pooling)
                    for name, row in reach[pooling]["shortlist_recall"].items():
                        print(pooling, name, row, flush=True)
            path = write_results("duplicates-reach", {"machine": machine(), "spaces": reach},
                                 args.out)
            print(f"results: {path}")
            return reach
        t0 = time.perf_counter()
        with ArtIndex(folder / "dev-only", create=True) as dev:
            index_collection(args.data, dev, IndexOptions(metadata=args.data / "metadata.csv"))
            t_dev = time.perf_counter()
            record = calibrate_index(dev, "content", works=args.calibrate, seed=1,
                                     progress=lambda m: print("calibrate:", m, flush=True))
        t_cal = time.perf_counter() - t_dev
        # The dev set alone, as `artsearch index --regions` then `artsearch duplicates` twice
        # would run it: the first run verifies every pair, the second only new ones.
        with ArtIndex(folder / "dev-only") as dev:
            t = time.perf_counter()
            build_regions(dev, "content")
            dev_regions_s = time.perf_counter() - t
            dev_runs = []
            for _ in range(2):
                t = time.perf_counter()
                found = find_duplicates(dev, "content", k=10)
                dev_runs.append({"seconds": round(time.perf_counter() - t, 1),
                                 "pairs": len(found)})
        print(f"dev set alone: regions {dev_regions_s:.0f} s; duplicates {dev_runs}", flush=True)
        fitted = Thresholds(**record["thresholds"])
        print("fitted", fitted, f"in {t_cal:.0f} s", flush=True)
        with ArtIndex(folder / "bench", create=True) as idx:
            index_collection(coll, idx, IndexOptions(metadata=coll / "meta.csv"))
            t_reg = time.perf_counter()
            built = build_regions(idx, "content")  # as `artsearch index --regions` does
            t_reg = time.perf_counter() - t_reg
            print(f"regions: {built.regions:,} ({built.structure}) in {t_reg:.0f} s", flush=True)
            negatives = hard_negatives(idx, truth)
            reach = reachability(idx, truth)
            for name, row in reach["shortlist_recall"].items():
                print(name, row, flush=True)
            runs = {}
            for name, t, regions in (("fitted", fitted, True), ("default", Thresholds(), True),
                                     ("fitted, no regions", fitted, False)):
                start = time.perf_counter()
                examined = find_duplicates(idx, "content", k=10, thresholds=t,
                                           keep_unrelated=True, regions=regions,
                                           progress=lambda m: print(m, flush=True))
                runs[name] = {"thresholds": asdict(t), "seconds": time.perf_counter() - start,
                              "examined": len(examined),
                              "found": sum(1 for p in examined if p.type),
                              **score(examined, truth, negatives)}
            works = len(list(idx.spaces())) and len(idx.id_maps(idx.space("content"))[0])
    results = {"machine": machine(), "works_indexed": works, "derivatives": len(truth),
               "hard_negatives": len(negatives), "calibration": record,
               "reachability": reach,
               "calibration_seconds": t_cal, "dev_index_seconds": t_dev - t0,
               "region_index_seconds": t_reg, "runs": runs,
               "dev_set_alone": {"region_index_seconds": round(dev_regions_s, 1),
                                 "duplicates_runs": dev_runs}}
    for name, run in runs.items():
        print(f"\n{name} thresholds: {run['found']} pairs found in {run['seconds']:.0f} s")
        print("| type | pairs | predicted | precision | recall |\n|---|---|---|---|---|")
        for kind, row in run["table"].items():
            if row["pairs"] or row["predicted"]:
                print(f"| {kind} | {row['pairs']} | {row['predicted']} | "
                      f"{_f(row['precision'])} | {_f(row['recall'])} |")
        print("by derivation (right/pairs, shortlisted):",
              {h: f"{v['right']}/{v['pairs']} ({v['shortlisted']})"
               for h, v in run["by_derivation"].items()})
        print("pairs among dev-set works:", len(run["dev_set_pairs"]),
              "spurious:", len(run["spurious"]))
    path = write_results("duplicates", results, args.out)
    print(f"\nresults: {path}")
    return results


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
