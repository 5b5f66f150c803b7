"""IIIF as museums write it (issue 25), each case shaped after the published IIIF Cookbook
recipes and the parsers' fixtures (Choice bodies, SpecificResource regions, v2.1 members,
paged collections, ids with spaces, Image API levels and versions), served by a real local
HTTP server; and every --iiif-out file checked against Presentation 3's rules."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from PIL import Image

from artsearch.iiif import FetchOptions, image_request, read_canvases
from tests.helpers import Raw, as_json, canvas, invoke, painting, painting_jpeg, response, run_iiif

P3 = "http://iiif.io/api/presentation/3/context.json"


def v3(site: str, canvases: list[dict[str, Any]], name: str = "m") -> dict[str, Any]:
    return {"@context": P3, "id": f"{site}/{name}.json", "type": "Manifest",
            "label": {"en": [name]}, "items": canvases}


def service(url: str, level: int, version: int = 3) -> dict[str, Any]:
    if version == 1:
        return {"@context": "http://library.stanford.edu/iiif/image-api/1.1/context.json",
                "@id": url, "profile": "http://library.stanford.edu/iiif/image-api/1.1/"
                                      f"compliance.html#level{level}"}
    if version == 2:
        return {"@context": "http://iiif.io/api/image/2/context.json", "@id": url,
                "profile": f"http://iiif.io/api/image/2/level{level}.json"}
    return {"id": url, "type": "ImageService3", "profile": f"level{level}"}


def answer_any_picture(server: Raw, prefix: str, seed: int = 1) -> None:
    """Every request under `prefix` gets a picture (an Image API server that says yes)."""
    picture = response(painting_jpeg(seed), "image/jpeg")
    server.dynamic = lambda path: picture if path.startswith(prefix) else None


def test_choice_bodies_take_the_default_or_the_first_item(raw: Raw) -> None:
    answer_any_picture(raw, "/img/")
    first = {"id": f"{raw.url}/img/natural/full/max/0/default.jpg", "type": "Image",
             "service": [service(f"{raw.url}/img/natural", 2)]}
    other = {"id": f"{raw.url}/img/xray/full/max/0/default.jpg", "type": "Image"}
    cookbook_0033 = v3(raw.url, [canvas(raw.url, 1, {"type": "Choice",
                                                     "items": [first, other]})])
    raw.routes["/m.json"] = as_json(cookbook_0033)
    hamilton = {"@context": "http://iiif.io/api/presentation/2/context.json",
                "@id": f"{raw.url}/v2.json", "@type": "sc:Manifest", "label": "v2 choice",
                "sequences": [{"canvases": [{"@id": f"{raw.url}/v2/c1", "@type": "sc:Canvas",
                                             "images": [{"resource": {
                                                 "@type": "oa:Choice",
                                                 "default": {"@id": f"{raw.url}/img/d.jpg",
                                                             "@type": "dctypes:Image"},
                                                 "item": [{"@id": f"{raw.url}/img/i.jpg",
                                                           "@type": "dctypes:Image"}]}}]}]}]}
    raw.routes["/v2.json"] = as_json(hamilton)
    (found,) = read_canvases(f"{raw.url}/m.json")
    assert found.service == f"{raw.url}/img/natural" and found.image == first["id"]
    (found2,) = read_canvases(f"{raw.url}/v2.json")
    assert found2.image == f"{raw.url}/img/d.jpg"


def test_a_specific_resource_region_is_asked_of_the_server_or_cut_here(
        raw: Raw, tmp_path: Path) -> None:
    answer_any_picture(raw, "/img/")
    big = Image.new("RGB", (400, 200), "white")
    big.paste(painting(7, (100, 100)), (300, 100))  # the selected part: the bottom right
    whole = io.BytesIO()
    big.save(whole, "JPEG", quality=95)
    raw.routes["/static/full.jpg"] = response(whole.getvalue(), "image/jpeg")
    by_server = {"type": "SpecificResource",  # cookbook 0299-region
                 "source": {"id": f"{raw.url}/img/a/full/max/0/default.jpg", "type": "Image",
                            "width": 4000, "height": 2000,
                            "service": [service(f"{raw.url}/img/a", 2)]},
                 "selector": {"type": "ImageApiSelector", "region": "1000,500,800,400"}}
    cut_here = {"type": "SpecificResource",
                "source": {"id": f"{raw.url}/static/full.jpg", "type": "Image",
                           "width": 400, "height": 200},
                "selector": {"type": "FragmentSelector", "value": "xywh=300,100,100,100"}}
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, by_server),
                                                 canvas(raw.url, 2, cut_here)]))
    found = read_canvases(f"{raw.url}/m.json")
    url, crop = image_request(found[0], FetchOptions(size=512))
    assert url == f"{raw.url}/img/a/1000,500,800,400/!512,512/0/default.jpg" and crop is None
    assert found[0].fields["iiif_region"] == "1000,500,800,400"
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx")
    assert report.fetched == 2 and result.total == 2
    sizes = []
    for path in (tmp_path / "idx" / "iiif-images").rglob("*.jpg"):
        with Image.open(path) as im:
            sizes.append(im.size)
    assert (100, 100) in sizes  # the region cut from the whole picture, nothing more


@pytest.mark.parametrize(("level", "version", "expected"), [
    (2, 3, "full/!300,300/0/default.jpg"), (1, 3, "full/300,/0/default.jpg"),
    (1, 2, "full/300,/0/default.jpg"), (2, 1, "full/!300,300/0/native.jpg"),
    (1, 1, "full/300,/0/native.jpg")])
def test_requests_are_what_each_level_and_version_allows(raw: Raw, level: int, version: int,
                                                         expected: str) -> None:
    body = {"id": f"{raw.url}/img/x/full/max/0/default.jpg", "type": "Image",
            "service": [service(f"{raw.url}/img/x", level, version)]}
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, body)]))
    (found,) = read_canvases(f"{raw.url}/m.json")
    assert found.service_version == version and found.level == level
    assert image_request(found, FetchOptions(size=300))[0] == f"{raw.url}/img/x/{expected}"


def test_a_level1_portrait_is_asked_by_a_width_that_keeps_its_height(raw: Raw) -> None:
    body = {"id": f"{raw.url}/img/p/full/max/0/default.jpg", "type": "Image", "width": 1000,
            "height": 4000, "service": [service(f"{raw.url}/img/p", 1)]}
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, body)]))
    (found,) = read_canvases(f"{raw.url}/m.json")
    assert image_request(found, FetchOptions(size=800))[0].endswith("/full/200,/0/default.jpg")


def test_ids_with_spaces_are_percent_encoded_and_fetched(raw: Raw, tmp_path: Path) -> None:
    answer_any_picture(raw, "/iiif/Add%20MS%207475_0001.jp2/")
    body = {"id": f"{raw.url}/iiif/Add MS 7475_0001.jp2/full/full/0/default.jpg",
            "type": "Image", "service": [service(f"{raw.url}/iiif/Add MS 7475_0001.jp2", 2, 2)]}
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, body)]))
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx")
    assert report.fetched == 1 and not report.failed
    assert any(unquote(p).startswith("/iiif/Add MS 7475_0001.jp2/full/") for p in raw.hits)


def test_v21_members_and_paged_collections_are_followed(raw: Raw) -> None:
    answer_any_picture(raw, "/img/")
    for n in range(6):
        raw.routes[f"/m{n}.json"] = as_json(v3(raw.url, [canvas(
            raw.url, n, {"id": f"{raw.url}/img/{n}.jpg", "type": "Image"})], f"m{n}"))
    raw.routes["/members.json"] = as_json({  # manifesto's members.json, Presentation 2.1
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@id": f"{raw.url}/members.json", "@type": "sc:Collection", "members": [
            {"@id": f"{raw.url}/m0.json", "@type": "sc:Manifest"},
            {"@id": f"{raw.url}/m1.json", "@type": "sc:Manifest"}]})
    assert [c.canvas for c in read_canvases(f"{raw.url}/members.json")] == [
        f"{raw.url}/canvas/0", f"{raw.url}/canvas/1"]
    raw.routes["/paged.json"] = as_json({  # a paged collection: first, next, total
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@id": f"{raw.url}/paged.json", "@type": "sc:Collection", "total": 4,
        "first": f"{raw.url}/page1.json"})
    raw.routes["/page1.json"] = as_json({"@id": f"{raw.url}/page1.json",
                                         "@type": "sc:Collection",
                                         "manifests": [{"@id": f"{raw.url}/m2.json"},
                                                       {"@id": f"{raw.url}/m3.json"}],
                                         "next": f"{raw.url}/page2.json"})
    raw.routes["/page2.json"] = as_json({"@id": f"{raw.url}/page2.json",
                                         "@type": "sc:Collection",
                                         "manifests": [{"@id": f"{raw.url}/m4.json"},
                                                       {"@id": f"{raw.url}/m5.json"}],
                                         "next": f"{raw.url}/page1.json"})  # a loop: once
    found = read_canvases(f"{raw.url}/paged.json")
    assert [c.canvas.rsplit("/", 1)[1] for c in found] == ["2", "3", "4", "5"]


def assert_presentation3(data: dict[str, Any]) -> None:
    """The rules of Presentation 3 the outputs rely on: a Manifest with a context, id, type
    and label; canvases with id, type, label, width and height, one AnnotationPage of
    painting annotations targeting the canvas with an Image body; ranges whose members are
    references (id and type only)."""
    assert data["@context"] == P3 and data["type"] == "Manifest"
    assert data["id"].startswith("http") and isinstance(data["label"], dict)
    canvases = {}
    for c in data["items"]:
        assert c["type"] == "Canvas" and c["id"].startswith("http")
        assert isinstance(c["width"], int) and isinstance(c["height"], int)
        (page,) = c["items"]
        assert page["type"] == "AnnotationPage"
        for anno in page["items"]:
            assert anno["type"] == "Annotation" and anno["motivation"] == "painting"
            assert anno["target"] == c["id"] and anno["body"]["type"] == "Image"
            assert anno["body"]["id"].startswith("http")
        canvases[c["id"]] = c
    for r in data.get("structures", []):
        assert r["type"] == "Range" and isinstance(r["label"], dict)
        for member in r["items"]:
            assert set(member) == {"id", "type"} and member["type"] == "Canvas"
            assert member["id"] in canvases


def test_every_iiif_out_is_valid_presentation_3(raw: Raw, tmp_path: Path) -> None:
    prezi = pytest.importorskip("iiif_prezi3")
    answer_any_picture(raw, "/img/")
    raw.routes["/m.json"] = as_json(v3(raw.url, [
        canvas(raw.url, n, {"id": f"{raw.url}/img/{n}.jpg", "type": "Image",
                            "service": [service(f"{raw.url}/img/s{n}", 2)]})
        for n in range(5)]))
    for n in range(5):
        raw.routes[f"/img/{n}.jpg"] = response(painting_jpeg(n + 10), "image/jpeg")
    index = tmp_path / "idx"
    run_iiif(f"{raw.url}/m.json", index)
    for args in (["query", "--id", "1", "-k", "4"], ["cluster", "-k", "2", "--restarts", "0"]):
        out = tmp_path / f"{args[0]}.json"
        code, said, err = invoke(*args, "--index", str(index), "--iiif-out", str(out))
        assert code == 0, said + err
        data = json.loads(out.read_text())
        prezi.Manifest(**data)
        assert_presentation3(data)


def test_a_region_lies_inside_the_part_of_the_image_a_work_was() -> None:
    """A work indexed from `#xywh=` (kept as iiif_region) is that part of its canvas: a
    matching region's annotation is placed inside the part, in the canvas's pixels."""
    from artsearch.iiif.write import _in_canvas

    half = [0.5, 0.5, 0.5, 0.5]
    assert _in_canvas(half, None, 1000, 800) == (500, 400, 500, 400)
    assert _in_canvas(half, "100,50,200,100", 1000, 800) == (200, 100, 100, 50)
    assert _in_canvas(half, "pct:50,0,50,100", 1000, 800) == (750, 400, 250, 400)
    assert _in_canvas([0.9, 0.9, 0.5, 0.5], None, 100, 100) == (90, 90, 10, 10)  # clipped


def test_a_presentation_2_specific_resource_paints_its_full_image(raw: Raw) -> None:
    """@iiif/parser's presentation-2 fixtures: part of an image painted by an
    oa:SpecificResource whose image is in `full` (3 names it `source`)."""
    v2 = {"@context": "http://iiif.io/api/presentation/2/context.json",
          "@id": f"{raw.url}/v2.json", "@type": "sc:Manifest", "label": "v2 part",
          "sequences": [{"canvases": [{"@id": f"{raw.url}/v2/c1", "@type": "sc:Canvas",
                                       "images": [{"resource": {
                                           "@type": "oa:SpecificResource",
                                           "full": {"@id": f"{raw.url}/img/p.jpg",
                                                    "@type": "dctypes:Image",
                                                    "width": 1000, "height": 800},
                                           "selector": {"@type": "oa:FragmentSelector",
                                                        "value": "xywh=10,20,300,400"}}}]}]}]}
    raw.routes["/v2.json"] = as_json(v2)
    (found,) = read_canvases(f"{raw.url}/v2.json")
    assert found.image == f"{raw.url}/img/p.jpg"
    assert found.region == ("px", 10.0, 20.0, 300.0, 400.0)


def test_a_media_fragment_on_the_image_id_names_a_part_of_it(raw: Raw) -> None:
    pixels = {"id": f"{raw.url}/img/f.jpg#xywh=100,50,200,100", "type": "Image",
              "width": 400, "height": 200}
    share = {"id": f"{raw.url}/img/g.jpg#xywh=percent:50,0,50,100", "type": "Image"}
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, pixels),
                                                 canvas(raw.url, 2, share)]))
    first, second = read_canvases(f"{raw.url}/m.json")
    assert first.image == f"{raw.url}/img/f.jpg" and first.region == ("px", 100, 50, 200, 100)
    url, crop = image_request(first, FetchOptions(size=512))
    assert url == f"{raw.url}/img/f.jpg" and crop == (0.25, 0.25, 0.75, 0.75)
    assert second.image == f"{raw.url}/img/g.jpg" and second.region == ("pct", 50, 0, 50, 100)
    assert image_request(second, FetchOptions())[1] == (0.5, 0.0, 1.0, 1.0)


def test_a_services_version_is_read_from_its_context_before_its_profile(raw: Raw) -> None:
    """An Image API 2 context with a 1.1 level profile URI (seen in the wild) is a 2.x
    service: asked for `default`, which 2.x knows, never 1.1's `native`."""
    mixed = {"id": f"{raw.url}/img/m/full/full/0/default.jpg", "type": "Image",
             "service": {"@context": "http://iiif.io/api/image/2/context.json",
                         "@id": f"{raw.url}/img/m",
                         "profile": "http://library.stanford.edu/iiif/image-api/1.1/"
                                    "compliance.html#level2"}}
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, mixed)]))
    (found,) = read_canvases(f"{raw.url}/m.json")
    assert found.service_version == 2 and found.level == 2
    assert image_request(found, FetchOptions(size=300))[0].endswith("/0/default.jpg")


