"""The light table: named sets kept with the index, changed only by same-origin POSTs (and
with the token when one is set), exported as CSV and as a IIIF manifest."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from artsearch.web import build
from artsearch.web.lighttable import LightTable
from tests.test_web import client, live_server, served

__all__ = ["live_server", "served"]  # the fixtures


def test_sets_are_gathered_kept_and_exported(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    r = c.post("/light-table/add", data={"set": "Dutch interiors", "ids": "1,2"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/light-table#set-Dutch%20interiors"
    c.post("/light-table/add", data={"set": "Dutch interiors", "ids": "2, 3"})
    c.post("/light-table/add", data={"set": "other", "ids": "5"})
    assert c.get("/api/light-table").json()["sets"] == {"Dutch interiors": [1, 2, 3],
                                                         "other": [5]}
    c.post("/light-table/remove", data={"set": "Dutch interiors", "id": "2"})
    assert LightTable(index).sets()["Dutch interiors"] == [1, 3]  # kept in the index folder
    page = c.get("/light-table").text
    assert page.count('class="tile"') == 3 and "Dutch interiors" in page

    rows = list(csv.DictReader(io.StringIO(c.get("/light-table/Dutch interiors.csv").text)))
    assert [int(r["id"]) for r in rows] == [1, 3]
    # A title that a spreadsheet would run as a formula is written behind an apostrophe.
    assert all(not r["title"].startswith(("=", "+", "-", "@")) for r in rows)
    manifest = c.get("/light-table/Dutch interiors/manifest.json")
    assert manifest.status_code == 200
    data = manifest.json()
    assert data["type"] == "Manifest" and len(data["items"]) == 2
    assert data["id"].startswith("http://127.0.0.1:8765/light-table/Dutch%20interiors")

    c.post("/light-table/delete", data={"set": "other"})
    assert list(c.get("/api/light-table").json()["sets"]) == ["Dutch interiors"]
    assert c.get("/light-table/other.csv").status_code == 404


def test_the_light_table_refuses_what_it_should(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    for data in ({"set": "", "ids": "1"}, {"set": "a/b", "ids": "1"},
                 {"set": "x\x07", "ids": "1"}, {"set": "ok", "ids": "1; drop"},
                 {"set": "ok", "ids": ""}):
        assert c.post("/light-table/add", data=data).status_code in (400, 422), data
    assert c.post("/light-table/add", data={"set": "ok", "ids": "999999"}).status_code == 404
    # Another site's page cannot make a visitor's browser change the light table.
    foreign = c.post("/light-table/add", data={"set": "ok", "ids": "1"},
                     headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"})
    assert foreign.status_code == 403
    assert LightTable(index).sets() == {}
    # With a token, a write needs it like every request.
    guarded = TestClient(build(index, host="0.0.0.0", token="s3cret"),
                         base_url="http://0.0.0.0:8765")
    assert guarded.post("/light-table/add", data={"set": "ok", "ids": "1"}).status_code == 401
    ok = guarded.post("/light-table/add", data={"set": "ok", "ids": "1"},
                      headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and LightTable(index).sets() == {"ok": [1]}


def test_concurrent_additions_lose_nothing(tmp_path: Path) -> None:
    table = LightTable(tmp_path)
    threads = [threading.Thread(target=table.add, args=("s", [i])) for i in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(table.sets()["s"]) == list(range(1, 41))
    json.loads((tmp_path / "light-table.json").read_text())  # whole, never half-written


@pytest.mark.browser
def test_a_curator_gathers_works_from_a_page_and_the_map(served: tuple[Path, Path],
                                                         live_server: str) -> None:
    from tests.browser import open_url
    from tests.test_accessibility import violations
    from tests.test_map import select_the_whole_map

    with open_url(live_server + "/work/4", live_server) as (page, log):
        page.fill("#light-add input[name=set]", "Studies")
        page.click("#light-add button")
        page.wait_for_url("**/light-table#set-Studies")
        assert page.locator("[data-set='Studies'] .tile").count() == 1
        assert violations(page) == []
        page.goto(live_server + "/map", wait_until="load")
        page.wait_for_selector("#map[data-ready=true]", timeout=20_000)
        select_the_whole_map(page)
        page.click("#map-add button")
        page.wait_for_load_state("load")
        assert page.locator("[data-set='from the map'] .tile").count() == 12
        page.click("[data-set='Studies'] button.remove")
        page.wait_for_load_state("load")
        assert page.locator("[data-set='Studies'] .tile").count() == 0
        assert log["console"] == [] and log["errors"] == [] and log["outside"] == []
