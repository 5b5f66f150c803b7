"""Cold start: whole-process wall time of the commands a person types, median of N runs.

    python benchmarks/bench_cold.py [--data DIR] [--runs 5] [--out DIR]

Each command runs in a fresh process, as from a shell: imports, model build, reading the
index and answering all count. Measured: `artsearch --help`; a query by indexed id (no model);
a query by an image that is not in the index (the model is built); and a cold `artsearch
index` of the collection into a new index, against the extraction loop alone (the same
images through the same Extractor, timed inside one process from the first batch request to
the last vector). Targets (issue 11): query by image <= 2.5 s; index within 1.1x of the loop.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "art-dev"
ARTSEARCH = [sys.executable, "-m", "artsearch"]

_LOOP = """
import sys, time
from pathlib import Path
from artsearch import backbones
from artsearch.extract import Extractor
from artsearch.images import scan
entries, _ = scan(Path(sys.argv[1]))
ex = Extractor(backbones.get(backbones.DEFAULT_BACKBONE))
started = time.perf_counter()
n = sum(len(b.indices) for b in ex.iter_files([e.path for e in entries]))
print(n, time.perf_counter() - started)
"""


def wall(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def median_of(runs: int, cmd: list[str], before: object = None) -> dict[str, object]:
    times = []
    for _ in range(runs):
        if callable(before):
            before()
        times.append(wall(cmd))
    return {"command": " ".join(cmd[2:]), "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times]}


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--index-runs", type=int, default=3,
                    help="cold index runs (each embeds the whole collection)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no collection here; pass --data DIR")
    work = Path(tempfile.mkdtemp(prefix="artsearch-cold-"))
    try:
        index = work / "index"
        subprocess.run([*ARTSEARCH, "index", str(args.data), "--index", str(index), "-q"],
                       check=True)
        from PIL import Image, ImageOps

        first = sorted(p for p in args.data.rglob("*.jpg"))[0]
        outside = work / "query.jpg"  # a mirrored copy: not in the index, so it is embedded
        ImageOps.mirror(Image.open(first).convert("RGB")).save(outside, quality=90)

        rows = {
            "help": median_of(args.runs, [*ARTSEARCH, "--help"]),
            "query_by_id": median_of(args.runs, [*ARTSEARCH, "query", "--id", "1",
                                                 "--index", str(index)]),
            "query_by_image": median_of(args.runs, [*ARTSEARCH, "query", str(outside),
                                                    "--index", str(index)]),
        }
        # What any process pays before its first image: the interpreter, torch and artsearch
        # (leaving as the CLI does, without the interpreter's teardown).
        rows["startup"] = median_of(args.runs, [
            sys.executable, "-c", "import os, artsearch.extract, artsearch.indexer; os._exit(0)"])
        fresh = work / "fresh"
        rows["index_cold"] = median_of(
            args.index_runs, [*ARTSEARCH, "index", str(args.data), "--index", str(fresh), "-q"],
            before=lambda: shutil.rmtree(fresh, ignore_errors=True))
        loops = []
        for _ in range(args.index_runs):
            out = subprocess.run([sys.executable, "-c", _LOOP, str(args.data)], check=True,
                                 capture_output=True, text=True).stdout.split()
            loops.append(float(out[1]))
        rows["extraction_loop"] = {"images": int(out[0]),
                                   "median_s": round(statistics.median(loops), 3),
                                   "runs_s": [round(t, 3) for t in loops]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loop = rows["extraction_loop"]["median_s"]
    ratio = rows["index_cold"]["median_s"] / loop  # type: ignore[operator]
    # The loop is timed inside a process that has already imported torch; the same start-up
    # taken off the index run compares the work each does.
    net = (rows["index_cold"]["median_s"] - rows["startup"]["median_s"]) / loop  # type: ignore[operator]
    results = {"machine": machine(), "data": str(args.data), "rows": rows,
               "index_over_loop": round(ratio, 3), "index_less_startup_over_loop": round(net, 3),
               "targets": {"query_by_image_s": 2.5, "index_over_loop": 1.1}}
    print(f"{'what':<16} {'median s':>9}  runs")
    for name, row in rows.items():
        print(f"{name:<16} {row['median_s']:>9.3f}  {row['runs_s']}")
    print(f"cold index / extraction loop: {ratio:.3f} whole process; {net:.3f} less the "
          "start-up both pay (target <= 1.1)")
    path = write_results("cold", results, args.out)
    print(f"wrote {path}")
    return json.loads(path.read_text())


if __name__ == "__main__":
    main()