def test_an_image_api_selector_rotation_is_applied(raw: Raw, tmp_path: Path) -> None:
    """Cookbook 0040-image-rotation-service: asked of a service at level 1 or 2; a plain
    image (or level 0) is turned here after the fetch."""
    tall = Image.new("RGB", (60, 120), "white")
    tall.paste(painting(3, (60, 60)), (0, 0))
    data = io.BytesIO()
    tall.save(data, "JPEG", quality=95)
    raw.routes["/static/tall.jpg"] = response(data.getvalue(), "image/jpeg")
    by_server = {"type": "SpecificResource",
                 "source": {"id": f"{raw.url}/img/r/full/max/0/default.jpg", "type": "Image",
                            "service": [service(f"{raw.url}/img/r", 2)]},
                 "selector": {"type": "ImageApiSelector", "rotation": "90"}}
    turned_here = {"type": "SpecificResource",
                   "source": {"id": f"{raw.url}/static/tall.jpg", "type": "Image"},
                   "selector": {"type": "ImageApiSelector", "rotation": "90"}}
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, by_server),
                                                 canvas(raw.url, 2, turned_here)]))
    answer_any_picture(raw, "/img/")
    first, second = read_canvases(f"{raw.url}/m.json")
    assert first.rotation == 90 and second.rotation == 90
    assert image_request(first, FetchOptions(size=512))[0] == \
        f"{raw.url}/img/r/full/!512,512/90/default.jpg"
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx")
    assert report.fetched == 2
    sizes = []
    for path in (tmp_path / "idx" / "iiif-images").rglob("*.jpg"):
        with Image.open(path) as im:
            sizes.append(im.size)
    assert (120, 60) in sizes  # the tall plain image, turned on its side


