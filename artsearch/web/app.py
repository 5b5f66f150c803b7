"""The web app of `artsearch serve`: browse, a work and its neighbours, query by upload, JSON.

Every page and every JSON answer comes from the same core calls as the command line
(`catalogue`, `query.search`); the JSON has the shapes of the CLI's `--json`. Images are
served by artwork id only, from inside the collection folder. The index is re-read when an
`artsearch index` run on it has saved new vectors, so the server never needs a restart.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from artsearch import catalogue
from artsearch.errors import ArtsearchError, BadImageError, NotIndexedError
from artsearch.index import ArtIndex
from artsearch.textsafe import json_safe
from artsearch.web.explain import explain_routes
from artsearch.web.lighttable import lighttable_routes
from artsearch.web.map import map_routes
from artsearch.web.regions import region_routes, region_spaces
from artsearch.web.reports import report_routes
from artsearch.web.uploads import (
    MAX_UPLOAD_BYTES,
    RETRY_AFTER_SECONDS,
    ServerBusyError,
    upload_routes,
)
from artsearch.web.zoom import zoom_routes

__all__ = ["MAX_UPLOAD_BYTES", "THUMB_SIZES", "LiveIndex", "create_app"]

HERE = Path(__file__).resolve().parent
THUMB_SIZES = {"s": 200, "m": 560}
PAGE = 48
MAX_ID = 2**63 - 1  # SQLite's integers: a larger id is no artwork, not an overflow
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jpe": "image/jpeg",
               ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp",
               ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}


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


def _filters(index: ArtIndex, items: list[str], also: list[str] | None = None
             ) -> dict[str, list[str]]:
    """`where` parameters as a filter, refused when a field (or one of `also`) no work has."""
    filters = catalogue.parse_where([i for i in items if i.strip()])
    catalogue.check_fields(index, [*filters, *(also or [])])
    return filters


def _keep(q: str, where: list[str]) -> str:
    """The search and filters as a query string, kept on links from work to work."""
    from urllib.parse import urlencode

    pairs = ([("q", q)] if q else []) + [("where", w) for w in where if w.strip()]
    return urlencode(pairs)


def _work_dict(art: Any) -> dict[str, Any]:
    return {"id": art.id, "path": art.path, "title": art.title, "artist": art.artist,
            "date": art.date, "style": art.style, "genre": art.genre, "license": art.license,
            "source": art.source, "extra": art.extra, "width": art.width, "height": art.height,
            "century": catalogue.field_value(art, "century")}


def create_app(index_path: Path, *, max_upload: int = MAX_UPLOAD_BYTES,
               licences: frozenset[str] | None = None) -> FastAPI:
    """The app over one index folder (no security middleware: `serve.build` adds it).

    Images of works whose licence class is not in `licences` (artsearch.rights; default:
    public domain, CC0, CC BY, CC BY-SA) are never sent: their thumbnails are grey tiles
    with the rights statement and /image/ refuses them."""
    from artsearch.query import parse_mix, search
    from artsearch.rights import DEFAULT_SHOWN, licence_class, shown, statement

    allowed = DEFAULT_SHOWN if licences is None else licences

    live = LiveIndex(index_path)
    live.get()  # a missing or unreadable index fails at start, not at the first request
    app = FastAPI(title="artsearch", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    # Autoescaping on for every template, whatever its name: catalogue text is never markup.
    templates = Jinja2Templates(env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
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
            503 if isinstance(exc, ServerBusyError) else 400
        headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else None
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)
        return templates.TemplateResponse(request, "message.html", {"message": str(exc)},
                                          status_code=status, headers=headers)


    def artwork(index: ArtIndex, artwork_id: int) -> Any:
        art = catalogue.find_artwork(index, id=artwork_id)
        if art is None:
            raise NotIndexedError(f"no artwork {artwork_id} in this index")
        return art

    def neighbours(index: ArtIndex, art_id: int, *, space: str | None, mix: str | None,
                   k: int, where: dict[str, list[str]], exclude: list[str]) -> Any:
        return search(index, artwork=art_id, space=space or "content",
                      mix=parse_mix(mix) if mix else None, k=k, where=where or None,
                      exclude_same=exclude)

    # -- pages ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def browse_page(request: Request, q: str = "", where: list[str] = Query([]),
                    page: int = Query(1, ge=1, le=100_000),
                    more: str | None = Query(None, max_length=100)) -> Response:
        index = live.get()
        filters = _filters(index, where)
        key = (tuple(sorted((f, tuple(v)) for f, v in filters.items())), q)
        total, works = live.memo(("browse", key, page), lambda: catalogue.browse(
            index, where=filters, text_query=q, offset=(page - 1) * PAGE, limit=PAGE))
        return templates.TemplateResponse(request, "browse.html", {
            "q": q, "where": where, "filters": filters, "works": works, "total": total,
            "page": page, "pages": max(1, -(-total // PAGE)),
            "facets": live.memo(("facets", key, more), lambda: catalogue.facets(
                index, where=filters, text_query=q, all_of=more)), "more": more,
            "text_spaces": text_spaces(index), "keep": _keep(q, where),
            "spaces": [sp.name for sp in index.spaces()]})

    @app.get("/work/{artwork_id}", response_class=HTMLResponse)
    def work_page(request: Request, artwork_id: int = PathParam(ge=1, le=MAX_ID),
                  k: int = Query(12, ge=1, le=100),
                  blend: int = Query(0, ge=0, le=100), exclude: list[str] = Query([]),
                  where: list[str] = Query([])) -> Response:
        index = live.get()
        art = artwork(index, artwork_id)
        filters = _filters(index, where, exclude)
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
            "art": art, "work": _work_dict(art), "columns": columns, "blended": blended,
            "blend": blend, "k": k, "exclude": exclude, "where": where, "spaces": spaces,
            "also": also, "withheld": withheld, "keep": _keep("", where),
            "compared": compared if len(spaces) > 1 else [],
            "explainable": [sp.name for sp in index.spaces()],  # by map or by occlusion
            "region_spaces": region_spaces(index)})

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
        return live.memo(("text-spaces",), find)  # type: ignore[no-any-return]

    def by_text(index: ArtIndex, q: str, space: str | None, k: int) -> Any:
        names = text_spaces(index)
        if not names:
            raise NotIndexedError("no space of this index understands text: index one with "
                                  "an open_clip backbone (artsearch index DIR --space clip "
                                  "--backbone open_clip:ARCH/TAG)")
        return search(index, text=q, space=space or names[0], k=k,
                      make_extractor=lambda sp: live.extractor(index, sp))

    @app.get("/text", response_class=HTMLResponse)
    def text_page(request: Request, q: str = Query(..., min_length=1, max_length=500),
                  space: str | None = None) -> Response:
        index = live.get()
        result = by_text(index, q, space, 24)
        return templates.TemplateResponse(request, "results.html", {
            "result": result, "name": f"“{q}”", "space": result.space,
            "spaces": [sp.name for sp in index.spaces()]})

    @app.get("/api/text")
    def api_text(q: str = Query(..., min_length=1, max_length=500), space: str | None = None,
                 k: int = Query(10, ge=1, le=1000)) -> JSONResponse:
        result = by_text(live.get(), q, space, k)
        return JSONResponse(json_safe(with_provenance(live.get(), result, "GET /api/text")))

    # -- images -----------------------------------------------------------------------------

    @app.get("/image/{artwork_id}")
    def image(artwork_id: int = PathParam(ge=1, le=MAX_ID)) -> Response:
        index = live.get()
        art = artwork(index, artwork_id)
        if not shown(art.license, allowed):
            return Response(f"{statement(art.license)} (artsearch serve --show-licences "
                            "decides which licences are shown)\n", status_code=403,
                            media_type="text/plain; charset=utf-8")
        path = _inside_collection(index, art)
        return FileResponse(path, media_type=IMAGE_TYPES.get(path.suffix.lower(),
                                                             "application/octet-stream"),
                            headers={"cache-control": "private, max-age=3600"})

    @app.get("/thumb/{artwork_id}")
    def thumb(request: Request, artwork_id: int = PathParam(ge=1, le=MAX_ID),
              size: str = Query("s", pattern="^[sm]$")) -> Response:
        index = live.get()
        art = artwork(index, artwork_id)
        if not shown(art.license, allowed):
            return Response(_withheld_tile(statement(art.license), THUMB_SIZES[size]),
                            media_type="image/svg+xml",
                            headers={"cache-control": "no-store",
                                     "content-security-policy": "default-src 'none'"})
        etag = f'"{art.sha256[:20]}-{size}"'
        headers = {"etag": etag, "cache-control": "private, max-age=86400"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        body = _thumbnail(index, art, THUMB_SIZES[size])
        return Response(body, media_type="image/jpeg", headers=headers)

    # -- JSON -------------------------------------------------------------------------------

    @app.get("/api/works")
    def api_works(q: str = "", where: list[str] = Query([]),
                  offset: int = Query(0, ge=0, le=10**9), limit: int = Query(PAGE, ge=1, le=500)
                  ) -> JSONResponse:
        index = live.get()
        filters = _filters(index, where)
        total, works = catalogue.browse(index, where=filters, text_query=q, offset=offset,
                                        limit=limit)
        return JSONResponse(json_safe({"total": total, "offset": offset,
                                       "works": [_work_dict(a) for a in works]}))

    @app.get("/api/facets")
    def api_facets(q: str = "", where: list[str] = Query([])) -> JSONResponse:
        index = live.get()
        filters = _filters(index, where)
        key = (tuple(sorted((f, tuple(v)) for f, v in filters.items())), q)
        found = live.memo(("facets", key), lambda: catalogue.facets(
            index, where=filters, text_query=q))
        return JSONResponse({f: [{"value": v, "count": n} for v, n in rows]
                             for f, rows in found.items()})

    @app.get("/api/works/{artwork_id}")
    def api_work(artwork_id: int = PathParam(ge=1, le=MAX_ID)) -> JSONResponse:
        return JSONResponse(json_safe(_work_dict(artwork(live.get(), artwork_id))))

    @app.get("/api/works/{artwork_id}/neighbours")
    def api_neighbours(artwork_id: int = PathParam(ge=1, le=MAX_ID), space: str = "content",
                       mix: str | None = None,
                       k: int = Query(10, ge=1, le=1000), where: list[str] = Query([]),
                       exclude_same: list[str] = Query([])) -> JSONResponse:
        index = live.get()
        art = artwork(index, artwork_id)
        filters = _filters(index, where, exclude_same)
        result = neighbours(index, art.id, space=space, mix=mix, k=k, where=filters,
                            exclude=exclude_same)
        return JSONResponse(json_safe(with_provenance(index, result, "GET /api/works/ID/"
                                                                     "neighbours")))

    return app


def _inside_collection(index: ArtIndex, art: Any) -> Path:
    """The work's file, refused unless it (links resolved) lies inside the collection."""
    from artsearch.paths import inside

    if index.root is None:
        raise NotIndexedError("the index does not know its collection folder")
    path = inside(index.root, art.path)
    if path is None:
        raise NotIndexedError(f"artwork {art.id}: its file points outside the collection; "
                              "not served")
    if not path.is_file():
        raise NotIndexedError(f"artwork {art.id}: its file is gone from the collection")
    return path


