"""A server that never stalls (issue 23): uploads are embedded off the event loop, a bounded
number at once (then 503 with Retry-After); models load at start; a body over the cap is
refused before it is read; uploads from another origin are refused. Against a real uvicorn
server on loopback where the event loop matters."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from artsearch.web import build
from tests.helpers import client, free_port, jpeg, painting


@pytest.fixture
def server(served: tuple[Path, Path]) -> Iterator[tuple[str, Any]]:
    import uvicorn

    _, index = served
    port = free_port()
    app = build(index, port=port)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(5)


def test_pages_answer_while_uploads_are_embedded_and_a_third_is_told_to_wait(
        server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch import query

    base, _ = server
    release = threading.Event()
    started = threading.Semaphore(0)
    real = query.default_extractor
    niceness: list[int] = []

    class Held:
        """The space's extractor, held until released: an upload that takes its time."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def embed_images(self, images: Any) -> Any:
            # Uploads run below the pages' priority (where threads have priorities).
            if hasattr(os, "getpriority"):
                niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
                                - os.getpriority(os.PRIO_PROCESS, os.getpid()))
            started.release()
            assert release.wait(20)
            return self.inner.embed_images(images)

    monkeypatch.setattr(query, "default_extractor", lambda index, sp: Held(real(index, sp)))
    picture = jpeg(painting(99))
    answers: list[httpx.Response] = []

    def upload() -> None:
        answers.append(httpx.post(f"{base}/api/query", files={"image": ("p.jpg", picture)},
                                  timeout=30))

    uploads = [threading.Thread(target=upload) for _ in range(2)]
    for t in uploads:
        t.start()
    assert started.acquire(timeout=20) and started.acquire(timeout=20)  # both embedding
    # The event loop is free: a page, and a third upload told to come back.
    page = httpx.get(f"{base}/", timeout=10)
    assert page.status_code == 200
    third = httpx.post(f"{base}/api/query", files={"image": ("p.jpg", picture)}, timeout=10)
    assert third.status_code == 503 and third.headers["retry-after"] == "5"
    release.set()
    for t in uploads:
        t.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    if sys.platform == "linux":
        assert niceness == [10, 10]


