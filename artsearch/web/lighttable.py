"""The light table: named sets of works a curator gathers from the grid, a work's page or the
map, kept with the index (INDEX/light-table.json), exported as CSV or as a IIIF
Presentation 3 manifest.

`/light-table` (the page), POST `/light-table/add` (`set`, `ids`), `/light-table/remove`
(`set`, `id`), `/light-table/put-back` (`set`, `id`, `at`), `/light-table/delete` (`set`,
and `confirm` for a set that holds works), `/light-table/restore` (`set`),
`/light-table/SET.csv`, `/light-table/SET/manifest.json`, `/api/light-table`. Writes are
POSTs, so the server's same-origin rule and token rule guard them
(artsearch.web.security); each answers with a redirect back to the page (303), so a form
works without JavaScript.

Nothing a curator gathered is lost by a click: a deleted set goes to a "recently deleted"
list in the same file (the last KEEP_DELETED sets, for KEEP_DAYS days) and comes back with
Restore; a removed work can be put back. A file that cannot be read is never replaced: it
is copied aside and every write is refused until it is fixed or removed. A write is flushed
to disk before it is renamed into place, keeps the file's mode, and on a full disk leaves
the old file as it was.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from artsearch.errors import ArtsearchError, IndexDamagedError
from artsearch.web.live import LiveIndex

__all__ = ["KEEP_DAYS", "KEEP_DELETED", "MAX_SETS", "MAX_WORKS", "LightTable",
           "LightTableWriteError", "lighttable_routes"]

FILE = "light-table.json"
MAX_SETS = 100
MAX_WORKS = 10_000  # works in one set
KEEP_DELETED = 20  # deleted sets kept for Restore ...
KEEP_DAYS = 30  # ... for this long
NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,60}$")  # printable, no slashes; 60 characters


class LightTableWriteError(ArtsearchError):
    """The light table could not be written (a full disk, a folder it cannot write): the
    file is as it was."""


@dataclass
class Tables:
    """What the file holds: the sets, and the sets deleted recently (newest first)."""

    sets: dict[str, list[int]] = field(default_factory=dict)
    deleted: list[dict[str, Any]] = field(default_factory=list)  # {name, ids, deleted}


def _ids(value: object) -> list[int] | None:
    if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value):
        return None
    return list(value)


def _parse(text: str) -> Tables:
    """The file's contents, or ValueError saying what is wrong with them."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("sets"), dict):
        raise ValueError("no \"sets\" object")
    tables = Tables()
    for name, ids in data["sets"].items():
        if (good := _ids(ids)) is None:
            raise ValueError(f"set {name!r} is not a list of artwork ids")
        tables.sets[str(name)] = good
    deleted = data.get("deleted", [])
    if not isinstance(deleted, list):
        raise ValueError("\"deleted\" is not a list")
    for entry in deleted:
        if (not isinstance(entry, dict) or not isinstance(entry.get("name"), str)
                or (ids := _ids(entry.get("ids"))) is None
                or not isinstance(entry.get("deleted"), str)):
            raise ValueError("an entry of \"deleted\" is not a deleted set")
        tables.deleted.append({"name": entry["name"], "ids": ids, "deleted": entry["deleted"]})
    return tables


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LightTable:
    """The sets of one index: {name: [artwork ids, in the order added]}. Every change is a
    read-modify-write under a file lock, replaced atomically: two servers on one index lose
    nothing."""

    def __init__(self, index_path: Path) -> None:
        self.path = index_path / FILE
        self._threads = threading.Lock()

    def read(self) -> Tables:
        """The file's sets; a missing file is an empty light table. A file that cannot be
        read is copied aside (once) and raises IndexDamagedError naming both and the fix."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Tables()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or "not UTF-8 text"
            raise self._damaged(why) from None
        try:
            tables = _parse(text)
        except (ValueError, RecursionError) as e:
            raise self._damaged(str(e).split("\n")[0][:120]) from None
        cutoff = (_now() - dt.timedelta(days=KEEP_DAYS)).isoformat(timespec="seconds")
        tables.deleted = [d for d in tables.deleted if d["deleted"] >= cutoff][:KEEP_DELETED]
        return tables

    def sets(self) -> dict[str, list[int]]:
        return self.read().sets

    def _damaged(self, why: str) -> IndexDamagedError:
        """Keep a copy of the unreadable file beside it (one per distinct content)."""
        aside = None
        try:
            data = self.path.read_bytes()
            for old in sorted(self.path.parent.glob(FILE + ".damaged-*")):
                if old.read_bytes() == data:
                    aside = old
                    break
            if aside is None:
                aside = self.path.with_name(f"{FILE}.damaged-{_now():%Y%m%d-%H%M%S}")
                shutil.copyfile(self.path, aside)
        except OSError:
            aside = None
        kept = f"a copy is kept as {aside.name}; " if aside is not None else ""
        return IndexDamagedError(
            f"{self.path}: the light table cannot be read ({why}); {kept}nothing was changed: "
            "fix the file or remove it to start an empty light table")

    @contextmanager
    def _locked(self) -> Iterator[Tables]:
        from artsearch.errors import IndexReadOnlyError

        with self._threads:
            try:
                fd = os.open(self.path.with_name(FILE + ".lock"),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise IndexReadOnlyError(f"{self.path.parent}: the light table cannot be "
                                         f"kept here ({e.strerror}); make the index folder "
                                         "writable") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # per open file: two apps in one process too
                tables = self.read()  # a damaged file raises: it is never replaced
                yield tables
                self._write(tables)
            finally:
                os.close(fd)

    def _write(self, tables: Tables) -> None:
        """Replace the file with `tables`: written beside it, flushed, given the old file's
        mode, renamed into place, the folder flushed. On any failure the old file stays
        and the temporary one is removed."""
        from artsearch.index.vectors import current_umask, fsync_folder

        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()
        tmp: str | None = None
        try:
            fdt, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".light-table.")
            with os.fdopen(fdt, "w", encoding="utf-8") as f:
                json.dump({"version": 2, "sets": tables.sets, "deleted": tables.deleted,
                           "changed": _now().isoformat(timespec="seconds")},
                          f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
            tmp = None
            fsync_folder(self.path.parent)
        except OSError as e:
            why = ("the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else
                   f"{self.path.parent} cannot be written ({e.strerror or e})")
            raise LightTableWriteError(f"{why}: nothing was changed on the light table"
                                       ) from None
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def add(self, name: str, ids: list[int]) -> int:
        """Add works to a set (made if new); how many were new to it."""
        from artsearch.errors import OptionError

        with self._locked() as t:
            have = _room_for(t, name)
            there = set(have)
            new = [i for i in dict.fromkeys(ids) if i not in there]
            if len(have) + len(new) > MAX_WORKS:
                raise OptionError(f"set {name!r} would hold more than {MAX_WORKS:,} works; "
                                  "start another set")
            have.extend(new)
            return len(new)

    def remove(self, name: str, artwork_id: int) -> int | None:
        """Take a work out of a set; where it stood (for put_back), None if it was not in."""
        with self._locked() as t:
            ids = t.sets.get(name, [])
            if artwork_id not in ids:
                return None
            at = ids.index(artwork_id)
            t.sets[name] = [i for i in ids if i != artwork_id]
            return at

    def put_back(self, name: str, artwork_id: int, at: int) -> None:
        """A removed work back in its set, where it stood (the set made again if gone)."""
        with self._locked() as t:
            ids = _room_for(t, name)
            if artwork_id not in ids:
                ids.insert(max(0, min(at, len(ids))), artwork_id)

    def delete(self, name: str) -> int | None:
        """Move a set to the recently deleted; how many works it held (None: no such set)."""
        with self._locked() as t:
            if name not in t.sets:
                return None
            ids = t.sets.pop(name)
            t.deleted.insert(0, {"name": name, "ids": ids,
                                 "deleted": _now().isoformat(timespec="seconds")})
            del t.deleted[KEEP_DELETED:]
            return len(ids)

    def restore(self, name: str) -> int | None:
        """The most recently deleted set of that name back on the table (merged into a set
        of the same name made since, nothing dropped); how many works it brought back."""
        with self._locked() as t:
            found = next((n for n, d in enumerate(t.deleted) if d["name"] == name), None)
            if found is None:
                return None
            have = _room_for(t, name)
            entry = t.deleted.pop(found)
            there = set(have)
            have.extend(i for i in dict.fromkeys(entry["ids"]) if i not in there)
            return len(entry["ids"])


def _room_for(tables: Tables, name: str) -> list[int]:
    """The set `name`'s ids, the set made (empty) if new and the table has room for it."""
    from artsearch.errors import OptionError

    if name not in tables.sets and len(tables.sets) >= MAX_SETS:
        raise OptionError(f"the light table holds {MAX_SETS} sets already; delete one first")
    return tables.sets.setdefault(name, [])


