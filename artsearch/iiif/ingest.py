"""Fetching a manifest's canvases into the index folder and indexing them as a collection."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch.errors import BadImageError
from artsearch.iiif.fetching import FetchOptions, IIIFError, fetch
from artsearch.iiif.read import Canvas, Crop, image_request, read_canvases, turn_locally
from artsearch.textsafe import terminal

if TYPE_CHECKING:
    from artsearch.index import ArtIndex
    from artsearch.indexer import IndexOptions, IndexReport

__all__ = ["CATALOGUE", "FOLDER", "FetchReport", "fetch_canvases", "index_iiif"]

FOLDER = "iiif-images"  # inside the index folder: the fetched pictures, indexed as a collection
CATALOGUE = "iiif-catalogue.csv"


@dataclass
class FetchReport:
    canvases: int = 0
    fetched: int = 0
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (canvas URI, reason)
    manifests: int = 0


def _other_quality(url: str) -> str | None:
    """The same Image API request with the other version's quality name (1.x `native`,
    2.x and 3 `default`); None for a URL that names neither."""
    for a, b in (("/native.jpg", "/default.jpg"), ("/default.jpg", "/native.jpg")):
        if url.endswith(a):
            return url[: -len(a)] + b
    return None


def _picture(url: str, opts: FetchOptions, crop: Crop | None = None, turn: int = 0) -> bytes:
    """A canvas's picture, kept only once it decodes (an HTML error page served as 200, or a
    body cut short, is refused); cut to `crop` (fractions) and turned `turn` degrees
    clockwise when the server could not be asked to."""
    import io

    from artsearch.images import decode_image

    data = fetch(url, opts, picture=True)
    try:
        img, _ = decode_image(data)
    except BadImageError as e:
        raise IIIFError(f"{url}: not a picture that decodes ({e}); not kept") from None
    if crop is None and not turn:
        return data
    if crop is not None:
        x0, y0, x1, y1 = crop
        box = (round(x0 * img.width), round(y0 * img.height), round(x1 * img.width),
               round(y1 * img.height))
        if box[2] - box[0] < 8 or box[3] - box[1] < 8:
            raise IIIFError(f"{url}: the selected region is under 8 px at this size; not kept")
        img = img.crop(box)
    if turn:
        img = img.rotate(-turn, expand=True)  # PIL turns anticlockwise
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def fetch_canvases(canvases: Sequence[Canvas], folder: Path, opts: FetchOptions,
                   report: FetchReport, progress: Callable[[int], None] | None = None,
                   *, refetch: frozenset[str] = frozenset()) -> None:
    """Fetch what is not in `folder` yet (or is, but is in `refetch`: pictures the index
    could not decode); each picture written whole under a name of its own, then renamed, so
    a killed run leaves only complete files."""
    todo = []
    for c in canvases:
        if (folder / c.key).is_file() and c.key not in refetch:
            report.already += 1
        else:
            todo.append(c)

    def one(c: Canvas) -> tuple[Canvas, str | None]:
        try:
            url, crop = image_request(c, opts)
            try:
                data = _picture(url, opts, crop, turn_locally(c))
            except IIIFError as e:
                other = _other_quality(url) if e.status == 400 and c.service else None
                if other is None:
                    raise
                # A service whose context and profile disagree on its version: the other
                # version's name for the same quality, once.
                data = _picture(other, opts, crop, turn_locally(c))
        except IIIFError as e:
            return c, str(e)
        path = folder / c.key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return c, None

    with ThreadPoolExecutor(max_workers=max(1, opts.concurrency)) as pool:
        for c, error in pool.map(one, todo):
            if error is None:
                report.fetched += 1
            else:
                report.failed.append((terminal(c.canvas), error))
            if progress is not None:
                progress(1)


def index_iiif(source: str, index: ArtIndex, options: IndexOptions,
               fetch_opts: FetchOptions | None = None,
               progress: Callable[[str], None] | None = None
               ) -> tuple[IndexReport, FetchReport]:
    """Fetch the canvases of a manifest or collection and index them (see the module). The
    writer's lock is taken first: nothing is fetched or written while another run writes."""
    from artsearch.index import catalogue as catalogue_mod
    from artsearch.index.writer import record_failures_now
    from artsearch.indexer import index_collection

    opts = fetch_opts or FetchOptions()
    index.lock()
    folder = index.path / FOLDER
    if index.root is not None and index.root != folder.resolve():
        raise IIIFError(f"{index.path} indexes the folder {index.root}; IIIF pictures are kept "
                        "in an index of their own: give another --index")
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in [*folder.glob("*/.*.part"), index.path / f".{CATALOGUE}.tmp"]:
        leftover.unlink(missing_ok=True)  # a killed run's unfinished files
    report = FetchReport()
    errors: list[tuple[str, str]] = []
    canvases = read_canvases(source, opts, on_error=lambda ref, why: errors.append((ref, why)))
    report.canvases = len(canvases)
    report.manifests = len({c.manifest for c in canvases})
    if progress:
        progress(f"{len(canvases)} canvases in {report.manifests} manifest(s)")
    undecoded = frozenset(f["path"] for f in catalogue_mod.failures(index)) \
        if index.exists else frozenset()
    fetch_canvases(canvases, folder, opts, report, refetch=undecoded)
    report.failed = errors + report.failed
    # The catalogue of everything fetched so far: earlier runs' rows are kept, this run's win.
    catalogue = index.path / CATALOGUE
    rows: dict[str, dict[str, Any]] = {}
    if catalogue.is_file():
        with catalogue.open(newline="", encoding="utf-8") as fh:
            rows = {r["path"]: r for r in csv.DictReader(fh) if r.get("path")}
    for c in canvases:
        if (folder / c.key).is_file():
            rows[c.key] = {"path": c.key, **c.fields}
    columns = ["path", "title", "artist", "date", "style", "genre", "license", "source",
               "iiif_manifest", "iiif_canvas", "iiif_service", "iiif_image",
               "iiif_service_type", "iiif_profile", "iiif_region", "iiif_width",
               "iiif_height"]
    tmp = catalogue.with_name(f".{catalogue.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8", errors="replace") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())
    os.replace(tmp, catalogue)
    if not rows:
        if report.failed:  # every one of them, for `artsearch info --failures`
            record_failures_now(index, report.failed)
            raise IIIFError(
                f"{source}: no canvas picture could be fetched: {len(report.failed)} of "
                f"{max(len(canvases), len(report.failed))} failed (the first: "
                f"{report.failed[0][1]}); `artsearch info --failures` lists every one")
        why = "no canvas has an image" if not canvases else "nothing could be fetched"
        raise IIIFError(f"{source}: no canvas picture could be fetched ({why})")
    options.metadata = catalogue
    result = index_collection(folder, index, options)
    if report.failed:  # kept for `artsearch info --failures`, by canvas URI
        record_failures_now(index, report.failed)
    return result, report