def test_models_are_warmed_and_maps_laid_out_at_start(served: tuple[Path, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch import query
    from artsearch.reports import clusters as cluster_report

    _, index = served
    shutil.rmtree(index / "maps", ignore_errors=True)
    built: list[str] = []
    real = query.default_extractor

    def counting(idx: Any, sp: Any) -> Any:
        built.append(sp.name)
        return real(idx, sp)

    monkeypatch.setattr(query, "default_extractor", counting)
    app = build(index)
    app.app.state.warm()
    assert sorted(built) == ["content", "tone"]
    c = client(index)
    c.app = app  # type: ignore[assignment]
    answer = c.post("/api/query", files={"image": ("p.jpg", jpeg(painting(5)))},
                    data={"space": "content"})
    assert answer.status_code == 200 and sorted(built) == ["content", "tone"]  # none rebuilt
    # Each space's map was laid out too: the map's first view lays out nothing.
    assert len(list((index / "maps").glob("space-*.npz"))) == 2

    def never(*_a: object) -> None:
        raise AssertionError("laid out again on view")

    monkeypatch.setattr(cluster_report, "project_2d", never)
    assert c.get("/api/map", params={"space": "tone"}).json()["count"] > 0


def test_uploads_from_another_origin_are_refused(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    files = {"image": ("p.jpg", b"\xff\xd8 not read")}
    for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                    {"origin": "null"}):
        answer = c.post("/api/query", files=files, headers=headers)
        assert answer.status_code == 403 and "own pages" in answer.text
    for headers in ({"origin": "http://127.0.0.1:8765"}, {"sec-fetch-site": "same-origin",
                                                          "origin": "null"}, {}):
        same = c.post("/api/query", files={"image": ("p.jpg", b"")}, headers=headers)
        assert same.status_code == 400  # let through: refused only for being empty


def test_an_oversized_body_is_refused_before_it_is_read(server: tuple[str, Any]) -> None:
    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /api/query HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
                     + b"\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                     b"Content-Length: 100000000\r\n\r\n" + b"x" * 1000)
        answer = ""
        while "bytes" not in answer and (part := sock.recv(4096)):  # 99.999 MB still unsent
            answer += part.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413") and "over 34,603,008 bytes" in answer
    # A body that hides its length is cut off at the cap as it streams.
    def chunks() -> Iterator[bytes]:
        yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"
        for _ in range(40):
            yield b"\0" * (1 << 20)

    try:
        status = httpx.post(f"{base}/api/query", content=chunks(), timeout=20,
                            headers={"content-type": "multipart/form-data; boundary=x"}
                            ).status_code
    except httpx.HTTPError:  # the server stopped reading: the stream broke off
        status = None
    # Not the app's own "the upload is over 33,554,432 bytes" (400): that would mean the
    # whole body had been read and spooled first.
    assert status in (None, 413)


def test_a_clustering_runs_report_is_made_with_the_run_and_leads_back_to_the_app(
        served: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch.reports import clusters as cluster_report
    from artsearch.rights import DEFAULT_SHOWN, parse_shown
    from artsearch.web.reports import run_folder
    from tests.helpers import invoke

    _, index = served
    code, out, err = invoke("cluster", "--index", str(index), "-k", "2", "--restarts", "0")
    assert code == 0, out + err
    made = run_folder(index, 1, DEFAULT_SHOWN)
    assert (made / "index.html").is_file()  # made by `cluster`, not on first view

    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("the report was made again on view")

    monkeypatch.setattr(cluster_report, "cluster_report", never)
    page = client(index).get("/clusters/1/index.html")
    assert page.status_code == 200
    assert "<a href='/'>&larr; artsearch</a>" in page.text  # a way back
    # One stylesheet: the report carries inline what the app's pages link.
    shared = client(index).get("/style/base.css")
    assert shared.status_code == 200 and shared.headers["content-type"].startswith("text/css")
    assert f"<style>{shared.text}" in page.text
    assert '<link rel="stylesheet" href="/style/base.css">' in client(index).get("/").text
    linked = {int(n) for n in re.findall(r"<a href=./work/(\d+).><img", page.text)}
    assert linked  # every thumbnail opens its work's page
    monkeypatch.undo()
    # A server showing other licence classes gets a report of its own; the default one stays.
    before = (made / "index.html").read_bytes()
    other = client(index, licences=parse_shown("all"))
    assert other.get("/clusters/1/index.html").status_code == 200
    assert run_folder(index, 1, parse_shown("all")) != made
    assert (run_folder(index, 1, parse_shown("all")) / "index.html").is_file()
    assert (made / "index.html").read_bytes() == before


def test_an_audit_is_made_with_its_run_and_shown_in_the_app(
        served: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch.reports import audit as audit_module
    from artsearch.rights import DEFAULT_SHOWN, parse_shown
    from artsearch.web.reports import audit_folder
    from tests.helpers import invoke

    _, index = served
    c = client(index)
    assert c.get("/audits/content/index.html").status_code == 404  # none yet, says how
    assert "artsearch audit" in c.get("/audits/content/index.html").text
    code, out, err = invoke("audit", "--index", str(index), "--space", "content")
    assert code == 0, out + err
    made = audit_folder(index, "content", DEFAULT_SHOWN)
    assert (made / "index.html").is_file()  # made by `audit`, not on first view

    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("the audit was drawn again on view")

    monkeypatch.setattr(audit_module, "audit_report", never)
    assert '/audits/content/index.html' in c.get("/clusters").text
    page = c.get("/audits/content/index.html")
    assert page.status_code == 200 and "Hubness" in page.text
    assert "<a href='/'>&larr; artsearch</a>" in page.text
    linked = set(re.findall(r"<a href=./work/(\d+).><img src='thumbs/(\d+)\.jpg'", page.text))
    assert linked and all(a == b for a, b in linked)  # each hub opens its own work
    thumb = next(iter(linked))[1]
    assert c.get(f"/audits/content/thumbs/{thumb}.jpg").status_code == 200
    assert c.get("/audits/nope/index.html").status_code == 404
    assert c.get("/audits/..%2F..%2Fetc/index.html").status_code in (400, 404, 422)
    monkeypatch.undo()
    # A server showing other licence classes draws its own copy; the default one stays.
    before = (made / "index.html").read_bytes()
    assert client(index, licences=parse_shown("all")).get(
        "/audits/content/index.html").status_code == 200
    assert (audit_folder(index, "content", parse_shown("all")) / "index.html").is_file()
    assert (made / "index.html").read_bytes() == before


@pytest.mark.browser
def test_a_dot_on_a_cluster_reports_map_opens_its_work(
        served: tuple[Path, Path], live_server: str) -> None:
    from tests.browser import open_url
    from tests.helpers import invoke

    _, index = served
    assert invoke("cluster", "--index", str(index), "-k", "2", "--restarts", "0")[0] == 0
    with open_url(live_server + "/clusters/1/index.html", live_server) as (page, log):
        dot = page.locator("#dots circle").first
        name = dot.locator("title").text_content() or ""
        dot.click(force=True)
        page.wait_for_url(re.compile(r".*/work/\d+$"))
        work = int(page.url.rsplit("/", 1)[1])
        catalogue = client(index).get(f"/api/works/{work}").json()
        assert (catalogue.get("title") or "") in name  # the dot's own work opened
    assert log["errors"] == [] and log["outside"] == []


WIDE, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


def _no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.browser
def test_pages_fit_a_phone_and_the_first_work_is_a_few_tabs_away(
        served: tuple[Path, Path], live_server: str) -> None:
    from tests.browser import open_url, screenshot

    _, index = served
    from tests.helpers import invoke

    assert invoke("cluster", "--index", str(index), "-k", "2", "--restarts", "0")[0] == 0
    work = client(index).get("/api/works").json()["works"][0]["id"]
    with open_url(live_server + "/", live_server) as (page, log):
        # Keyboard: Tab reaches the skip link first; following it, the next Tab is a work.
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.className") == "skip"
        page.keyboard.press("Enter")
        for _ in range(3):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.classList.contains('tile')"):
                break
        assert page.evaluate("() => document.activeElement.classList.contains('tile')")
        page.set_viewport_size(PHONE)
        for url in ("/", f"/work/{work}", "/clusters", "/clusters/1/index.html",
                    "/work/999999"):
            page.goto(live_server + url, wait_until="load")
            assert _no_sideways_scroll(page), url
        page.goto(live_server + "/", wait_until="load")
        assert not page.is_visible(".facets")  # in the drawer
        page.click("label[for=filters-toggle]")
        assert page.is_visible(".facets")
        screenshot(page, "serve-phone.png")
        page.set_viewport_size(WIDE)
        assert page.is_visible(".facets") and not page.is_visible(".drawer-button")
    assert log["errors"] == [] and log["outside"] == []


def test_a_work_page_for_a_curator(served: tuple[Path, Path], tmp_path: Path) -> None:
    root, index = served
    c = client(index)
    works = c.get("/api/works").json()["works"]
    first = works[0]["id"]
    page = c.get(f"/work/{first}", params={"blend": 40, "k": 5}).text
    # Not its own neighbour; plain "similarity" with the exact cosine on hover; the blend
    # column says which other columns list each of its works.
    neighbour_ids = re.findall(r'class="tile" href="/work/(\d+)"', page)
    assert str(first) not in neighbour_ids and len(neighbour_ids) == 15  # 3 columns x 5
    assert re.search(r'title="cosine similarity 0\.\d{4} \(1 = the same vector\)">similarity '
                     r'0\.\d\d<', page)
    assert "also in content" in page
    assert '<output id="blend-value" for="blend">40 %</output>' in page
    # No banner for a work whose image is shown; a banner saying how to show it otherwise.
    assert 'id="withheld"' not in page
    from artsearch.index import ArtIndex
    from artsearch.index.store import Artwork

    with ArtIndex(index) as idx:
        idx.lock()
        with idx.store.session() as s, s.begin():
            art = s.get(Artwork, first)
            assert art is not None
            art.license = "All rights reserved"
            art.extra = {**(art.extra or {}), "url": "https://museum.example/objects/1",
                         "note": "javascript:alert(1)"}
        idx.touch()
    page = c.get(f"/work/{first}").text
    assert 'id="withheld"' in page and "--show-licences default,other" in page
    assert '<a href="https://museum.example/objects/1" rel="noopener noreferrer nofollow">' \
        in page
    assert 'href="javascript:' not in page


def test_facets_reach_every_value_combine_and_come_off(tmp_path: Path) -> None:
    from tests.helpers import index_args, invoke, make_collection

    root = tmp_path / "many"
    paths = make_collection(root, n=16)
    meta = tmp_path / "meta.csv"
    meta.write_text("path,genre,source\n" + "".join(
        f"{p.relative_to(root).as_posix()},still_life_{i:02d},Rijksmuseum Amsterdam\n"
        for i, p in enumerate(paths)))
    index = tmp_path / "idx"
    assert invoke(*index_args(root, "--index", str(index), "--metadata", str(meta),
                              "-q"))[0] == 0
    c = client(index)
    page = c.get("/").text
    genres = re.findall(r'data-field="genre".*?</section>', page, re.S)[0]
    assert genres.count("<li>") == 12 and "every genre…" in genres
    assert "still life 00" in genres and "still_life_00</a>" not in genres  # a human label
    every = re.findall(r'data-field="genre".*?</section>', c.get("/?more=genre").text,
                       re.S)[0]
    assert every.count("<li>") == 16  # every value reachable
    # Two values of one field: either matches, and the field still offers its others.
    both = c.get("/", params=[("where", "genre=still_life_00"),
                              ("where", "genre=still_life_01")]).text
    assert "2 works" in both
    genres = re.findall(r'data-field="genre".*?</section>', both, re.S)[0]
    assert genres.count('class="on"') == 2 and genres.count("<li>") == 12
    # A chip takes its value off, and keeps the other.
    chip = re.search(r'<li class="chip">genre: still life 00 <a href="([^"]+)"', both)
    assert chip is not None
    one = c.get(chip.group(1).replace("&amp;", "&")).text
    assert "1 works" in one
    # Search reaches every catalogue field (the source), accents folded.
    assert "16 works" in c.get("/", params={"q": "rijksmuseum"}).text


def test_an_upload_shows_its_picture_and_changes_space_without_sending_it_again(
        served: tuple[Path, Path]) -> None:
    root, index = served
    c = client(index)
    picture = jpeg(painting(42))
    page = c.post("/query", files={"image": ("photo.jpg", picture)}, data={"space": "content"})
    assert page.status_code == 200
    key = re.search(r'src="/query/([0-9a-f]{32})/picture.jpg"', page.text).group(1)
    shown = c.get(f"/query/{key}/picture.jpg")
    assert shown.status_code == 200 and shown.content[:2] == b"\xff\xd8"
    other = re.search(rf'href="/query/{key}\?space=tone"', page.text)
    assert other is not None
    again = c.get(f"/query/{key}", params={"space": "tone"})
    assert again.status_code == 200 and 'data-space="tone"' in again.text
    assert "photo.jpg" in again.text
    assert c.get("/query/" + "0" * 32, params={"space": "tone"}).status_code == 404
    assert c.get("/query/../etc").status_code == 404

    # "why?" beside each result, with the upload's own map and the work's: in every space
    # (tone pools by max: its maps are made by occlusion).
    whys = re.findall(rf'href="(/explain/upload/{key}/(\d+)\?space=content)"', page.text)
    assert len(whys) == len(re.findall(r'class="tile"', page.text)) > 0
    assert f"/explain/upload/{key}/" in again.text
    why = c.get(whys[0][0].replace("&amp;", "&"))
    assert why.status_code == 200 and "your picture (photo.jpg)" in why.text
    assert 'id="explain-legend"' in why.text and f'href="/query/{key}?space=content"' in why.text
    for side in ("a", "b"):
        png = c.get(f"/explain/upload/{key}/{whys[0][1]}/{side}.png", params={"space": "content"})
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert c.get(f"/explain/upload/{'0' * 32}/{whys[0][1]}").status_code == 404


def test_one_comparison_list_marks_where_each_neighbour_is_near(
        served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    page = c.get("/work/4", params={"k": 5}).text
    items = re.findall(r'<li data-id="(\d+)" data-in="([^"]*)">', page)
    near = {space: {h["id"] for h in c.get("/api/works/4/neighbours",
                                           params={"space": space, "k": 6}).json()["results"]
                    if h["id"] != 4} for space in ("content", "tone")}
    assert items and "4" not in [i for i, _ in items]
    assert {int(i) for i, _ in items} == near["content"] | near["tone"]
    for i, spaces in items:  # each work marked with exactly the spaces it is near in
        assert set(spaces.split()) == {s for s in near if int(i) in near[s]}, (i, spaces)
    counts = [len(s.split()) for _, s in items]
    assert counts == sorted(counts, reverse=True)  # near in both first
    if 2 in counts:
        assert '<span class="mark both">both</span>' in page


@pytest.mark.browser
def test_the_blend_slider_answers_from_the_keyboard_without_a_reload(
        served: tuple[Path, Path], live_server: str) -> None:
    from tests.browser import open_url

    with open_url(live_server + "/work/4", live_server) as (page, log):
        page.evaluate("window.__same_page = true")
        assert page.locator(".neighbours[data-space='blend']").count() == 0
        page.focus("#blend")
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.wait_for_selector(".neighbours[data-space='blend'] .tile", timeout=10_000)
        assert page.input_value("#blend") == "30"
        assert page.evaluate("window.__same_page") is True  # swapped in, not reloaded
        assert "blend=30" in page.url
        assert page.inner_text("#blend-value") == "30 %"
        assert log["console"] == [] and log["errors"] == []
