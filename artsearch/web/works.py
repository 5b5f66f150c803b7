"""A work in the app: its page (`/work/ID`: the picture, the catalogue, its nearest works in
every space side by side, one comparison list, a blend of two spaces) and the same as JSON
(`/api/works/ID`, `/api/works/ID/neighbours`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.index import ArtIndex
from artsearch.textsafe import json_safe
from artsearch.web.common import (
    MAX_ID,
    checked_filters,
    find_work,
    keep_query,
    with_provenance,
    work_dict,
)
from artsearch.web.live import LiveIndex
from artsearch.web.regions import region_spaces

__all__ = ["work_routes"]


def work_routes(live: LiveIndex, templates: Jinja2Templates, allowed: frozenset[str]) -> APIRouter:
    """Routes: /work/ID, /api/works/ID, /api/works/ID/neighbours."""
    from artsearch.query import parse_mix, search
    from artsearch.rights import licence_class, shown, statement

    router = APIRouter()

    def neighbours(index: ArtIndex, art_id: int, *, space: str | None, mix: str | None,
                   k: int, where: dict[str, list[str]], exclude: list[str]) -> Any:
        return search(index, artwork=art_id, space=space or "content",
                      mix=parse_mix(mix) if mix else None, k=k, where=where or None,
                      exclude_same=exclude)

    @router.get("/work/{artwork_id}", response_class=HTMLResponse)
    def work_page(request: Request, artwork_id: int = PathParam(ge=1, le=MAX_ID),
                  k: int = Query(12, ge=1, le=100),
                  blend: int = Query(0, ge=0, le=100), exclude: list[str] = Query([]),
                  where: list[str] = Query([])) -> Response:
        index = live.get()
        art = find_work(index, artwork_id)
        filters = checked_filters(index, where, exclude)
        spaces = [sp.name for sp in index.spaces()]
        def others(result: Any) -> Any:  # the work is its own nearest: not listed as one
            result.hits = [h for h in result.hits if h.id != art.id][:k]
            return result

        columns = [(name, others(neighbours(index, art.id, space=name, mix=None, k=k + 1,
                                            where=filters, exclude=exclude)))
                   for name in spaces]
        blended = None
        if len(spaces) >= 2 and 0 < blend < 100:
            a, b = spaces[:2]
            mix = f"{a}={(100 - blend) / 100:g},{b}={blend / 100:g}"
            blended = (mix, others(neighbours(index, art.id, space=None, mix=mix, k=k + 1,
                                              where=filters, exclude=exclude)))
        # One comparison list: every work near in any space, with where it is near.
        merged: dict[int, dict[str, Any]] = {}
        for name, result in columns:
            for h in result.hits:
                entry = merged.setdefault(h.id, {"hit": h, "spaces": {}})
                entry["spaces"][name] = (h.rank, h.score)
        compared = sorted(merged.values(), key=lambda e: (
            -len(e["spaces"]), min(r for r, _ in e["spaces"].values()), e["hit"].id))
        # Which of the columns beside it list each blended work.
        also = {h.id: [name for name, result in columns if h.id in {x.id for x in result.hits}]
                for h in (blended[1].hits if blended else [])}
        withheld = None if shown(art.license, allowed) else {
            "class": licence_class(art.license), "statement": statement(art.license)}
        return templates.TemplateResponse(request, "work.html", {
            "art": art, "work": work_dict(art), "columns": columns, "blended": blended,
            "blend": blend, "k": k, "exclude": exclude, "where": where, "spaces": spaces,
            "also": also, "withheld": withheld, "keep": keep_query("", where),
            "compared": compared if len(spaces) > 1 else [],
            "explainable": [sp.name for sp in index.spaces()],  # by map or by occlusion
            "region_spaces": region_spaces(index)})

    @router.get("/api/works/{artwork_id}")
    def api_work(artwork_id: int = PathParam(ge=1, le=MAX_ID)) -> JSONResponse:
        return JSONResponse(json_safe(work_dict(find_work(live.get(), artwork_id))))

    @router.get("/api/works/{artwork_id}/neighbours")
    def api_neighbours(artwork_id: int = PathParam(ge=1, le=MAX_ID), space: str = "content",
                       mix: str | None = None,
                       k: int = Query(10, ge=1, le=1000), where: list[str] = Query([]),
                       exclude_same: list[str] = Query([])) -> JSONResponse:
        index = live.get()
        art = find_work(index, artwork_id)
        filters = checked_filters(index, where, exclude_same)
        result = neighbours(index, art.id, space=space, mix=mix, k=k, where=filters,
                            exclude=exclude_same)
        return JSONResponse(json_safe(with_provenance(index, result, "GET /api/works/ID/"
                                                                     "neighbours")))

    return router
