"""What the app's page families share: checked filters, the query string kept from work to
work, a work as JSON, a result with its provenance, and a work looked up by id."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from artsearch.errors import NotIndexedError
from artsearch.index import ArtIndex, catalogue

__all__ = ["MAX_ID", "PAGE", "checked_filters", "find_work", "keep_cached", "keep_query",
           "with_provenance",
           "work_dict"]

PAGE = 48
MAX_ID = 2**63 - 1  # SQLite's integers: a larger id is no artwork, not an overflow


def checked_filters(index: ArtIndex, items: list[str], also: list[str] | None = None
            ) -> dict[str, list[str]]:
    """`where` parameters as a filter, refused when a field (or one of `also`) no work has."""
    found = catalogue.parse_where([i for i in items if i.strip()])
    catalogue.check_fields(index, [*found, *(also or [])])
    return found


def keep_query(q: str, where: list[str]) -> str:
    """The search and filters as a query string, kept on links from work to work."""
    from urllib.parse import urlencode

    pairs = ([("q", q)] if q else []) + [("where", w) for w in where if w.strip()]
    return urlencode(pairs)


def work_dict(art: Any) -> dict[str, Any]:
    return {"id": art.id, "path": art.path, "title": art.title, "artist": art.artist,
            "date": art.date, "style": art.style, "genre": art.genre, "license": art.license,
            "source": art.source, "extra": art.extra, "width": art.width, "height": art.height,
            "century": catalogue.field_value(art, "century")}


def find_work(index: ArtIndex, artwork_id: int) -> Any:
    art = catalogue.find_artwork(index, id=artwork_id)
    if art is None:
        raise NotIndexedError(f"no artwork {artwork_id} in this index")
    return art


def with_provenance(index: ArtIndex, result: Any, request: str) -> dict[str, Any]:
    """A result as `artsearch query --json` gives it: with its provenance block."""
    from artsearch.provenance import provenance

    spaces = [p.partition("=")[0] for p in result.space.split("+")]
    return {**result.as_dict(),
            "provenance": provenance(index, spaces, command=f"serve: {request}")}


def keep_cached(path: Path, body: bytes) -> None:
    """Keep `body` at `path` (a thumbnail, tile or atlas sheet made on request), written whole
    under a temporary name first; a read-only index folder only means it is made again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)
    except OSError:
        pass
