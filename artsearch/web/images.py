"""A work's picture in the app: `/image/ID` (the file itself) and `/thumb/ID` (a JPEG made
once and kept in INDEX/thumbs by content hash), each only for a work whose licence class is
shown and whose file lies inside the collection; a withheld work's thumbnail is a grey tile
with its rights statement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from artsearch.errors import BadImageError, NotIndexedError
from artsearch.index import ArtIndex
from artsearch.web.common import MAX_ID, find_work, keep_cached
from artsearch.web.live import LiveIndex

__all__ = ["THUMB_SIZES", "image_routes", "inside_collection", "thumbnail"]

THUMB_SIZES = {"s": 200, "m": 560}
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jpe": "image/jpeg",
               ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp",
               ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}


def image_routes(live: LiveIndex, allowed: frozenset[str]) -> APIRouter:
    """Routes: /image/ID and /thumb/ID?size=s|m."""
    from artsearch.rights import shown, statement

    router = APIRouter()

    @router.get("/image/{artwork_id}")
    def image(artwork_id: int = PathParam(ge=1, le=MAX_ID)) -> Response:
        index = live.get()
        art = find_work(index, artwork_id)
        if not shown(art.license, allowed):
            return Response(f"{statement(art.license)} (artsearch serve --show-licences "
                            "decides which licences are shown)\n", status_code=403,
                            media_type="text/plain; charset=utf-8")
        path = inside_collection(index, art)
        return FileResponse(path, media_type=IMAGE_TYPES.get(path.suffix.lower(),
                                                             "application/octet-stream"),
                            headers={"cache-control": "private, max-age=3600"})

    @router.get("/thumb/{artwork_id}")
    def thumb(request: Request, artwork_id: int = PathParam(ge=1, le=MAX_ID),
              size: str = Query("s", pattern="^[sm]$")) -> Response:
        index = live.get()
        art = find_work(index, artwork_id)
        if not shown(art.license, allowed):
            return Response(_withheld_tile(statement(art.license), THUMB_SIZES[size]),
                            media_type="image/svg+xml",
                            headers={"cache-control": "no-store",
                                     "content-security-policy": "default-src 'none'"})
        etag = f'"{art.sha256[:20]}-{size}"'
        headers = {"etag": etag, "cache-control": "private, max-age=86400"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        body = thumbnail(index, art, THUMB_SIZES[size])
        return Response(body, media_type="image/jpeg", headers=headers)

    return router


def inside_collection(index: ArtIndex, art: Any) -> Path:
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


def thumbnail(index: ArtIndex, art: Any, side: int) -> bytes:
    """A JPEG at most `side` px, cached under INDEX/thumbs by content hash and size."""
    from artsearch.images import read_file, thumbnail_jpeg

    cache = index.path / "thumbs" / f"{art.sha256}-{side}.jpg"
    if cache.is_file():
        return cache.read_bytes()
    path = inside_collection(index, art)
    try:
        body = thumbnail_jpeg(read_file(path), side)
    except BadImageError as e:
        raise BadImageError(f"artwork {art.id}: {e}") from e
    keep_cached(cache, body)
    return body
