"""IIIF in and out, against a real local HTTP server: a Presentation 3 manifest over a
level-0 static Image API tree made from example paintings; a 404 and a slow canvas; re-runs
that fetch nothing twice; exported manifests validated by iiif-prezi3."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from artsearch.iiif import FetchOptions, read_canvases
from artsearch.index import ArtIndex
from tests.helpers import FAKE, invoke

prezi = pytest.importorskip("iiif_prezi3")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "collection"


class Site:
    """A static IIIF site served over HTTP from a folder; counts requests by path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: Counter[str] = Counter()
        self.slow: float = 0.0  # seconds added to every request under /slow/
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(site.root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                site.hits[self.path] += 1
                if self.path.startswith("/slow/") and site.slow:
                    time.sleep(site.slow)
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def images_fetched(self) -> int:
        return sum(n for p, n in self.hits.items() if p.endswith("default.jpg"))


def level0_tree(image: Path, folder: Path, base: str) -> dict[str, Any]:
    """A level-0 Image API 3 tree for one picture: info.json and two pre-made sizes."""
    with Image.open(image) as opened:
        img = opened.convert("RGB")
    sizes = []
    for side in (128, max(img.size)):
        scale = side / max(img.size)
        w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        out = folder / "full" / f"{w},{h}" / "0" / "default.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        img.resize((w, h)).save(out, quality=90)
        sizes.append({"width": w, "height": h})
    info = {"@context": "http://iiif.io/api/image/3/context.json", "id": base, "type":
            "ImageService3", "protocol": "http://iiif.io/api/image", "profile": "level0",
            "width": img.width, "height": img.height, "sizes": sizes}
    (folder / "info.json").write_text(json.dumps(info))
    return {"w": img.width, "h": img.height}


def canvas(site: str, n: int, service: str, size: dict[str, int], label: str) -> dict[str, Any]:
    return {"id": f"{site}/canvas/{n}", "type": "Canvas", "label": {"en": [label]},
            "width": size["w"], "height": size["h"],
            "items": [{"id": f"{site}/page/{n}", "type": "AnnotationPage", "items": [{
                "id": f"{site}/anno/{n}", "type": "Annotation", "motivation": "painting",
                "target": f"{site}/canvas/{n}",
                "body": {"id": f"{service}/full/max/0/default.jpg", "type": "Image",
                         "format": "image/jpeg",
                         "service": [{"id": service, "type": "ImageService3",
                                      "profile": "level0"}]}}]}]}


def write_manifest(site: Site, canvases: list[dict[str, Any]]) -> str:
    manifest = {"@context": "http://iiif.io/api/presentation/3/context.json",
                "id": f"{site.url}/manifest.json", "type": "Manifest",
                "label": {"en": ["Genre scenes"]},
                "metadata": [{"label": {"en": ["Creator"]}, "value": {"en": ["Various"]}}],
                "rights": "http://creativecommons.org/publicdomain/mark/1.0/",
                "requiredStatement": {"label": {"en": ["Attribution"]},
                                      "value": {"en": ["A test museum"]}},
                "items": canvases}
    (site.root / "manifest.json").write_text(json.dumps(manifest))
    return manifest["id"]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path / "site")
    s.root.mkdir()
    thread = threading.Thread(target=s.server.serve_forever, daemon=True)
    thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_a_manifest_is_indexed_fetched_once_and_survives_a_404_and_a_slow_canvas(
        site: Site, tmp_path: Path) -> None:
    pictures = sorted((EXAMPLES / "genre").glob("*.jpg"))[:5]
    good = []
    for n, picture in enumerate(pictures[:4]):
        service = f"{site.url}/iiif/img{n}"
        size = level0_tree(picture, site.root / "iiif" / f"img{n}", service)
        good.append(canvas(site.url, n, service, size, picture.stem))
    slow_service = f"{site.url}/slow/img4"
    slow = canvas(site.url, 4, slow_service,
                  level0_tree(pictures[4], site.root / "slow" / "img4", slow_service), "slow")
    missing = canvas(site.url, 5, f"{site.url}/iiif/gone", {"w": 10, "h": 10}, "gone")
    url = write_manifest(site, [*good, slow, missing])
    index = tmp_path / "idx"
    args = ["index", "--iiif", url, "--index", str(index), "--backbone", FAKE,
            "--workers", "0", "--iiif-size", "256"]

    site.slow = 1.0
    code, out, err = invoke(*args, "--iiif-timeout", "0.3")
    assert code == 0, out + err
    assert f"not fetched {site.url}/canvas/5: HTTP 404" in err
    assert f"not fetched {site.url}/canvas/4: " in err and "timed out after 3 tries" in err
    assert "IIIF: 6 canvases, 4 fetched, 0 already here, 2 failed" in out
    assert site.images_fetched() == 4
    # The 128 px size was taken, the largest listed within --iiif-size 256.
    for path in (index / "iiif-images").rglob("*.jpg"):
        with Image.open(path) as im:
            assert max(im.size) == 128 and f"/full/{im.width},{im.height}/" in "".join(site.hits)
    with ArtIndex(index) as idx:
        from artsearch.index import catalogue

        works = catalogue.artworks(idx)
        failures = {f["path"] for f in catalogue.failures(idx)}
    assert len(works) == 4 and failures == {f"{site.url}/canvas/4", f"{site.url}/canvas/5"}
    first = next(w for w in works if w.extra["iiif_canvas"] == f"{site.url}/canvas/0")
    assert first.title == f"Genre scenes, {pictures[0].stem}"
    assert first.artist == "Various" and first.source == "A test museum"
    assert first.license.endswith("publicdomain/mark/1.0/")
    assert first.extra["iiif_manifest"] == url

    # Patience: the slow canvas arrives; nothing fetched before is fetched again.
    before = site.images_fetched()
    code, out, err = invoke(*args, "--iiif-timeout", "5")
    assert code == 0 and "IIIF: 6 canvases, 1 fetched, 4 already here, 1 failed" in out
    assert site.images_fetched() == before + 1
    assert "5 artworks indexed (1 embedded, 4 unchanged)" in out

    # Without the broken canvas, a re-run has nothing to fetch and nothing to embed.
    write_manifest(site, [*good, slow])
    before = site.images_fetched()
    code, out, err = invoke(*args)
    assert code == 0 and "IIIF: 5 canvases, 0 fetched, 5 already here, 0 failed" in out
    assert site.images_fetched() == before and "(0 embedded, 5 unchanged)" in out

    # Out again: results and a clustering run as Presentation 3 manifests.
    hits = tmp_path / "hits.json"
    code, out, err = invoke("query", "--id", str(first.id), "--index", str(index), "-k", "3",
                            "--iiif-out", str(hits))
    assert code == 0, out + err
    data = json.loads(hits.read_text())
    prezi.Manifest(**data)  # validates against the specification's model
    assert len(data["items"]) == 3
    top = data["items"][0]
    labels = {e["label"]["en"][0]: e["value"]["en"][0] for e in top["metadata"]}
    assert labels["rank"] == "1" and float(labels["similarity score"]) == pytest.approx(1.0)
    body = top["items"][0]["items"][0]["body"]
    assert body["service"][0]["id"] == f"{site.url}/iiif/img0"  # back to the source's images
    # The source canvas's size, not the 128 px copy's that was fetched.
    assert (top["width"], top["height"]) == (good[0]["width"], good[0]["height"])
    run = tmp_path / "run.json"
    code, out, err = invoke("cluster", "--index", str(index), "--k", "2", "--restarts", "0",
                            "--iiif-out", str(run))
    assert code == 0, out + err
    data = json.loads(run.read_text())
    prezi.Manifest(**data)
    assert len(data["items"]) == 5 and len(data["structures"]) == 2
    assert sum(len(r["items"]) for r in data["structures"]) == 5


