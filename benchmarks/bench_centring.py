"""Does centring before clustering pay, per method? The evidence behind `artsearch cluster
--centre auto` (cluster.CENTRE_DEFAULT).

For the content vector (Lite0 final avg) and the style space (Lite0 meanstd of stage4,
stage6, final) of each dev-set label group, each of artsearch's clustering methods runs with
k = the number of labels on the plain and on the centred vectors (the same functions
`artsearch cluster` calls); NMI against the labels, k-means averaged over 3 seeds.

    python benchmarks/bench_centring.py [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.cluster import METHODS, centred, partition_labels  # noqa: E402
from artsearch.metrics import nmi  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402
from benchmarks.bench_backbones import (  # noqa: E402
    DEFAULT_DATA,
    DESCRIPTORS,
    HERE,
    extract,
    label_groups,
)

SPACES = ("lite0 final avg", "lite0 style meanstd")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    groups = label_groups(args.data, None, None)
    paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
    row_of = {p: i for i, p in enumerate(paths)}
    wanted = [d for d in DESCRIPTORS if d.name in SPACES]
    vectors, _ = extract(backbones.get("efficientnet-lite0"), wanted, paths)
    rows = []
    print("| space | method | group | NMI plain | NMI centred | change |")
    print("|---|---|---|---|---|---|")
    for space in SPACES:
        for method in METHODS:
            for g, items in groups.items():
                x = vectors[space][[row_of[p] for p, _ in items]]
                labels = [lab for _, lab in items]
                seeds = range(3) if method == "kmeans" else [0]
                k = len(set(labels))
                plain, cent = (float(np.mean([nmi(partition_labels(v, method, k, s, 5), labels)
                                              for s in seeds]))
                               for v in (x, centred(x)))
                rows.append({"space": space, "method": method, "group": g, "nmi": plain,
                             "nmi_centred": cent})
                print(f"| {space} | {method} | {g} | {plain:.3f} | {cent:.3f} | "
                      f"{cent - plain:+.3f} |", flush=True)
    path = write_results("centring", {"machine": machine(), "results": rows}, args.out)
    print(f"\nwrote {path}")
    return {"results": rows}


if __name__ == "__main__":
    main()
