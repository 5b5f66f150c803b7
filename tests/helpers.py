"""What many test files share: a fake collection, the CLI runner, the app's test clients, IIIF
fixtures' pieces, page checks. Fixtures are in conftest.py."""

from __future__ import annotations

import io
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from artsearch.cli import cli
from artsearch.iiif import FetchOptions, FetchReport, index_iiif
from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from artsearch.web import build

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "art-dev"
FAKE = "fake-colour"
TRAINABLE = "fake-conv"
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


def client(index: Path, **kw: object) -> TestClient:
    return TestClient(build(index, **kw), base_url="http://127.0.0.1:8765")  # type: ignore[arg-type]


@contextmanager
def serving(index: Path) -> Iterator[str]:
    """`artsearch serve` over `index` on a free local port, in a thread; its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build(index, port=port), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def index_into(root: Path, index: Path, **kw: object) -> None:
    with ArtIndex(index, create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=FAKE, extractor={"num_workers": 0},
                                                 **kw))  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=92)
    return out.getvalue()


def violations(page: Any) -> list[str]:
    """axe-core's violations of the loaded page: rule id and the first offending node."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    found = page.evaluate("""async () => (await axe.run(document)).violations.map(
        v => v.id + ': ' + (v.nodes[0] ? v.nodes[0].target.join(' ') : ''))""")
    return list(found)


def palettes_index(tmp_path: Path, backbone: str = FAKE, extra_rows: str = "") -> Path:
    """24 warm (sunset) and cool (seascape) pictures, plus two 'nocturne' ones (too few)."""
    root = tmp_path / "coll"
    root.mkdir(parents=True)
    meta = two_palettes(root)
    for i in range(2):
        Image.new("RGB", (64, 48), (20, 20, 20 + i)).save(root / f"night_{i}.png")
    meta.write_text(meta.read_text().replace("path,genre", "path,genre,source")
                    .replace("sunset\n", "sunset,museum A\n")
                    .replace("seascape\n", "seascape,museum B\n")
                    + "night_0.png,nocturne,museum A\nnight_1.png,nocturne,museum B\n"
                    + extra_rows)
    index = tmp_path / "idx"
    with ArtIndex(index, create=True) as idx:
        index_collection(root, idx, IndexOptions(backbone=backbone, metadata=meta,
                                                 extractor={"num_workers": 0}))
    return index


def painting(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A synthetic 'painting': a coloured ground with a few seeded shapes."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(10, 50), y0 + rng.randrange(10, 40)
        draw.ellipse((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def make_collection(root: Path, n: int = 12, start: int = 0) -> list[Path]:
    """n distinct JPEGs under root/a and root/b."""
    paths = []
    for i in range(start, start + n):
        path = root / ("a" if i % 2 else "b") / f"work_{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        painting(i).save(path, quality=92)
        paths.append(path)
    return paths


def requires_dev() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (DEV / "metadata.csv").exists(),
                              reason="shared dev collection ../shared/data/art-dev not present")


def stored_vectors(index_path: Path, space: str = "content") -> dict:  # type: ignore[type-arg]
    """Path -> stored vector of every work in a space, read through the index's own store."""
    from artsearch.cluster import space_matrix
    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import artworks

    with ArtIndex(index_path) as idx:
        ids, vectors = space_matrix(idx, space)
        paths = {a.id: a.path for a in artworks(idx, ids)}
    return {paths[i]: v for i, v in zip(ids, vectors, strict=True)}


Route = bytes | Callable[[socket.socket], None]


class Raw:
    """A loopback server answering each request path with raw bytes or a behaviour, so that
    broken status lines, dripping bodies and lying headers can be served. Counts hits."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.dynamic: Callable[[str], Route | None] | None = None
        self.hits: Counter[str] = Counter()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ")[1].decode("latin-1")
            self.hits[path] += 1
            route = self.routes.get(path)
            if route is None and self.dynamic is not None:
                route = self.dynamic(path)
            if route is None:
                route = response(b"not here", "text/plain", "404 Not Found")
            try:
                if callable(route):
                    route(conn)
                else:
                    conn.sendall(route)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def as_json(value: Any) -> bytes:
    return response(json.dumps(value).encode())


def canvas(site: str, n: int | str, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"{site}/canvas/{n}", "type": "Canvas", "label": {"en": [f"c{n}"]},
            "items": [{"id": f"{site}/page/{n}", "type": "AnnotationPage", "items": [{
                "id": f"{site}/anno/{n}", "type": "Annotation", "motivation": "painting",
                "body": body, "target": f"{site}/canvas/{n}"}]}]}


def painting_jpeg(seed: int = 1) -> bytes:
    out = io.BytesIO()
    painting(seed).save(out, "JPEG", quality=90)
    return out.getvalue()


def response(body: bytes, ctype: str = "application/json", status: str = "200 OK",
             headers: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"{headers}Connection: close\r\n\r\n").encode("latin-1") + body


def run_iiif(url: str, index_dir: Path, **fetch: Any) -> tuple[Any, FetchReport]:
    opts = FetchOptions(**{"retries": 0, "timeout": 1.0, "backoff": 0.01, **fetch})
    with ArtIndex(index_dir, create=True) as idx:
        return index_iiif(url, idx, IndexOptions(backbone=FAKE,
                                                 extractor={"num_workers": 0}), opts)


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def select_the_whole_map(page: Any) -> dict[str, float]:
    """Shift-drag from corner to corner of the map (selecting every work); its box."""
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=6)
    page.mouse.up()
    page.keyboard.up("Shift")
    return dict(box)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def index_args(folder: Path, *extra: str) -> list[str]:
    return ["index", str(folder), "--backbone", FAKE, "--workers", "0", *extra]


def two_palettes(root: Path, per_group: int = 12) -> Path:
    """Warm and cool pictures (the fake backbone sees colour), with a genre column."""
    rows = ["path,genre"]
    for i in range(2 * per_group):
        warm = i % 2 == 0
        img = Image.new("RGB", (64, 48), (200 + i % 5 * 10, 60 + i, 30) if warm
                        else (30, 70 + i, 190 + i % 5 * 10))
        ImageDraw.Draw(img).ellipse((10 + i, 8, 30 + i, 30), fill=(i * 9 % 255, 128, 128))
        name = f"{'warm' if warm else 'cool'}_{i:02d}.png"
        img.save(root / name)
        rows.append(f"{name},{'sunset' if warm else 'seascape'}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root / "meta.csv"
