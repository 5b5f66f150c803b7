"""Clustering speed: k-means (artsearch's own call) on 100,000 synthetic vectors; with
--others, Ward, HDBSCAN and the report's 2-D map at sizes where each is offered.

    python benchmarks/bench_cluster.py [--n 100000] [--dim 1280] [--k 5,20,50] [--others]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch.cluster import choose_k, hdbscan_labels, kmeans_labels, partition_labels  # noqa: E402
from artsearch.reports.clusters import project_2d  # noqa: E402
from benchmarks.bench_ann import synthetic  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--k", default="5,20,50")
    ap.add_argument("--auto", action="store_true", help="also time --k auto (k = 2..20)")
    ap.add_argument("--others", action="store_true",
                    help="also time agglomerative (Ward) at 5k/20k, HDBSCAN at 10k/20k and "
                         "the report map (t-SNE at 10k, PCA at 100k)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    from benchmarks._env import machine, write_results

    vectors = synthetic(args.n, args.dim, seed=3)
    rows = []
    for k in (int(x) for x in args.k.split(",")):
        started = time.perf_counter()
        assign, _ = kmeans_labels(vectors, k, seed=0)
        seconds = time.perf_counter() - started
        again, _ = kmeans_labels(vectors, k, seed=0)
        rows.append({"k": k, "seconds": round(seconds, 2),
                     "same_seed_identical": bool((assign == again).all())})
        print(f"k-means k={k} on {args.n:,} x {args.dim}: {seconds:.2f} s; same seed "
              f"identical: {rows[-1]['same_seed_identical']}", flush=True)
    if args.auto:
        started = time.perf_counter()
        k, _ = choose_k(vectors, seed=0)
        rows.append({"k": f"auto -> {k}", "seconds": round(time.perf_counter() - started, 2)})
        print(f"--k auto on {args.n:,}: k={k} in {rows[-1]['seconds']:.1f} s", flush=True)
    if args.others:
        def timed(what: str, n: int, fn: Any) -> None:
            started = time.perf_counter()
            detail = fn(vectors[:n])
            rows.append({"k": what, "n": n, "seconds": round(time.perf_counter() - started, 2),
                         "detail": detail})
            print(f"{what} on {n:,} x {args.dim}: {rows[-1]['seconds']:.1f} s ({detail})",
                  flush=True)

        for n in (5_000, 20_000):
            timed("agglomerative (Ward) k=20", n,
                  lambda x: f"{len(set(partition_labels(x, 'agglomerative', 20, 0, 5)))} groups")
        for n in (10_000, 20_000):  # 100,000 ran > 20 min here without finishing
            timed("hdbscan", n, lambda x: (lambda a: f"{a.max() + 1} groups, "
                                                     f"{(a < 0).mean():.0%} noise")(
                hdbscan_labels(x, max(5, len(x) // 100))))
        for n in (10_000, min(args.n, 100_000)):
            timed("report map", n, lambda x: project_2d(x, 0)[1].split(" (")[0])
    report = {"machine": machine(), "n": args.n, "dim": args.dim, "rows": rows}
    print(f"wrote {write_results('cluster', report, args.out)}")
    return report


if __name__ == "__main__":
    main()
