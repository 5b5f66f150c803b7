"""Query by upload (`POST /query`, `POST /api/query`): decoded and embedded off the event loop,
a bounded number at once. A page's upload answers 303 to `GET /query/KEY`, its results'
address; the uploads are kept under the index (bounded) so that address lasts, the same
picture can be asked of another space and shown beside its results."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.errors import ArtsearchError, BadImageError, NotIndexedError
from artsearch.textsafe import json_safe
from artsearch.web.live import LiveIndex

__all__ = ["MAX_UPLOAD_BYTES", "RETRY_AFTER_SECONDS", "UPLOADS_AT_ONCE", "RecentUploads",
           "ServerBusyError", "upload_routes"]

MAX_UPLOAD_BYTES = 32 << 20  # a 100-megapixel JPEG is about 30 MB
# Uploads decoded and embedded at once, each in a worker thread (never on the event loop, so
# browsing stays quick while one is embedded); one more is answered 503 with Retry-After.
UPLOADS_AT_ONCE = 2
RETRY_AFTER_SECONDS = 5
# Uploads run in threads of their own at a lower CPU priority (where the system has per-
# thread priorities, as Linux does): decoding a 144-megapixel picture takes a core for
# seconds, and pages asked for meanwhile should not wait behind it.
UPLOAD_NICENESS = 10


class ServerBusyError(ArtsearchError):
    """As many uploads as the server embeds at once are under way; try again shortly."""
class RecentUploads:
    """The last uploads, kept so that a result page has an address (`/query/KEY`: reload,
    Back and a shared link work, after a restart too), the same picture can be asked of
    another space and shown beside its results. Each is kept as sent when under 4 MB (so an
    upload of an indexed file is still known as that work), else as a JPEG of at most
    1024 px, beside a JPEG of at most 640 px to show (never the bytes sent). On disk in
    `folder` (INDEX/uploads, files readable by their owner only), the newest `size` and at
    most `max_bytes`, oldest evicted; in memory (the newest 16) where no folder is given or
    it cannot be written."""

    MEMORY = 16

    def __init__(self, folder: Path | None = None, size: int = 200,
                 max_bytes: int = 1 << 30) -> None:
        self.folder, self.size, self.max_bytes = folder, size, max_bytes
        self._kept: dict[str, tuple[str, bytes, bytes]] = {}
        self._lock = threading.Lock()

    def keep(self, name: str, data: bytes) -> str:
        import hashlib

        from artsearch.images import decode_image

        img, _ = decode_image(data)  # refused here as the search would refuse it

        def jpeg(side: int) -> bytes:
            small = img.copy()
            small.thumbnail((side, side))
            out = io.BytesIO()
            small.convert("RGB").save(out, "JPEG", quality=88)
            return out.getvalue()

        kept = data if len(data) <= 4 << 20 else jpeg(1024)
        key = hashlib.sha256(data).hexdigest()[:32]
        name = "".join(ch for ch in name if ch.isprintable())[:200] or "upload"
        shown = jpeg(640)
        with self._lock:
            if not self._write(key, name, kept, shown):
                self._kept[key] = (name, kept, shown)
                for old in list(self._kept)[:-self.MEMORY]:
                    del self._kept[old]
        return key

    def get(self, key: str) -> tuple[str, bytes, bytes] | None:
        """(name, bytes to search with, a JPEG to show), or None once evicted."""
        with self._lock:
            if key in self._kept:
                return self._kept[key]
            if self.folder is None:
                return None
            try:
                return ((self.folder / f"{key}.name").read_text("utf-8"),
                        (self.folder / f"{key}.search").read_bytes(),
                        (self.folder / f"{key}.jpg").read_bytes())
            except (OSError, UnicodeDecodeError):
                return None

    def _write(self, key: str, name: str, kept: bytes, shown: bytes) -> bool:
        """Write the three files of one upload (each whole or not at all) and evict the
        oldest; False where the folder cannot be written (the caller keeps it in memory)."""
        import tempfile

        if self.folder is None:
            return False
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The picture's files first and its name last: an upload whose name is there is
            # whole (an interrupted write leaves no name, and is never answered).
            for suffix, body in ((".search", kept), (".jpg", shown),
                                 (".name", name.encode("utf-8"))):
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".upload-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(body)
                    os.replace(tmp, self.folder / f"{key}{suffix}")
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            self._evict()  # by the names' times: a name is written last
            return True
        except OSError:
            return False

    def _evict(self) -> None:
        assert self.folder is not None
        names = sorted(self.folder.glob("*.name"), key=lambda p: p.stat().st_mtime,
                       reverse=True)
        total = 0
        for i, path in enumerate(names):
            files = [path.with_suffix(x) for x in (".search", ".jpg", ".name")]
            total += sum(f.stat().st_size for f in files if f.exists())
            if i >= self.size or (i and total > self.max_bytes):
                for f in files:
                    f.unlink(missing_ok=True)


def upload_routes(live: LiveIndex, templates: Jinja2Templates, uploads: RecentUploads,
                  max_upload: int = MAX_UPLOAD_BYTES) -> tuple[APIRouter, Callable[[], None]]:
    """The upload routes over `live`, keeping each picture in `uploads` a while (the explain
    pages read them); and the function that loads each space's model (`serve` calls it in
    the background at start)."""
    from artsearch.query import search
    from artsearch.web.common import with_provenance

    router = APIRouter()

    slots = threading.BoundedSemaphore(UPLOADS_AT_ONCE)
    pool = ThreadPoolExecutor(max_workers=UPLOADS_AT_ONCE, thread_name_prefix="upload",
                              initializer=_lower_priority)

    async def off_the_loop(work: Any) -> Any:
        """`work()` in one of the uploads' own threads, if one of their slots is free."""
        import asyncio

        if not slots.acquire(blocking=False):
            raise ServerBusyError(f"{UPLOADS_AT_ONCE} pictures are being compared already; "
                                  f"try again in a few seconds")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        finally:
            slots.release()

    def warm() -> None:
        """Build each space's model once at start, in the background: the first upload
        then answers in about the time of any other."""
        try:
            index = live.get()
            for sp in index.spaces():
                if index.saved_count(sp):
                    ex = live.extractor(index, sp)
                    from PIL import Image

                    ex.embed_images([Image.new("RGB", (64, 64), "grey")])
        except Exception:  # noqa: BLE001 - a space that cannot load says so when asked
            pass


    def judged_search(index: Any, name: str, data: bytes, space: str,
                      k: int) -> tuple[Any, Any]:
        """The upload's neighbours and its verdict (duplicates.verdict: the same picture,
        a crop, detail or version of one of them, or no close match)."""
        from artsearch.duplicates.verdict import verdict
        from artsearch.images import decode_image

        result = search(index, image=Path(name), image_bytes=data, space=space,
                        k=max(1, min(k, 1000)),
                        make_extractor=lambda sp: live.extractor(index, sp))
        said = verdict(index, data, decode_image(data)[0],
                       [(h.id, h.score) for h in result.hits], space)
        return result, said

    async def upload_results(request: Request, key: str, space: str, k: int) -> Response:
        kept = uploads.get(key)
        if kept is None:
            raise NotIndexedError(f"that upload is no longer kept (the newest {uploads.size} "
                                  "are); upload the picture again")
        name, data, _ = kept
        index = live.get()
        result, said = await off_the_loop(lambda: judged_search(index, name, data, space, k))
        return templates.TemplateResponse(request, "results.html", {
            "result": result, "name": name, "space": space, "key": key, "verdict": said,
            "spaces": [s.name for s in index.spaces()], "kept": uploads.size,
            "explainable": True})  # every space: by its map or by occlusion

    @router.post("/query", response_class=HTMLResponse)
    async def upload_page(image: UploadFile = File(...), space: str = Form("content"),
                          k: int = Form(12)) -> Response:
        """Keep the upload and answer 303 to its results' own address (reload, Back and a
        shared link then ask again without sending the picture)."""
        from urllib.parse import urlencode

        data = await _read_upload(image, max_upload)
        live.get().space(space)  # an unknown space is refused before anything is kept
        key = await off_the_loop(lambda: uploads.keep(image.filename or "upload", data))
        query = urlencode({"space": space, "k": max(1, min(k, 100))})
        return RedirectResponse(f"/query/{key}?{query}", status_code=303)

    @router.get("/query/{key}", response_class=HTMLResponse)
    async def upload_again(request: Request, key: str = PathParam(pattern="^[0-9a-f]{32}$"),
                           space: str = Query("content", max_length=200),
                           k: int = Query(12, ge=1, le=100)) -> Response:
        """An upload's results, in any space, without sending it again."""
        return await upload_results(request, key, space, k)

    @router.get("/query/{key}/picture.jpg")
    def upload_picture(key: str = PathParam(pattern="^[0-9a-f]{32}$")) -> Response:
        kept = uploads.get(key)
        if kept is None:
            raise NotIndexedError("that upload is no longer kept")
        return Response(kept[2], media_type="image/jpeg",
                        headers={"cache-control": "private, max-age=600"})

    @router.post("/api/query")
    async def api_query(image: UploadFile = File(...), space: str = Form("content"),
                        k: int = Form(10)) -> JSONResponse:
        data = await _read_upload(image, max_upload)
        index = live.get()
        result, said = await off_the_loop(lambda: judged_search(
            index, image.filename or "upload", data, space, k))
        answer = with_provenance(index, result, "POST /api/query")
        return JSONResponse(json_safe({**answer, "verdict": said.as_dict()}))

    return router, warm


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority by UPLOAD_NICENESS (Linux: per thread)."""
    import contextlib

    # No per-thread priorities here (no os.setpriority, or not allowed): uploads run as pages.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       os.getpriority(os.PRIO_PROCESS, 0) + UPLOAD_NICENESS)


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refused past `limit` without reading further (what is kept of a
    page's upload is RecentUploads' to say; an API upload is gone once answered)."""
    chunks, size = [], 0
    while chunk := await upload.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise BadImageError(f"the upload is over {limit:,} bytes; send a smaller image")
        chunks.append(chunk)
    if not size:
        raise BadImageError("the upload is empty; choose an image file")
    return b"".join(chunks)


