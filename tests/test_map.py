"""The collection map in the app: the layout as numbers, colours, atlas sheets, and the page
in Chromium (a click opens a work, Shift-drag selects a box)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from artsearch.web.map import ATLAS_CELL, ATLAS_SIDE
from tests.helpers import client, invoke, select_the_whole_map


def test_the_map_lays_out_every_work_once(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    m = c.get("/api/map", params={"colour": "artist"}).json()
    assert m["count"] == 12 and len(m["ids"]) == len(set(m["ids"])) == 12
    assert all(0 <= v <= 1 for v in m["x"] + m["y"])
    assert sorted(m["groups"]) == ["Ann", "Bo"] and set(m["group"]) == {0, 1}
    kept = list((index / "maps").glob("space-*.npz"))
    assert len(kept) == 1
    again = c.get("/api/map", params={"colour": "artist"}).json()
    assert again["x"] == m["x"]  # the kept layout, not a new one
    # Colour by cluster: none yet says how to make one; after a run, its clusters.
    first = c.get("/api/map").json()
    assert first["groups"] == [] and "artsearch cluster" in first["colour_meaning"]
    assert invoke("cluster", "--index", str(index), "-k", "3", "--restarts", "0")[0] == 0
    m = client(index).get("/api/map").json()
    assert m["groups"] == ["cluster 1", "cluster 2", "cluster 3"] and min(m["group"]) >= 0
    for bad in ({"colour": "title); drop"}, {"space": "nope"}):
        assert c.get("/api/map", params=bad).status_code in (400, 404)


def test_atlas_sheets_hold_only_shown_pictures(served: tuple[Path, Path]) -> None:
    _, index = served
    closed = client(index, licences=frozenset({"cc-by"}))  # CC0 works are then withheld
    sheet = Image.open(io.BytesIO(closed.get("/map/atlas/content/0.jpg").content))
    assert sheet.size == (ATLAS_SIDE * ATLAS_CELL,) * 2
    grey = sheet.getpixel((ATLAS_CELL // 2, ATLAS_CELL // 2))
    assert all(abs(a - b) <= 8 for a, b in zip(grey, (200, 199, 193), strict=True))
    opened = Image.open(io.BytesIO(client(index).get("/map/atlas/content/0.jpg").content))
    assert opened.getpixel((ATLAS_CELL // 2, ATLAS_CELL // 2)) != grey
    assert client(index).get("/map/atlas/content/1.jpg").status_code == 404


@pytest.mark.browser
def test_a_curator_walks_the_map(served: tuple[Path, Path], live_server: str) -> None:
    from tests.browser import open_url, screenshot
    from tests.helpers import violations

    with open_url(live_server + "/map?colour=artist", live_server) as (page, log):
        page.wait_for_selector("#map[data-ready=true]", timeout=20_000)
        assert violations(page) == []
        assert page.locator("#map-legend li").count() == 2
        box = select_the_whole_map(page)
        assert page.inner_text("#map-selected-count").startswith("12 works selected")
        screenshot(page, "map.png")
        # A click on a point opens its work.
        assert page.locator("#map-selected a").first.get_attribute("href").startswith("/work/")
        href = page.evaluate("""async () => {
            const m = await (await fetch('/api/map')).json();
            return [m.x[0], m.y[0], m.ids[0]]; }""")
        page.mouse.click(box["x"] + 12 + href[0] * (box["width"] - 24),
                         box["y"] + 12 + href[1] * (box["height"] - 24))
        page.wait_for_url(f"**/work/{href[2]}")
        assert log["console"] == [] and log["errors"] == [] and log["outside"] == []


def test_the_map_has_links_a_keyboard_path_and_a_touch_screen(
        served: tuple[Path, Path], live_server: str) -> None:
    """Pointing at a dot shows its card with a real link and the works near it; the arrow
    keys go from dot to dot and Enter opens one; on a phone the help speaks of touch and a
    tap opens a work."""
    from tests.browser import open_url

    with open_url(live_server + "/map", live_server) as (page, log):
        page.wait_for_selector("#map[data-ready=true]", timeout=20_000)
        m = page.evaluate("async () => (await fetch('/api/map')).json()")
        assert len(m["titles"]) == len(m["ids"]) == 12 and all(m["titles"])
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + 12 + m["x"][3] * (box["width"] - 24),
                        box["y"] + 12 + m["y"][3] * (box["height"] - 24))
        card = page.locator("#map-card a")
        assert card.get_attribute("href") == f"/work/{m['ids'][3]}"
        assert m["titles"][3] in card.inner_text()
        assert page.locator("#map-near a").count() >= 1
        # Keyboard: focus the map, walk with the arrows, Enter opens the work the card shows.
        page.focus("#map")
        seen = set()
        for key in ("ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp", "ArrowRight"):
            page.keyboard.press(key)
            seen.add(page.get_attribute("#map-card", "data-id"))
        assert len(seen - {None}) >= 2  # the arrows moved between works
        shown = page.get_attribute("#map-card", "data-id")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/work/{shown}")
        assert log["console"] == [] and log["errors"] == [] and log["outside"] == []

    phone = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
    with open_url(live_server + "/map", live_server, **phone) as (page, log):
        page.wait_for_selector("#map[data-ready=true]", timeout=20_000)
        help_text = page.inner_text("#map-help")
        assert "tap a point" in help_text and "Shift" not in help_text.split("arrow")[0]
        m = page.evaluate("async () => (await fetch('/api/map')).json()")
        box = page.locator("#map").bounding_box()
        page.touchscreen.tap(box["x"] + 12 + m["x"][0] * (box["width"] - 24),
                             box["y"] + 12 + m["y"][0] * (box["height"] - 24))
        page.wait_for_url(f"**/work/{m['ids'][0]}")
        assert log["errors"] == []
