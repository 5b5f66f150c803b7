"""An upload's results have an address (issue 36 §3): POST /query answers 303 to
/query/KEY, which answers again on reload, from another client and after a restart; the
uploads are kept under the index, readable by their owner only, the newest few."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from artsearch.web.uploads import RecentUploads
from tests.helpers import client, jpeg, painting


def test_an_upload_answers_303_to_an_address_that_outlives_a_restart(
        served: tuple[Path, Path]) -> None:
    _, index = served
    c = client(index)
    sent = c.post("/query", files={"image": ("photo.jpg", jpeg(painting(7)))},
                  data={"space": "tone", "k": "5"}, follow_redirects=False)
    assert sent.status_code == 303
    where = sent.headers["location"]
    key = re.fullmatch(r"/query/([0-9a-f]{32})\?space=tone&k=5", where).group(1)
    first = c.get(where)
    assert first.status_code == 200 and 'data-space="tone"' in first.text
    assert "photo.jpg" in first.text and len(re.findall(r'class="tile"', first.text)) == 5
    # A reload and a server started afresh (nothing in memory) answer the same page.
    again = client(index).get(where)
    assert again.status_code == 200
    assert re.findall(r'href="/work/(\d+)', again.text) == re.findall(r'href="/work/(\d+)',
                                                                      first.text)
    kept = sorted(p.name for p in (index / "uploads").iterdir())
    assert kept == [f"{key}.jpg", f"{key}.name", f"{key}.search"]
    for p in (index / "uploads").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
    # An unknown space is refused before anything is kept.
    refused = c.post("/query", files={"image": ("b.jpg", jpeg(painting(8)))},
                     data={"space": "nonesuch"}, follow_redirects=False)
    assert refused.status_code == 404 and "nonesuch" in refused.text
    assert len(list((index / "uploads").iterdir())) == 3


def test_only_the_newest_uploads_are_kept_and_a_name_is_plain_text(tmp_path: Path) -> None:
    kept = RecentUploads(tmp_path / "uploads", size=2)
    keys = [kept.keep(f"p{i}.jpg", jpeg(painting(i))) for i in range(3)]
    assert kept.get(keys[0]) is None
    assert [kept.get(k)[0] for k in keys[1:]] == ["p1.jpg", "p2.jpg"]  # type: ignore[index]
    assert len(list((tmp_path / "uploads").glob("*.name"))) == 2
    odd = kept.keep("a\u202eb\nc.jpg", jpeg(painting(9)))
    assert kept.get(odd)[0] == "abc.jpg"  # type: ignore[index]


def test_an_unwritable_folder_keeps_uploads_in_memory(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    kept = RecentUploads(blocked / "uploads")
    key = kept.keep("p.jpg", jpeg(painting(1)))
    name, data, shown = kept.get(key)  # type: ignore[misc]
    assert name == "p.jpg" and shown[:2] == b"\xff\xd8" and data


def test_an_upload_gets_a_verdict_before_its_neighbours(served: tuple[Path, Path]) -> None:
    import numpy as np
    from PIL import Image

    root, index = served
    c = client(index)
    sent = (root / "b" / "work_004.jpg").read_bytes()
    same = c.post("/api/query", files={"image": ("w.jpg", sent)}).json()["verdict"]
    assert same["type"] == "exact" and same["text"].startswith("The same picture as")
    work = c.get("/api/works", params={"q": "work_004"}).json()["works"][0]
    assert same["work"] == work["id"]
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 240, 3), np.uint8))
    none = c.post("/api/query", files={"image": ("n.png", jpeg(noise))}).json()["verdict"]
    assert none["type"] is None and none["text"].startswith("No close match"), none
    assert none["examined"] > 0
    # The page says it above the tiles, linking to the work it names.
    page = c.post("/query", files={"image": ("w.jpg", sent)}).text
    assert page.index('id="verdict"') < page.index('id="upload-results"')
    assert f'<a href="/work/{work["id"]}">The same picture as' in page


def test_a_crop_a_mirror_and_a_framed_copy_of_a_painting_are_named_so(tmp_path: Path) -> None:
    import shutil

    from PIL import Image, ImageOps

    from artsearch.duplicates.verdict import verdict
    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import artworks
    from artsearch.indexer import IndexOptions, index_collection
    from tests.helpers import FAKE

    paintings = sorted((Path(__file__).resolve().parents[1] / "examples" / "collection")
                       .glob("*/*.jpg"))[:40:10]
    root = tmp_path / "coll"
    root.mkdir()
    for i, p in enumerate(paintings):
        shutil.copy(p, root / f"w{i}.jpg")
    with ArtIndex(tmp_path / "idx", create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE,
                                                 extractor={"num_workers": 0}))
        ids = {a.path: a.id for a in artworks(idx)}
        hits = [(ids[f"w{i}.jpg"], 0.5) for i in (1, 2, 3, 0)]  # the original comes last
        src = Image.open(root / "w0.jpg").convert("RGB")
        w, h = src.size
        framed = ImageOps.expand(src, border=max(w, h) // 4, fill=(120, 90, 40))
        cases = {"crop": src.crop((w // 5, h // 5, 4 * w // 5, 4 * h // 5)),
                 "mirrored": ImageOps.mirror(src), "framed": framed}
        said = {name: verdict(idx, jpeg(img), img, hits, "content")
                for name, img in cases.items()}
    assert all(v.work == ids["w0.jpg"] for v in said.values()), said
    assert said["crop"].type == "crop" and said["crop"].text.startswith("A crop of")
    assert said["mirrored"].type == "mirrored"
    assert said["framed"].part == "work" and "is inside it" in said["framed"].text
    assert said["crop"].examined == 4
