"""A part of a work, found in others: `/work/ID/regions?box=X,Y,W,H` (a page, each result
with its best-matching region drawn) and `/api/works/ID/regions` (the same as JSON, as
`artsearch query --id ID --region X,Y,W,H --json` answers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.web.live import LiveIndex

__all__ = ["region_routes", "region_spaces"]

MAX_ID = 2**63 - 1


def region_spaces(index: Any) -> list[str]:
    """The spaces with a region index: the ones a part of a picture can be sought in."""
    from artsearch.regions.store import has_regions

    return [sp.name for sp in index.spaces() if has_regions(index, sp)]


def region_routes(live: LiveIndex, templates: Jinja2Templates, licences: frozenset[str]
                  ) -> APIRouter:
    from artsearch.errors import NotIndexedError
    from artsearch.index import catalogue
    from artsearch.regions import parse_box, query_regions, region_extractor
    from artsearch.rights import shown, statement
    from artsearch.textsafe import json_safe

    router = APIRouter()
    models: dict[tuple[str, str], Any] = {}

    def find(artwork_id: int, box: str, space: str | None, k: int) -> tuple[Any, Any, str]:
        index = live.get()
        art = catalogue.find_artwork(index, id=artwork_id)
        if art is None:
            raise NotIndexedError(f"no artwork {artwork_id} in this index")
        names = region_spaces(index)
        if not names:
            raise NotIndexedError("no space of this index has a region index: build one with "
                                  "`artsearch index FOLDER --regions`")
        name = space or names[0]
        sp = index.space(name)  # an unknown space is refused with the list of spaces

        def model(s: Any) -> Any:
            key = (s.name, s.weights_sha256)
            if key not in models:
                models[key] = region_extractor(index, s)
            return models[key]

        parsed = parse_box(box)
        result = live.memo(("regions", artwork_id, parsed, sp.name, k), lambda: query_regions(
            index, space=sp.name, artwork=art.id, box=parsed, k=k, make_extractor=model))
        return result, art, sp.name

    @router.get("/work/{artwork_id}/regions", response_class=HTMLResponse)
    def regions_page(request: Request, artwork_id: int = PathParam(ge=1, le=MAX_ID),
                     box: str = Query(..., max_length=100),
                     space: str | None = Query(None, max_length=200),
                     k: int = Query(24, ge=1, le=100)) -> Response:
        result, art, name = find(artwork_id, box, space, k)
        x, y, w, h = result.query["region"]
        return templates.TemplateResponse(request, "regions.html", {
            "art": art, "result": result, "space": name, "box": {"x": x, "y": y, "w": w, "h": h},
            "box_text": box, "withheld": None if shown(art.license, licences) else
            statement(art.license), "spaces": [sp.name for sp in live.get().spaces()],
            "region_spaces": region_spaces(live.get())})

    @router.get("/api/works/{artwork_id}/regions")
    def regions_json(artwork_id: int = PathParam(ge=1, le=MAX_ID),
                     box: str = Query(..., max_length=100),
                     space: str | None = Query(None, max_length=200),
                     k: int = Query(10, ge=1, le=100)) -> JSONResponse:
        result, _, _ = find(artwork_id, box, space, k)
        return JSONResponse(json_safe(result.as_dict()))

    return router
