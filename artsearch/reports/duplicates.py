"""The HTML page of `artsearch duplicates --report`: each typed pair side by side, the part's
footprint drawn on the whole, and the thresholds with their measured precision and recall."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch.reports.page import Thumbnails, esc, page, write_report

if TYPE_CHECKING:
    from artsearch.duplicates.find import Pair
    from artsearch.index import ArtIndex

__all__ = ["duplicates_report"]

TILE = 132  # px: figure.work's image square in the report stylesheet
SHOWN = 500  # pairs drawn in the page; report.json lists them all

_CSS = """
.dup { display: flex; gap: 10px; align-items: flex-start; margin: 10px 24px 10px 0; }
.dup .whole { position: relative; display: inline-block; }
.dup .box { position: absolute; border: 2px solid #D55E00; pointer-events: none; }
.kind { font-weight: 600; }
"""

_MEANING = {
    "exact": "the same pixels (possibly another file format)",
    "re-encoded": "the whole image again: resized, recompressed, recoloured or slightly turned",
    "mirrored": "the whole image, mirrored left to right",
    "crop": "one shows a part of the other (the box marks where)",
    "detail": "one shows a small part of the other, enlarged (the box marks where)",
    "related": "alike, but the geometry does not show one image inside the other: a copy "
               "after a work, another state, overlapping crops",
}


def duplicates_report(index: ArtIndex, pairs: Sequence[Pair], out_dir: Path,
                      record: dict[str, Any] | None, facts: Sequence[tuple[str, object]],
                      provenance: dict[str, Any], licences: Iterable[str] | None = None
                      ) -> Path:
    """Write index.html and report.json (all pairs) to out_dir."""
    from artsearch.index.catalogue import artworks

    shown = list(pairs[:SHOWN])
    wanted = {x for p in shown for x in (p.a, p.b)}
    arts = {a.id: a for a in artworks(index, wanted)}
    thumbs = Thumbnails(index, out_dir, licences=licences)
    thumbs.make((a.id, a.path) for a in arts.values())
    counts = Counter(p.type for p in pairs)
    summary = "<table><tr><th>type</th><th class=num>pairs</th><th>meaning</th></tr>" + "".join(
        f"<tr><td class=kind>{esc(t)}</td><td class=num>{counts[t]}</td>"
        f"<td>{esc(_MEANING[t])}</td></tr>" for t in _MEANING if counts[t]) + "</table>"
    sections = [f"<section id=summary><h2>Pairs by type</h2>{summary}</section>"]
    rows = []
    for p in shown:
        whole_is_b = p.geometry.cover_a >= p.geometry.cover_b
        left = thumbs.figure(p.a, p.path_a, p.path_a)
        right = thumbs.figure(p.b, p.path_b, p.path_b)
        box = _box_overlay(p)
        if box and thumbs[p.b if whole_is_b else p.a]:
            target = right if whole_is_b else left
            wrapped = f"<div class=whole>{target}{box}</div>"
            left, right = (left, wrapped) if whole_is_b else (wrapped, right)
        g = p.geometry
        rows.append(
            f"<div class=dup>{left}{right}<p><span class=kind>{esc(p.type)}</span>"
            f"{' (mirrored)' if g.mirrored and p.type != 'mirrored' else ''}<br>"
            f"cosine {p.cosine:.3f}<br>{g.inliers} matched points agree<br>"
            f"scale {g.scale:.2f}, turned {g.rotation:.1f}°</p></div>")
    more = (f"<p class=note>{len(pairs) - SHOWN:,} more pairs are in report.json.</p>"
            if len(pairs) > SHOWN else "")
    sections.append("<section id=pairs><h2>Pairs</h2>" + ("".join(rows) or
                    "<p>No pairs found.</p>") + more + "</section>")
    sections.append(_calibration_section(record))
    html_text = page("Near-duplicates", f"{len(pairs):,} typed pairs", facts, sections,
                     toc=[("summary", "Types"), ("pairs", "Pairs"),
                          ("calibration", "Thresholds")]).replace(
        "</style>", _CSS + "</style>", 1)
    data = {"provenance": provenance, "pairs": [p.as_dict() for p in pairs],
            "thresholds": record, "withheld_thumbnails": thumbs.withheld_count()}
    return write_report(out_dir, html_text, data, files=thumbs.files())


def _box_overlay(p: Pair) -> str:
    """The part's footprint as a box over the whole's thumbnail, in percentages."""
    g = p.geometry
    if p.type not in ("crop", "detail") or not g.box or not g.whole:
        return ""
    (w, h), (x0, y0, x1, y1) = g.whole, g.box
    f = TILE / max(w, h, 1)  # the thumbnail is fitted, centred, into a TILE x TILE square
    ox, oy = (TILE - w * f) / 2, (TILE - h * f) / 2
    return (f"<span class=box style='left:{ox + x0 * f:.0f}px;top:{oy + y0 * f:.0f}px;"
            f"width:{(x1 - x0) * f:.0f}px;height:{(y1 - y0) * f:.0f}px'></span>")


def _calibration_section(record: dict[str, Any] | None) -> str:
    if record is None:
        return ("<section id=calibration><h2>Thresholds</h2><p>The built-in thresholds, "
                "fitted on the artsearch dev set. Run <code>artsearch duplicates "
                "--calibrate</code> to fit them to this collection.</p></section>")
    t = record["thresholds"]
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td class=num>{_pct(v['precision'])}</td>"
        f"<td class=num>{_pct(v['recall'])}</td><td class=num>{v['pairs']}</td></tr>"
        for k, v in record.get("held_out", {}).items())
    return (f"<section id=calibration><h2>Thresholds</h2><p>Fitted on {record['fitted_on']} "
            f"pairs synthesised from this collection, judged on {record['judged_on']} others "
            f"({esc(record.get('made', ''))}): at least {t['min_inliers']} agreeing points; "
            f"'the whole' covers {t['full']:.0%} of the other; a detail is under "
            f"{t['detail']:.0%} of it.</p><table><tr><th>type</th><th class=num>precision</th>"
            f"<th class=num>recall</th><th class=num>pairs</th></tr>{rows}</table></section>")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"

