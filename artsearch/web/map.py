"""The collection map as a page of the app: `/map?space=&colour=` draws every work of a space
as a point (t-SNE up to 10,000 works, else the first two principal components, laid out once
and kept in INDEX/maps/), coloured by the space's latest clustering run or by a catalogue
field; pan and zoom (pinch on a touch screen), a click or tap opens the work, shift-drag (or
the select switch) selects a box of works; the point under the pointer or reached by the
arrow keys is shown in a card with a real link, beside links to the works near it. Thumbnails
come from atlas sheets (`/map/atlas/SPACE/N.jpg`, 256 works each, made on first request and
kept), never one request a work; a work whose licence class is not shown is a grey cell.
`/api/map` is the layout as columns of numbers."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.web.common import keep_cached
from artsearch.web.live import LiveIndex

__all__ = ["ATLAS_CELL", "ATLAS_SIDE", "layout", "map_routes"]

ATLAS_SIDE = 16   # an atlas sheet is 16 x 16 works ...
ATLAS_CELL = 48   # ... of 48 px each
COLOURS = 10      # a field's most frequent values get a colour each; the rest are "other"
FIELDS = ("artist", "style", "genre", "date", "source", "license")
MAP_BACKGROUND = (251, 250, 246)  # the map canvas's own colour (style.css)
WITHHELD = (200, 199, 193)  # a work whose licence withholds its picture: a grey square


def layout(index: Any, space: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(artwork ids, (n, 2) coordinates in 0-1, method) of a space, computed once per saved
    state of the space and kept in INDEX/maps/."""
    from artsearch.cluster import space_matrix
    from artsearch.reports.clusters import project_2d

    sp = index.space(space)
    ids, vectors = space_matrix(index, space)
    key = hashlib.sha256(np.asarray(ids, np.int64).tobytes() + vectors[:64].tobytes()
                         + str(len(ids)).encode()).hexdigest()[:16]
    path = index.path / "maps" / f"space-{sp.id}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["ids"], z["xy"], str(z["method"])
    coords, method = project_2d(vectors, 0) if len(ids) else (np.zeros((0, 2)), "empty")
    if len(ids):
        low, high = np.percentile(coords, 0.5, axis=0), np.percentile(coords, 99.5, axis=0)
        coords = np.clip((coords - low) / np.maximum(high - low, 1e-9), 0, 1)
    xy = np.round(coords, 4).astype(np.float32)
    ids_arr = np.asarray(ids, np.int64)
    try:
        path.parent.mkdir(exist_ok=True)
        for old in path.parent.glob(f"space-{sp.id}-*.npz"):
            old.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, ids=ids_arr, xy=xy, method=np.array(method))
        os.replace(tmp, path)
    except OSError:  # a read-only index: laid out again next time
        pass
    return ids_arr, xy, method


def _groups(index: Any, space: str, ids: np.ndarray, colour: str
            ) -> tuple[list[int], list[str], str]:
    """Each work's colour group (an index into the names; -1: none) and what they mean."""
    from artsearch.cluster import runs
    from artsearch.index.catalogue import field_values
    from artsearch.index.clusters import run_clusters

    position = {int(a): i for i, a in enumerate(ids.tolist())}
    group = [-1] * len(ids)
    if colour == "cluster":
        mine = [r for r in runs(index) if r["space"] == space]
        if not mine:
            return group, [], (f"no clustering run of {space} yet: `artsearch cluster "
                               f"--space {space}` makes one")
        run = mine[-1]
        rows = list(run_clusters(index, run["run"]).items())
        clusters = sorted({c for _, c in rows if c >= 0})
        slot = {c: i for i, c in enumerate(clusters)}
        for a, c in rows:
            if a in position and c >= 0:
                group[position[a]] = slot[c]
        return group, [f"cluster {c + 1}" for c in clusters], (
            f"run {run['run']} ({run['method']}, k = {run['k']})")
    rows = list(field_values(index, colour).items())
    counts: dict[str, int] = {}
    for a, v in rows:
        if a in position and v:
            counts[str(v)] = counts.get(str(v), 0) + 1
    names = sorted(counts, key=lambda v: (-counts[v], v))[:COLOURS]
    place = {v: i for i, v in enumerate(names)}
    other = len(counts) > len(names)
    for a, v in rows:
        if a in position and v:
            group[position[a]] = place.get(str(v), len(names) if other else -1)
    return group, names + (["other"] if other else []), f"by {colour}"


