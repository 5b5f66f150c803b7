"""Region index: motif and detail queries on the dev set, query time, size and build cost.

    python benchmarks/bench_regions.py [--data DIR] [--queries 100] [--out DIR]

The collection is indexed into a fresh index (content space, Lite0) with its region index
(`artsearch index --regions`). Then, from seeded random works:
- regions: a box of 10-30 % of the picture's area (aspect 0.6-1.6), cut out and re-encoded
  (JPEG q75), asked as `query CUT.jpg --in-regions`;
- details: a box of 4-12 %, enlarged to the picture's size and re-encoded (a print of a
  detail), asked the same way.
A query succeeds when its source work is among the top 10. The same files asked of the
whole-picture space (`query CUT.jpg`) are the baseline. Query time is warm (model loaded,
index read), per query. Size is the region file per work; the 100,000-work figure scales
the per-region cost of the structure chosen (product codes above 50,000 regions).
Targets (issue 24): regions >= 0.80, details >= 0.70, query <= 0.5 s.
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "art-dev"


def cut(img: Any, rng: np.random.Generator, lo: float, hi: float, enlarge: bool) -> bytes:
    """A random box of lo-hi of the picture's area, re-encoded at JPEG q75."""
    from PIL import Image

    w, h = img.size
    area = rng.uniform(lo, hi)
    aspect = rng.uniform(0.6, 1.6)
    cw = min(w, int(round(math.sqrt(area * w * h * aspect))))
    ch = min(h, int(round(area * w * h / cw)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    part = img.crop((x, y, x + cw, y + ch))
    if enlarge:
        scale = max(w, h) / max(cw, ch)
        part = part.resize((round(cw * scale), round(ch * scale)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    part.save(buf, "JPEG", quality=75)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--queries", type=int, default=100, help="regions, and details, each")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no collection here; pass --data DIR")

    from PIL import Image

    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import artworks
    from artsearch.indexer import IndexOptions, index_collection
    from artsearch.query import search
    from artsearch.regions import query_regions, region_extractor
    from artsearch.regions.store import build_regions, regions_file

    work = Path(tempfile.mkdtemp(prefix="artsearch-regions-"))
    try:
        with ArtIndex(work / "index", create=True) as idx:
            t = time.perf_counter()
            index_collection(args.data, idx, IndexOptions(space="content", progress=False))
            index_s = time.perf_counter() - t
            built = build_regions(idx, "content")
            size = regions_file(idx, idx.space("content")).stat().st_size
            works = artworks(idx)
            rng = np.random.default_rng(args.seed)
            sample = rng.choice(len(works), 2 * args.queries, replace=False)
            queries: dict[str, list[tuple[bytes, str]]] = {"regions": [], "details": []}
            for n, i in enumerate(sample):
                kind = "regions" if n < args.queries else "details"
                with Image.open(args.data / works[i].path) as im:
                    img = im.convert("RGB")
                lo, hi = (0.10, 0.30) if kind == "regions" else (0.04, 0.12)
                queries[kind].append((cut(img, rng, lo, hi, kind == "details"), works[i].path))
            ex = region_extractor(idx, idx.space("content"))
            from artsearch.query import default_extractor

            whole_ex = default_extractor(idx, idx.space("content"))
            query_regions(idx, image_bytes=queries["regions"][0][0], k=10,
                          make_extractor=lambda _: ex)  # warm up: model built, file read
            results: dict[str, Any] = {}
            times: list[float] = []
            for kind, qs in queries.items():
                found = baseline = 0
                ranks: list[int | None] = []
                kind_times = []
                for data, source in qs:
                    t = time.perf_counter()
                    res = query_regions(idx, image_bytes=data, k=10, make_extractor=lambda _: ex)
                    kind_times.append(time.perf_counter() - t)
                    paths = [h.path for h in res.hits]
                    found += source in paths
                    ranks.append(paths.index(source) + 1 if source in paths else None)
                    whole = search(idx, image=Path("query.jpg"), image_bytes=data, k=10,
                                   make_extractor=lambda _: whole_ex)
                    baseline += source in [h.path for h in whole.hits]
                times += kind_times
                results[kind] = {
                    "queries": len(qs), "top10": round(found / len(qs), 3),
                    "top1": round(sum(r == 1 for r in ranks) / len(qs), 3),
                    "whole_picture_top10": round(baseline / len(qs), 3),
                    "query_s": [round(t, 4) for t in kind_times]}
        n_works, n_regions = built.works, built.regions
        per_region = size / n_regions
        results["build"] = {
            "works": n_works, "regions": n_regions,
            "regions_per_work": round(n_regions / n_works, 1),
            "structure": built.structure, "work_recall": built.work_recall,
            "seconds": round(built.seconds, 1),
            "seconds_per_work": round(built.seconds / n_works, 4),
            "whole_picture_index_seconds": round(index_s, 1),
            "file_bytes": size, "bytes_per_work": round(size / n_works),
            "bytes_per_region": round(per_region, 1),
            "at_100k_works": {
                "gb": round(per_region * n_regions / n_works * 100_000 / 1e9, 2),
                "build_hours_this_cpu": round(built.seconds / n_works * 100_000 / 3600, 1)}}
        results["query_s"] = {"median": round(statistics.median(times), 4),
                              "p95": round(float(np.percentile(times, 95)), 4),
                              "max": round(max(times), 4)}
        out = {"machine": machine(), "data": str(args.data), "seed": args.seed,
               "results": results}
        path = write_results("regions", out, args.out)
        print(f"regions: top-10 {results['regions']['top10']:.2f} (whole picture "
              f"{results['regions']['whole_picture_top10']:.2f}); details: top-10 "
              f"{results['details']['top10']:.2f} (whole picture "
              f"{results['details']['whole_picture_top10']:.2f}); query median "
              f"{results['query_s']['median'] * 1000:.0f} ms; {n_regions:,} regions "
              f"({built.structure}), {size / n_works / 1024:.1f} KiB a work, build "
              f"{built.seconds:.0f} s -> {path}")
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
