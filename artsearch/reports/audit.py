"""The page of `artsearch audit --report`: hubness with its busiest works, coverage per
catalogue group, the classifiers' reports, and what it all means."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from artsearch.reports.page import Thumbnails, bars, esc, page, write_report

__all__ = ["audit_report"]


def audit_report(index: Any, result: dict[str, Any], out_dir: Path,
                 provenance: dict[str, Any], licences: Iterable[str] | None = None) -> Path:
    """Write index.html and report.json to out_dir."""
    import os

    h = result["hubness"]
    for m in result["classifiers"]:  # linked from the page: relative, so the folder can move
        m["link"] = Path(os.path.relpath(m["report"], out_dir.resolve())).as_posix()
    thumbs = Thumbnails(index, out_dir, licences=licences)
    thumbs.make((t["id"], t["path"]) for t in h["top"])
    lines = result["reading"]
    reading = (f"<p class=lead id=audit-lead><strong>{esc(lines[0])}</strong></p>" if lines
               else "") + "".join(f"<p>{esc(line)}</p>" for line in lines[1:])
    hist = bars([(f"{b['from']}–{b['to']}" if b["to"] > b["from"] else str(b["from"]),
                  b["works"]) for b in h["histogram"]], h["works"], "#0072B2")
    hubs = "".join(thumbs.figure(
        t["id"], f"in {t['occurrences']} lists · {t['title'] or Path(t['path']).name}",
        t["path"]) for t in h["top"])
    k = h["k"]
    facts_hub = (
        "<table><tr><th>measure</th><th class=num>cosine</th><th class=num>CSLS</th>"
        "<th>what it means</th></tr>"
        f"<tr><td>skewness of the {k}-occurrence</td><td class=num>{h['skewness']:.2f}</td>"
        f"<td class=num>{h['csls']['skewness']:.2f}</td><td>0: every work turns up about "
        "as often as any other; above 1: a few works crowd the results</td></tr>"
        f"<tr><td>busiest work: top-{k} lists</td><td class=num>{h['max']}</td>"
        f"<td class=num>{h['csls']['max']}</td><td>a hub: it is shown whatever one asks, "
        f"in this many of the {h['works']:,} works' lists</td></tr>"
        f"<tr><td>works in no list</td><td class=num>{h['never_retrieved']}</td>"
        f"<td class=num>{h['csls']['never_retrieved']}</td><td>never shown as anyone's "
        "neighbour: search cannot lead to them</td></tr></table>"
        "<p class=note>CSLS: the same lists re-ranked so that a work near everything counts "
        "for less (`query --rerank csls`). k-occurrence: how many works' top-"
        f"{k} lists a work is in.</p>")
    sections = [
        f"<section id=reading><h2>Reading</h2>{reading}</section>",
        f"<section id=hubness><h2>Hubness</h2><p class=note>How many of the {h['works']:,} "
        f"works' top-{h['k']} lists each work appears in (the mean is {h['k']} by "
        f"construction; a fair space has few works far above it).</p>{facts_hub}"
        f"<h3>Works by number of lists</h3>{hist}<h3>The {len(h['top'])} biggest hubs</h3>"
        f"<div class=sheet>{hubs}</div></section>",
        _coverage_section(result["coverage"]),
        _classifier_section(result["classifiers"]),
    ]
    toc = [("reading", "Reading"), ("hubness", "Hubness"), ("coverage", "Coverage"),
           ("classifiers", "Classifiers")]
    facts = [("index", provenance["index"]), ("space", result["space"]),
             *((f"{s['space']} backbone", f"{s['backbone']} (weights sha256 "
                f"{s['weights_sha256'][:16]}…), {s['pooling']}") for s in provenance["spaces"]),
             ("command", provenance["command"]),
             ("made", f"artsearch {provenance['artsearch']}, {provenance['made']}")]
    html_text = page(f"Audit of the {result['space']!r} space",
                     "Who gets retrieved, and who does not", facts, sections, toc=toc)
    return write_report(out_dir, html_text, {**result, "provenance": provenance,
                                             "withheld_thumbnails": thumbs.withheld_count()},
                        files=thumbs.files())


def _coverage_section(coverage: dict[str, list[dict[str, Any]]]) -> str:
    if not coverage:
        return ("<section id=coverage><h2>Coverage</h2><p class=note>No catalogue field "
                "groups the works (2 to 60 values): add one, e.g. source or school, with "
                "--metadata.</p></section>")
    parts = []
    for name, rows in coverage.items():
        body = "".join(
            f"<tr><td>{esc(r['value'])}</td><td class=num>{r['works']}</td>"
            f"<td class=num>{r['share']:.1%}</td><td class=num>{r['retrieved_share']:.1%}</td>"
            f"<td class=num>{'–' if r['ratio'] is None else format(r['ratio'], '.2f')}</td>"
            f"<td class=num>{r['never_retrieved']}</td></tr>" for r in rows)
        parts.append(f"<h3>By {esc(name)}</h3><table><tr><th>{esc(name)}</th>"
                     "<th class=num>works</th><th class=num>share of works</th>"
                     "<th class=num>share of results</th><th class=num>ratio</th>"
                     f"<th class=num>never retrieved</th></tr>{body}</table>")
    return ("<section id=coverage><h2>Coverage</h2><p class=note>Share of all top-k result "
            "slots taken by each group's works, against its share of the collection: a ratio "
            "of 1 is retrieved in proportion; groups under 5 works get no ratio.</p>"
            + "".join(parts) + "</section>")


def _classifier_section(models: list[dict[str, Any]]) -> str:
    if not models:
        return ("<section id=classifiers><h2>Classifiers</h2><p class=note>No trained "
                "model in this index: `artsearch train --label FIELD --by source` reports "
                "accuracy per group.</p></section>")
    rows = []
    for m in models:
        by = "; ".join(
            f"{field}: " + ", ".join(f"{g.get('value')} {g.get('accuracy', 0):.2f}"
                                     for g in groups[:8])
            for field, groups in (m.get("by") or {}).items() if isinstance(groups, list))
        rows.append(f"<tr><td><a href='{esc(m['link'])}'>{esc(m['model'])}"
                    f"</a></td><td>{esc(m['label'])}</td><td>{esc(m['space'])}</td>"
                    f"<td class=num>{'' if m['accuracy'] is None else format(m['accuracy'], '.3f')}"
                    f"</td><td>{esc(by) or '–'}</td></tr>")
    return ("<section id=classifiers><h2>Classifiers</h2><table><tr><th>model</th>"
            "<th>label</th><th>space</th><th class=num>accuracy</th><th>by group</th></tr>"
            + "".join(rows) + "</table></section>")
