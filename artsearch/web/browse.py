"""Browsing the collection in the app: the grid with its facets and search (`/`), a
description's nearest works in a space with a text tower (`/text`), and the same as JSON
(`/api/works`, `/api/facets`, `/api/text`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.errors import ArtsearchError, NotIndexedError
from artsearch.index import ArtIndex, catalogue
from artsearch.textsafe import json_safe
from artsearch.web.common import PAGE, checked_filters, keep_query, with_provenance, work_dict
from artsearch.web.live import LiveIndex

__all__ = ["browse_routes"]


def browse_routes(live: LiveIndex, templates: Jinja2Templates,
                  allowed: frozenset[str] | None = None) -> APIRouter:
    """Routes: /, /text, /api/works, /api/facets, /api/text. `allowed`: the licence
    classes whose pictures are shown (artsearch.rights)."""
    from artsearch.query import search
    from artsearch.rights import DEFAULT_SHOWN, licence_class

    router = APIRouter()
    shown = DEFAULT_SHOWN if allowed is None else allowed

    def withheld(index: ArtIndex) -> dict[str, int]:
        """How many of the collection's works have their picture withheld, by the rule
        that withholds it: no licence catalogued, or one the server does not show."""
        def count() -> dict[str, int]:
            out = {"not catalogued": 0, "not allowed": 0}
            for licence in catalogue.field_values(index, "license").values():
                if licence_class(licence) not in shown:
                    out["not allowed" if (licence or "").strip() else "not catalogued"] += 1
            return out
        return live.memo(("withheld",), count)

    @router.get("/", response_class=HTMLResponse)
    def browse_page(request: Request, q: str = "", where: list[str] = Query([]),
                    page: int = Query(1, ge=1, le=100_000),
                    more: str | None = Query(None, max_length=100)) -> Response:
        index = live.get()
        filters = checked_filters(index, where)
        key = (tuple(sorted((f, tuple(v)) for f, v in filters.items())), q)
        total, works = live.memo(("browse", key, page), lambda: catalogue.browse(
            index, where=filters, text_query=q, offset=(page - 1) * PAGE, limit=PAGE))
        return templates.TemplateResponse(request, "browse.html", {
            "q": q, "where": where, "filters": filters, "works": works, "total": total,
            "page": page, "pages": max(1, -(-total // PAGE)),
            "facets": live.memo(("facets", key, more), lambda: catalogue.facets(
                index, where=filters, text_query=q, all_of=more)), "more": more,
            "text_spaces": text_spaces(index), "keep": keep_query(q, where),
            "spaces": [sp.name for sp in index.spaces()],
            "withheld": withheld(index) if any(
                licence_class(w.license) not in shown for w in works) else None})

    def text_spaces(index: ArtIndex) -> list[str]:
        """Spaces whose backbone has a text tower (open_clip): they answer descriptions."""
        def find() -> list[str]:
            out = []
            for sp in index.spaces():
                try:
                    if index.spec_for(sp).text:
                        out.append(sp.name)
                except ArtsearchError:  # a backbone not installed here answers no text
                    continue
            return out
        return live.memo(("text-spaces",), find)

    def by_text(index: ArtIndex, q: str, space: str | None, k: int) -> Any:
        names = text_spaces(index)
        if not names:
            raise NotIndexedError("no space of this index understands text: index one with "
                                  "an open_clip backbone (artsearch index DIR --space clip "
                                  "--backbone open_clip:ARCH/TAG)")
        return search(index, text=q, space=space or names[0], k=k,
                      make_extractor=lambda sp: live.extractor(index, sp))

    @router.get("/text", response_class=HTMLResponse)
    def text_page(request: Request, q: str = Query(..., min_length=1, max_length=500),
                  space: str | None = None) -> Response:
        index = live.get()
        result = by_text(index, q, space, 24)
        return templates.TemplateResponse(request, "results.html", {
            "result": result, "name": f"“{q}”", "space": result.space,
            "spaces": [sp.name for sp in index.spaces()]})

    @router.get("/api/text")
    def api_text(q: str = Query(..., min_length=1, max_length=500), space: str | None = None,
                 k: int = Query(10, ge=1, le=1000)) -> JSONResponse:
        result = by_text(live.get(), q, space, k)
        return JSONResponse(json_safe(with_provenance(live.get(), result, "GET /api/text")))

    @router.get("/api/works")
    def api_works(q: str = "", where: list[str] = Query([]),
                  offset: int = Query(0, ge=0, le=10**9), limit: int = Query(PAGE, ge=1, le=500)
                  ) -> JSONResponse:
        index = live.get()
        filters = checked_filters(index, where)
        total, works = catalogue.browse(index, where=filters, text_query=q, offset=offset,
                                        limit=limit)
        return JSONResponse(json_safe({"total": total, "offset": offset,
                                       "works": [work_dict(a) for a in works]}))

    @router.get("/api/facets")
    def api_facets(q: str = "", where: list[str] = Query([])) -> JSONResponse:
        index = live.get()
        filters = checked_filters(index, where)
        key = (tuple(sorted((f, tuple(v)) for f, v in filters.items())), q)
        found = live.memo(("facets", key), lambda: catalogue.facets(
            index, where=filters, text_query=q))
        return JSONResponse({f: [{"value": v, "count": n} for v, n in rows]
                             for f, rows in found.items()})

    return router