_MARKUP = re.compile(r"<[^<>]*>")
# Bidirectional embeddings, overrides and isolates, and the marks: a name reads as typed.
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def set_name(text: str) -> str:
    """A set's name as plain text, wherever it goes (pages, CSV, a IIIF label that viewers
    render some HTML in): markup and bidirectional controls are dropped on the way in."""
    from artsearch.errors import OptionError

    name = " ".join(_MARKUP.sub("", _BIDI.sub("", text)).replace("<", "").replace(
        ">", "").split())
    if not NAME.match(name):
        raise OptionError("a set's name is 1-60 characters, without slashes or control "
                          "characters, e.g. \"Dutch interiors\"")
    return name


def parse_ids(text: str) -> list[int]:
    from artsearch.errors import OptionError

    ids = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not ids or len(ids) > MAX_WORKS or not all(p.isdigit() and len(p) < 19 for p in ids):
        raise OptionError("give the works as artwork ids separated by commas, e.g. 12,40,41")
    return [int(p) for p in ids]


def lighttable_routes(live: LiveIndex, templates: Jinja2Templates,
                      public_url: str | None = None) -> APIRouter:
    """The routes; thumbnails on the page go through /thumb, which applies the licence
    rules, and the manifest references images through /image, which does too."""
    from artsearch.errors import NotIndexedError
    from artsearch.index import catalogue
    from artsearch.textsafe import csv_cell

    router = APIRouter()
    table = LightTable(live.path)

    def works_of(name: str) -> list[Any]:
        sets = table.sets()
        if name not in sets:
            raise NotIndexedError(f"no set {name!r} on the light table")
        arts = {a.id: a for a in catalogue.artworks(live.get(), sets[name])}
        return [arts[i] for i in sets[name] if i in arts]  # works since removed drop out

    def back(name: str | None = None, **said: object) -> RedirectResponse:
        """To the page (at the set's section), saying what was just done (`said`: the query
        the page reads its notice from)."""
        query = f"?{urlencode(said)}" if said else ""
        anchor = f"#set-{quote(name, safe='')}" if name else ""
        return RedirectResponse("/light-table" + query + anchor, status_code=303)

    @router.get("/light-table", response_class=HTMLResponse)
    def page(request: Request, deleted: str | None = None, removed: int | None = None,
             at: int = 0, restored: str | None = None,
             from_set: str | None = Query(None, alias="from", max_length=200)) -> Response:
        index = live.get()
        damaged = None
        try:
            tables = table.read()
        except IndexDamagedError as e:
            damaged, tables = str(e), Tables()
        sets = tables.sets
        wanted = {i for ids in sets.values() for i in ids}
        wanted |= {removed} if removed is not None and 0 < removed < 2**63 else set()
        arts = {a.id: a for a in catalogue.artworks(index, sorted(wanted))}
        shown_sets = [(name, [arts[i] for i in ids if i in arts]) for name, ids in sets.items()]
        notice: dict[str, Any] | None = None
        # What was just done, said from the query but only as far as the file bears it out.
        if deleted is not None and deleted not in sets:
            entry = next((d for d in tables.deleted if d["name"] == deleted), None)
            if entry is not None:
                notice = {"kind": "deleted", "set": deleted, "works": len(entry["ids"])}
        elif (removed is not None and from_set is not None and removed in arts
              and removed not in sets.get(from_set, [])):
            notice = {"kind": "removed", "set": from_set, "work": arts[removed], "at": at}
        elif restored is not None and restored in sets:
            notice = {"kind": "restored", "set": restored, "works": len(sets[restored])}
        return templates.TemplateResponse(request, "lighttable.html", {
            "sets": shown_sets, "spaces": [sp.name for sp in index.spaces()],
            "deleted": tables.deleted, "notice": notice, "damaged": damaged,
            "keep_days": KEEP_DAYS, "keep_deleted": KEEP_DELETED,
            "quote": lambda s: quote(s, safe="")})

    @router.post("/light-table/add")
    def add(name: str = Form(..., alias="set", max_length=200),
            ids: str = Form(..., max_length=200_000)) -> Response:
        chosen = set_name(name)
        wanted = parse_ids(ids)
        known = {a.id for a in catalogue.artworks(live.get(), wanted)}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise NotIndexedError(f"no artwork {missing[0]} in this index")
        table.add(chosen, wanted)
        return back(chosen)

    @router.post("/light-table/remove")
    def remove(name: str = Form(..., alias="set", max_length=200),
               artwork_id: int = Form(..., alias="id", ge=1, le=2**63 - 1)) -> Response:
        chosen = set_name(name)
        at = table.remove(chosen, artwork_id)
        if at is None:
            return back(chosen)
        return back(chosen, removed=artwork_id, **{"from": chosen}, at=at)

    @router.post("/light-table/put-back")
    def put_back(name: str = Form(..., alias="set", max_length=200),
                 artwork_id: int = Form(..., alias="id", ge=1, le=2**63 - 1),
                 at: int = Form(0, ge=0, le=MAX_WORKS)) -> Response:
        chosen = set_name(name)
        if not catalogue.artworks(live.get(), [artwork_id]):
            raise NotIndexedError(f"no artwork {artwork_id} in this index")
        table.put_back(chosen, artwork_id, at)
        return back(chosen)

    @router.post("/light-table/delete")
    def delete(request: Request, name: str = Form(..., alias="set", max_length=200),
               confirm: str = Form("", max_length=10)) -> Response:
        """A set that holds works is deleted only once confirmed (a second form: works
        without JavaScript); it goes to the recently deleted, whence Restore brings it."""
        chosen = set_name(name)
        held = table.sets().get(chosen)
        if held is None:
            raise NotIndexedError(f"no set {chosen!r} on the light table")
        if held and confirm != "yes":
            return templates.TemplateResponse(
                request, "lighttable_delete.html", {"set": chosen, "works": len(held),
                                                    "keep_days": KEEP_DAYS,
                                                    "quote": lambda s: quote(s, safe="")})
        table.delete(chosen)
        return back(None, deleted=chosen)

    @router.post("/light-table/restore")
    def restore(name: str = Form(..., alias="set", max_length=200)) -> Response:
        chosen = set_name(name)
        if table.restore(chosen) is None:
            raise NotIndexedError(f"no recently deleted set {chosen!r} to restore")
        return back(chosen, restored=chosen)

    def base_of(request: Request) -> str:
        """The address links are made with: `serve --public-url`, else the request's."""
        return (public_url or str(request.base_url)).rstrip("/")

    @router.get("/light-table/{name}.csv")
    def as_csv(request: Request, name: str = PathParam(max_length=200)) -> Response:
        from artsearch.index.catalogue import field_value, fields_in_catalogue_order

        out = io.StringIO()
        w = csv.writer(out)
        # Every catalogue column the index holds, in its CSV's order, after the work's id,
        # path and page.
        fields = [f for f in fields_in_catalogue_order(live.get()) if f != "path"]
        w.writerow(["id", "path", "page", *fields])
        base = base_of(request)
        for art in works_of(set_name(name)):
            w.writerow([art.id, csv_cell(art.path), f"{base}/work/{art.id}",
                        *(csv_cell(field_value(art, f)) for f in fields)])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}.csv"})

    @router.get("/light-table/{name}/manifest.json")
    def as_manifest(request: Request, name: str = PathParam(max_length=200)) -> Response:
        from artsearch.iiif.write import set_manifest

        chosen = set_name(name)
        works = works_of(chosen)
        base = base_of(request)
        with tempfile.TemporaryDirectory() as tmp:
            data = set_manifest(live.get(), [a.id for a in works], Path(tmp) / "m.json",
                                image_base=base, label=chosen,
                                manifest_id=f"{base}/light-table/{quote(chosen, safe='')}")
        return JSONResponse(data, media_type="application/ld+json")

    @router.get("/api/light-table")
    def api() -> JSONResponse:
        tables = table.read()
        return JSONResponse({"sets": tables.sets, "deleted": tables.deleted})

    return router
