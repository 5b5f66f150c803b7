"""`artsearch learn --unlabelled` judged on the dev set (issue 32, item 3).

The collection is the dev set's pictures, read without a label: the adaptation starts from
lite0-art, as the command does, and never sees a genre, style or school. Then the start
space, the adapted one and the untuned style space are judged on the dev labels as
bench_art_mix judges spaces (mAP@10 with a paired bootstrap interval against the start,
k-means NMI plain and centred over seeds, a linear probe). The Indian schools are the group
the issue reads: no training run here ever had their labels. Adapting on the collection it
is judged on is the method (transductive, as per-collection centring is), not a leak; no
weights learnt here ship.

    python benchmarks/bench_unlabelled.py [--epochs 6] [--seeds 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.learn import Work  # noqa: E402
from artsearch.learn.unlabelled import adapt, unlabelled_options  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402
from benchmarks.bench_art_mix import judge, table  # noqa: E402
from benchmarks.bench_backbones import DEFAULT_DATA, HERE, label_groups  # noqa: E402
from benchmarks.train_art_head import embed  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seeds", type=int, default=10, help="k-means seeds per group")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    groups = label_groups(args.data, None, None)
    paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
    row = {p: i for i, p in enumerate(paths)}
    given: dict[str, Any] = {"epochs": args.epochs}
    if args.lr:
        given["lr"] = args.lr
    opts = unlabelled_options(**given)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "adapted.pt"
        started = time.perf_counter()
        result = adapt([Work(p, {}) for p in paths], weights, opts, progress=print)
        seconds = time.perf_counter() - started
        lite0 = backbones.get("efficientnet-lite0")
        art = backbones.get("lite0-art")
        layers = lite0.style_layers
        vectors = {"lite0-art (start)": embed(art, paths, "meanstd", layers),
                   "adapted": embed(lite0.with_weights(weights), paths, "meanstd", layers),
                   "untuned": embed(lite0, paths, "meanstd", layers)}
    rows = judge(vectors, groups, row, args.seeds)
    print(table(rows))
    learnt = {"before": result.before, "after": result.after, "history": result.history,
              "best_epoch": result.best_epoch, "train_works": result.train_works,
              "val_works": result.val_works, "cache_seconds": result.cache_seconds,
              "train_seconds": result.train_seconds, "seconds": seconds,
              "options": {k: getattr(opts, k) for k in (
                  "backbone", "tune_from", "epochs", "lr", "tau", "views", "distill",
                  "distill_style", "distill_relation", "crop_min", "min_kept", "seed")}}
    results = {"machine": machine(), "works": len(paths), "seeds": args.seeds,
               "learnt": learnt, "rows": rows}
    name = f"unlabelled-lr{args.lr:g}" if args.lr else "unlabelled"
    print(write_results(name, results, args.out))
    return results


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
