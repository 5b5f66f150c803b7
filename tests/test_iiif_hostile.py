"""IIIF against hostile servers and manifests (issue 22): each attack of the second hardening
round reproduced against a real loopback server that speaks raw, sometimes broken, HTTP.

Every failure must be one terminal-safe line for its canvas or document, and the run goes on;
nothing a manifest names may make artsearch read a local file or leave http(s).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from artsearch.errors import ArtsearchError
from artsearch.iiif import FetchOptions, read_canvases
from artsearch.index import ArtIndex
from tests.helpers import (
    FAKE,
    Raw,
    Route,
    as_json,
    canvas,
    index_args,
    invoke,
    painting,
    painting_jpeg,
    response,
    run_iiif,
)


def drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 400\r\n\r\n")
    for _ in range(400):
        conn.sendall(b"x")
        time.sleep(0.1)


def cut_short(conn: socket.socket) -> None:
    body = painting_jpeg(3)
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: "
                 f"{len(body)}\r\n\r\n".encode() + body[: len(body) // 2])


def image(url: str) -> dict[str, Any]:
    return {"id": url, "type": "Image", "format": "image/jpeg"}


def level0(url: str) -> dict[str, Any]:
    return {"id": f"{url}/full/max/0/default.jpg", "type": "Image",
            "service": [{"id": url, "type": "ImageService3", "profile": "level0"}]}


def manifest(site: str, canvases: list[dict[str, Any]], name: str = "m") -> dict[str, Any]:
    return {"@context": "http://iiif.io/api/presentation/3/context.json",
            "id": f"{site}/{name}.json", "type": "Manifest", "label": {"en": ["hostile"]},
            "items": canvases}


# -- high 2 and 5: nothing local, nothing but http(s) -----------------------------------------

def test_a_remote_collection_cannot_make_artsearch_read_local_files(raw: Raw,
                                                                    tmp_path: Path) -> None:
    local = tmp_path / "local-manifest.json"
    raw.routes["/pic.jpg"] = response(painting_jpeg(), "image/jpeg")
    local.write_text(json.dumps(manifest(raw.url, [canvas(raw.url, 9, image(
        f"{raw.url}/pic.jpg"))], "local")))
    good = manifest(raw.url, [canvas(raw.url, 1, image(f"{raw.url}/pic.jpg"))])
    raw.routes["/m.json"] = as_json(good)
    raw.routes["/to-ftp.json"] = response(b"", status="302 Found",
                                          headers="Location: ftp://127.0.0.1/m.json\r\n")
    raw.routes["/c.json"] = as_json({
        "id": f"{raw.url}/c.json", "type": "Collection", "items": [
            {"id": str(local), "type": "Manifest"}, {"id": "/etc/hostname", "type": "Manifest"},
            {"id": "file:///proc/self/environ", "type": "Manifest"},
            {"id": f"{raw.url}/to-ftp.json", "type": "Manifest"},
            {"id": f"{raw.url}/m.json", "type": "Manifest"}]})
    errors: list[tuple[str, str]] = []
    found = read_canvases(f"{raw.url}/c.json", FetchOptions(retries=0),
                          on_error=lambda ref, why: errors.append((ref, why)))
    assert [c.canvas for c in found] == [f"{raw.url}/canvas/1"]  # not the local manifest's
    reasons = dict(errors)
    for ref in (str(local), "/etc/hostname", "file:///proc/self/environ"):
        assert "not an http(s) URL" in reasons[ref]
    assert "ftp://127.0.0.1/m.json: not an http(s) URL" in reasons[f"{raw.url}/to-ftp.json"]


def test_redirects_of_pictures_leave_http_never(raw: Raw, tmp_path: Path) -> None:
    raw.routes["/pic.jpg"] = response(painting_jpeg(), "image/jpeg")
    raw.routes["/ftp.jpg"] = response(b"", status="302 Found",
                                      headers="Location: ftp://127.0.0.1/pic.jpg\r\n")
    raw.routes["/file.jpg"] = response(b"", status="301 Moved",
                                       headers="Location: file:///etc/hostname\r\n")
    raw.routes["/loop.jpg"] = response(b"", status="302 Found", headers="Location: /loop.jpg\r\n")
    raw.routes["/m.json"] = as_json(manifest(raw.url, [
        canvas(raw.url, 1, image(f"{raw.url}/pic.jpg")),
        canvas(raw.url, 2, image(f"{raw.url}/ftp.jpg")),
        canvas(raw.url, 3, image(f"{raw.url}/file.jpg")),
        canvas(raw.url, 4, image(f"{raw.url}/loop.jpg"))]))
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx")
    failed = dict(report.failed)
    assert report.fetched == 1 and result.total == 1
    assert "ftp://127.0.0.1/pic.jpg: not an http(s) URL" in failed[f"{raw.url}/canvas/2"]
    assert "file:///etc/hostname: not an http(s) URL" in failed[f"{raw.url}/canvas/3"]
    assert "more than 5 redirects" in failed[f"{raw.url}/canvas/4"]
    assert all("\n" not in why for why in failed.values())


def test_a_local_manifest_file_is_read_only_within_the_json_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from artsearch.iiif import fetching as fetch

    big = tmp_path / "big.json"
    big.write_text(json.dumps({"type": "Manifest", "items": [], "pad": "x" * 5000}))
    monkeypatch.setattr(fetch, "MAX_JSON_BYTES", 1000)
    with pytest.raises(ArtsearchError, match="larger than 1,000 bytes"):
        read_canvases(str(big))


# -- high 6: what servers say never drives the terminal -----------------------------------------

def test_escape_sequences_from_servers_never_reach_the_terminal(raw: Raw,
                                                                tmp_path: Path) -> None:
    raw.routes["/pic.jpg"] = response(painting_jpeg(), "image/jpeg")
    raw.routes["/gone.jpg"] = response(b"", "text/plain",
                                       "404 Not\x1b]0;owned\x07 \x1b[31mFound")
    evil_id = f"{raw.url}/canvas/\x1b[2J\u202eevil"
    doc = manifest(raw.url, [canvas(raw.url, 1, image(f"{raw.url}/pic.jpg")),
                             canvas(raw.url, 2, image(f"{raw.url}/gone.jpg"))])
    doc["items"][1]["id"] = evil_id
    raw.routes["/m.json"] = as_json(doc)
    raw.routes["/odd.json"] = as_json({"id": f"{raw.url}/odd.json", "type": "\x1b]8;;x\x07A"})
    index = tmp_path / "idx"
    code, out, err = invoke("index", "--iiif", f"{raw.url}/m.json", "--index", str(index),
                            "--backbone", FAKE, "--workers", "0", "--iiif-timeout", "2")
    assert code == 0, out + err
    assert "\x1b" not in out + err and "\u202e" not in out + err
    assert "not fetched" in err and "\\x1b[2J\\u202eevil" in err
    assert "HTTP 404 Not\\x1b]0;owned\\x07 \\x1b[31mFound" in err
    code, out, err = invoke("info", "--failures", "--index", str(index))
    assert code == 0 and "\x1b" not in out + err and "\\x1b[2J" in out
    code, out, err = invoke("index", "--iiif", f"{raw.url}/odd.json", "--index",
                            str(tmp_path / "other"), "--backbone", FAKE)
    assert code == 1 and "\x1b" not in err and "not a IIIF Manifest" in err


# -- medium: broken HTTP, broken documents, broken pictures --------------------------------------

def test_broken_servers_are_one_line_per_canvas_and_the_run_goes_on(raw: Raw,
                                                                   tmp_path: Path) -> None:
    pic = response(painting_jpeg(), "image/jpeg")
    raw.routes.update({
        "/pic.jpg": pic,
        "/with%20space.jpg": response(painting_jpeg(2), "image/jpeg"),
        "/bad-status.jpg": b"HTTP/1.1 abc\r\n\r\n",
        "/long-line.jpg": b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        "/many.jpg": b"HTTP/1.1 200 OK\r\n" + b"".join(
            f"X-H{i}: 1\r\n".encode() for i in range(120)) + b"\r\n",
        "/cut.jpg": cut_short,
        "/drip.jpg": drip,
        "/html.jpg": response(b"<html><body>sorry</body></html>", "text/html"),
        "/garbage.jpg": response(b"not a picture at all", "image/jpeg"),
    })
    bodies = {"good": image(f"{raw.url}/pic.jpg"),
              "space": image(f"{raw.url}/with space.jpg"),
              "crlf": image(f"{raw.url}/x.jpg\r\nX-Injected: 1"),
              **{name: image(f"{raw.url}/{name}.jpg") for name in (
                  "bad-status", "long-line", "many", "cut", "drip", "html", "garbage")}}
    canvases = [canvas(raw.url, name, body) for name, body in bodies.items()]
    canvases.append(canvases[0])  # listed twice
    doc = json.dumps(manifest(raw.url, canvases))
    # A lone surrogate in an id and a label must not end the run once fetched.
    doc = doc.replace(f'{raw.url}/canvas/good"', f'{raw.url}/canvas/good\\ud800"')
    doc = doc.replace('"cgood"', '"cgood\\udc00"')
    raw.routes["/m.json"] = response(doc.encode())
    started = time.monotonic()
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx", timeout=1.0)
    elapsed = time.monotonic() - started
    failed = {uri.rsplit("/", 1)[-1]: why for uri, why in report.failed}
    assert report.canvases == 10 and report.fetched == 2 and result.total == 2  # once each
    assert set(failed) == {"crlf", "bad-status", "long-line", "many", "cut", "drip", "html",
                           "garbage"}
    assert "control characters" in failed["crlf"]
    assert "not a valid HTTP answer" in failed["bad-status"]
    assert "not a valid HTTP answer" in failed["long-line"]
    assert "not a valid HTTP answer" in failed["many"]
    assert "truncated" in failed["cut"]
    assert "timed out" in failed["drip"]
    assert "served text/html, not a picture" in failed["html"]
    assert "not a picture that decodes" in failed["garbage"]
    assert all("\n" not in why and "\x1b" not in why for why in failed.values())
    assert raw.hits["/with%20space.jpg"] == 1 and raw.hits["/pic.jpg"] == 1  # fetched once
    assert elapsed < 30  # the drip is cut at its deadline, not after 40 s of bytes
    # Nothing broken was kept, so a re-run tries those canvases again.
    before = raw.hits["/cut.jpg"] + raw.hits["/html.jpg"] + raw.hits["/garbage.jpg"]
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx", timeout=1.0)
    assert report.already == 2 and report.fetched == 0
    assert raw.hits["/cut.jpg"] + raw.hits["/html.jpg"] + raw.hits["/garbage.jpg"] == before + 3
    assert not list((tmp_path / "idx" / "iiif-images").rglob("*.part"))


@pytest.mark.parametrize("info", [
    b'{"width": "abc", "height": 5, "sizes": [{"width": "abc", "height": 5}]}',
    b'{"width": Infinity, "height": 3}', b'{"width": NaN, "height": NaN}',
    b'{"width": null, "height": null, "sizes": null}', b"[1, 2]", b"<html>not json</html>",
    b'{"sizes": [{"width": 1e400, "height": -3}, {"width": true, "height": 2}]}'])
def test_a_broken_level0_info_json_fails_its_canvas_only(raw: Raw, tmp_path: Path,
                                                         info: bytes) -> None:
    raw.routes["/pic.jpg"] = response(painting_jpeg(), "image/jpeg")
    raw.routes["/svc/info.json"] = response(info)
    raw.routes["/m.json"] = as_json(manifest(raw.url, [
        canvas(raw.url, 1, image(f"{raw.url}/pic.jpg")),
        canvas(raw.url, 2, level0(f"{raw.url}/svc"))]))
    result, report = run_iiif(f"{raw.url}/m.json", tmp_path / "idx")
    assert result.total == 1 and len(report.failed) == 1
    uri, why = report.failed[0]
    assert uri == f"{raw.url}/canvas/2" and "info.json" in why


WRONG_TYPES: list[Any] = [
    {"type": "Manifest", "items": 5},
    {"type": "Manifest", "items": [5, "x", None, {"items": 3}, {"id": 7, "items": [{}]}]},
    {"type": "Manifest", "items": [{"id": "c", "items": [{"items": [{"body": "text"}]}]}]},
    {"@type": "sc:Manifest", "sequences": "abc"},
    {"@type": "sc:Manifest", "sequences": [{"canvases": {"@id": "x"}}]},
    {"@type": "sc:Manifest", "sequences": [{"canvases": [{"@id": "c", "images": "abc"}]}]},
    {"@type": "sc:Manifest", "sequences": [{"canvases": [{"@id": "c", "images": [
        {"resource": ["a", 1]}]}]}]},
    {"type": ["Manifest", 3], "label": {"en": [{"@value": {"deep": [1, {"x": None}]}}]},
     "metadata": "abc", "items": []},
    {"type": "Collection", "items": {"id": 5}},
    {"type": "Collection", "items": "abc", "manifests": 3, "collections": [None]},
    {"type": {"not": "a string"}},
    {"type": "Annotation", "body": {}},
]


def test_documents_of_the_wrong_shape_are_skipped_not_fatal(raw: Raw) -> None:
    raw.routes["/pic.jpg"] = response(painting_jpeg(), "image/jpeg")
    raw.routes["/good.json"] = as_json(manifest(raw.url, [canvas(raw.url, 1, image(
        f"{raw.url}/pic.jpg"))], "good"))
    members = [{"id": f"{raw.url}/good.json", "type": "Manifest"}]
    for n, doc in enumerate(WRONG_TYPES):
        raw.routes[f"/w{n}.json"] = as_json({"id": f"{raw.url}/w{n}.json", **doc})
        members.append({"id": f"{raw.url}/w{n}.json", "type": "Manifest"})
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    raw.routes["/deep.json"] = response(deep)
    members.append({"id": f"{raw.url}/deep.json", "type": "Manifest"})
    raw.routes["/c.json"] = as_json({"id": f"{raw.url}/c.json", "type": "Collection",
                                     "items": members})
    errors: list[tuple[str, str]] = []
    found = read_canvases(f"{raw.url}/c.json", FetchOptions(retries=0),
                          on_error=lambda ref, why: errors.append((ref, why)))
    assert [c.canvas for c in found] == [f"{raw.url}/canvas/1"]
    reasons = dict(errors)
    assert "nested too deeply" in reasons[f"{raw.url}/deep.json"]
    assert "not a IIIF Manifest or Collection" in reasons[f"{raw.url}/w11.json"]
    # The same document as the top-level source is refused in one line.
    with pytest.raises(ArtsearchError, match="nested too deeply"):
        read_canvases(f"{raw.url}/deep.json", FetchOptions(retries=0))


def test_a_fan_out_collection_is_cut_at_the_document_cap(raw: Raw) -> None:
    def tree(path: str) -> Route | None:
        if not path.startswith("/node/"):
            return None
        name = path.removeprefix("/node/").removesuffix(".json")
        return as_json({"id": f"{raw.url}{path}", "type": "Collection", "items": [
            {"id": f"{raw.url}/node/{name}-{i}.json", "type": "Collection"} for i in range(20)]})

    raw.dynamic = tree
    errors: list[tuple[str, str]] = []
    read_canvases(f"{raw.url}/node/r.json", FetchOptions(retries=0, max_documents=30),
                  on_error=lambda ref, why: errors.append((ref, why)))
    assert sum(raw.hits.values()) == 30
    assert sum("more than 30 documents" in why for _, why in errors) == 1


def test_iiif_takes_the_writers_lock_before_fetching(raw: Raw, tmp_path: Path) -> None:
    raw.routes["/pic.jpg"] = response(painting_jpeg(), "image/jpeg")
    raw.routes["/m.json"] = as_json(manifest(raw.url, [canvas(raw.url, 1, image(
        f"{raw.url}/pic.jpg"))]))
    index = tmp_path / "idx"
    holder = ArtIndex(index, create=True)
    holder.lock()
    try:
        code, _, err = invoke("index", "--iiif", f"{raw.url}/m.json", "--index", str(index),
                              "--backbone", FAKE)
    finally:
        holder.close()
    assert code == 1 and "another artsearch process" in err and not raw.hits
    # A folder's index is refused before anything is fetched, with no --relocate advice.
    folder = tmp_path / "pictures"
    folder.mkdir()
    painting(5).save(folder / "a.jpg")
    assert invoke(*index_args(folder, "--index", str(tmp_path / "folder-index"), "-q"))[0] == 0
    code, _, err = invoke("index", "--iiif", f"{raw.url}/m.json", "--index",
                          str(tmp_path / "folder-index"), "--backbone", FAKE)
    assert code == 1 and "an index of their own" in err and "--relocate" not in err
    assert not raw.hits


def test_many_failed_canvases_are_recorded_in_few_statements(tmp_path: Path) -> None:
    from artsearch.index.store import Failure
    from artsearch.index.writer import record_failures as _record_failures

    with ArtIndex(tmp_path / "idx", create=True) as idx:
        idx.lock()
        statements: list[str] = []
        engine = idx.store.engine
        listen = event.listens_for(engine, "before_cursor_execute")

        @listen
        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        failures = [(f"http://x/canvas/{i}", "HTTP 404") for i in range(3000)]
        with idx.store.session() as s, s.begin():
            _record_failures(s, failures[:1000])
        statements.clear()
        with idx.store.session() as s, s.begin():
            _record_failures(s, failures)  # 1,000 known, 2,000 new
        selects = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
        assert len(selects) <= 6  # in chunks of 500, not one per canvas
        with idx.store.session() as s:
            assert s.query(Failure).count() == 3000


def test_a_manifest_reached_twice_is_read_and_counted_once(raw: Raw) -> None:
    raw.routes["/pic.jpg"] = response(painting_jpeg(), "image/jpeg")
    raw.routes["/m.json"] = as_json(manifest(raw.url, [
        canvas(raw.url, 1, image(f"{raw.url}/pic.jpg")),
        canvas(raw.url, 2, image(f"{raw.url}/pic.jpg"))]))
    raw.routes["/alias.json"] = raw.routes["/m.json"]  # the same document, another address
    raw.routes["/c.json"] = as_json({"id": f"{raw.url}/c.json", "type": "Collection", "items": [
        {"id": f"{raw.url}/m.json", "type": "Manifest"},
        {"id": f"{raw.url}/alias.json", "type": "Manifest"},
        {"id": f"{raw.url}/m.json", "type": "Manifest"}]})
    found = read_canvases(f"{raw.url}/c.json", FetchOptions(retries=0))
    assert len(found) == 2 and raw.hits["/m.json"] == 1


def test_iiif_out_falls_back_when_a_works_iiif_ids_are_not_urls(tmp_path: Path) -> None:
    prezi = pytest.importorskip("iiif_prezi3")
    folder = tmp_path / "pictures"
    folder.mkdir()
    for n in range(3):
        painting(n).save(folder / f"p{n}.jpg")
    meta = tmp_path / "meta.csv"
    meta.write_text("path,iiif_image,iiif_service\n"
                    "p0.jpg,not a url,javascript:alert(1)\np1.jpg,urn:x:1,\n")
    index = tmp_path / "idx"
    assert invoke(*index_args(folder, "--index", str(index), "--metadata", str(meta),
                              "-q"))[0] == 0
    out = tmp_path / "m.json"
    code, said, err = invoke("query", "p0.jpg", "--index", str(index), "-k", "3",
                             "--iiif-out", str(out))
    assert code == 0, said + err
    data = json.loads(out.read_text())
    prezi.Manifest(**data)
    bodies = [c["items"][0]["items"][0]["body"] for c in data["items"]]
    assert all(b["id"].startswith("http://127.0.0.1:8765/image/") for b in bodies)
    assert all("service" not in b for b in bodies)
