"""The page `artsearch layers` writes: per layer of a backbone, its strongest feature maps
over the picture, its Gram matrix, and the works it alone finds nearest."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.reports.page import Thumbnails, claim_folder, esc, page, write_report

if TYPE_CHECKING:
    from PIL import Image

    from artsearch.layers import LayerView

__all__ = ["layers_report"]

MAP_SIDE = 112

_CSS = """
.maps { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; }
.maps figure { margin: 0; font-size: 11px; color: var(--muted); }
.maps img { width: 112px; height: 112px; image-rendering: pixelated; display: block;
            border: 1px solid var(--rule); }
.maps img.gram { width: 160px; height: 160px; }
.layer { display: grid; grid-template-columns: minmax(0, 1fr); gap: 6px; }
"""


def layers_report(picture: Image.Image, picture_name: str, backbone: str,
                  views: list[LayerView], nearest: dict[str, list[tuple[Any, float]]],
                  out_dir: Path, *, index: Any = None, compared: int = 0,
                  licences: Iterable[str] | None = None,
                  facts: list[tuple[str, object]] | None = None) -> Path:
    """Write index.html, report.json and the images (layers/) to out_dir."""
    from PIL import Image as PILImage

    img_dir = out_dir / "layers"
    claim_folder(out_dir, "--out")
    img_dir.mkdir(parents=True, exist_ok=True)
    written = ["layers/picture.jpg"]
    shown = picture.convert("RGB")
    shown.thumbnail((320, 320))
    shown.save(img_dir / "picture.jpg", "JPEG", quality=88)
    thumbs = Thumbnails(index, out_dir, licences=licences) if index is not None else None
    if thumbs is not None:
        thumbs.make((w.id, w.path) for rows in nearest.values() for w, _ in rows)
    sections, data = [], []
    for n, view in enumerate(views):
        figures = []
        for channel, fmap in view.maps:
            name = f"{n:02d}-{view.name}-c{channel}.png"
            _grey(fmap, MAP_SIDE).save(img_dir / name)
            written.append(f"layers/{name}")
            figures.append(f"<figure><img src='layers/{esc(name)}' alt='channel {channel}'>"
                           f"<figcaption>channel {channel}</figcaption></figure>")
        gname = f"{n:02d}-{view.name}-gram.png"
        _grey(view.gram, 160, PILImage.Resampling.NEAREST).save(img_dir / gname)
        written.append(f"layers/{gname}")
        figures.append(f"<figure><img class=gram src='layers/{esc(gname)}' alt='Gram matrix'>"
                       f"<figcaption>Gram matrix ({view.channels} × {view.channels}"
                       f"{', block means' if view.channels > view.gram.shape[0] else ''})"
                       "</figcaption></figure>")
        near = nearest.get(view.name, [])
        sheet = "".join(thumbs.figure(w.id, f"{sim:.3f} · {w.title or Path(w.path).name}",
                                      w.path) for w, sim in near) if thumbs else ""
        near_html = (f"<h3>Nearest works by this layer alone</h3><div class=sheet>{sheet}"
                     "</div>" if near else "<p class=note>No collection to compare with: "
                     "give --index.</p>")
        sections.append(
            f"<section id='layer-{esc(view.name)}' class=layer><h2>{esc(view.name)} "
            f"<span class=muted>{view.channels} channels on a {view.grid[0]} × {view.grid[1]} "
            f"grid</span></h2><div class=maps>{''.join(figures)}</div>{near_html}</section>")
        data.append({"layer": view.name, "channels": view.channels, "grid": list(view.grid),
                     "strongest_channels": [c for c, _ in view.maps],
                     "nearest": [{"id": w.id, "path": w.path, "cosine": round(sim, 4)}
                                 for w, sim in near]})
    intro = ("<section id=picture><div class=maps><figure><img src='layers/picture.jpg' "
             "alt='the picture' style='width:auto;height:auto;max-width:320px'></figure></div>"
             "<p class=note>Early layers respond to edges, colours and small textures; later "
             "ones to parts and whole objects. Each layer's strongest channels are shown over "
             "the square the network saw (bright: strong response); its Gram matrix says which "
             "channels fire together anywhere in the picture, which is what a Gram style space "
             "compares; the nearest works use only that layer's averaged channels."
             + (f" Compared with {compared:,} works of the index." if compared else "")
             + "</p></section>")
    html_text = page(f"What {backbone} sees in {picture_name}",
                     f"{len(views)} layers, first to last", [*(facts or [])],
                     [intro, *sections],
                     toc=[(f"layer-{v.name}", v.name) for v in views]).replace(
        "</style>", _CSS + "</style>", 1)
    return write_report(out_dir, html_text, {"picture": picture_name, "backbone": backbone,
                                             "compared": compared, "layers": data,
                                             "provenance": dict(facts or [])},
                        files=[*written, *(thumbs.files() if thumbs else [])])


def _grey(a: np.ndarray, side: int, resample: Any = None) -> Image.Image:
    from PIL import Image as PILImage

    img = PILImage.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8), "L")
    return img.resize((side, side), resample or PILImage.Resampling.BILINEAR)