def test_a_400_for_one_quality_name_is_asked_once_with_the_others(raw: Raw,
                                                                  tmp_path: Path) -> None:
    """A 1.1 context on a server that speaks 2.x: `native` is answered 400, so the same
    request is made once more with `default` (and a second 400 is the canvas's failure)."""
    old = {"id": f"{raw.url}/img/o/full/full/0/native.jpg", "type": "Image",
           "service": {"@context": "http://library.stanford.edu/iiif/image-api/1.1/"
                                   "context.json", "@id": f"{raw.url}/img/o",
                       "profile": "http://library.stanford.edu/iiif/image-api/1.1/"
                                  "compliance.html#level2"}}
    picture = response(painting_jpeg(4), "image/jpeg")
    refused = response(b"unknown quality", "text/plain", "400 Bad Request")
    asked: list[str] = []

    def answer(path: str) -> bytes:
        asked.append(path)
        return picture if path.endswith("/default.jpg") else refused

    raw.dynamic = answer
    raw.routes["/m.json"] = as_json(v3(raw.url, [canvas(raw.url, 1, old)]))
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx")
    assert report.fetched == 1 and result.total == 1
    assert [p.rsplit("/", 1)[-1] for p in asked] == ["native.jpg", "default.jpg"]


def test_when_every_canvas_fails_every_failure_is_recorded(raw: Raw, tmp_path: Path) -> None:
    gone = [canvas(raw.url, n, {"id": f"{raw.url}/missing/{n}.jpg", "type": "Image"})
            for n in range(1, 4)]
    raw.routes["/m.json"] = as_json(v3(raw.url, gone))
    index = tmp_path / "idx"
    code, _, err = invoke("index", "--iiif", f"{raw.url}/m.json", "--index", str(index),
                          "--backbone", "fake-colour", "--iiif-timeout", "1")
    assert code == 1 and "3 of 3 failed" in err and "info --failures" in err
    code, out, _ = invoke("info", "--index", str(index), "--failures")
    assert code == 0 and all(f"{raw.url}/canvas/{n}" in out for n in range(1, 4))


