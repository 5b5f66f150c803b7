"""The page `artsearch query --explain DIR` writes: the query and each result with their
similarity maps laid over them, each space's share of a blend, and the provenance block."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch.explain import heat_png
from artsearch.reports.page import claim_folder, esc, page, write_report

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["explain_report"]

SIDE = 224  # px of each map image

_CSS = """
.explained { display: flex; gap: 12px; align-items: flex-start; margin: 12px 0 20px; }
.explained img, .explained .withheld { width: 224px; height: 224px; display: block;
        border: 1px solid var(--rule); }
.explained figure { margin: 0; font-size: 12px; }
.key span { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 10px; }
"""


def explain_report(index: Any, result: Any, explained: dict[int, dict[str, Any]],
                   query_picture: Image.Image | None, query_shown: bool, out_dir: Path,
                   provenance: dict[str, Any], licences: Iterable[str]) -> Path:
    """Write index.html, report.json and the map images (maps/) to out_dir."""
    from artsearch.images import decoded, read_work
    from artsearch.index.catalogue import artworks
    from artsearch.rights import shown, statement

    maps_dir = out_dir / "maps"
    claim_folder(out_dir)
    maps_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    allowed = set(licences)
    licence = {a.id: a.license for a in artworks(index, [h.id for h in result.hits])}
    sections, data_hits = [], []
    for hit in result.hits:
        entry = explained.get(hit.rank, {})
        visible = shown(licence.get(hit.id), allowed)
        picture = (decoded(read_work(index.root, hit.path)) if visible and entry.get("maps")
                   else None)
        figures = []
        for space, pm in entry.get("maps", {}).items():
            scale = float(max(abs(pm.query).max(), abs(pm.result).max()))
            q_name, r_name = f"q-{hit.rank:02d}-{space}.png", f"r-{hit.rank:02d}-{space}.png"
            heat_png(query_picture if query_shown else None, pm.query, maps_dir / q_name,
                     SIDE, scale)
            heat_png(picture, pm.result, maps_dir / r_name, SIDE, scale)
            written += [f"maps/{q_name}", f"maps/{r_name}"]
            figures.append(
                f"<figure><img src='maps/{esc(q_name)}' alt='query, {esc(space)} map'>"
                f"<figcaption>query · {esc(space)}</figcaption></figure>"
                f"<figure><img src='maps/{esc(r_name)}' alt='{esc(hit.path)}, {esc(space)} "
                f"map'><figcaption>#{hit.rank} · {esc(space)}: map sums to "
                f"{pm.query.sum():.4f} / {pm.result.sum():.4f}, cosine {pm.cosine:.4f}"
                "</figcaption></figure>")
        shares = "".join(
            f"<tr><td>{esc(s)}</td><td class=num>{_num(v.get('weight'))}</td>"
            f"<td class=num>{_num(v.get('cosine'))}</td><td class=num>{_num(v.get('z'))}</td>"
            f"<td class=num>{_num(v.get('share'))}</td></tr>"
            for s, v in entry.get("spaces", {}).items())
        notes = "".join(f"<p class=note>{esc(s)}: {esc(n)}</p>"
                        for s, n in entry.get("notes", {}).items())
        rights = "" if visible else f"<p class=note>{esc(statement(licence.get(hit.id)))}</p>"
        sections.append(
            f"<section id=hit-{hit.rank}><h2>#{hit.rank} {esc(hit.title or hit.path)}"
            f" <span class=muted>score {hit.score:.4f}</span></h2>"
            f"<div class=explained>{''.join(figures)}</div>{rights}{notes}"
            "<table><tr><th>space</th><th class=num>weight</th><th class=num>cosine</th>"
            f"<th class=num>z</th><th class=num>share</th></tr>{shares}</table></section>")
        data_hits.append({"rank": hit.rank, "id": hit.id, "path": hit.path,
                          "score": hit.score, "spaces": entry.get("spaces"),
                          "maps": {s: pm.as_dict() for s, pm in entry.get("maps", {}).items()},
                          "notes": entry.get("notes"), "image_shown": visible})
    key = ("<p class=key>Maps over the square each model saw:<span style='background:#E66100'>"
           "</span>adds to the similarity<span style='background:#0072B2'></span>takes away "
           "from it. The values over each picture add up to the cosine.</p>")
    facts = [("query", _describe(result.query)), ("space", result.space),
             ("command", provenance["command"]), ("index", provenance["index"]),
             *((f"{s['space']} backbone", f"{s['backbone']} (weights sha256 "
                f"{s['weights_sha256'][:16]}…), {s['pooling']}") for s in provenance["spaces"]),
             ("made", f"artsearch {provenance['artsearch']}, {provenance['made']}")]
    html_text = page("Why these works match", f"{len(result.hits)} results, explained", facts,
                     [key, *sections]).replace("</style>", _CSS + "</style>", 1)
    return write_report(out_dir, html_text, {"provenance": provenance, "query": result.query,
                                             "space": result.space, "results": data_hits},
                        files=written)


def _describe(query: dict[str, Any]) -> str:
    if "text" in query:
        return f"text: {query['text']}"
    return str(query.get("path") or query.get("image") or query)


def _num(v: object) -> str:
    return "" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