def map_routes(live: LiveIndex, templates: Jinja2Templates, licences: frozenset[str]
               ) -> tuple[APIRouter, Callable[[], None]]:
    from artsearch.errors import OptionError
    from artsearch.rights import shown

    router = APIRouter()
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    def laid_out(index: Any, name: str) -> tuple[np.ndarray, np.ndarray, str]:
        """The space's layout, laid out once: a second request for the same space waits for
        the first's; other spaces' requests do not wait."""
        with guard:
            lock = locks.setdefault(name, threading.Lock())
        with lock:
            return live.memo(("map", name), lambda: layout(index, name))

    def checked(index: Any, space: str | None, colour: str) -> str:
        if colour != "cluster" and colour not in FIELDS:
            raise OptionError(f"colour {colour!r}: cluster or one of {', '.join(FIELDS)}")
        return str(index.space(space or index.spaces()[0].name).name)

    @router.get("/map", response_class=HTMLResponse)
    def map_page(request: Request, space: str | None = Query(None, max_length=200),
                 colour: str = Query("cluster", max_length=40)) -> Response:
        index = live.get()
        name = checked(index, space, colour)
        return templates.TemplateResponse(request, "map.html", {
            "space": name, "colour": colour, "fields": FIELDS,
            "spaces": [sp.name for sp in index.spaces()]})

    @router.get("/api/map")
    def map_json(space: str | None = Query(None, max_length=200),
                 colour: str = Query("cluster", max_length=40)) -> JSONResponse:
        index = live.get()
        name = checked(index, space, colour)
        ids, xy, method = laid_out(index, name)
        group, names, meaning = live.memo(("map-colour", name, colour),
                                          lambda: _groups(index, name, ids, colour))
        titles, artists = live.memo(("map-text", name), lambda: _captions(index, ids))
        return JSONResponse({
            "space": name, "method": method, "count": len(ids), "ids": ids.tolist(),
            "titles": titles, "artists": artists,
            "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "group": group,
            "groups": names, "colour": colour, "colour_meaning": meaning,
            "atlas": {"side": ATLAS_SIDE, "cell": ATLAS_CELL}})

    @router.get("/map/atlas/{space}/{sheet}.jpg")
    def atlas(space: str = PathParam(max_length=200), sheet: int = PathParam(ge=0, le=10**6)
              ) -> Response:
        index = live.get()
        name = checked(index, space, "cluster")
        ids, _, _ = laid_out(index, name)
        per = ATLAS_SIDE * ATLAS_SIDE
        part = ids[sheet * per:(sheet + 1) * per].tolist()
        if not part:
            from artsearch.errors import NotIndexedError

            raise NotIndexedError(f"the map of {name} has no atlas sheet {sheet}")
        rights = hashlib.sha256(",".join(sorted(licences)).encode()).hexdigest()[:8]
        digest = hashlib.sha256(np.asarray(part, np.int64).tobytes()).hexdigest()[:12]
        cache = index.path / "maps" / f"atlas-{digest}-{rights}.jpg"
        headers = {"cache-control": "private, max-age=3600"}
        if cache.is_file():
            return Response(cache.read_bytes(), media_type="image/jpeg", headers=headers)
        body = _sheet(index, part, licences, shown)
        keep_cached(cache, body)
        return Response(body, media_type="image/jpeg", headers=headers)

    def prepare() -> None:
        """Lay out every space's map now (`serve` calls this in the background at start),
        so the map page paints at once instead of laying out on its first view."""
        try:
            index = live.get()
            for sp in index.spaces():
                if index.saved_count(sp):
                    laid_out(index, sp.name)
        except Exception:  # noqa: BLE001 - a space that cannot be laid out says so when asked
            pass

    return router, prepare


def _captions(index: Any, ids: np.ndarray) -> tuple[list[str], list[str]]:
    """Each work's title (its file's name where it has none) and artist, row for row: what
    the map's card says of a point (set as text by the page, never as markup)."""
    from artsearch.index.catalogue import artworks

    arts = {a.id: a for a in artworks(index, ids.tolist())}
    titles, artists = [], []
    for i in ids.tolist():
        a = arts.get(int(i))
        titles.append((a.title or a.path.rsplit("/", 1)[-1]) if a is not None else "")
        artists.append((a.artist or "") if a is not None else "")
    return titles, artists


def _sheet(index: Any, ids: list[int], licences: frozenset[str], shown: Any) -> bytes:
    """One atlas sheet: each work's picture fitted into its cell, grey where withheld or
    unreadable."""
    from PIL import Image

    from artsearch.errors import ArtsearchError
    from artsearch.index.catalogue import artworks
    from artsearch.web.images import THUMB_SIZES, thumbnail

    arts = {a.id: a for a in artworks(index, ids)}
    sheet = Image.new("RGB", (ATLAS_SIDE * ATLAS_CELL,) * 2, MAP_BACKGROUND)
    for n, art_id in enumerate(ids):
        art = arts.get(art_id)
        if art is None or not shown(art.license, licences):
            x, y = (n % ATLAS_SIDE) * ATLAS_CELL, (n // ATLAS_SIDE) * ATLAS_CELL
            sheet.paste(WITHHELD, (x + 4, y + 4, x + ATLAS_CELL - 4, y + ATLAS_CELL - 4))
            continue
        try:
            small = Image.open(io.BytesIO(thumbnail(index, art, THUMB_SIZES["s"])))
        except (ArtsearchError, OSError):
            continue
        small.thumbnail((ATLAS_CELL, ATLAS_CELL))
        x = (n % ATLAS_SIDE) * ATLAS_CELL + (ATLAS_CELL - small.width) // 2
        y = (n // ATLAS_SIDE) * ATLAS_CELL + (ATLAS_CELL - small.height) // 2
        sheet.paste(small.convert("RGB"), (x, y))
    out = io.BytesIO()
    sheet.save(out, "JPEG", quality=80)
    return out.getvalue()
