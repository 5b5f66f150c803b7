"""The web app of `artsearch serve`: the index it serves (`LiveIndex`) and one router per page
family put together — browse, works, images, uploads, explain, regions, zoom, map, light
table and reports, each in its own module.

Every page and every JSON answer comes from the same core calls as the command line
(`catalogue`, `query.search`); the JSON has the shapes of the CLI's `--json`. Images are
served by artwork id only, from inside the collection folder. The index is re-read when an
`artsearch index` run on it has saved new vectors, so the server never needs a restart.
"""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from artsearch.errors import ArtsearchError, IndexDamagedError, NotIndexedError
from artsearch.web.browse import browse_routes
from artsearch.web.explain import explain_routes
from artsearch.web.images import image_routes
from artsearch.web.lighttable import LightTableWriteError, lighttable_routes
from artsearch.web.live import LiveIndex
from artsearch.web.map import map_routes
from artsearch.web.regions import region_routes
from artsearch.web.reports import report_routes
from artsearch.web.uploads import (
    MAX_UPLOAD_BYTES,
    RETRY_AFTER_SECONDS,
    RecentUploads,
    ServerBusyError,
    upload_routes,
)
from artsearch.web.works import work_routes
from artsearch.web.zoom import zoom_routes

__all__ = ["MAX_UPLOAD_BYTES", "LiveIndex", "create_app"]

HERE = Path(__file__).resolve().parent


def create_app(index_path: Path, *, max_upload: int = MAX_UPLOAD_BYTES,
               licences: frozenset[str] | None = None,
               public_url: str | None = None) -> FastAPI:
    """The app over one index folder (no security middleware: `serve.build` adds it).

    Images of works whose licence class is not in `licences` (artsearch.rights; default:
    public domain, CC0, CC BY, CC BY-SA) are never sent: their thumbnails are grey tiles
    with the rights statement and /image/ refuses them."""
    from artsearch.rights import DEFAULT_SHOWN

    allowed = DEFAULT_SHOWN if licences is None else licences

    live = LiveIndex(index_path)
    live.get()  # a missing or unreadable index fails at start, not at the first request
    app = FastAPI(title="artsearch", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    # Autoescaping on for every template, whatever its name: catalogue text is never markup.
    templates = Jinja2Templates(env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/style/base.css")
    def base_css() -> Response:
        """The stylesheet the app's pages and the HTML reports share."""
        from artsearch.reports.page import BASE_CSS

        return Response(BASE_CSS, media_type="text/css; charset=utf-8",
                        headers={"cache-control": "public, max-age=3600"})

    app.include_router(report_routes(live, templates, allowed))
    app.include_router(region_routes(live, templates, allowed))
    app.include_router(zoom_routes(live, templates, allowed))
    maps, lay_out_maps = map_routes(live, templates, allowed)
    app.include_router(maps)
    app.include_router(lighttable_routes(live, templates, public_url))
    # Uploads kept on disk (results' addresses, explain pages), in memory for a read-only index.
    recent = RecentUploads(live.path / "uploads" if os.access(live.path, os.W_OK) else None)
    uploads, load_models = upload_routes(live, templates, recent, max_upload)
    app.include_router(uploads)
    app.include_router(explain_routes(live, templates, allowed, recent))

    def warm() -> None:
        """What `serve` does in the background at start: each space's model loaded, then
        each space's map laid out."""
        load_models()
        lay_out_maps()

    app.state.warm = warm

    @app.exception_handler(ArtsearchError)
    async def refused(request: Request, exc: ArtsearchError) -> Response:
        status = 404 if isinstance(exc, NotIndexedError) else \
            503 if isinstance(exc, ServerBusyError) else \
            500 if isinstance(exc, IndexDamagedError) else \
            507 if isinstance(exc, LightTableWriteError) else 400
        headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)
        return templates.TemplateResponse(request, "message.html", {"message": str(exc)},
                                          status_code=status, headers=headers)

    app.include_router(browse_routes(live, templates, allowed))
    app.include_router(work_routes(live, templates, allowed))
    app.include_router(image_routes(live, allowed))
    return app
