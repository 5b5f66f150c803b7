"""How close is close in this collection: each neighbour's score read against the space's own
distribution, as a band a curator can act on — "very close", "close", "related", "distant".

A cosine of 0.7 means different things in different spaces and collections, so the bands
are cut from the collection itself: a fixed sample of its works (SAMPLE, seeded) is searched
by the space's own searcher, and

- very close: at least the 90th percentile of the works' nearest-neighbour cosine (as close
  as the closest tenth of the collection's nearest pairs: copies, versions, a series);
- close: at least the median nearest-neighbour cosine;
- related: at least the 10th percentile of the works' 10th-neighbour cosine (what nine in
  ten works find among their first ten);
- distant: below that. When even a query's first neighbour is distant, nothing in the
  collection is much like it, and the answer says so.

The cuts are kept in INDEX/bands.json for each space, keyed by the space's vector file as
recorded when it was saved, so they are computed once per saved state (on first use after a
save; a process remembers them, so a read-only index measures them once per process)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.index import ArtIndex

__all__ = ["BANDS", "SAMPLE", "Bands", "neighbour_bands"]

BANDS = ("very close", "close", "related", "distant")
SAMPLE = 500  # works searched to cut the bands
K = 10        # the neighbour whose cosine marks "related"
FILE = "bands.json"
VERSION = 1


@dataclass(frozen=True)
class Bands:
    very_close: float
    close: float
    related: float
    works: int  # works the cuts were measured on

    def of(self, cosine: float) -> str:
        if cosine >= self.very_close:
            return "very close"
        if cosine >= self.close:
            return "close"
        return "related" if cosine >= self.related else "distant"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def neighbour_bands(index: ArtIndex, space: str) -> Bands | None:
    """The space's bands (see the module docstring); None with fewer than three works."""
    sp = index.space(space)
    key = json.dumps([VERSION, (sp.params or {}).get("faiss"), index.saved_count(sp)],
                     sort_keys=True)
    known = (str(index.path), space, key)
    if known not in _MEASURED:  # once per process and saved state (a server's every page)
        if len(_MEASURED) >= 64:
            _MEASURED.clear()
        _MEASURED[known] = _kept_or_measured(index, sp, key)
    return _MEASURED[known]


_MEASURED: dict[tuple[str, str, str], Bands | None] = {}


def _kept_or_measured(index: ArtIndex, sp: Any, key: str) -> Bands | None:
    """The cuts INDEX/bands.json holds for this saved state, else measured (and kept there
    unless the index is read-only)."""
    space = sp.name
    path = index.path / FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = {}
    if not isinstance(kept, dict):
        kept = {}
    mine = kept.get(space)
    if isinstance(mine, dict) and mine.get("key") == key:
        try:
            return Bands(**mine["bands"]) if mine["bands"] else None
        except (TypeError, KeyError):
            pass  # a file edited by hand: measured again
    bands = _measure(index, sp)
    kept[space] = {"key": key, "bands": bands.as_dict() if bands else None}
    if not index.store.readonly:  # a read-only index is only read: measured per process
        _write(path, kept)
    return bands


def _measure(index: ArtIndex, sp: Any) -> Bands | None:
    vectors = index.vectors(sp)
    ids = vectors.ids()
    if len(ids) < 3:
        return None
    pick = np.sort(np.random.default_rng(0).choice(len(ids), min(SAMPLE, len(ids)),
                                                   replace=False))
    own = ids[pick]
    searcher, _ = index.searcher(sp)
    scores, found = searcher.search(vectors.vectors(own), K + 1)
    first, kth = [], []
    for row, me in enumerate(own.tolist()):
        others = [float(s) for s, f in zip(scores[row], found[row], strict=True)
                  if f >= 0 and f != me]
        if others:
            first.append(others[0])
            kth.append(others[min(K, len(others)) - 1])
    if not first:
        return None
    very_close = float(np.percentile(first, 90))
    close = min(float(np.percentile(first, 50)), very_close)
    related = min(float(np.percentile(kth, 10)), close)
    return Bands(round(very_close, 6), round(close, 6), round(related, 6), len(first))


def _write(path: Path, kept: dict[str, Any]) -> None:
    """Replace the file whole, or leave it (an index served read-only measures again)."""
    from artsearch.index.vectors import current_umask

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bands-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(kept, f, indent=1)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
