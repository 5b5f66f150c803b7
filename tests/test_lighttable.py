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
from tests.helpers import client


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

    c.post("/light-table/delete", data={"set": "other", "confirm": "yes"})
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
    from tests.helpers import select_the_whole_map, violations

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


# -- nothing a curator gathered is lost by a click ---------------------------------------------

def test_a_deleted_set_asks_first_and_comes_back_with_restore(served: tuple[Path, Path]
                                                              ) -> None:
    _, index = served
    c = client(index)
    c.post("/light-table/add", data={"set": "Three", "ids": "3,1,2"})
    c.post("/light-table/add", data={"set": "Empty for now", "ids": "4"})
    c.post("/light-table/remove", data={"set": "Empty for now", "id": "4"})
    asked = c.post("/light-table/delete", data={"set": "Three"}, follow_redirects=False)
    assert asked.status_code == 200 and "The set holds 3 works" in asked.text
    assert 'name="confirm" value="yes"' in asked.text  # the second form, no script needed
    assert LightTable(index).sets()["Three"] == [3, 1, 2]  # asked, not deleted
    gone = c.post("/light-table/delete", data={"set": "Three", "confirm": "yes"},
                  follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/light-table?deleted=Three"
    page = c.get(gone.headers["location"]).text
    assert "Deleted <b>Three</b> (3 works)" in page and 'class="restore"' in page
    assert "Recently deleted" in page and "Three" not in LightTable(index).sets()
    # An empty set goes on one click (nothing to lose), to the same list.
    assert c.post("/light-table/delete", data={"set": "Empty for now"},
                  follow_redirects=False).status_code == 303
    listed = c.get("/api/light-table").json()["deleted"]
    assert [d["name"] for d in listed] == ["Empty for now", "Three"]
    back = c.post("/light-table/restore", data={"set": "Three"}, follow_redirects=False)
    assert back.status_code == 303
    assert LightTable(index).sets() == {"Three": [3, 1, 2]}  # in its order
    assert "Restored <b>Three</b> (3 works)" in c.get(back.headers["location"]).text
    assert c.post("/light-table/restore", data={"set": "Three"}).status_code == 404


def test_the_recently_deleted_keep_twenty_sets(tmp_path: Path) -> None:
    from artsearch.web.lighttable import KEEP_DELETED

    table = LightTable(tmp_path)
    for n in range(KEEP_DELETED + 5):
        table.add(f"s{n}", [n + 1])
        table.delete(f"s{n}")
    kept = table.read().deleted
    assert len(kept) == KEEP_DELETED >= 20 and kept[0]["name"] == f"s{KEEP_DELETED + 4}"


def test_a_removed_work_is_put_back_where_it_stood(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    c.post("/light-table/add", data={"set": "s", "ids": "5,6,7"})
    r = c.post("/light-table/remove", data={"set": "s", "id": "6"}, follow_redirects=False)
    page = c.get(r.headers["location"]).text
    assert "Removed" in page and 'class="put-back"' in page and 'name="at" value="1"' in page
    c.post("/light-table/put-back", data={"set": "s", "id": "6", "at": "1"})
    assert LightTable(index).sets()["s"] == [5, 6, 7]


@pytest.mark.parametrize("damage", ['{"sets": {"a": [1, 2', "not json at all",
                                    '{"sets": ["a", "b"]}', '{"sets": {"a": ["1", 2]}}',
                                    '[1, 2, 3]', b"\xff\xfe\x00"])
def test_a_damaged_light_table_is_kept_aside_and_never_overwritten(
        served: tuple[Path, Path], damage: str | bytes) -> None:
    _, index = served
    file = index / "light-table.json"
    raw = damage if isinstance(damage, bytes) else damage.encode()
    file.write_bytes(raw)
    c = client(index)
    page = c.get("/light-table")
    assert page.status_code == 200 and "the light table cannot be read" in page.text
    aside = sorted(index.glob("light-table.json.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == raw and aside[0].name in page.text
    for url, data in (("/light-table/add", {"set": "new", "ids": "1"}),
                  ("/light-table/delete", {"set": "a", "confirm": "yes"}),
                  ("/light-table/restore", {"set": "a"})):
        r = c.post(url, data=data)
        assert r.status_code in (404, 500) and "Traceback" not in r.text, url
        assert file.read_bytes() == raw  # never replaced
    r = c.post("/light-table/add", data={"set": "new", "ids": "1"})
    assert r.status_code == 500 and "fix the file or remove it" in r.text
    assert len(list(index.glob("light-table.json.damaged-*"))) == 1  # one copy, not one a try
    file.unlink()  # the fix the message gives: a new light table, the copy still aside
    assert c.post("/light-table/add", data={"set": "new", "ids": "1"}).status_code == 200
    assert LightTable(index).sets() == {"new": [1]}


def test_a_full_disk_changes_nothing_and_leaves_no_temporary_file(
        served: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    _, index = served
    c = client(index)
    c.post("/light-table/add", data={"set": "kept", "ids": "1,2"})
    file = index / "light-table.json"
    file.chmod(0o640)
    before = file.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    r = c.post("/light-table/add", data={"set": "kept", "ids": "3"})
    assert r.status_code == 507 and "the disk is full: nothing was changed" in r.text
    assert file.read_bytes() == before
    assert [p.name for p in index.iterdir() if p.name.startswith(".light-table.")] == []
    monkeypatch.undo()
    assert c.post("/light-table/add", data={"set": "kept", "ids": "3"}).status_code == 200
    assert file.stat().st_mode & 0o777 == 0o640  # the file keeps its mode


def test_two_tabs_editing_one_set_lose_nothing(served: tuple[Path, Path]) -> None:
    _, index = served
    tabs = [client(index), client(index)]
    for tab in tabs:  # each app builds its form schemas on its first request, not in the race
        assert tab.post("/light-table/add", data={"set": "warm", "ids": "1"}).status_code == 200
    errors: list[int] = []

    def edit(tab: TestClient, ids: range) -> None:
        for i in ids:
            r = tab.post("/light-table/add", data={"set": "shared", "ids": str(i)})
            if r.status_code != 200:
                errors.append(r.status_code)

    threads = [threading.Thread(target=edit, args=(tabs[0], range(1, 7))),
               threading.Thread(target=edit, args=(tabs[1], range(7, 13)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(LightTable(index).sets()["shared"]) == list(range(1, 13))


@pytest.mark.browser
def test_a_curator_deletes_a_set_and_restores_it_in_the_browser(
        served: tuple[Path, Path], live_server: str) -> None:
    from tests.browser import open_url
    from tests.helpers import violations

    _, index = served
    LightTable(index).add("Three works", [1, 2, 3])
    with open_url(live_server + "/light-table", live_server) as (page, log):
        page.click("[data-set='Three works'] button.delete-set")
        page.wait_for_selector("#confirm-delete")
        assert "3 works" in page.inner_text("#confirm-delete")
        assert violations(page) == []
        page.click("button.confirm-delete")
        page.wait_for_selector("#light-table-notice")
        assert "Deleted Three works (3 works)" in page.inner_text("#light-table-notice")
        assert page.locator("[data-set='Three works']").count() == 0
        assert violations(page) == []
        page.click("#light-table-notice button.restore")
        page.wait_for_selector("[data-set='Three works']")
        assert page.locator("[data-set='Three works'] .tile").count() == 3
        assert log["console"] == [] and log["errors"] == [] and log["outside"] == []


@pytest.mark.browser
def test_a_damaged_light_table_is_said_on_the_page(served: tuple[Path, Path],
                                                   live_server: str) -> None:
    from tests.browser import open_url

    _, index = served
    (index / "light-table.json").write_text('{"sets": {"a": [1,')
    with open_url(live_server + "/light-table", live_server) as (page, log):
        text = page.inner_text("#light-table-damaged")
        assert "cannot be read" in text and "light-table.json.damaged-" in text
        page.goto(live_server + "/work/1", wait_until="load")
        page.fill("#light-add input[name=set]", "Studies")
        page.click("#light-add button")
        page.wait_for_load_state("load")
        assert "nothing was changed" in page.inner_text("main")
    assert (index / "light-table.json").read_text() == '{"sets": {"a": [1,'


def test_set_names_are_plain_text_wherever_they_go(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    r = c.post("/light-table/add", data={"set": "<b>Dutch</b> \u202einteriors<img src=x "
                                                "onerror=alert(1)>", "ids": "1"})
    assert r.status_code == 200
    assert list(LightTable(index).sets()) == ["Dutch interiors"]
    label = c.get("/light-table/Dutch interiors/manifest.json").json()["label"]
    assert json.dumps(label).count("Dutch interiors") == 1 and "<" not in json.dumps(label)
    assert c.post("/light-table/add", data={"set": "<i></i>", "ids": "1"}).status_code == 400


def test_the_csv_carries_every_catalogue_column_and_public_links(
        served: tuple[Path, Path]) -> None:
    from artsearch.errors import OptionError
    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import known_fields
    from artsearch.web import public_url

    _, index = served
    with ArtIndex(index) as idx:
        held = [f for f in known_fields(idx, derived=False) if f != "path"]
    assert "license" in held and "date" in held  # what the fixture's catalogue gives
    shared = TestClient(build(index, public_url="https://art.example.org/gallery/"),
                        base_url="http://127.0.0.1:8765")
    shared.post("/light-table/add", data={"set": "s", "ids": "1,2"})
    text = shared.get("/light-table/s.csv").text
    header = next(csv.reader(io.StringIO(text)))
    assert sorted(header) == sorted(["id", "path", "page", *held])
    # In the catalogue CSV's own order (path,title,artist,genre,date,license).
    assert header[3:] == ["title", "artist", "genre", "date", "license"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["page"] == "https://art.example.org/gallery/work/1"
    manifest = shared.get("/light-table/s/manifest.json").json()
    assert manifest["id"].startswith("https://art.example.org/gallery/light-table/s")
    # Requests the proxy forwards under the public name are answered, others still not.
    assert shared.get("/", headers={"host": "art.example.org"}).status_code == 200
    assert shared.get("/", headers={"host": "attacker.example"}).status_code == 421
    for bad in ("ftp://x", "art.example.org", "https://x/?q=1", "https://u:p@x"):
        with pytest.raises(OptionError):
            public_url(bad)


def test_the_csv_keeps_the_catalogue_columns_in_the_order_the_curator_gave(
        tmp_path: Path) -> None:
    """Columns as the metadata CSV ordered them, extras among them; a later CSV's new
    columns come after."""
    from tests.helpers import index_into, make_collection

    root = tmp_path / "coll"
    paths = [p.relative_to(root).as_posix() for p in make_collection(root, 3)]
    first = root / "first.csv"
    first.write_text("path,license,zeta,title,alpha,artist\n" + "".join(
        f"{p},CC0 1.0,z{i},T{i},a{i},Ann\n" for i, p in enumerate(paths)))
    index_into(root, tmp_path / "idx", metadata=first)
    second = root / "second.csv"
    second.write_text("path,beta,title\n" + "".join(f"{p},b{i},T{i}\n"
                                                     for i, p in enumerate(paths)))
    index_into(root, tmp_path / "idx", metadata=second)
    c = TestClient(build(tmp_path / "idx"), base_url="http://127.0.0.1:8765")
    c.post("/light-table/add", data={"set": "s", "ids": "1,2,3"})
    header = next(csv.reader(io.StringIO(c.get("/light-table/s.csv").text)))
    assert header == ["id", "path", "page", "license", "zeta", "title", "alpha", "artist",
                      "beta"]
