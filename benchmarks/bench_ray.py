"""Indexing rate on Ray (`--engine ray`) against the in-process run, on the dev set.

    python benchmarks/bench_ray.py                     # this machine: local, then 2 actors
    python benchmarks/bench_ray.py --actors 2 4 --gpus-per-actor 1 --precision auto   # GPUs

Each run indexes the whole collection into a fresh index with the default backbone, through
the product's own `index_collection`, in a fresh process. Reported: the whole run's seconds
and the embedding phase's images/s (for Ray: including starting the actors, and, without
--address, the local cluster), and each Ray run's rate as a share of the in-process rate.
With --address the runs join a cluster already started (`ray start --head`), so the cluster's
own start-up is left out. Vectors of each Ray run are compared with the in-process run's
(minimum cosine over all works).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._env import machine, write_results  # noqa: E402

DEV = HERE.parent.parent / "shared" / "data" / "art-dev"


def child(data: Path, index: Path, engine: str, actors: int, gpus: float, address: str | None,
          precision: str) -> dict[str, Any]:
    from artsearch.index import ArtIndex
    from artsearch.indexer import IndexOptions, index_collection

    opts = IndexOptions(extractor={"precision": precision})
    if engine == "ray":
        from artsearch.distributed import RayOptions

        opts.engine = RayOptions(address=address, actors=actors, gpus_per_actor=gpus)
    started = time.perf_counter()
    with ArtIndex(index, create=True) as idx:
        report = index_collection(data, idx, opts)
    return {"engine": engine, "actors": actors if engine == "ray" else None,
            "seconds": round(time.perf_counter() - started, 2),
            "embed_seconds": round(report.embed_seconds, 2), "embedded": report.embedded,
            "failed": len(report.failed), "images_per_second": round(report.images_per_second, 2),
            "runtime": report.runtime}


def by_path(index: Path) -> dict[str, Any]:
    """Path -> stored vector of the content space, through the product's own reads."""
    from artsearch.cluster import space_matrix
    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import artworks

    with ArtIndex(index) as idx:
        ids, vectors = space_matrix(idx, "content")
        paths = {a.id: a.path for a in artworks(idx, ids)}
    return {paths[i]: v for i, v in zip(ids, vectors, strict=True)}


def min_cosine(a: Path, b: Path) -> float:
    here, there = by_path(a), by_path(b)
    return float(min(v @ there[p] for p, v in here.items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEV)
    p.add_argument("--actors", type=int, nargs="+", default=[2])
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--address", default=None)
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        engine, actors, index = args.child
        print(json.dumps(child(args.data, Path(index), engine, int(actors),
                               args.gpus_per_actor, args.address, args.precision)))
        return {}
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    runs = []
    for engine, actors in [("local", 0), *(("ray", n) for n in args.actors)]:
        index = work / f"{engine}-{actors}"
        cmd = [sys.executable, __file__, "--data", str(args.data), "--precision",
               args.precision, "--gpus-per-actor", str(args.gpus_per_actor),
               "--child", engine, str(actors), str(index)]
        if args.address:
            cmd += ["--address", args.address]
        print(f"{engine} {actors or ''} ...", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{engine} run failed")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        if engine == "ray":
            run["min_cosine_to_local"] = round(min_cosine(work / "local-0", index), 6)
        runs.append(run)
    base = runs[0]["images_per_second"]
    print(f"\n{runs[0]['embedded']} images of {args.data}, precision {args.precision}"
          + (f", cluster at {args.address}" if args.address else ""))
    print(f"{'engine':<14}{'run s':>8}{'embed s':>9}{'images/s':>10}{'share':>7}"
          f"{'min cos':>9}")
    for r in runs:
        r["share_of_local"] = round(r["images_per_second"] / base, 3)
        name = r["engine"] + (f" x{r['actors']}" if r["actors"] else "")
        print(f"{name:<14}{r['seconds']:>8.1f}{r['embed_seconds']:>9.1f}"
              f"{r['images_per_second']:>10.1f}{r['share_of_local']:>7.0%}"
              f"{r.get('min_cosine_to_local', 1.0):>9.4f}")
    import ray

    result = {"machine": machine(), "ray": ray.__version__, "data": str(args.data),
              "precision": args.precision, "address": args.address,
              "gpus_per_actor": args.gpus_per_actor, "runs": runs}
    path = write_results("ray" + ("-cluster" if args.address else ""), result, args.out)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
