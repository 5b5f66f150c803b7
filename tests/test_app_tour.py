"""The app on real paintings: the bundled example collection (public domain), indexed with the
default backbone and its region index, walked in Chromium as a curator would — a part of a
painting found elsewhere, the map, deep zoom. The screenshots are the README's
(test-artifacts/app-*.png, copied to docs/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import invoke

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "collection"


@pytest.fixture(scope="module")
def example_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("tour") / "idx"
    code, _, err = invoke("index", str(EXAMPLES), "--index", str(index), "--metadata",
                          str(EXAMPLES / "metadata.csv"), "--regions", "--precision", "fp32",
                          "--workers", "0", "-q")
    assert code == 0, err
    return index


@pytest.mark.browser
def test_a_curator_finds_a_part_of_a_painting_in_others(example_index: Path) -> None:
    from tests.browser import open_url, screenshot
    from tests.helpers import client, serving, violations

    works = client(example_index).get("/api/works", params={"q": "Peasant Dance"}).json()
    barn = next(w for w in works["works"] if "Barn" in (w["title"] or ""))["id"]
    with serving(example_index) as base, open_url(f"{base}/work/{barn}", base) as (page, log):
        page.set_viewport_size({"width": 1280, "height": 800})
        picture = page.locator("#region-overlay").bounding_box()
        assert picture is not None
        x, y, w, h = picture["x"], picture["y"], picture["width"], picture["height"]
        page.mouse.move(x + 0.30 * w, y + 0.35 * h)  # the dancers
        page.mouse.down()
        page.mouse.move(x + 0.65 * w, y + 0.85 * h, steps=6)
        page.mouse.up()
        page.click("#region-find")
        page.wait_for_load_state("load")
        tiles = page.locator("#region-results .tile")
        assert tiles.count() >= 10 and page.locator("#region-results rect").count() >= 10
        assert f'href="/work/{barn}"' not in page.inner_html("#region-results")
        assert violations(page) == []
        screenshot(page, "app-regions.png")

        page.goto(f"{base}/map?colour=genre", wait_until="load")
        page.wait_for_selector("#map[data-ready=true]", timeout=20_000)
        assert page.locator("#map-legend li").count() >= 2
        page.check("#map-thumbs")
        page.wait_for_timeout(1500)  # the atlas sheet loads, then the map draws it
        screenshot(page, "app-map.png")

        page.goto(f"{base}/work/{barn}/zoom", wait_until="load")
        page.wait_for_selector("#zoom canvas", timeout=10_000)
        page.wait_for_timeout(1000)
        screenshot(page, "app-zoom.png")
        assert log["console"] == [] and log["errors"] == [] and log["outside"] == []
