"""Region index: find a motif in other works, and the work a detail comes from.

A space opts in with `artsearch index DIR --regions`. Each of its works is then described by
overlapping regions at two scales: the picture, resized so its long side is 448 and then
800 pixels (for a 224-pixel backbone), goes through the backbone's last convolutional stage
(Lite0's `stage7`, one cell per 32 pixels); a window half the long side of the first map and
about a quarter of the second's (7 cells each) slides over it three cells at a time, and
each window's cells are averaged and normalised. About 48 regions describe a work; each
keeps its box as fractions of the picture.

A query is a region of a picture (`--region X,Y,W,H`) or a whole fragment (`--in-regions`):
its pixels are resized to the backbone's input area keeping their shape and averaged the
same way, and works rank by their best-matching region. Measured on the 1,357-work dev set
(benchmarks/bench_regions.py): the source of a 10-30 % region is in the top 10 for 0.99 of
queries, of an enlarged 4-12 % detail for 0.95, against 0.20-0.55 cosine for whole pictures.

Where the regions are kept and how they are built and compressed: artsearch.regions.store
(on the dev set's 65,368 regions, 8-bit codes: 320 bytes a region, about 1.7 GB for 100,000
works).
"""

from __future__ import annotations

from artsearch.regions.describe import (
    CANDIDATES,
    SCALES,
    STRIDE,
    crop_box,
    describe_regions,
    parse_box,
    query_vector,
    region_extractor,
    region_layer,
)
from artsearch.regions.search import RegionHit, query_regions, region_pairs

__all__ = ["CANDIDATES", "SCALES", "STRIDE", "RegionHit", "crop_box", "describe_regions",
           "parse_box", "query_regions", "query_vector", "region_extractor", "region_layer",
           "region_pairs"]
