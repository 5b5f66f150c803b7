"""Does centring before clustering pay, per method? The evidence behind `artsearch cluster
--centre auto` (cluster.CENTRE_DEFAULT).

For the content vector (Lite0 final avg) and the style space (Lite0 meanstd of stage4,
stage6, final) of each dev-set label group, each of artsearch's clustering methods runs with
k = the number of labels on the plain and on the centred vectors (the same functions
`artsearch cluster` calls); NMI against the labels, k-means averaged over 3 seeds.

With `--index`, the spaces of an index of the dev set instead, read as `artsearch cluster`
reads them (the art spaces included: the evidence behind cluster.CENTRE_BY_BACKBONE):

    python benchmarks/bench_centring.py [--data DIR]
    artsearch index ../shared/data/art-dev --index /tmp/devart --space art --backbone lite0-art
    python benchmarks/bench_centring.py --index /tmp/devart
    python benchmarks/bench_centring.py --index /tmp/devart --retrieval  # mAP@10 instead

`--retrieval` asks the same of search: mAP@10 per group (each work queries the others of its
group) on the plain and on the centred vectors, with the paired bootstrap interval.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.cluster import METHODS, centred, partition_labels, space_matrix  # noqa: E402
from artsearch.index import ArtIndex  # noqa: E402
from artsearch.index.catalogue import artworks  # noqa: E402
from artsearch.metrics import nmi  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402
from benchmarks.bench_backbones import (  # noqa: E402
    DEFAULT_DATA,
    DESCRIPTORS,
    HERE,
    extract,
    label_groups,
    paired_difference,
    retrieval,
)

SPACES = ("lite0 final avg", "lite0 style meanstd")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--index", type=Path, default=None,
                    help="judge this index's spaces (of the dev set) instead")
    ap.add_argument("--retrieval", action="store_true",
                    help="mAP@10 plain vs centred instead of clustering NMI")
    args = ap.parse_args(argv)
    groups = label_groups(args.data, None, None)
    if args.index is None:
        paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
        row_of = {p: i for i, p in enumerate(paths)}
        wanted = [d for d in DESCRIPTORS if d.name in SPACES]
        vectors, _ = extract(backbones.get("efficientnet-lite0"), wanted, paths)
        spaces: tuple[str, ...] = SPACES
    else:
        vectors, row_of, spaces = index_spaces(args.index)
        groups = {g: [(p.resolve(), lab) for p, lab in items] for g, items in groups.items()}
    # Each group's works as rows of the vectors (an index may hold fewer than the metadata).
    rows_of = {g: ([row_of[p] for p, _ in items if p in row_of],
                   [lab for p, lab in items if p in row_of]) for g, items in groups.items()}
    if args.retrieval:
        return retrieval_rows(vectors, spaces, rows_of, args)
    rows = []
    print("| space | method | group | NMI plain | NMI centred | change |")
    print("|---|---|---|---|---|---|")
    for space in spaces:
        for method in METHODS:
            for g, (at, labels) in rows_of.items():
                x = vectors[space][at]
                seeds = range(3) if method == "kmeans" else [0]
                k = len(set(labels))
                plain, cent = (float(np.mean([nmi(partition_labels(v, method, k, s, 5), labels)
                                              for s in seeds]))
                               for v in (x, centred(x)))
                rows.append({"space": space, "method": method, "group": g, "nmi": plain,
                             "nmi_centred": cent})
                print(f"| {space} | {method} | {g} | {plain:.3f} | {cent:.3f} | "
                      f"{cent - plain:+.3f} |", flush=True)
    return written("centring", rows, args)


def written(name: str, rows: list[dict[str, Any]], args: argparse.Namespace
            ) -> dict[str, Any]:
    path = write_results(name, {"machine": machine(), "index": str(args.index),
                                "results": rows}, args.out)
    print(f"\nwrote {path}")
    return {"results": rows}


def retrieval_rows(vectors: dict[str, np.ndarray], spaces: tuple[str, ...],
                   rows_of: dict[str, tuple[list[int], list[str]]], args: argparse.Namespace
                   ) -> dict[str, Any]:
    """mAP@10 per space and group, plain and centred on the whole collection's mean."""
    rows = []
    print("| space | group | mAP@10 plain | centred | change [95% CI] |")
    print("|---|---|---|---|---|")
    for space in spaces:
        whole = centred(vectors[space])
        for g, (at, labels) in rows_of.items():
            plain = retrieval(vectors[space][at], labels)["map10"]
            cent = retrieval(whole[at], labels)["map10"]
            diff, ci = paired_difference(cent, plain)
            rows.append({"space": space, "group": g, "map10": float(plain.mean()),
                         "map10_centred": float(cent.mean()), "change": diff, "ci95": ci})
            print(f"| {space} | {g} | {plain.mean():.3f} | {cent.mean():.3f} | {diff:+.3f} "
                  f"[{ci[0]:+.3f}, {ci[1]:+.3f}] |", flush=True)
    return written("centring-retrieval", rows, args)


def index_spaces(path: Path) -> tuple[dict[str, np.ndarray], dict[Path, int], tuple[str, ...]]:
    """Each space's vectors of an index, rows in one order ({picture path: row}); spaces
    named "name (backbone, pooling)"."""
    vectors: dict[str, np.ndarray] = {}
    with ArtIndex(path) as idx:
        root = idx.root
        assert root is not None, f"{path}: an index of a folder is needed"
        row_of: dict[Path, int] = {}
        for sp in idx.spaces():
            ids, x = space_matrix(idx, sp.name)
            where = {a.id: (root / a.path).resolve() for a in artworks(idx, ids)}
            if not row_of:
                row_of = {where[i]: r for r, i in enumerate(ids)}
            order = {where[i]: r for r, i in enumerate(ids)}
            rows = np.array([order[p] for p in row_of])
            vectors[f"{sp.name} ({sp.backbone}, {sp.pooling})"] = x[rows]
    return vectors, row_of, tuple(vectors)


if __name__ == "__main__":
    main()
