"""How well the neighbour bands (artsearch.bands) are calibrated on the dev set: for each
band, how many of all works' ten nearest neighbours fall in it and what share of them carry
the query's own label (its genre, WikiArt style or Indian school, by the dev set's three
groups); and how many works' first neighbour is distant.

    artsearch index ../shared/data/art-dev --metadata ../shared/data/art-dev/metadata.csv \
        --index /tmp/devidx
    python benchmarks/bench_bands.py --index /tmp/devidx     # results/bands-*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch.bands import BANDS, neighbour_bands  # noqa: E402
from artsearch.cluster import space_matrix  # noqa: E402
from artsearch.index import ArtIndex  # noqa: E402
from artsearch.index.catalogue import artworks  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


def label(path: str, art: Any) -> tuple[str, str | None]:
    """The dev set's label of a work: its group (top folder) and its class in that group."""
    group = path.split("/")[0]
    if group == "genre5":
        return group, art.genre
    if group == "wikiart_style27":
        return group, art.style
    return group, path.split("/")[1]


def measure(index: Path, space: str, k: int = 10) -> dict[str, Any]:
    with ArtIndex(index) as idx:
        ids, vectors = space_matrix(idx, space)
        bands = neighbour_bands(idx, space)
        arts = {a.id: a for a in artworks(idx)}
    assert bands is not None
    labels = [label(arts[a].path, arts[a]) for a in ids]
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, :k]
    rows = {b: {"neighbours": 0, "same_label": 0, "first": 0} for b in BANDS}
    for i in range(len(ids)):
        for rank, j in enumerate(order[i]):
            row = rows[bands.of(float(sims[i, j]))]
            row["neighbours"] += 1
            row["same_label"] += labels[i] == labels[j]
            row["first"] += rank == 0
    for row in rows.values():
        row["same_label_share"] = round(row["same_label"] / max(1, row["neighbours"]), 3)
    return {"space": space, "works": len(ids), "cuts": bands.as_dict(), "bands": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--space", action="append", default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    spaces = args.space or ["content"]
    report = {"machine": machine(), "index": str(args.index),
              "spaces": [measure(args.index, s) for s in spaces]}
    print(json.dumps(report["spaces"], indent=1))
    print(f"wrote {write_results('bands', report, args.out)}")


if __name__ == "__main__":
    main()