def test_presentation_2_manifests_and_collections_are_read(site: Site, tmp_path: Path) -> None:
    v2 = {"@context": "http://iiif.io/api/presentation/2/context.json",
          "@id": f"{site.url}/v2.json", "@type": "sc:Manifest", "label": "A triptych",
          "license": "https://creativecommons.org/licenses/by/4.0/",
          "attribution": "Some library",
          "metadata": [{"label": "Date", "value": "<span>c. 1430</span>"}],
          "sequences": [{"@type": "sc:Sequence", "canvases": [
              {"@id": f"{site.url}/v2/c{n}", "@type": "sc:Canvas", "label": f"panel {n}",
               "images": [{"@type": "oa:Annotation", "resource": {
                   "@id": f"{site.url}/v2/i{n}/full/full/0/default.jpg",
                   "service": {"@context": "http://iiif.io/api/image/2/context.json",
                               "@id": f"{site.url}/v2/i{n}",
                               "profile": "http://iiif.io/api/image/2/level1.json"}}}]}
              for n in range(3)]}]}
    (site.root / "v2.json").write_text(json.dumps(v2))
    collection = {"@context": "http://iiif.io/api/presentation/3/context.json",
                  "id": f"{site.url}/collection.json", "type": "Collection",
                  "label": {"en": ["all"]},
                  "items": [{"id": f"{site.url}/v2.json", "type": "Manifest"},
                            {"id": f"{site.url}/missing.json", "type": "Manifest"},
                            {"id": f"{site.url}/collection.json", "type": "Collection"}]}
    (site.root / "collection.json").write_text(json.dumps(collection))
    errors: list[tuple[str, str]] = []
    found = read_canvases(f"{site.url}/collection.json", FetchOptions(retries=0),
                          on_error=lambda ref, why: errors.append((ref, why)))
    assert [c.canvas for c in found] == [f"{site.url}/v2/c{n}" for n in range(3)]
    c = found[1]
    assert c.service == f"{site.url}/v2/i1" and c.service_version == 2 and not c.level0
    assert c.fields["title"] == "A triptych, panel 1" and c.fields["date"] == "c. 1430"
    assert c.fields["license"].endswith("/by/4.0/") and c.fields["source"] == "Some library"
    assert errors == [(f"{site.url}/missing.json", f"HTTP 404 File not found for "
                                                   f"{site.url}/missing.json")]
    from artsearch.iiif import image_request

    # A level-1 service: `!w,h` is level 2, so a width is asked (issue 25).
    assert image_request(c, FetchOptions(size=500)) == (f"{site.url}/v2/i1/full/500,/0/"
                                                        "default.jpg", None)
    # Nothing in a manifest may make artsearch read a local file.
    c.service, c.image = None, "file:///etc/passwd"
    with pytest.raises(Exception, match="not an http"):
        image_request(c, FetchOptions())
