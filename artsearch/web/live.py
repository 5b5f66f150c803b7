"""The index the app serves: opened once, reopened when a writer has saved since, with what
the pages compute from it remembered until then, and one model per space for uploads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from artsearch.index import ArtIndex

if TYPE_CHECKING:
    from artsearch.extract import Extractor
    from artsearch.index.store import Space

__all__ = ["LiveIndex"]

T = TypeVar("T")


class LiveIndex:
    """The opened index, reopened when a writer has saved since (its spaces' recorded files
    changed): queries always see one consistent, saved state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._index: ArtIndex | None = None
        self._stamp: object = None
        self._extractors: dict[tuple[str, str], Extractor] = {}
        self._memo: dict[object, Any] = {}

    def _stamp_of(self, index: ArtIndex) -> object:
        return (index.changed(), *((sp.name, (sp.params or {}).get("faiss"),
                                    (sp.params or {}).get("ann")) for sp in index.spaces()))

    def get(self) -> ArtIndex:
        with self._lock:
            if self._index is None:
                self._index = ArtIndex(self.path)
                self._stamp = self._stamp_of(self._index)
                return self._index
            stamp = self._stamp_of(self._index)
            if stamp != self._stamp:  # a writer saved: open afresh (the old one is let go)
                self._index = ArtIndex(self.path)
                self._stamp = self._stamp_of(self._index)
                self._memo.clear()
            return self._index

    def memo(self, key: object, compute: Callable[[], T]) -> T:
        """`compute()`, remembered until the index changes: browsing and facet counts over
        a large collection are read far more often than a writer saves."""
        with self._lock:
            if key in self._memo:
                kept: T = self._memo[key]
                return kept
        value = compute()
        with self._lock:
            if len(self._memo) >= 512:
                self._memo.clear()
            self._memo[key] = value
        return value

    def extractor(self, index: ArtIndex, space: Space) -> Extractor:
        """One model per space, built on first use and kept (query by upload)."""
        from artsearch.query import default_extractor

        key = (space.name, space.weights_sha256)
        with self._lock:
            if key not in self._extractors:
                self._extractors[key] = default_extractor(index, space)
            return self._extractors[key]
