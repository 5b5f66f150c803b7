"""The web app of `artsearch serve`: the index it serves (`LiveIndex`) and one router per page
family put together — browse, works, images, uploads, explain, regions, zoom, map, light
table and reports, each in its own module.

Every page and every JSON answer comes from the same core calls as the command line
(`catalogue`, `query.search`); the JSON has the shapes of the CLI's `--json`. Images are
served by artwork id only, from inside the collection folder. The index is re-read when an
`artsearch index` run on it has saved new vectors, so the server never needs a restart.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from artsearch.errors import ArtsearchError, IndexDamagedError, NotIndexedError
from artsearch.index import ArtIndex
from artsearch.web.browse import browse_routes
from artsearch.web.explain import explain_routes
from artsearch.web.images import image_routes
from artsearch.web.lighttable import LightTableWriteError, lighttable_routes
from artsearch.web.map import map_routes
from artsearch.web.regions import region_routes
from artsearch.web.reports import report_routes
from artsearch.web.uploads import (
    MAX_UPLOAD_BYTES,
    RETRY_AFTER_SECONDS,
    ServerBusyError,
    upload_routes,
)
from artsearch.web.works import work_routes
from artsearch.web.zoom import zoom_routes

__all__ = ["MAX_UPLOAD_BYTES", "LiveIndex", "create_app"]

HERE = Path(__file__).resolve().parent


class LiveIndex:
    """The opened index, reopened when a writer has saved since (its spaces' recorded files
    changed): queries always see one consistent, saved state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._index: ArtIndex | None = None
        self._stamp: object = None
        self._extractors: dict[tuple[str, str], Any] = {}
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

    def memo(self, key: object, compute: Any) -> Any:
        """`compute()`, remembered until the index changes: browsing and facet counts over
        a large collection are read far more often than a writer saves."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = compute()
        with self._lock:
            if len(self._memo) >= 512:
                self._memo.clear()
            self._memo[key] = value
        return value

    def extractor(self, index: ArtIndex, space: Any) -> Any:
        """One model per space, built on first use and kept (query by upload)."""
        from artsearch.query import default_extractor

        key = (space.name, space.weights_sha256)
        with self._lock:
            if key not in self._extractors:
                self._extractors[key] = default_extractor(index, space)
            return self._extractors[key]


def create_app(index_path: Path, *, max_upload: int = MAX_UPLOAD_BYTES,
               licences: frozenset[str] | None = None) -> FastAPI:
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
    maps = map_routes(live, templates, allowed)
    app.include_router(maps)
    app.include_router(lighttable_routes(live, templates))
    uploads = upload_routes(live, templates, max_upload)
    app.include_router(uploads)
    app.include_router(explain_routes(live, templates, allowed,
                                      uploads.uploads))  # type: ignore[attr-defined]

    def warm() -> None:
        """What `serve` does in the background at start: each space's model loaded, then
        each space's map laid out."""
        uploads.warm()  # type: ignore[attr-defined]
        maps.prepare()  # type: ignore[attr-defined]

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

    app.include_router(browse_routes(live, templates))
    app.include_router(work_routes(live, templates, allowed))
    app.include_router(image_routes(live, allowed))
    return app
