"""The reports an index already has, in the app: clustering runs and audits (written by
`artsearch cluster` and `artsearch audit` into INDEX/reports/ as they run) and the evaluation
reports of the models in INDEX/models/ (written by `artsearch train`).

A report is a folder made to open from disk, with its script and style inline; here each
page gets a Content-Security-Policy that allows exactly those inline blocks, by hash, and
nothing else. Files are looked up by run number or model name, never by a path from the
request, and only inside their report's folder.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.errors import MetadataError, NotIndexedError
from artsearch.web.live import LiveIndex
from artsearch.web.security import HEADERS

__all__ = ["audit_folder", "audited_spaces", "report_routes", "run_folder"]

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json",
          ".jpg": "image/jpeg", ".svg": "image/svg+xml", ".png": "image/png"}


def _csp_for(html: str) -> str:
    """The app's policy, plus the hash of each inline script and style element of this
    page, and style attributes."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    # Reports size bars and colour swatches with style attributes: those (never script, never
    # a <style> element) are allowed on report pages alone.
    policy = HEADERS["content-security-policy"] + "; style-src-attr 'unsafe-inline'"
    policy = policy.replace("script-src 'self'", "script-src 'self' " + " ".join(
        hashes["script"])).replace("style-src 'self'", "style-src 'self' " + " ".join(
            hashes["style"]))
    return policy


_THUMB = re.compile(r"(<img src='thumbs/(\d{1,18})\.jpg'[^>]*>)")
_BACK = ("<nav class=toc aria-label='artsearch'><a href='/'>&larr; artsearch</a> &rsaquo; "
         "<a href='/clusters'>clusters and reports</a></nav>")


def _in_app(html: str) -> str:
    """A report page as the app serves it: a way back to the app at the top, each work's
    thumbnail a link to its page, and the page marked so that its script opens a work when
    its dot on the map is clicked (the file on disk stays as written)."""
    html = html.replace("<body>", "<body data-work-pages='/work/'>" + _BACK, 1)
    html = html.replace(" loading=eager>", " loading=lazy>")  # made as they come into view
    return _THUMB.sub(r"<a href='/work/\2'>\1</a>", html)


_LISTED: dict[Path, tuple[tuple[int, int], frozenset[str]]] = {}


def _own_files(report: Path) -> frozenset[str]:
    """The files the report in `report` lists as its own (reports.page.report_files), read
    again only when its marker changes: a report page asks for each of its thumbnails."""
    from artsearch.reports.page import MARKER, report_files

    try:
        st = (report / MARKER).stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:  # an unmarked earlier report: listed from its folder, every time
        return frozenset(report_files(report))
    if (known := _LISTED.get(report)) is None or known[0] != stamp:
        if len(_LISTED) >= 64:
            _LISTED.clear()
        known = _LISTED[report] = (stamp, frozenset(report_files(report)))
    return known[1]


def _serve(report: Path, name: str, sub: str = "") -> Response:
    """File `name` (of subfolder `sub`) of the report in folder `report`: only a file the
    report lists as its own, never a link or '..' out of it; HTML with its own policy."""
    rel = f"{sub}/{name}" if sub else name
    folder = report / sub if sub else report
    path = (folder / name).resolve()
    if (rel not in _own_files(report) or not path.is_relative_to(report.resolve())
            or not path.is_file()):
        raise NotIndexedError(f"no {name!r} in this report")
    media = _TYPES.get(path.suffix.lower(), "application/octet-stream")
    if path.suffix.lower() == ".html":
        text = _in_app(path.read_text(encoding="utf-8"))
        return HTMLResponse(text, headers={"content-security-policy": _csp_for(text)})
    return FileResponse(path, media_type=media)


def _licence_key(licences: frozenset[str]) -> str:
    from artsearch.rights import DEFAULT_SHOWN

    return "default" if licences == DEFAULT_SHOWN else hashlib.sha256(
        ",".join(sorted(licences)).encode()).hexdigest()[:10]


def run_folder(index_path: Path, run: int, licences: frozenset[str]) -> Path:
    """Where the app keeps clustering run `run`'s report for the licence classes it shows:
    one folder per set of classes, so that servers showing different classes never rewrite
    each other's report (`artsearch cluster` writes the default one as it makes the run)."""
    return index_path / "reports" / f"cluster-run-{run}-{_licence_key(licences)}"


def audit_folder(index_path: Path, space: str, licences: frozenset[str]) -> Path:
    """Where the app keeps the latest audit of `space` for the licence classes it shows
    (`artsearch audit` writes the default one each time it runs)."""
    from artsearch.paths import check_space_name

    return index_path / "reports" / f"audit-{check_space_name(space)}-{_licence_key(licences)}"


def audited_spaces(index_path: Path, spaces: list[str]) -> list[str]:
    """The spaces (of `spaces`) with an audit the app can show."""
    from artsearch.rights import DEFAULT_SHOWN

    return [s for s in spaces
            if (audit_folder(index_path, s, DEFAULT_SHOWN) / "report.json").is_file()]


def model_reports(index_path: Path) -> dict[str, Path]:
    """Model name -> its evaluation report folder, for the models in INDEX/models/."""
    folder = index_path / "models"
    return {p.name.removesuffix("-report"): p for p in sorted(folder.glob("*-report"))
            if (p / "index.html").is_file()} if folder.is_dir() else {}


