"""`artsearch duplicates` against imagededup's perceptual hash on the same folder (issue 24).

    pip install imagededup      # not a dependency of artsearch; torch is already here
    python benchmarks/bench_phash.py [--data DIR]

On the dev set (or DIR): `artsearch index DIR --regions` once, then `artsearch duplicates`
twice as a user runs them (separate processes, the verified geometry kept between them),
and imagededup's PHash (`encode_images` then `find_duplicates` at its default Hamming
distance of 10) on the same folder. For each: wall seconds and CPU seconds (user + system of
the process and its children, so imagededup's encoding workers count), and the pairs found.
What each finds differs in kind — PHash only near-identical pictures, `duplicates` typed
pairs down to details — so the pairs are listed, not scored.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "art-dev"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str]) -> dict[str, Any]:
    """Run `cmd`; its wall and CPU seconds (children's CPU, measured around it)."""
    cpu, wall = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return {"wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s": round(_children_cpu() - cpu, 1), "stdout": done.stdout}


PHASH = """
import json, resource, sys, time
from imagededup.methods import PHash
t = time.perf_counter()
hasher = PHash(verbose=False)
codes = hasher.encode_images(image_dir=sys.argv[1], recursive=True)
t_enc = time.perf_counter() - t
found = hasher.find_duplicates(encoding_map=codes, max_distance_threshold=10)
pairs = sorted({tuple(sorted((a, b))) for a, bs in found.items() for b in bs})
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"encode_s": round(t_enc, 1), "wall_s": round(time.perf_counter() - t, 1),
                  "cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 1),
                  "images": len(codes), "pairs": len(pairs)}))
"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    try:
        subprocess.run([sys.executable, "-c", "import imagededup"], check=True,
                       capture_output=True)
    except subprocess.CalledProcessError:
        sys.exit("imagededup is not installed here: pip install imagededup")
    art = [sys.executable, "-m", "artsearch"]
    out: dict[str, Any] = {"machine": machine(), "data": str(args.data)}
    with tempfile.TemporaryDirectory(prefix="artsearch-phash-") as tmp:
        index = str(Path(tmp) / "index")
        out["index --regions"] = timed([*art, "index", str(args.data), "--index", index,
                                        "--regions"])
        out["index --regions"].pop("stdout")
        print("index --regions:", out["index --regions"], flush=True)
        for run in ("duplicates, first run", "duplicates, second run"):
            row = timed([*art, "duplicates", "--index", index, "--json"])
            row["pairs"] = len(json.loads(row.pop("stdout"))["pairs"])
            out[run] = row
            print(f"{run}:", row, flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    wall = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PHASH, str(args.data)], capture_output=True,
                          text=True, check=True, env=env)
    out["imagededup PHash"] = {**json.loads(done.stdout.strip().splitlines()[-1]),
                               "process_wall_s": round(time.perf_counter() - wall, 1)}
    print("imagededup PHash:", out["imagededup PHash"], flush=True)
    path = write_results("phash", out, args.out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
