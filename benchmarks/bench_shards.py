"""A large IVF-PQ index built in shards against the same index built in one process.

    python benchmarks/bench_shards.py                       # 2,000,000 x 1280-d, 4 shards
    python benchmarks/bench_shards.py --n 200000 --shards 4 # a quick look
    python benchmarks/bench_shards.py --ray 2               # shards encoded by 2 Ray tasks

The vectors are `bench_ann.synthetic` (shaped like Lite0's embeddings of the dev set: its
mean direction, spectrum and neighbour cosines), generated shard by shard from per-shard
seeds, so both builds index exactly the same 1280-d vectors. Each build runs in its own
process, so its peak memory (ru_maxrss) is its own:

  single   all vectors in one array, as the product's exact store holds them, then
           `artsearch.index.ann.build` (train on a sample, add, calibrate against exact search);
  sharded  `artsearch.index.ann.build_sharded`: train once on a sample gathered shard by shard,
           encode each shard into a copy of the trained index (here, or in Ray tasks),
           merge, calibrate against exact search done shard by shard; no step holds more
           than one shard of full vectors.

Reported per build: seconds, peak memory, the calibrated setting and its recall@10 on 200
stored vectors (the product's own check), and recall@10 of 200 fresh queries against exact
search over all n vectors (the figure a user gets).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from benchmarks._env import machine, write_results  # noqa: E402

K = 10


def shard_data(n: int, shards: int, dims: int, cache: Path):  # noqa: ANN201 - a closure
    """shard(lo, hi) -> (ids, vectors), read from per-shard .npy files made once (not timed):
    reading a shard is then a file read, as it would be from the product's store or from
    Parquet shards, not a regeneration."""
    from bench_ann import synthetic

    rows = -(-n // shards)
    cache.mkdir(parents=True, exist_ok=True)
    files = [cache / f"shard-{s}-of-{n}-{dims}d.npy" for s in range(shards)]
    for s, path in enumerate(files):
        if not path.exists():
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, synthetic(min(rows, n - s * rows), dims, seed=1000 + s))
            tmp.replace(path)

    def shard(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        out_ids, out_vecs = [], []
        for s in range(lo // rows, (hi - 1) // rows + 1):
            start = s * rows
            block = np.load(files[s])  # a whole read, not a mapping: RSS counts what is held
            a, b = max(lo, start) - start, min(hi, start + len(block)) - start
            out_vecs.append(block[a:b] if (a, b) != (0, len(block)) else block)
            out_ids.append(np.arange(start + a, start + b, dtype=np.int64))
            del block
        if len(out_vecs) == 1:
            return out_ids[0], out_vecs[0]
        return np.concatenate(out_ids), np.concatenate(out_vecs)

    return shard, rows


def exact_truth(queries: np.ndarray, shard: Any, n: int, rows: int) -> np.ndarray:
    import faiss

    best_s = np.full((len(queries), K), -np.inf, np.float32)
    best_i = np.full((len(queries), K), -1, np.int64)
    for lo in range(0, n, rows):
        ids, vectors = shard(lo, min(n, lo + rows))
        s, r = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
        both_s = np.concatenate([best_s, s], 1)
        both_i = np.concatenate([best_i, ids[r]], 1)
        order = np.argsort(-both_s, 1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(both_s, order, 1), np.take_along_axis(both_i, order, 1)
    return best_i


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, n: int, shards: int, dims: int, ray_tasks: int, cache: Path
          ) -> dict[str, Any]:
    from bench_ann import synthetic

    from artsearch.index import ann

    shard, rows = shard_data(n, shards, dims, cache)
    out: dict[str, Any] = {"mode": mode}
    started = time.perf_counter()
    if mode == "single":
        ids = np.arange(n, dtype=np.int64)
        vectors = np.empty((n, dims), np.float32)  # filled shard by shard: one copy in RAM
        for lo in range(0, n, rows):
            vectors[lo: lo + rows] = shard(lo, min(n, lo + rows))[1]
        out["read_seconds"] = round(time.perf_counter() - started, 1)
        out["rss_after_data_mib"] = round(rss_mib())
        started = time.perf_counter()
        built = ann.build(vectors, ids, "ivfpq")
    else:
        run = None
        if ray_tasks:
            from artsearch.distributed import ray_shard_runner

            run = ray_shard_runner(address=None, cpus=ray_tasks)
        built = ann.build_sharded(shard, n, dims, rows=rows, run=run)
        out["ray_tasks"] = ray_tasks
    out["build_seconds"] = round(time.perf_counter() - started, 1)
    out["peak_rss_mib"] = round(rss_mib())
    out.update({"kind": built.kind, "nprobe": built.param, "k_factor": built.k_factor,
                "calibrated_recall10": round(built.recall, 4), "ntotal": len(built)})
    queries = synthetic(200, dims, seed=7)
    truth = exact_truth(queries, shard, n, rows)
    _, found = built.search(queries, K)
    out["fresh_recall10"] = round(float(np.mean(
        [len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])), 4)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--dims", type=int, default=1280)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--modes", default="sharded,single")
    p.add_argument("--ray", type=int, default=0, metavar="TASKS",
                   help="encode the shards in Ray tasks on a local cluster of this many CPUs")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--cache", type=Path, default=Path("/tmp/artsearch-bench-shards"),
                   help="where the generated shards are kept between runs (n x dims x 4 bytes)")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n, args.shards, args.dims, args.ray,
                               args.cache)))
        return {}
    started = time.perf_counter()
    shard_data(args.n, args.shards, args.dims, args.cache)
    print(f"shards ready in {args.cache} ({time.perf_counter() - started:.0f} s)",
          file=sys.stderr, flush=True)

    runs = []
    for mode in args.modes.split(","):
        print(f"{mode}: building {args.n:,} x {args.dims}-d ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--n", str(args.n), "--dims",
             str(args.dims), "--shards", str(args.shards), "--ray", str(args.ray),
             "--cache", str(args.cache)],
            capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            runs.append({"mode": mode, "error": done.stderr.strip().splitlines()[-1:],
                         "returncode": done.returncode})
            continue
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    print(f"\n{args.n:,} vectors x {args.dims}-d, IVF-PQ + 8-bit re-ranking, "
          f"{args.shards} shards")
    print(f"{'build':<10}{'seconds':>9}{'peak MiB':>10}{'nprobe':>8}{'k_factor':>9}"
          f"{'calibrated':>11}{'fresh':>7}")
    for r in runs:
        if "error" in r:
            print(f"{r['mode']:<10} failed: {r['error']}")
            continue
        print(f"{r['mode']:<10}{r['build_seconds']:>9.0f}{r['peak_rss_mib']:>10,}"
              f"{r['nprobe']:>8}{r['k_factor']:>9}{r['calibrated_recall10']:>11.3f}"
              f"{r['fresh_recall10']:>7.3f}")
    result = {"machine": machine(), "n": args.n, "dims": args.dims, "shards": args.shards,
              "ray_tasks": args.ray, "runs": runs}
    path = write_results("shards" + (f"-ray{args.ray}" if args.ray else ""), result, args.out)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