def test_a_collection_that_embeds_its_members_is_walked_as_it_stands(raw: Raw) -> None:
    """Universal Viewer's example collection: sub-collections embedded with their content
    (one repeating the parent's own id), manifests embedded with their canvases; each read
    once, nothing fetched that is given."""
    def manifest(n: int) -> dict[str, Any]:
        return {"id": f"{raw.url}/m{n}.json", "type": "Manifest", "label": {"en": [f"m{n}"]},
                "items": [canvas(raw.url, f"{n}-{i}", {"id": f"{raw.url}/img/{n}-{i}.jpg",
                                                       "type": "Image"}) for i in (1, 2)]}
    top = {"@context": "http://iiif.io/api/presentation/3/context.json",
           "id": f"{raw.url}/c.json", "type": "Collection", "label": {"en": ["all"]},
           "items": [{"id": f"{raw.url}/c.json", "type": "Collection",  # its parent's id
                      "items": [manifest(1), manifest(2)]},
                     {"id": f"{raw.url}/sub.json", "type": "Collection",
                      "items": [manifest(3), manifest(1)]}]}  # m1 again: read once
    raw.routes["/c.json"] = as_json(top)
    found = read_canvases(f"{raw.url}/c.json")
    assert sorted(c.canvas.rsplit("/", 1)[-1] for c in found) == \
        ["1-1", "1-2", "2-1", "2-2", "3-1", "3-2"]
    assert dict(raw.hits) == {"/c.json": 1}  # no member was fetched: all were given


def test_iiif_out_keeps_a_version_2_service_as_its_own_version_writes_it() -> None:
    from artsearch.iiif.write import _service_entry

    v2 = _service_entry("https://example.org/iiif/a", 2, "level1")
    assert v2 == {"@id": "https://example.org/iiif/a", "@type": "ImageService2",
                  "profile": "http://iiif.io/api/image/2/level1.json"}
    v1 = _service_entry("https://example.org/iiif/b", 1, "level2")
    assert v1["@type"] == "ImageService1" and v1["profile"].endswith("compliance.html#level2")
    assert _service_entry("https://example.org/iiif/c", 3, "level0") == {
        "id": "https://example.org/iiif/c", "type": "ImageService3", "profile": "level0"}
