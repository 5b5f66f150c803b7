"""What every HTML report shares: the stylesheet (base.css, which the app's pages use too, plus
the rules of reports), a provenance header, thumbnails, bar charts.

A report is a folder that opens from disk: `index.html`, `report.json` and `thumbs/`. Nothing
is fetched when it is opened (no fonts, scripts or images from elsewhere), so it works
offline, prints, and can be archived beside the collection.

A report writes only into a folder that is new, empty, or an earlier report: its marker file
(MARKER) lists the files the report wrote, and that list is all that is ever copied into an
index or served by the app — never the other files a folder may hold.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from artsearch import __version__

__all__ = ["MARKER", "PALETTE", "Thumbnails", "bars", "claim_folder", "colour", "copy_report",
           "esc", "page", "report_files", "write_report"]

THUMB_SIDE = 160

# Twelve colours that stay apart for the colour-blind (Okabe-Ito, then Tol's muted set);
# cluster i takes PALETTE[i % 12], noise is grey.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#882255",
           "#117733", "#999933", "#332288", "#AA4499", "#44AA99")
NOISE_COLOUR = "#9a9a9a"

BASE_CSS = (Path(__file__).with_name("base.css")).read_text(encoding="utf-8")
# Reports only, after the shared rules.
STYLE = BASE_CSS + """
header.provenance { padding: 20px 32px 12px; border-bottom: 1px solid var(--rule);
                    background: #fff; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 600; }
header p.lede { margin: 0 0 12px; color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0;
           font-size: 13px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
              overflow-wrap: anywhere; }
nav.toc { padding: 8px 32px; font-size: 13px; border-bottom: 1px solid var(--rule); }
nav.toc a { margin-right: 12px; }
main { padding: 8px 32px 48px; max-width: 1280px; }
section { margin: 28px 0; }
h2 { font-size: 19px; font-weight: 600; margin: 0 0 8px; padding-top: 8px;
     border-top: 1px solid var(--rule); }
h3 { font-size: 15px; font-weight: 600; margin: 14px 0 6px; }
p.warn { font-size: 13px; border-left: 3px solid #CC3311; padding: 2px 10px; }
.axis { font-size: 11px; color: var(--muted); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         color: #fff; vertical-align: middle; }
.badge.good { background: #117733; } .badge.fair { background: #6b6b24; }
.badge.poor { background: #CC3311; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 6px;
          vertical-align: -1px; margin-right: 6px; }
.sheet { display: flex; flex-wrap: wrap; gap: 10px; margin: 6px 0; }
figure.work { margin: 0; width: 132px; font-size: 11px; line-height: 1.25; }
figure.work img, figure.work .missing { width: 132px; height: 132px; object-fit: contain;
        background: #efeee9; border: 1px solid var(--rule); display: block; }
figure.work .missing, figure.work .withheld { display: flex; align-items: center;
        justify-content: center; color: var(--muted); text-align: center; padding: 6px; }
figure.work .withheld { background: #d9d9d6; color: #333; font-size: 11px; }
figure.work figcaption { margin-top: 3px; overflow-wrap: anywhere; }
figure.work.medoid img { outline: 3px solid var(--accent); outline-offset: -3px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr));
          gap: 4px 24px; }
.bars { font-size: 12px; }
.bar { display: grid; grid-template-columns: 120px 1fr 44px; gap: 6px; align-items: center;
       margin: 1px 0; }
.bar .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { background: #ecebe6; height: 10px; border-radius: 2px; }
.fill { height: 10px; border-radius: 2px; }
.bar .count { text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); }
.pair { display: flex; gap: 10px; align-items: flex-end; margin: 8px 24px 8px 0; }
.pairs { display: flex; flex-wrap: wrap; }
#map-wrap { position: relative; background: #fff; border: 1px solid var(--rule); }
#map { width: 100%; height: auto; display: block; }
#map circle { stroke: #fff; stroke-width: 0.6; }
#map circle:hover { stroke: var(--ink); stroke-width: 2; }
#hover-card { position: absolute; pointer-events: none; display: none; background: #fff;
              border: 1px solid var(--rule); padding: 6px; font-size: 12px; width: 180px;
              box-shadow: 0 2px 8px rgba(0,0,0,.15); }
#hover-card img { width: 166px; height: 120px; object-fit: contain; display: block;
                  background: #efeee9; }
.legend { font-size: 13px; margin: 6px 0; }
.legend span.item { margin-right: 14px; white-space: nowrap; }
@media print { nav.toc, button { display: none; } body { background: #fff; }
               section { break-inside: avoid-page; } }
@media (max-width: 700px) {
  header.provenance, nav.toc, main { padding-left: 12px; padding-right: 12px; }
  dl.facts { grid-template-columns: minmax(0, 1fr); }
  table { table-layout: fixed; width: 100%; }
  th, td { overflow-wrap: anywhere; padding-right: 4px; }
  img, svg, canvas { max-width: 100%; height: auto; }
  .charts { grid-template-columns: minmax(0, 1fr); }
  .pair { margin-right: 0; flex-wrap: wrap; }
  figure.work { width: 104px; }
  figure.work img, figure.work .missing { width: 104px; height: 104px; }
}
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def colour(cluster: int) -> str:
    return NOISE_COLOUR if cluster < 0 else PALETTE[cluster % len(PALETTE)]


def page(title: str, lede: str, facts: Sequence[tuple[str, object]], sections: Iterable[str],
         *, toc: Sequence[tuple[str, str]] = (), script: str = "") -> str:
    """A whole report page: provenance header (the facts that reproduce it), contents, body."""
    facts_html = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    toc_html = ("<nav class=toc>" + "".join(f'<a href="#{esc(a)}">{esc(t)}</a>'
                                              for a, t in toc) + "</nav>") if toc else ""
    return (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<header class=provenance><h1>{esc(title)}</h1><p class=lede>{esc(lede)}</p>"
            f"<dl class=facts>{facts_html}</dl></header>{toc_html}<main>"
            + "".join(sections) + "</main>"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")


def standard_facts() -> list[tuple[str, object]]:
    return [("made by", f"artsearch {__version__}"),
            ("made on", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))]


def bars(counts: Sequence[tuple[str, int]], total: int, fill: str, *, unknown: int = 0,
         rest: bool = False) -> str:
    """Horizontal bars, one per value, as plain HTML (prints, needs no script). With `rest`,
    the last row sums the values not shown and is drawn in grey."""
    if not counts:
        return "<p class=note>not catalogued</p>"
    top = max(n for _, n in counts)
    rows = "".join(
        f"<div class=bar title='{esc(v)}: {n} of {total}'><span class=label>{esc(v)}</span>"
        f"<span class=track><span class=fill style='display:block;width:{100 * n / top:.1f}%;"
        f"background:{NOISE_COLOUR if rest and i == len(counts) - 1 else fill}'></span>"
        f"</span><span class=count>{n}</span></div>"
        for i, (v, n) in enumerate(counts))
    more = f"<p class=note>{unknown} not catalogued</p>" if unknown else ""
    return f"<div class=bars>{rows}</div>{more}"


def figure(thumb: str | None, caption: str, hover: str, *, css: str = "work",
           withheld: str | None = None) -> str:
    """A work's thumbnail with its caption; a grey tile with the rights statement when its
    licence withholds the image, "unreadable" when there is none."""
    if withheld:
        img = f"<div class=withheld title='{esc(hover)}'>{esc(withheld)}</div>"
    elif thumb:
        img = f"<img src='{esc(thumb)}' alt='{esc(hover)}' title='{esc(hover)}' loading=eager>"
    else:
        img = f"<div class=missing title='{esc(hover)}'>unreadable</div>"
    return f"<figure class='{css}'>{img}<figcaption>{esc(caption)}</figcaption></figure>"


class Thumbnails:
    """Small JPEG copies of collection images under DIR/thumbs, made once per report.

    Only works whose catalogued licence is in `licences` (artsearch.rights; by default
    public domain, CC0, CC BY, CC BY-SA) get one: the others get a grey tile with their
    rights statement, and no copy of their image is written. An image that cannot be read
    (moved, deleted, damaged since indexing) gets no thumbnail; the report shows
    "unreadable" in its place and lists it, rather than failing.
    """

    def __init__(self, index: Any, out_dir: Path, side: int = THUMB_SIDE, *,
                 licences: Iterable[str] | None = None, deferred: bool = False) -> None:
        """`deferred`: name each shown work's thumbnail but write none (a server that makes
        them when they are asked for: the report is written in the time its text takes)."""
        from artsearch.rights import DEFAULT_SHOWN

        self.deferred = deferred
        self.index, self.root = index, index.root
        self.dir, self.side = out_dir / "thumbs", side
        self.licences = frozenset(DEFAULT_SHOWN if licences is None else licences)
        self.made: dict[int, str | None] = {}  # artwork id -> "thumbs/ID.jpg" (None: unreadable)
        self.withheld: dict[int, str] = {}
        self.failed: list[tuple[str, str]] = []

    def withheld_count(self) -> int:
        return len(self.withheld)

    def figure(self, artwork_id: int, caption: str, hover: str, *, css: str = "work") -> str:
        return figure(self[artwork_id], caption, hover, css=css,
                      withheld=self.withheld.get(artwork_id))

    def make(self, works: Iterable[tuple[int, str]]) -> None:
        from artsearch.index.catalogue import artworks
        from artsearch.rights import shown, statement

        todo = [(i, p) for i, p in dict(works).items()
                if i not in self.made and i not in self.withheld]
        if not todo:
            return
        licence = {a.id: a.license for a in artworks(self.index, [i for i, _ in todo])}
        for i, _ in todo:
            if not shown(licence.get(i), self.licences):
                self.withheld[i] = statement(licence.get(i))
        todo = [(i, p) for i, p in todo if i not in self.withheld]
        if not todo:
            return
        if self.deferred:
            self.made.update((i, f"thumbs/{i}.jpg") for i, _ in todo)
            return
        claim_folder(self.dir.parent)
        self.dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for (artwork_id, path), result in zip(todo, pool.map(self._one, todo),
                                                  strict=True):
                self.made[artwork_id] = result if not result.startswith("!") else None
                if result.startswith("!"):
                    self.failed.append((path, result[1:]))

    def __getitem__(self, artwork_id: int) -> str | None:
        return self.made.get(artwork_id)

    def files(self) -> list[str]:
        """The thumbnails written, as paths relative to the report folder."""
        return sorted(v for v in self.made.values() if v)

    def _one(self, work: tuple[int, str]) -> str:
        from artsearch.errors import BadImageError
        from artsearch.images import read_file, thumbnail_jpeg
        from artsearch.paths import work_file

        artwork_id, path = work
        name = f"{artwork_id}.jpg"
        if self.root is None:
            return "!the index does not know the collection folder"
        try:
            body = thumbnail_jpeg(read_file(work_file(self.root, path)), self.side)
        except (BadImageError, OSError) as e:
            return f"!{e}"
        (self.dir / name).write_bytes(body)
        return f"thumbs/{name}"


MARKER = ".artsearch-report.json"
# What reports wrote before the marker existed (artsearch 0.2 and earlier): a folder holding
# only these is taken for an earlier report.
_LEGACY_PAGES = ("index.html", "report.json", "metrics.json", "confusion.svg", "calibration.svg")
_LEGACY_PICTURES = {"thumbs": r"\d{1,18}\.jpg", "maps": r"[\w.-]{1,100}\.png",
                    "layers": r"[\w.-]{1,100}\.(?:png|jpg)"}  # subfolder: its file names
_LEGACY_TOP = frozenset({*_LEGACY_PAGES, *_LEGACY_PICTURES})


def _listed(folder: Path) -> list[str] | None:
    """The files the report in `folder` lists as its own (None: no readable marker)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return files


def _legacy_files(folder: Path) -> list[str]:
    """An unmarked earlier report's files: its pages and data, and the pictures in its
    own subfolders (named as reports name them)."""
    import re

    out = [n for n in _LEGACY_PAGES if (folder / n).is_file()]
    for sub, name in _LEGACY_PICTURES.items():
        if (folder / sub).is_dir():
            out += [f"{sub}/{p.name}" for p in sorted((folder / sub).iterdir())
                    if re.fullmatch(name, p.name) and p.is_file() and not p.is_symlink()]
    return out


def report_files(folder: Path) -> list[str]:
    """The files of the report in `folder`, relative to it: those its marker lists, or for an
    unmarked earlier report, its pages and pictures by name. Nothing else in the folder."""
    listed = _listed(folder)
    return _legacy_files(folder) if listed is None else listed


def claim_folder(folder: Path, option: str = "--report") -> None:
    """Refuse, in one line, to write a report into a folder holding anything but an earlier
    report; mark a new or empty one as a report's (so what follows may write there)."""
    from artsearch.errors import ArtsearchError

    if folder.is_dir() and _listed(folder) is not None:
        return
    if folder.is_dir():
        try:
            entries = {p.name for p in folder.iterdir()
                       if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
        except OSError as e:
            raise ArtsearchError(f"{option} {folder}: cannot be read ({e.strerror}); "
                                 "give another folder") from None
        if entries and not entries <= _LEGACY_TOP:
            shown = ", ".join(sorted(entries - _LEGACY_TOP)[:3])
            raise ArtsearchError(
                f"{option} {folder}: holds files no artsearch report wrote ({shown}"
                f"{', …' if len(entries - _LEGACY_TOP) > 3 else ''}); give a new or empty "
                "folder, or an earlier report's")
        if entries:  # an earlier report, from before the marker: its files become listed
            _write_marker(folder, _legacy_files(folder))
            return
    folder.mkdir(parents=True, exist_ok=True)
    _write_marker(folder, [])


def _write_marker(folder: Path, files: Iterable[str]) -> None:
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps({"artsearch_report": __version__, "files": sorted(set(files))},
                              indent=1), encoding="utf-8")
    os.replace(tmp, folder / MARKER)


def write_report(out_dir: Path, html_text: str, data: dict[str, Any],
                 data_name: str = "report.json", files: Iterable[str] = ()) -> Path:
    """Write index.html and the JSON data beside it (each replaced whole, never
    half-written), and the marker listing them with `files` (the other files this report
    wrote, relative to out_dir). Files an earlier report here listed and this one did not
    write are removed: the folder holds one report."""
    claim_folder(out_dir)
    before = set(_listed(out_dir) or [])
    for name, text in ((data_name, json.dumps(data, indent=1, default=str)),
                       ("index.html", html_text)):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out_dir / name)
    now = {data_name, "index.html", *files}
    _write_marker(out_dir, now)
    for stale in sorted(before - now):
        file = out_dir / stale
        if ".." not in Path(stale).parts and file.is_file() and not file.is_symlink():
            file.unlink()
    return out_dir / "index.html"


def copy_report(source: Path, target: Path) -> None:
    """Copy the report in `source` to `target` (a folder the index owns, emptied first):
    only the files the report lists as its own, never links."""
    import shutil

    files = [f for f in report_files(source)
             if ".." not in Path(f).parts and not Path(f).is_absolute()]
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for rel in files:
        src = source / rel
        if src.is_file() and not src.is_symlink():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target / rel)
    _write_marker(target, files)