def _written_for(folder: Path) -> list[str] | None:
    """The licence classes a cluster report's thumbnails were made for (None: unknown)."""
    import json

    try:
        data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        return list(data["rights"]["shown_licences"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def report_routes(live: LiveIndex, templates: Jinja2Templates,
                  licences: frozenset[str] | None = None) -> APIRouter:
    """Routes: /clusters, /clusters/RUN/FILE, /models, /models/NAME/FILE."""
    import shutil

    from artsearch import cluster as clustering
    from artsearch.index.catalogue import find_artwork
    from artsearch.reports.page import MARKER
    from artsearch.rights import DEFAULT_SHOWN, shown

    allowed = DEFAULT_SHOWN if licences is None else licences
    router = APIRouter()

    def thumb_allowed(index: Any, name: str) -> None:
        """A report's thumbnail is sent only if its work's licence allows it now, whatever
        the report was written with (thumbnails are named by artwork id)."""
        stem = name.removesuffix(".jpg")
        art = find_artwork(index, id=int(stem)) if stem.isdigit() and len(stem) < 19 else None
        if art is None or not shown(art.license, allowed):
            raise NotIndexedError(f"no thumbnail {name!r} to show")

    @router.get("/clusters", response_class=HTMLResponse)
    def runs_page(request: Request) -> Response:
        index = live.get()
        return templates.TemplateResponse(request, "reports.html", {
            "runs": clustering.runs(index), "models": list(model_reports(index.path)),
            "audits": audited_spaces(index.path, [sp.name for sp in index.spaces()]),
            "spaces": [sp.name for sp in index.spaces()]})

    def audit_of(space: str) -> Path:
        """The folder of the latest audit of `space` for the classes this server shows:
        made by `artsearch audit` for the default classes; for others, drawn again once
        from that audit's own results."""
        import json

        from artsearch.reports.audit import audit_report

        index = live.get()
        name = index.space(space).name  # an unknown space is refused with the list of them
        folder = audit_folder(index.path, name, allowed)
        if (folder / "index.html").is_file():
            return folder
        made = audit_folder(index.path, name, DEFAULT_SHOWN) / "report.json"
        if not made.is_file():
            raise NotIndexedError(f"no audit of the {name!r} space yet: `artsearch audit "
                                  f"--space {name}` makes one")
        data = json.loads(made.read_text(encoding="utf-8"))
        facts = data.pop("provenance")
        data.pop("withheld_thumbnails", None)
        audit_report(index, data, folder, facts, allowed)
        return folder

    @router.get("/audits/{space}/{name}")
    def audit_file(space: str = PathParam(max_length=64), name: str = "index.html"
                   ) -> Response:
        response = _serve(audit_of(space), name)
        if name == "index.html":  # its classifiers' reports, as the app serves them
            text = re.sub(r"href='(?:\.\./)+models/([^/']+)-report/index\.html'",
                          r"href='/models/\1/index.html'", bytes(response.body).decode())
            return HTMLResponse(text, headers={"content-security-policy": _csp_for(text)})
        return response

    @router.get("/audits/{space}/thumbs/{name}")
    def audit_thumb(space: str = PathParam(max_length=64), name: str = "") -> Response:
        thumb_allowed(live.get(), name)
        return _serve(audit_of(space), name, "thumbs")

    @router.get("/clusters/{run}/{name}")
    def run_file(run: int = PathParam(ge=1, le=2**63 - 1), name: str = "index.html"
                 ) -> Response:
        from artsearch.reports.clusters import cluster_report

        index = live.get()
        try:
            clustering.load_run(index, run)
        except MetadataError as e:  # no such run: not found, like any unknown address
            raise NotIndexedError(str(e)) from e
        folder = run_folder(index.path, run, allowed)
        if (not (folder / "index.html").is_file() or _written_for(folder) != sorted(allowed)
                or not (folder / MARKER).is_file()):  # runs made before 0.2, or their copy
            shutil.rmtree(folder, ignore_errors=True)  # the index's own folder: one report
            # Thumbnails named, not made: each is made (and kept in INDEX/thumbs) when the
            # page asks for it, so the report opens in the time its text takes.
            cluster_report(index, run, folder, licences=allowed, deferred_thumbnails=True)
        return _serve(folder, name)

    @router.get("/clusters/{run}/thumbs/{name}")
    def run_thumb(run: int = PathParam(ge=1, le=2**63 - 1), name: str = "") -> Response:
        from artsearch.reports.page import THUMB_SIDE
        from artsearch.web.images import thumbnail

        index = live.get()
        thumb_allowed(index, name)
        folder = run_folder(index.path, run, allowed)
        if f"thumbs/{name}" in _own_files(folder) and not (folder / "thumbs" / name).exists():
            art = find_artwork(index, id=int(name.removesuffix(".jpg")))
            return Response(thumbnail(index, art, THUMB_SIDE), media_type="image/jpeg",
                            headers={"cache-control": "private, max-age=3600"})
        return _serve(folder, name, "thumbs")

    @router.get("/models/{model}/{name}")
    def model_file(model: str, name: str = "index.html") -> Response:
        reports = model_reports(live.get().path)
        if model not in reports:
            raise NotIndexedError(f"no model {model!r} in this index")
        return _serve(reports[model], name)

    @router.get("/models/{model}/thumbs/{name}")
    def model_thumb(model: str, name: str) -> Response:
        reports = model_reports(live.get().path)
        if model not in reports:
            raise NotIndexedError(f"no model {model!r} in this index")
        thumb_allowed(live.get(), name)
        return _serve(reports[model], name, "thumbs")

    return router
