"""Why a neighbour is there, in the app: the similarity maps of two works in one space
(`/explain/A/B?space=&view=`), as a page, as PNG heat maps and as JSON, under the same licence
rules as every other image. Every space can be explained: an avg or cavg space by the exact
decomposition `artsearch query --explain` also gives, any other by occlusion; over the square
the model saw (`view=square`) or over the whole picture (`view=whole`)."""

from __future__ import annotations

import copy
import io
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.web.live import LiveIndex
from artsearch.web.uploads import RecentUploads

__all__ = ["explain_routes"]

MAX_ID = 2**63 - 1
SIDE = 320
VIEW = "^(square|whole)$"


def explain_routes(live: LiveIndex, templates: Jinja2Templates, licences: frozenset[str],
                   uploads: RecentUploads | None = None) -> APIRouter:
    """Routes: /explain/A/B, /explain/A/B/SIDE.png, /api/explain/A/B (SIDE: a or b), and
    /explain/upload/KEY/B (and its PNGs) for a picture uploaded a while ago (`uploads`:
    web.uploads.RecentUploads)."""
    from artsearch.errors import NotIndexedError
    from artsearch.explain import pair_maps
    from artsearch.images import decoded, read_work
    from artsearch.index import catalogue
    from artsearch.rights import shown, statement

    router = APIRouter()

    def maps(a: int, b: int, space: str, view: str) -> tuple[Any, Any, Any]:
        """The pair's maps (computed once per pair and index state: a page and its two
        images ask for them three times), its works and their pictures."""
        index = live.get()
        arts = [catalogue.find_artwork(index, id=i) for i in (a, b)]
        if None in arts:
            raise NotIndexedError("no such artwork")
        sp = index.space(space)  # an unknown space is refused with the list of spaces
        shared = live.extractor(index, sp)  # the app's model for the space, as for uploads
        shared.model  # noqa: B018 - built once here, so the float32 copy shares it
        ex = copy.copy(shared)
        ex.precision = "fp32"  # maps add up to the space's cosine to 1e-4
        side = ex.spec.preprocess.resize
        pictures = [decoded(read_work(index.root, art.path), side) for art in arts]
        first, second = pictures
        if first is None or second is None:
            raise NotIndexedError("a work's file cannot be read")
        pm = live.memo(("explain", a, b, sp.name, view),
                       lambda: pair_maps(ex, first, second, view))
        return pm, arts, pictures

    def upload_maps(key: str, b: int, space: str, view: str) -> tuple[Any, Any, Any, Any]:
        """The maps of an upload (kept by its hash: web.uploads.RecentUploads) and a work."""
        kept = uploads.get(key) if uploads is not None else None
        if kept is None:
            raise NotIndexedError("that upload is no longer kept (only the newest are); "
                                  "upload the picture again")
        index = live.get()
        art = catalogue.find_artwork(index, id=b)
        if art is None:
            raise NotIndexedError("no such artwork")
        sp = index.space(space)
        shared = live.extractor(index, sp)
        shared.model  # noqa: B018 - built once here, so the float32 copy shares it
        ex = copy.copy(shared)
        ex.precision = "fp32"
        side = ex.spec.preprocess.resize
        first, second = decoded(kept[1], side), decoded(read_work(index.root, art.path), side)
        if first is None or second is None:
            raise NotIndexedError("a picture cannot be read")
        pm = live.memo(("explain-upload", key, b, sp.name, view),
                       lambda: pair_maps(ex, first, second, view))
        return pm, kept[0], art, (first, second)

    @router.get("/explain/upload/{key}/{b}", response_class=HTMLResponse)
    def explain_upload_page(request: Request, key: str = PathParam(pattern="^[0-9a-f]{32}$"),
                            b: int = PathParam(ge=1, le=MAX_ID),
                            space: str = Query("content", max_length=200),
                            view: str = Query("square", pattern=VIEW)) -> Response:
        pm, name, art, _ = upload_maps(key, b, space, view)
        upload = {"id": None, "title": f"your picture ({name})", "path": name}
        return templates.TemplateResponse(request, "explain.html", {
            "a": upload, "b": art, "space": space, "maps": pm.as_dict(4),
            "png": f"/explain/upload/{key}/{b}", "back": f"/query/{key}?space={space}",
            "view": view, "pooling": live.get().space(space).pooling,
            "layers": live.get().space(space).layer,
            "withheld": {} if shown(art.license, licences) else
            {art.id: statement(art.license)},
            "spaces": [sp.name for sp in live.get().spaces()]})

    @router.get("/explain/upload/{key}/{b}/{side}.png")
    def explain_upload_png(key: str = PathParam(pattern="^[0-9a-f]{32}$"),
                           b: int = PathParam(ge=1, le=MAX_ID),
                           side: str = PathParam(pattern="^[ab]$"),
                           space: str = Query("content", max_length=200),
                           view: str = Query("square", pattern=VIEW)) -> Response:
        from artsearch.explain import heat_png

        pm, _, art, pictures = upload_maps(key, b, space, view)
        scale = float(max(abs(pm.query).max(), abs(pm.result).max()))
        buf = io.BytesIO()
        # The uploader's own picture is theirs to see; the work follows its licence.
        picture = pictures[0] if side == "a" else (
            pictures[1] if shown(art.license, licences) else None)
        heat_png(picture, pm.query if side == "a" else pm.result, buf, SIDE, scale, view)
        return Response(buf.getvalue(), media_type="image/png",
                        headers={"cache-control": "private, max-age=600"})

    @router.get("/explain/{a}/{b}", response_class=HTMLResponse)
    def explain_page(request: Request, a: int = PathParam(ge=1, le=MAX_ID),
                     b: int = PathParam(ge=1, le=MAX_ID),
                     space: str = Query("content", max_length=200),
                     view: str = Query("square", pattern=VIEW)) -> Response:
        pm, arts, _ = maps(a, b, space, view)
        return templates.TemplateResponse(request, "explain.html", {
            "a": arts[0], "b": arts[1], "space": space, "maps": pm.as_dict(4),
            "png": f"/explain/{a}/{b}", "back": None,
            "view": view, "pooling": live.get().space(space).pooling,
            "layers": live.get().space(space).layer,
            "withheld": {art.id: statement(art.license) for art in arts
                         if not shown(art.license, licences)},
            "spaces": [sp.name for sp in live.get().spaces()]})

    @router.get("/explain/{a}/{b}/{side}.png")
    def explain_png(a: int = PathParam(ge=1, le=MAX_ID), b: int = PathParam(ge=1, le=MAX_ID),
                    side: str = PathParam(pattern="^[ab]$"),
                    space: str = Query("content", max_length=200),
                    view: str = Query("square", pattern=VIEW)) -> Response:
        from artsearch.explain import heat_png

        pm, arts, pictures = maps(a, b, space, view)
        n = 0 if side == "a" else 1
        scale = float(max(abs(pm.query).max(), abs(pm.result).max()))
        buf = io.BytesIO()
        heat_png(pictures[n] if shown(arts[n].license, licences) else None,
                 pm.query if n == 0 else pm.result, buf, SIDE, scale, view)
        return Response(buf.getvalue(), media_type="image/png",
                        headers={"cache-control": "private, max-age=3600"})

    @router.get("/api/explain/{a}/{b}")
    def explain_json(a: int = PathParam(ge=1, le=MAX_ID), b: int = PathParam(ge=1, le=MAX_ID),
                     space: str = Query("content", max_length=200),
                     view: str = Query("square", pattern=VIEW)) -> JSONResponse:
        pm, arts, _ = maps(a, b, space, view)
        return JSONResponse({"a": arts[0].id, "b": arts[1].id, "space": space,
                             **pm.as_dict()})

    return router
