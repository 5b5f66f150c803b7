"""One entry point for the benchmark suites.

    python -m benchmarks run [--suite quality|speed|ann|all] [--data DIR] [--out DIR] [--quick]

quality: descriptors on a labelled collection (bench_backbones.py); speed: extraction and
query speed on this machine's CPU or GPU (bench_speed.py); ann: index types on synthetic
vectors (bench_ann.py). Each writes JSON named by machine, date and library versions, a
Markdown table and PNG charts under --out. --quick shrinks each suite to a smoke run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_ann, bench_backbones, bench_speed  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one suite or all")
    run.add_argument("--suite", choices=["quality", "speed", "ann", "all"], default="all")
    run.add_argument("--data", type=Path, default=bench_backbones.DEFAULT_DATA,
                     help="labelled collection for the quality suite (folder with metadata.csv)")
    run.add_argument("--out", type=Path, default=HERE / "results")
    run.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    run.add_argument("--holdout-classes", action="store_true",
                     help="quality: fit normalisations only on works outside the judged group")
    run.add_argument("--normalise", default=None, metavar="LIST",
                     help="quality: none,centre,whiten rows per descriptor")
    run.add_argument("--duplicates", type=int, default=0, metavar="N",
                     help="quality: N altered copies query the originals (near-duplicates)")
    args = ap.parse_args(argv)
    suites = ["quality", "speed", "ann"] if args.suite == "all" else [args.suite]
    out = ["--out", str(args.out)]
    for suite in suites:
        print(f"\n# {suite} suite\n", flush=True)
        if suite == "quality":
            if not (args.data / "metadata.csv").is_file():
                print(f"{args.data}: no labelled collection here; quality suite skipped "
                      "(pass --data DIR)")
                continue
            quick = ["--limit", "40", "--only", "lite0 final avg,colour histogram (baseline)"]
            extra = (["--holdout-classes"] if args.holdout_classes else []) + \
                (["--normalise", args.normalise] if args.normalise else []) + \
                (["--duplicates", str(args.duplicates)] if args.duplicates else [])
            bench_backbones.main(["--data", str(args.data), *out, *extra,
                                  *(quick if args.quick else [])])
        elif suite == "speed":
            quick = ["--images", "64", "--batch-sizes", "8", "--backbones", "efficientnet-lite0"]
            bench_speed.main(["--index", *out, *(quick if args.quick else [])])
        else:
            quick = ["--sizes", "5000", "--dim", "128", "--queries", "100"]
            bench_ann.main([*out, *(quick if args.quick else [])])


if __name__ == "__main__":
    main()
