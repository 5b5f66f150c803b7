"""The page `artsearch query ... --region/--in-regions --report DIR` writes: the part sought,
and each result with its best-matching region boxed, under the licence rules of every
report (a withheld work is a grey tile with its rights statement, its box still drawn)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch.reports.page import (
    THUMB_SIDE,
    Thumbnails,
    claim_folder,
    esc,
    page,
    write_report,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["regions_report"]

_CSS = """
.boxed { position: relative; display: inline-block; line-height: 0; }
.boxed img, .boxed .withheld { display: block; max-width: 100%; }
.boxed svg { position: absolute; inset: 0; width: 100%; height: 100%; }
.boxed rect { fill: rgba(228, 87, 46, 0.12); stroke: #d1401b; stroke-width: 2px;
        vector-effect: non-scaling-stroke; }
.hits { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr));
        gap: 14px; }
.hits figure { margin: 0; font-size: 12px; }
"""


def _boxed(inner: str, box: Iterable[float]) -> str:
    x, y, w, h = (float(v) for v in box)
    return (f"<span class=boxed>{inner}<svg viewBox='0 0 1 1' preserveAspectRatio=none "
            f"aria-hidden=true><rect x='{x:.4f}' y='{y:.4f}' width='{w:.4f}' "
            f"height='{h:.4f}'/></svg></span>")


def regions_report(index: Any, result: Any, query_picture: Image.Image | None,
                   query_shown: bool, out_dir: Path, provenance: dict[str, Any],
                   licences: Iterable[str]) -> Path:
    """Write index.html, report.json and the thumbnails to out_dir."""
    from PIL import Image

    thumbs = Thumbnails(index, out_dir, licences=licences)
    thumbs.make((h.id, h.path) for h in result.hits)
    query = result.query
    region = query.get("region") or [0.0, 0.0, 1.0, 1.0]
    written = thumbs.files()
    if query_picture is not None and query_shown:
        claim_folder(out_dir)
        (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
        small = query_picture.copy()
        small.thumbnail((2 * THUMB_SIDE, 2 * THUMB_SIDE), Image.Resampling.LANCZOS)
        small.save(out_dir / "thumbs" / "query.jpg", "JPEG", quality=85)
        written.append("thumbs/query.jpg")
        inner = "<img src='thumbs/query.jpg' alt='the query picture, the part sought boxed'>"
    else:
        inner = "<div class=withheld>the query's image is withheld by its licence</div>"
    head = (f"<section id=query><h2>The part sought</h2>{_boxed(inner, region)}"
            "<p class=note>Similarity is the cosine between this part and each work's "
            "closest region: a lead for looking, not a claim that one was copied from the "
            "other.</p></section>")
    cells = []
    for hit in result.hits:
        fig = thumbs.figure(hit.id, f"#{hit.rank} {hit.title or hit.path}, similarity "
                                    f"{hit.score:.3f}", hit.path)
        # the box goes over the picture, not its caption
        img_end = fig.index("<figcaption>")
        start = fig.index(">") + 1
        cells.append(fig[:start] + _boxed(fig[start:img_end], hit.box) + fig[img_end:])
    notes = "".join(f"<p class=note>{esc(n)}</p>" for n in result.notes)
    body = (f"<section id=results><h2>In other works</h2>{notes}"
            f"<div class=hits>{''.join(cells)}</div></section>")
    facts = [("query", str(query.get("path") or query.get("image"))),
             ("region (x, y, w, h)", ", ".join(f"{v:.3f}" for v in region)),
             ("space", result.space), ("search", result.search.get("index")),
             ("command", provenance["command"]), ("index", provenance["index"]),
             ("made", f"artsearch {provenance['artsearch']}, {provenance['made']}")]
    html_text = page("A part of a picture, in other works",
                     f"{len(result.hits)} works, each with its most similar region boxed",
                     facts, [head, body]).replace("</style>", _CSS + "</style>", 1)
    return write_report(out_dir, html_text, {"provenance": provenance, **result.as_dict()},
                        files=written)