def with_provenance(index: ArtIndex, result: Any, request: str) -> dict[str, Any]:
    """A result as `artsearch query --json` gives it: with its provenance block."""
    from artsearch.provenance import provenance

    spaces = [p.partition("=")[0] for p in result.space.split("+")]
    return {**result.as_dict(),
            "provenance": provenance(index, spaces, command=f"serve: {request}")}


def _withheld_tile(text: str, side: int) -> bytes:
    """A grey square with the rights statement, wrapped over a few lines (SVG, escaped)."""
    import textwrap
    from xml.sax.saxutils import escape

    lines = textwrap.wrap(text, 24)[:6]
    step = side // 12
    top = side // 2 - step * (len(lines) - 1) // 2
    spans = "".join(f"<text x='50%' y='{top + i * step}' text-anchor='middle'>{escape(line)}"
                    "</text>" for i, line in enumerate(lines))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{side}' height='{side}'>"
            f"<rect width='100%' height='100%' fill='#d9d9d6'/><g font-family='sans-serif' "
            f"font-size='{max(9, side // 16)}' fill='#333'>{spans}</g></svg>").encode()


def _thumbnail(index: ArtIndex, art: Any, side: int) -> bytes:
    """A JPEG at most `side` px, cached under INDEX/thumbs by content hash and size."""
    from PIL import Image

    from artsearch.images import decode_image, read_file

    cache = index.path / "thumbs" / f"{art.sha256}-{side}.jpg"
    if cache.is_file():
        return cache.read_bytes()
    path = _inside_collection(index, art)
    try:
        img, _ = decode_image(read_file(path), min_side=side)
    except BadImageError as e:
        raise BadImageError(f"artwork {art.id}: {e}") from e
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    body = out.getvalue()
    try:  # a read-only index folder still serves, it only does not cache
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, cache)
    except OSError:
        pass
    return body
