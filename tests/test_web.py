"""`artsearch serve`: pages and JSON through an HTTP client, its guard against hostile input,
and a real browser against a real server."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from starlette.testclient import TestClient

from artsearch.cli import cli
from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from artsearch.rights import CLASSES
from artsearch.web import build
from tests.browser import images_that_failed, open_url, screenshot
from tests.helpers import client, free_port, index_into, jpeg, make_collection, painting, serving


def same_answer(api: dict, cli_json: dict) -> bool:
    """The app's JSON and `query --json` agree on everything but when and how they were
    asked."""
    strip = ("made", "command")
    a, b = ({**d, "provenance": {k: v for k, v in d["provenance"].items() if k not in strip}}
            for d in (api, cli_json))
    return a == b


def test_browse_facets_and_paging(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    page = c.get("/")
    assert page.status_code == 200 and page.text.count('class="tile"') == 12
    facets = c.get("/api/facets").json()
    assert {"value": "Ann", "count": 6} in facets["artist"]
    assert {r["value"]: r["count"] for r in facets["century"]} == {"17th c.": 6, "18th c.": 6}
    narrowed = c.get("/api/works", params={"where": ["artist=ann", "century=17th c."]}).json()
    assert narrowed["total"] == 0  # Ann's works are all 18th-century here
    ann = c.get("/api/works", params={"where": "artist=ann", "limit": 4}).json()
    assert ann["total"] == 6 and len(ann["works"]) == 4
    assert c.get("/", params={"q": "Study 7"}).text.count('class="tile"') == 1


def test_a_work_page_shows_each_space_and_a_blend(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    page = c.get("/work/4", params={"k": 5, "blend": 30, "exclude": "artist"})
    assert page.status_code == 200
    assert 'data-space="content"' in page.text and 'data-space="tone"' in page.text
    assert 'data-space="blend"' in page.text and "content=0.7,tone=0.3" in page.text
    # The JSON answer is the CLI's `query --json`, field for field (provenance: but for the
    # command and the time).
    api = c.get("/api/works/4/neighbours", params={"k": 5, "exclude_same": "artist"}).json()
    result = CliRunner().invoke(cli, ["query", "--id", "4", "-k", "5", "--exclude-same",
                                      "artist", "--index", str(index), "--json"])
    assert same_answer(api, json.loads(result.stdout))
    assert api["provenance"]["command"] == "serve: GET /api/works/ID/neighbours"
    artist = c.get("/api/works/4").json()["artist"]
    assert api["results"] and all(h["artist"] != artist for h in api["results"])


def test_an_upload_finds_its_original_and_is_not_kept(served: tuple[Path, Path]) -> None:
    root, index = served
    before = sorted(p.name for p in root.rglob("*"))
    original = Image.open(root / "b" / "work_004.jpg")
    crop = original.crop((2, 2, original.width - 2, original.height - 2))
    answer = client(index).post("/api/query", files={"image": ("crop.jpg", jpeg(crop))},
                                data={"k": "3"})
    assert answer.status_code == 200
    assert answer.json()["results"][0]["path"] == "b/work_004.jpg"
    assert sorted(p.name for p in root.rglob("*")) == before


def test_new_vectors_show_without_a_restart(served: tuple[Path, Path]) -> None:
    root, index = served
    c = client(index)
    assert c.get("/api/works").json()["total"] == 12
    make_collection(root, 3, start=50)
    index_into(root, index)  # a writer runs while the server is up
    assert c.get("/api/works").json()["total"] == 15
    new = c.get("/api/works", params={"q": "work_050"}).json()["works"][0]
    hits = c.get(f"/api/works/{new['id']}/neighbours", params={"k": 1}).json()["results"]
    assert hits[0]["id"] == new["id"]


def test_cluster_and_model_reports_are_served_with_their_own_policy(
        served: tuple[Path, Path]) -> None:
    _, index = served
    runner = CliRunner()
    assert runner.invoke(cli, ["cluster", "--index", str(index), "--k", "2", "--restarts",
                               "0"]).exit_code == 0
    assert runner.invoke(cli, ["train", "--index", str(index), "--label", "genre",
                               "--min-per-class", "3"]).exit_code == 0
    c = client(index)
    listing = c.get("/clusters").text
    assert "/clusters/1/index.html" in listing and "genre-probe-content" in listing
    page = c.get("/clusters/1/index.html")
    assert page.status_code == 200 and "Map of the collection" in page.text
    policy = page.headers["content-security-policy"]
    assert "'sha256-" in policy and "script-src 'self' 'sha256-" in policy
    assert "unsafe-inline" not in policy.split("style-src-attr")[0]  # only style attributes
    thumb = page.text.split("src='thumbs/")[1].split("'")[0]
    assert c.get(f"/clusters/1/thumbs/{thumb}").headers["content-type"] == "image/jpeg"
    model = c.get("/models/genre-probe-content/index.html")
    assert model.status_code == 200 and "Calibration" in model.text
    assert c.get("/models/genre-probe-content/calibration.svg").status_code == 200
    for bad in ("/clusters/1/..%2f..%2fartsearch.db", "/clusters/99/index.html",
                "/models/..%2fmodels/index.html", "/models/nope/index.html",
                "/clusters/1/thumbs/..%2f..%2f..%2fartsearch.db"):
        r = c.get(bad)
        assert r.status_code in (404, 422) and b"SQLite" not in r.content, bad


def test_a_description_finds_works_in_an_open_clip_space(tiny_clip: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    root = tmp_path / "coll"
    make_collection(root, 8)
    index_into(root, tmp_path / "idx")
    with ArtIndex(tmp_path / "idx") as idx:
        index_collection(root, idx, IndexOptions(
            space="clip", backbone="open_clip:artsearch-tiny", weights=tiny_clip,
            extractor={"num_workers": 0}))
    c = client(tmp_path / "idx")
    assert 'id="text-form"' in c.get("/").text
    api = c.get("/api/text", params={"q": "a stormy seascape", "k": 3}).json()
    cli_json = CliRunner().invoke(cli, ["query", "--text", "a stormy seascape", "--space",
                                        "clip", "-k", "3", "--index", str(tmp_path / "idx"),
                                        "--json"]).stdout
    assert same_answer(api, json.loads(cli_json)) and len(api["results"]) == 3
    page = c.get("/text", params={"q": "<script>x</script>"})
    assert page.status_code == 200 and "<script>x" not in page.text
    assert c.get("/api/text", params={"q": "x", "space": "content"}).status_code == 400


# -- the guard ------------------------------------------------------------------------------------

def test_hostile_catalogue_text_is_inert(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    for url in ("/", "/work/1", "/work/2", "/work/3"):
        text = c.get(url).text
        assert "<script>alert" not in text and "<img src=x" not in text
        assert 'href="javascript' not in text and "src=\"javascript" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get("/work/1").text
    headers = c.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in headers


@pytest.mark.parametrize("url", [
    "/image/../../etc/passwd", "/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/thumb/1?size=../../x",
    "/work/..%2f..%2fetc", "/api/works/1/neighbours?space=../../etc/passwd",
    "/api/works?where=path=../../etc/passwd", "/static/../artsearch.db",
    "/static/%2e%2e/app.py", "/image/99999", "/api/works/-1", "/api/works/99999999999999999999",
])
def test_paths_from_the_request_never_reach_the_disk(served: tuple[Path, Path],
                                                     url: str) -> None:
    _, index = served
    r = client(index).get(url)
    assert r.status_code in (400, 404, 422) or (
        r.status_code == 200 and r.json().get("total") == 0), (url, r.status_code)
    assert b"root:" not in r.content and b"SQLite format" not in r.content


def test_a_link_out_of_the_collection_is_not_served(served: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    root, index = served
    secret = tmp_path / "secret.jpg"
    painting(99).save(secret)
    os.symlink(secret, root / "a" / "link.jpg")
    index_into(root, index, follow_links=True)  # indexed on purpose (--follow-links)
    c = client(index, licences=frozenset(CLASSES))  # the link has no licence: show anyway
    work = c.get("/api/works", params={"q": "link"}).json()["works"][0]
    for url in (f"/image/{work['id']}", f"/thumb/{work['id']}"):
        r = c.get(url)
        assert r.status_code == 404 and "outside the collection" in r.text


def test_oversized_and_bomb_uploads_are_refused(served: tuple[Path, Path]) -> None:
    _, index = served
    small = client(index, max_upload=10_000)
    big = jpeg(painting(1, (400, 300)).resize((1600, 1200)))
    r = small.post("/api/query", files={"image": ("big.jpg", big)})
    assert r.status_code == 400 and "over 10,000 bytes" in r.json()["error"]
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")  # 400 MP in a few KB
    r = client(index).post("/api/query", files={"image": ("bomb.png", bomb.getvalue())})
    assert r.status_code == 400 and "decompression bomb" in r.json()["error"]
    r = client(index).post("/api/query", files={"image": ("empty.jpg", b"")})
    assert r.status_code == 400


def test_host_header_and_token(served: tuple[Path, Path]) -> None:
    _, index = served
    assert client(index).get("/", headers={"host": "attacker.example"}).status_code == 421
    open_app = build(index, host="0.0.0.0", token="s3cret")
    c = TestClient(open_app, base_url="http://0.0.0.0:8765")
    assert c.get("/api/works").status_code == 401
    assert c.get("/api/works", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/works", headers={"authorization": "Bearer s3cret"}).status_code == 200
    first = c.get("/?token=s3cret")
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert c.get("/api/works").status_code == 200  # the cookie now carries it
    # Bound to every address: this machine's names answer (with the token), others do not.
    assert c.get("/api/works", headers={"host": "localhost:8765"}).status_code == 200
    assert c.get("/api/works", headers={"host": "evil.example"}).status_code == 421
    proxied = TestClient(build(index, host="127.0.0.1", allowed_hosts=("art.example.org",)),
                         base_url="http://art.example.org")
    assert proxied.get("/api/works").status_code == 200


def test_the_json_api_answers_any_input_without_a_server_error(
        served: tuple[Path, Path]) -> None:
    """Property-based: whatever text fills any parameter of any JSON route, the answer is
    an answer (2xx, 4xx), never a server error."""
    from urllib.parse import quote

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _, index = served
    c = client(index)
    junk = st.one_of(st.text(max_size=40), st.sampled_from([
        "", "0", "-1", "1e309", "nan", "inf", "a=b=c", "=", "path=", "century=", "x" * 5000,
        "'; DROP TABLE artworks; --", "content=inf,tone=1", "content=1,content=2", "../../",
        '"*', "NEAR(", "artist=*", "%", "\\"]))
    routes = st.sampled_from([("/api/works", ["q", "where", "offset", "limit"]),
                              ("/api/facets", ["q", "where"]),
                              ("/api/works/{}/neighbours", ["space", "mix", "k", "where",
                                                             "exclude_same"]),
                              ("/api/works/{}", [])])

    @settings(max_examples=250, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(route=routes, ident=st.one_of(st.integers(-2, 20), junk),
           values=st.dictionaries(st.sampled_from(
               ["q", "where", "offset", "limit", "space", "mix", "k", "exclude_same"]),
               junk, max_size=5))
    def check(route: tuple[str, list[str]], ident: object, values: dict[str, str]) -> None:
        path, allowed = route
        url = path.format(quote(str(ident), safe=""))
        params = {k: v for k, v in values.items() if k in allowed}
        r = c.get(url, params=params)
        assert r.status_code < 500, (url, params, r.status_code, r.text[:200])

    check()


# -- a real browser against a real server --------------------------------------------------------


@pytest.mark.browser
def test_a_curator_clicks_filters_and_uploads(served: tuple[Path, Path], live_server: str,
                                              tmp_path: Path) -> None:
    root, _ = served
    with open_url(live_server + "/", live_server) as (page, log):
        assert page.locator(".tile").count() == 12
        assert images_that_failed(page) == []
        # A facet narrows the grid.
        page.click(".facet[data-field='artist'] a:text('Ann')")
        page.wait_for_load_state("load")
        assert page.locator("#grid .tile").count() == 6
        # A work and its neighbours in both spaces; a neighbour walks on.
        page.click("#grid .tile >> nth=0")
        page.wait_for_load_state("load")
        assert page.locator(".neighbours[data-space='content'] .tile").count() >= 1
        assert page.locator(".neighbours[data-space='tone'] .tile").count() >= 1
        bands = page.locator(".neighbours[data-space='content'] .tile .band").all_inner_texts()
        assert bands and set(bands) <= {"very close", "close", "related", "distant"}
        first = page.get_attribute(".work", "data-id")
        assert "where=artist%3DAnn" in page.url  # the filter walks on with the curator
        page.click(".neighbours[data-space='content'] .tile >> nth=1")
        page.wait_for_load_state("load")
        assert page.get_attribute(".work", "data-id") != first
        assert "where=artist%3DAnn" in page.url
        page.click("#clear-work-filters")  # neighbours among all works again
        page.wait_for_load_state("load")
        # Blend and leave out the artist: the form, no script needed.
        page.check("#exclude-artist")
        page.fill("#blend", "40")
        page.fill("input[name=k]", "4")
        page.click("#apply")
        page.wait_for_load_state("load")
        assert page.locator(".neighbours[data-space='blend'] .tile").count() == 4
        shot_work = screenshot(page, "serve-work.png")
        # Upload a cropped copy: the original comes first.
        original = Image.open(root / "a" / "work_007.jpg")
        crop = tmp_path / "crop.jpg"
        original.crop((2, 2, original.width - 2, original.height - 2)).save(crop)
        page.set_input_files("#upload-file", str(crop))  # app.js submits on change
        page.wait_for_url("**/query/*?space=*")  # the results' own address (303)
        page.wait_for_load_state("load")
        top = page.locator("#upload-results .tile >> nth=0")
        assert top.get_attribute("href") is not None
        top_id = top.get_attribute("data-id")
        verdict = page.inner_text("#verdict")
        page.reload()  # asks again by the address: nothing re-sent, the same answer
        assert page.locator("#upload-results .tile >> nth=0").get_attribute("data-id") == top_id
        assert page.inner_text("#verdict") == verdict
        assert page.locator("#upload-results .tile .band").count() >= 1
        shot_upload = screenshot(page, "serve-upload.png")
        # A stored clustering run's report, in the app, under its own policy.
        CliRunner().invoke(cli, ["cluster", "--index", str(served[1]), "--k", "2",
                                 "--restarts", "0"])
        page.click("#nav-reports")
        page.wait_for_load_state("load")
        page.click(".run-link >> nth=0")
        page.wait_for_load_state("load")
        assert page.get_attribute("body", "data-map-points") == "12"
        assert images_that_failed(page) == []
        page.goto(live_server + f"/api/works/{top_id}")
        assert json.loads(page.inner_text("body"))["path"] == "a/work_007.jpg"
        assert log == {"console": [], "errors": [], "outside": []}
    assert shot_work.stat().st_size > 10_000 and shot_upload.stat().st_size > 5_000


@pytest.mark.slow
@pytest.mark.browser
def test_the_readme_query_works_by_click_and_by_upload_in_a_browser(tmp_path: Path) -> None:
    """The example collection with the real Lite0 weights: van Ostade's Peasant Dance in a
    Barn found by clicking through, and by uploading a mirrored crop of it."""
    import uvicorn
    from PIL import ImageOps

    root = Path(__file__).resolve().parents[1] / "examples" / "collection"
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(metadata=root / "metadata.csv",
                                                 extractor={"num_workers": 0}))
    original = Image.open(root / "genre" / "genre_195.jpg").convert("RGB")
    w, h = original.size
    upload = tmp_path / "auction-photo.jpg"
    ImageOps.mirror(original.crop((w // 10, h // 10, w - w // 10, h - h // 10))).save(upload)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build(tmp_path / "idx", port=port),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with open_url(base + "/?q=peasant+dance+barn", base) as (page, log):
            page.click("#grid .tile >> nth=0")
            page.wait_for_load_state("load")
            assert page.inner_text("#work-title") == "Peasant Dance in a Barn"
            content = page.locator(".neighbours[data-space='content'] .tile .caption")
            # The work is not listed as its own neighbour (issue 23): the README's rank 2 leads.
            assert content.nth(0).inner_text() == "An Allegory of Truth and Time"
            work_id = page.get_attribute(".work", "data-id")
            page.set_input_files("#upload-file", str(upload))
            page.wait_for_url("**/query/*?space=*")
            page.wait_for_load_state("load")
            first = page.locator("#upload-results .tile >> nth=0")
            assert first.get_attribute("data-id") == work_id
            assert images_that_failed(page) == []
            screenshot(page, "serve-readme-upload.png")
            assert log == {"console": [], "errors": [], "outside": []}
    finally:
        server.should_exit = True
        thread.join(5)


def test_why_a_neighbour_matches(served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    first = c.get("/api/works").json()["works"][0]["id"]
    near = c.get(f"/api/works/{first}/neighbours", params={"k": 3}).json()["results"]
    other = near[1]
    page = c.get(f"/work/{first}").text
    assert f"/explain/{first}/{other['id']}?space=content" in page
    data = c.get(f"/api/explain/{first}/{other['id']}").json()
    assert data["method"] == "decomposition" and data["view"] == "square"
    assert abs(data["sum_query"] - other["score"]) <= 1e-4
    assert abs(data["sum_result"] - other["score"]) <= 1e-4
    # Over the whole pictures the maps still add up, to the whole pictures' own cosine, and
    # their grids take each picture's shape.
    whole = c.get(f"/api/explain/{first}/{other['id']}", params={"view": "whole"}).json()
    assert whole["view"] == "whole" and whole["method"] == "decomposition"
    assert abs(whole["sum_query"] - whole["cosine"]) <= 1e-6
    assert abs(whole["sum_result"] - whole["cosine"]) <= 1e-6
    for side, art in (("grid_query", first), ("grid_result", other["id"])):
        info = c.get(f"/api/works/{art}").json()
        rows, cols = whole[side]
        assert (cols > rows) == (info["width"] > info["height"]) or rows == cols
    # tone pools by max, which does not split over positions: occlusion maps instead, whose
    # cosine is the space's own similarity of the pair.
    tone = c.get(f"/api/works/{first}/neighbours", params={"k": 3, "space": "tone"}
                 ).json()["results"][1]
    assert f"/explain/{first}/{tone['id']}?space=tone" in page
    occl = c.get(f"/api/explain/{first}/{tone['id']}", params={"space": "tone"}).json()
    assert occl["method"] == "occlusion" and abs(occl["cosine"] - tone["score"]) <= 1e-4
    assert len(occl["query"]) == 7 and len(occl["query"][0]) == 7  # 7 x 7 cells of the square
    assert any(v != 0 for row in occl["query"] for v in row)
    words = c.get(f"/explain/{first}/{tone['id']}", params={"space": "tone", "view": "whole"})
    assert words.status_code == 200 and "was hidden in turn" in words.text
    assert c.get(f"/explain/{first}/{tone['id']}/a.png",
                 params={"space": "tone", "view": "whole"}).content[:4] == b"\x89PNG"
    assert c.get(f"/api/explain/{first}/{tone['id']}", params={"view": "sideways"}
                 ).status_code == 422
    html = c.get(f"/explain/{first}/{other['id']}", params={"space": "content"})
    assert html.status_code == 200 and f"/explain/{first}/{other['id']}/b.png" in html.text
    png = c.get(f"/explain/{first}/{other['id']}/b.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert c.get(f"/api/explain/{first}/{other['id']}", params={"space": "nope"}
                 ).status_code == 404
    assert c.get(f"/explain/{first}/999999").status_code == 404


def test_every_pages_title_is_plain_text(served: tuple[Path, Path]) -> None:
    """A <title> holds text only: markup inside it (an unclosed block) is not shown at all."""
    import re

    _, index = served
    c = client(index)
    assert c.post("/light-table/add", data={"set": "s", "ids": "1"}).status_code == 200
    pages = ["/", "/work/1", "/work/1?blend=40", "/clusters", "/light-table", "/map",
             "/explain/1/2?space=content", "/work/999999"]
    for url in pages:
        text = c.get(url).text
        titles = re.findall(r"<title>(.*?)</title>", text, re.DOTALL)
        assert len(titles) == 1 and "<" not in titles[0] and titles[0].strip(), (url, titles)
    assert "<h2>Audits</h2>" in c.get("/clusters").text.split("</title>", 1)[1]


@pytest.mark.browser
def test_typing_a_search_keeps_the_chosen_filters(served: tuple[Path, Path],
                                                  live_server: str) -> None:
    from tests.browser import open_url

    with open_url(live_server + "/?where=artist%3DAnn", live_server) as (page, log):
        assert page.locator(".tile").count() == 6  # Ann's works
        page.fill("form.search input[name=q]", "Study")
        page.press("form.search input[name=q]", "Enter")
        page.wait_for_url("**q=Study**")
        assert "where=artist%3DAnn" in page.url
        assert page.locator(".tile").count() == 5  # Ann's studies, not everyone's (9)
        assert log["errors"] == []


def test_every_facet_has_a_not_catalogued_bucket_that_filters(tmp_path: Path) -> None:
    root = tmp_path / "coll"
    paths = make_collection(root, 6)
    meta = root / "meta.csv"
    rows = ["path,title,artist,date"] + [
        f"{p.relative_to(root).as_posix()},w{i},{'Ann' if i < 4 else ''},"
        f"{'1650' if i % 2 else ''}" for i, p in enumerate(paths)]
    meta.write_text("\n".join(rows) + "\n")
    index_into(root, tmp_path / "idx", metadata=meta)
    c = client(tmp_path / "idx")
    facets = c.get("/api/facets").json()
    assert {"value": "", "count": 2} in facets["artist"]  # two works have no artist
    assert {"value": "", "count": 3} in facets["century"]  # three have no date
    lacking = c.get("/api/works", params={"where": "artist="}).json()
    assert lacking["total"] == 2 and {w["title"] for w in lacking["works"]} == {"w4", "w5"}
    assert c.get("/api/works", params={"where": "century="}).json()["total"] == 3
    page = c.get("/", params={"where": "artist="}).text
    assert "not catalogued" in page and page.count('class="tile"') == 2


def test_the_grid_says_how_many_pictures_are_withheld_and_why(tmp_path: Path,
                                                              served: tuple[Path, Path]
                                                              ) -> None:
    root = tmp_path / "coll2"
    paths = make_collection(root, 5)
    meta = root / "meta.csv"
    licences = ["CC0 1.0", "", "", "CC BY-NC 4.0", "public domain"]
    meta.write_text("path,title,license\n" + "".join(
        f"{p.relative_to(root).as_posix()},w{i},{licences[i]}\n" for i, p in enumerate(paths)))
    index_into(root, tmp_path / "idx2", metadata=meta)
    page = client(tmp_path / "idx2").get("/").text
    assert 'id="withheld-notice"' in page
    notice = page.split('id="withheld-notice"', 1)[1].split("</p>", 1)[0]
    assert "3 of the collection's works" in notice and "2 have no licence catalogued" in notice
    assert "1 has a licence this server does not show" in notice
    assert "--show-licences" in notice
    # Shown all: no notice. Nothing withheld (every work CC0): no notice either.
    assert 'id="withheld-notice"' not in client(tmp_path / "idx2",
                                                 licences=frozenset(CLASSES)).get("/").text
    assert 'id="withheld-notice"' not in client(served[1]).get("/").text


@pytest.mark.browser
def test_no_page_is_wider_than_its_viewport_whatever_the_catalogue_holds(
        tmp_path: Path) -> None:
    """A 200-character file name with no title, a 200-character title, a URL as source: the
    grid, a work page and the light table stay inside 390 and 1280 px."""
    from tests.browser import open_url

    root = tmp_path / "coll"
    make_collection(root, 6)
    long_name = root / "a" / ("untitled_study_of_a_very_long_name_" * 6)[:200]
    painting(77).save(long_name.with_suffix(".jpg"))
    rows = ["path,title,source,license"]
    for p in sorted(root.rglob("*.jpg")):
        rel = p.relative_to(root).as_posix()
        title = "" if "untitled" in rel else ("A" + "very" * 50 if "work_001" in rel else "w")
        rows.append(f"{rel},{title},https://museum.example/{'x' * 150},CC0 1.0")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    index_into(root, tmp_path / "idx", metadata=root / "meta.csv")
    with ArtIndex(tmp_path / "idx") as idx:
        from artsearch.index.catalogue import find_artwork

        long_id = find_artwork(idx, path=long_name.with_suffix(".jpg").relative_to(root)
                               .as_posix()).id
    with serving(tmp_path / "idx") as url, open_url(url + "/", url) as (page, log):
        for width, height in ((390, 844), (1280, 800)):
            page.set_viewport_size({"width": width, "height": height})
            for path in ("/", f"/work/{long_id}", "/work/2", "/light-table"):
                page.goto(url + path, wait_until="load")
                wide = page.evaluate("document.documentElement.scrollWidth")
                assert wide <= width, (path, width, wide)
                if path.startswith("/work/") and width == 1280:
                    # The first row of neighbours is in view without scrolling, beside the
                    # picture (the long title above it included).
                    first = page.locator("#neighbour-columns .tile").first.bounding_box()
                    assert first["y"] + first["height"] <= height, (path, first)


def test_a_cluster_report_in_the_app_makes_its_thumbnails_when_asked(
        served: tuple[Path, Path]) -> None:
    """With every licence shown, the app's copy of a report is written without its
    thumbnails (it opens in the time its text takes); each is made when the page asks."""
    from artsearch.rights import parse_shown

    _, index = served
    assert CliRunner().invoke(cli, ["cluster", "--index", str(index), "--k", "2",
                                    "--restarts", "0"]).exit_code == 0
    c = client(index, licences=parse_shown("all"))
    page = c.get("/clusters/1/index.html")
    assert page.status_code == 200
    names = re.findall(r"src='thumbs/(\d+)\.jpg'[^>]* loading=lazy", page.text)
    assert len(set(names)) == 12
    from artsearch.web.reports import run_folder

    folder = run_folder(index, 1, parse_shown("all"))
    assert (folder / "index.html").is_file()
    assert list(folder.rglob("*.jpg")) == []  # named, not made
    thumb = c.get(f"/clusters/1/thumbs/{names[0]}.jpg")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    assert c.get("/clusters/1/thumbs/999.jpg").status_code == 404
