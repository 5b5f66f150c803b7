"""Deep zoom of a work's full picture: `/work/ID/zoom` (the vendored OpenSeadragon viewer),
`/tiles/ID.dzi` (a Deep Zoom descriptor) and `/tiles/ID_files/LEVEL/COL_ROW.jpg` (tiles, made
on first request and kept under INDEX/tiles/ by content hash). Only works whose licence
class the server shows are zoomable: the others' descriptor and tiles are refused, as
/image/ refuses them."""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.web.common import keep_cached
from artsearch.web.live import LiveIndex

__all__ = ["TILE", "zoom_routes"]

MAX_ID = 2**63 - 1
TILE = 254      # pixels a tile; with the overlap, 256 at most
OVERLAP = 1
QUALITY = 85
LEVELS_KEPT = 4  # decoded pyramid levels kept in memory (a viewer asks a level many times)


def levels(width: int, height: int) -> int:
    """Deep Zoom levels: 0 is 1 x 1 pixel, the last the full picture."""
    return math.ceil(math.log2(max(width, height, 1))) + 1


def level_size(width: int, height: int, level: int) -> tuple[int, int]:
    scale = 2.0 ** (level - (levels(width, height) - 1))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def tile_box(size: tuple[int, int], col: int, row: int) -> tuple[int, int, int, int] | None:
    """The pixels of tile (col, row) in a level of `size`, overlap included; None outside."""
    w, h = size
    if col < 0 or row < 0 or col * TILE >= w or row * TILE >= h:
        return None
    x0, y0 = max(0, col * TILE - OVERLAP), max(0, row * TILE - OVERLAP)
    return x0, y0, min(w, (col + 1) * TILE + OVERLAP), min(h, (row + 1) * TILE + OVERLAP)


def zoom_routes(live: LiveIndex, templates: Jinja2Templates, licences: frozenset[str]) -> APIRouter:
    from PIL import Image

    from artsearch.errors import NotIndexedError
    from artsearch.images import decode_image, read_file
    from artsearch.index import catalogue
    from artsearch.rights import shown, statement

    router = APIRouter()
    lock = threading.Lock()
    pyramid: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()

    def work(artwork_id: int) -> Any:
        from artsearch.web.images import inside_collection

        index = live.get()
        art = catalogue.find_artwork(index, id=artwork_id)
        if art is None:
            raise NotIndexedError(f"no artwork {artwork_id} in this index")
        return index, art, (inside_collection(index, art) if shown(art.license, licences)
                            else None)

    def refused(art: Any) -> Response:
        return Response(f"{statement(art.license)} (artsearch serve --show-licences decides "
                        "which licences are shown)\n", status_code=403,
                        media_type="text/plain; charset=utf-8")

    def picture(art: Any, path: Path) -> Image.Image:
        key = (art.sha256, -1)
        with lock:
            if key in pyramid:
                pyramid.move_to_end(key)
                return pyramid[key]
        img, _ = decode_image(read_file(path))
        return remember(key, img)

    def remember(key: tuple[str, int], img: Image.Image) -> Image.Image:
        with lock:
            pyramid[key] = img
            while len(pyramid) > LEVELS_KEPT:
                pyramid.popitem(last=False)
        return img

    def level_image(art: Any, path: Path, level: int) -> Image.Image:
        with lock:
            if (art.sha256, level) in pyramid:
                pyramid.move_to_end((art.sha256, level))
                return pyramid[(art.sha256, level)]
        full = picture(art, path)
        size = level_size(*full.size, level)
        img = full if size == full.size else full.resize(size, Image.Resampling.LANCZOS)
        return remember((art.sha256, level), img)

    @router.get("/work/{artwork_id}/zoom", response_class=HTMLResponse)
    def zoom_page(request: Request, artwork_id: int = PathParam(ge=1, le=MAX_ID)) -> Response:
        index, art, path = work(artwork_id)
        return templates.TemplateResponse(request, "zoom.html", {
            "art": art, "withheld": None if path is not None else statement(art.license),
            "spaces": [sp.name for sp in index.spaces()]})

    @router.get("/tiles/{artwork_id}.dzi")
    def descriptor(artwork_id: int = PathParam(ge=1, le=MAX_ID)) -> Response:
        _, art, path = work(artwork_id)
        if path is None:
            return refused(art)
        w, h = picture(art, path).size
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Image xmlns="http://schemas.'
               f'microsoft.com/deepzoom/2008" TileSize="{TILE}" Overlap="{OVERLAP}" '
               f'Format="jpg"><Size Width="{w}" Height="{h}"/></Image>\n')
        return Response(xml, media_type="application/xml",
                        headers={"cache-control": "private, max-age=3600"})

    @router.get("/tiles/{artwork_id}_files/{level}/{col}_{row}.jpg")
    def tile(artwork_id: int = PathParam(ge=1, le=MAX_ID),
             level: int = PathParam(ge=0, le=40), col: int = PathParam(ge=0, le=1_000_000),
             row: int = PathParam(ge=0, le=1_000_000)) -> Response:
        index, art, path = work(artwork_id)
        if path is None:
            return refused(art)
        headers = {"cache-control": "private, max-age=86400"}
        cache = index.path / "tiles" / art.sha256 / str(level) / f"{col}_{row}.jpg"
        if cache.is_file():
            return Response(cache.read_bytes(), media_type="image/jpeg", headers=headers)
        full = picture(art, path)
        if level >= levels(*full.size):
            raise NotIndexedError(f"artwork {art.id} has no zoom level {level}")
        box = tile_box(level_size(*full.size, level), col, row)
        if box is None:
            raise NotIndexedError(f"artwork {art.id} has no tile {col}_{row} at level {level}")
        buf = io.BytesIO()
        level_image(art, path, level).crop(box).save(buf, "JPEG", quality=QUALITY)
        body = buf.getvalue()
        keep_cached(cache, body)
        return Response(body, media_type="image/jpeg", headers=headers)

    return router
