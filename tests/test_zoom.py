"""Deep zoom of a work's full picture: the Deep Zoom pyramid, its tiles, the licence rule
and the link rule, and the vendored viewer in Chromium."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from artsearch.web.zoom import TILE, level_size, levels, tile_box
from tests.helpers import client, index_into, make_collection, painting

VIEWER = Path(__file__).resolve().parents[1] / "artsearch" / "web" / "static" / "openseadragon"


def test_the_pyramid_halves_down_to_one_pixel_and_tiles_cover_each_level() -> None:
    assert levels(1000, 700) == 11 and levels(1, 1) == 1
    assert level_size(1000, 700, 10) == (1000, 700) and level_size(1000, 700, 9) == (500, 350)
    assert level_size(1000, 700, 0) == (1, 1)
    assert tile_box((1000, 700), 0, 0) == (0, 0, TILE + 1, TILE + 1)
    assert tile_box((1000, 700), 1, 2) == (TILE - 1, 2 * TILE - 1, 2 * TILE + 1, 700)
    assert tile_box((1000, 700), 4, 0) is None  # 4 * 254 >= 1000: past the right edge
    for w, h in ((1000, 700), (255, 3), (4096, 4097)):
        cols, rows = -(-w // TILE), -(-h // TILE)
        covered = sum((b[2] - b[0]) * (b[3] - b[1]) for c in range(cols) for r in range(rows)
                      if (b := tile_box((w, h), c, r)))
        assert covered >= w * h  # overlap only adds


def test_the_vendored_viewer_is_the_one_its_readme_names() -> None:
    digest = hashlib.sha256((VIEWER / "openseadragon.min.js").read_bytes()).hexdigest()
    assert digest in (VIEWER / "README.md").read_text()


@pytest.fixture
def zoomable(tmp_path: Path) -> tuple[Path, Path]:
    """(collection, index): a 1000 x 700 open-licence picture (id 1), two small ones, and
    one whose licence withholds it (the last)."""
    root = tmp_path / "coll"
    root.mkdir()
    painting(5, (1000, 700)).save(root / "big.jpg", quality=90)
    make_collection(root, 3)
    rows = ["path,license", "big.jpg,CC0 1.0", "a/work_001.jpg,CC0 1.0", "b/work_000.jpg,CC0 1.0",
            "b/work_002.jpg,All rights reserved"]
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    index_into(root, tmp_path / "idx", metadata=tmp_path / "meta.csv")
    return root, tmp_path / "idx"


def ids_by_path(c: object) -> dict[str, int]:
    works = c.get("/api/works").json()["works"]  # type: ignore[attr-defined]
    return {w["path"]: w["id"] for w in works}


def test_tiles_make_the_picture_and_are_kept(zoomable: tuple[Path, Path]) -> None:
    root, index = zoomable
    c = client(index)
    ids = ids_by_path(c)
    big = ids["big.jpg"]
    dzi = c.get(f"/tiles/{big}.dzi")
    assert dzi.status_code == 200 and 'Width="1000" Height="700"' in dzi.text
    assert f'TileSize="{TILE}"' in dzi.text
    top = levels(1000, 700) - 1
    t = c.get(f"/tiles/{big}_files/{top}/1_2.jpg")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(t.content)).size == (256, 700 - (2 * TILE - 1))
    assert Image.open(io.BytesIO(c.get(f"/tiles/{big}_files/0/0_0.jpg").content)).size == (1, 1)
    kept = list((index / "tiles").rglob("*.jpg"))
    assert len(kept) == 2  # made once, kept by content hash
    for bad in (f"/tiles/{big}_files/{top + 1}/0_0.jpg", f"/tiles/{big}_files/{top}/9_0.jpg",
                f"/tiles/{big}_files/-1/0_0.jpg", f"/tiles/{big}_files/{top}/0_0.png",
                "/tiles/999999.dzi"):
        assert c.get(bad).status_code in (404, 422), bad
    page = c.get(f"/work/{big}/zoom").text
    assert f'data-dzi="/tiles/{big}.dzi"' in page and "/static/openseadragon/" in page
    assert 'id="zoom-link"' in c.get(f"/work/{big}").text


def test_a_withheld_or_linked_work_is_never_tiled(zoomable: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    root, index = zoomable
    c = client(index)
    ids = ids_by_path(c)
    closed = ids["b/work_002.jpg"]
    assert c.get(f"/tiles/{closed}.dzi").status_code == 403
    assert c.get(f"/tiles/{closed}_files/0/0_0.jpg").status_code == 403
    page = c.get(f"/work/{closed}/zoom")
    assert 'id="withheld"' in page.text and "data-dzi" not in page.text
    assert 'id="zoom-link"' not in c.get(f"/work/{closed}").text
    # A file swapped for a link leading out of the collection after indexing: refused.
    outside = tmp_path / "elsewhere.jpg"
    painting(99).save(outside)
    swapped = root / "a" / "work_001.jpg"
    swapped.unlink()
    os.symlink(outside, swapped)
    opened = ids["a/work_001.jpg"]
    assert c.get(f"/tiles/{opened}.dzi").status_code == 404
    assert c.get(f"/tiles/{opened}_files/0/0_0.jpg").status_code == 404


@pytest.mark.browser
def test_the_viewer_loads_tiles_in_chromium(zoomable: tuple[Path, Path]) -> None:
    from tests.browser import open_url, screenshot
    from tests.helpers import serving, violations

    _, index = zoomable
    big = ids_by_path(client(index))["big.jpg"]
    with serving(index) as base, open_url(base + "/", base) as (page, log):
        tiles: list[int] = []
        page.on("response", lambda r: tiles.append(r.status) if "/tiles/" in r.url
                and r.url.endswith(".jpg") else None)
        page.goto(f"{base}/work/{big}/zoom", wait_until="load")
        page.wait_for_selector("#zoom canvas", timeout=10_000)
        page.wait_for_timeout(1500)
        assert tiles and all(s == 200 for s in tiles), tiles
        screenshot(page, "zoom-viewer.png")
        assert violations(page) == []
        assert log["console"] == [] and log["errors"] == [] and log["outside"] == []
