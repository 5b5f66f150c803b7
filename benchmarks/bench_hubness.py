"""Does CSLS re-ranking lower hubness without losing retrieval quality? The evidence behind
`artsearch query --rerank csls` and the advice of `artsearch audit`.

For each space of an index of the dev set: the skewness of the 10-occurrence over the whole
collection (artsearch.audit) with plain cosine ranking and with CSLS, and the quality suite's
mAP@10 per label group (each labelled work queries the other works of its group; the
neighbourhood radius r of CSLS comes from the whole index, as the product computes it), with
the paired bootstrap interval of the change.

    artsearch index ../shared/data/art-dev --metadata ../shared/data/art-dev/metadata.csv \\
        --index /tmp/devidx
    artsearch index ../shared/data/art-dev --index /tmp/devidx --space style --pooling meanstd
    python benchmarks/bench_hubness.py --index /tmp/devidx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch.audit import (  # noqa: E402
    CANDIDATES,
    K,
    csls,
    hub_reduction,
    k_occurrence,
    neighbours,
    skewness,
)
from artsearch.index import ArtIndex  # noqa: E402
from artsearch.index.catalogue import artworks  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402
from benchmarks.bench_backbones import (  # noqa: E402
    DEFAULT_DATA,
    HERE,
    label_groups,
    paired_difference,
    retrieval,
)


def csls_retrieval(vectors: np.ndarray, labels: list[str], r: np.ndarray, k: int = K
                   ) -> dict[str, np.ndarray]:
    """`retrieval`'s per-query AP@10, ranking by CSLS instead of cosine."""
    sims = vectors @ vectors.T
    scores = csls(sims, 0.0, r[None, :])  # r of the query is the same for its whole row
    np.fill_diagonal(scores, -np.inf)
    lab = np.array(labels)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rel = lab[order] == lab[:, None]
    positives = np.array([(lab == x).sum() - 1 for x in lab])
    precision_at = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * rel).sum(axis=1) / np.maximum(1, np.minimum(positives, k))
    return {"map10": ap[positives > 0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    groups = label_groups(args.data, None, None)
    rows: list[dict[str, Any]] = []
    with ArtIndex(args.index) as idx:
        root = idx.root
        for sp in idx.spaces():
            nb = neighbours(idx, sp.name, CANDIDATES)
            occ, occ_csls = (k_occurrence(x, len(nb.ids))
                             for x in (nb.rows[:, :K], hub_reduction(nb)))
            r = nb.sims[:, :K].mean(axis=1)
            path_of = {a.id: a.path for a in artworks(idx, nb.ids)}
            row_of = {path_of[a]: i for i, a in enumerate(nb.ids)}
            entry: dict[str, Any] = {
                "space": sp.name, "backbone": sp.backbone, "pooling": sp.pooling,
                "skewness": skewness(occ), "skewness_csls": skewness(occ_csls),
                "max": int(occ.max()), "max_csls": int(occ_csls.max()),
                "never": int((occ == 0).sum()), "never_csls": int((occ_csls == 0).sum()),
                "groups": {}}
            for g, items in groups.items():
                keep = [(row_of[str(p.relative_to(root))], lab) for p, lab in items
                        if root and str(p.relative_to(root)) in row_of]
                rows_g = [i for i, _ in keep]
                labels = [lab for _, lab in keep]
                plain = retrieval(nb.vectors[rows_g], labels)["map10"]
                with_csls = csls_retrieval(nb.vectors[rows_g], labels, r[rows_g])["map10"]
                diff, ci = paired_difference(with_csls, plain)
                entry["groups"][g] = {"map10": float(plain.mean()),
                                      "map10_csls": float(with_csls.mean()),
                                      "change": diff, "ci95": ci, "queries": len(plain)}
            rows.append(entry)
    print("| space | skewness plain -> CSLS | busiest | never retrieved | group | mAP@10 "
          "plain | CSLS | change [95% CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for e in rows:
        for g, m in e["groups"].items():
            print(f"| {e['space']} ({e['backbone']}, {e['pooling']}) | {e['skewness']:.2f} -> "
                  f"{e['skewness_csls']:.2f} | {e['max']} -> {e['max_csls']} | {e['never']} -> "
                  f"{e['never_csls']} | {g} | {m['map10']:.3f} | {m['map10_csls']:.3f} | "
                  f"{m['change']:+.3f} [{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}] |")
    path = write_results("hubness", {"machine": machine(), "index": str(args.index),
                                     "spaces": rows}, args.out)
    print(f"results: {path}")
    return {"spaces": rows}


if __name__ == "__main__":
    main()
