"""The light table: named sets of works a curator gathers from the grid, a work's page or the
map, kept with the index (INDEX/light-table.json), exported as CSV or as a IIIF
Presentation 3 manifest.

`/light-table` (the page), POST `/light-table/add` (`set`, `ids`), `/light-table/remove`
(`set`, `id`), `/light-table/delete` (`set`), `/light-table/SET.csv`,
`/light-table/SET/manifest.json`, `/api/light-table`. Writes are POSTs, so the server's
same-origin rule and token rule guard them (artsearch.web.security); each answers with a
redirect back to the page (303), so a form works without JavaScript.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import io
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

__all__ = ["MAX_SETS", "MAX_WORKS", "LightTable", "lighttable_routes"]

FILE = "light-table.json"
MAX_SETS = 100
MAX_WORKS = 10_000  # works in one set
NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,60}$")  # printable, no slashes; 60 characters


class LightTable:
    """The sets of one index: {name: [artwork ids, in the order added]}. Every change is a
    read-modify-write under a file lock, replaced atomically: two servers on one index lose
    nothing."""

    def __init__(self, index_path: Path) -> None:
        self.path = index_path / FILE
        self._threads = threading.Lock()

    def sets(self) -> dict[str, list[int]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        sets = data.get("sets") if isinstance(data, dict) else None
        if not isinstance(sets, dict):
            return {}
        return {str(k): [int(i) for i in v if isinstance(i, int)]
                for k, v in sets.items() if isinstance(v, list)}

    @contextmanager
    def _locked(self) -> Iterator[dict[str, list[int]]]:
        from artsearch.errors import IndexReadOnlyError

        with self._threads:
            try:
                fd = os.open(self.path.with_name(FILE + ".lock"),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise IndexReadOnlyError(f"{self.path.parent}: the light table cannot be "
                                         f"kept here ({e.strerror}); make the index folder "
                                         "writable") from e
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                sets = self.sets()
                yield sets
                fdt, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".light-table.")
                with os.fdopen(fdt, "w", encoding="utf-8") as f:
                    json.dump({"version": 1, "sets": sets,
                               "changed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
                              f, ensure_ascii=False, indent=1)
                os.replace(tmp, self.path)
            finally:
                os.close(fd)

    def add(self, name: str, ids: list[int]) -> int:
        """Add works to a set (made if new); how many were new to it."""
        from artsearch.errors import OptionError

        with self._locked() as sets:
            if name not in sets and len(sets) >= MAX_SETS:
                raise OptionError(f"the light table holds {MAX_SETS} sets already; delete one "
                                  "first")
            have = sets.setdefault(name, [])
            new = [i for i in dict.fromkeys(ids) if i not in set(have)]
            if len(have) + len(new) > MAX_WORKS:
                raise OptionError(f"set {name!r} would hold more than {MAX_WORKS:,} works; "
                                  "start another set")
            have.extend(new)
            return len(new)

    def remove(self, name: str, artwork_id: int) -> None:
        with self._locked() as sets:
            if name in sets:
                sets[name] = [i for i in sets[name] if i != artwork_id]

    def delete(self, name: str) -> None:
        with self._locked() as sets:
            sets.pop(name, None)


def set_name(text: str) -> str:
    from artsearch.errors import OptionError

    name = text.strip()
    if not NAME.match(name):
        raise OptionError("a set's name is 1-60 characters, without slashes or control "
                          "characters, e.g. \"Dutch interiors\"")
    return name


def parse_ids(text: str) -> list[int]:
    from artsearch.errors import OptionError

    ids = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not ids or len(ids) > MAX_WORKS or not all(p.isdigit() and len(p) < 19 for p in ids):
        raise OptionError("give the works as artwork ids separated by commas, e.g. 12,40,41")
    return [int(p) for p in ids]


def lighttable_routes(live: Any, templates: Any) -> APIRouter:
    """The routes; thumbnails on the page go through /thumb, which applies the licence
    rules, and the manifest references images through /image, which does too."""
    from artsearch import catalogue
    from artsearch.errors import NotIndexedError
    from artsearch.textsafe import csv_cell

    router = APIRouter()
    table = LightTable(live.path)

    def works_of(name: str) -> list[Any]:
        sets = table.sets()
        if name not in sets:
            raise NotIndexedError(f"no set {name!r} on the light table")
        arts = {a.id: a for a in catalogue.artworks(live.get(), sets[name])}
        return [arts[i] for i in sets[name] if i in arts]  # works since removed drop out

    def back(name: str | None = None) -> RedirectResponse:
        anchor = f"#set-{quote(name, safe='')}" if name else ""
        return RedirectResponse("/light-table" + anchor, status_code=303)

    @router.get("/light-table", response_class=HTMLResponse)
    def page(request: Request) -> Response:
        index = live.get()
        sets = table.sets()
        arts = {a.id: a for a in catalogue.artworks(
            index, sorted({i for ids in sets.values() for i in ids}))}
        shown_sets = [(name, [arts[i] for i in ids if i in arts]) for name, ids in sets.items()]
        return templates.TemplateResponse(request, "lighttable.html", {  # type: ignore[no-any-return]
            "sets": shown_sets, "spaces": [sp.name for sp in index.spaces()],
            "quote": lambda s: quote(s, safe="")})

    @router.post("/light-table/add")
    def add(name: str = Form(..., alias="set", max_length=200),
            ids: str = Form(..., max_length=200_000)) -> Response:
        chosen = set_name(name)
        wanted = parse_ids(ids)
        known = {a.id for a in catalogue.artworks(live.get(), wanted)}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise NotIndexedError(f"no artwork {missing[0]} in this index")
        table.add(chosen, wanted)
        return back(chosen)

    @router.post("/light-table/remove")
    def remove(name: str = Form(..., alias="set", max_length=200),
               artwork_id: int = Form(..., alias="id", ge=1, le=2**63 - 1)) -> Response:
        chosen = set_name(name)
        table.remove(chosen, artwork_id)
        return back(chosen)

    @router.post("/light-table/delete")
    def delete(name: str = Form(..., alias="set", max_length=200)) -> Response:
        table.delete(set_name(name))
        return back()

    @router.get("/light-table/{name}.csv")
    def as_csv(name: str = PathParam(max_length=200)) -> Response:
        out = io.StringIO()
        w = csv.writer(out)
        fields = ["id", "path", "title", "artist", "date", "style", "genre", "source",
                  "license"]
        w.writerow(fields)
        for art in works_of(set_name(name)):
            w.writerow([csv_cell(getattr(art, f)) for f in fields])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}.csv"})

    @router.get("/light-table/{name}/manifest.json")
    def as_manifest(request: Request, name: str = PathParam(max_length=200)) -> Response:
        from artsearch.iiif.write import set_manifest

        chosen = set_name(name)
        works = works_of(chosen)
        base = str(request.base_url).rstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            data = set_manifest(live.get(), [a.id for a in works], Path(tmp) / "m.json",
                                image_base=base, label=chosen,
                                manifest_id=f"{base}/light-table/{quote(chosen, safe='')}")
        return JSONResponse(data, media_type="application/ld+json")

    @router.get("/api/light-table")
    def api() -> JSONResponse:
        return JSONResponse({"sets": table.sets()})

    return router
