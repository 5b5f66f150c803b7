"""`artsearch serve` under load: a synthetic 100,000-work index, real HTTP, one process.

    python benchmarks/bench_serve.py [--works 100000] [--requests 200] [--clients 20]

The index is made directly (no images): catalogue rows drawn from the dev set's metadata
(artist, style, genre, date, source, licence), and two spaces whose vectors are the dev set's
own content (Lite0 final, 1280-d) and style (Lite0 meanstd, 3,104-d) vectors plus Gaussian
noise of the dev set's spread, renormalised. Thumbnails are placeholders. A uvicorn server
then answers, over loopback: a work page with both spaces' neighbours, a facet browse, a
text search, and an upload query of a 1-megapixel JPEG (the real Lite0 model). Each is timed
request by request (p50, p99); then `--clients` concurrent clients mix them, and every error
is counted. First, the map: its page, its layout the first time and once kept, one atlas
sheet. Targets (issue 12): work page p50 <= 60 ms, p99 <= 200 ms; facet browse p50 <= 60
ms; upload p50 <= 150 ms; 20 clients without error.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "art-dev"


def dev_vectors(space_args: list[str], work: Path) -> np.ndarray:
    """The dev set's vectors in one space (indexed once into `work`)."""
    from artsearch.index import ArtIndex
    from artsearch.indexing import IndexOptions, index_collection

    opts = IndexOptions(space=space_args[0], pooling=space_args[1])
    with ArtIndex(work / "dev-index", create=True) as idx:
        index_collection(DEV, idx, opts)
        return idx.vectors(idx.space(space_args[0])).everything()[1]


def build_index(path: Path, n: int, seed: int = 0) -> None:
    """A synthetic index of n works in spaces 'content' and 'style'."""
    import csv

    from sqlalchemy import insert

    from artsearch import backbones
    from artsearch.index import ArtIndex
    from artsearch.store import Artwork, Embedding, Space

    rng = np.random.default_rng(seed)
    with (DEV / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    work = path.parent / "dev-work"
    spaces = {"content": dev_vectors(["content", "avg"], work),
              "style": dev_vectors(["style", "meanstd"], work)}
    spec = backbones.get("efficientnet-lite0")
    with ArtIndex(path, create=True) as idx:
        idx.lock()
        idx.bind_root(DEV)
        dev_idx = ArtIndex(work / "dev-index")
        picks = rng.integers(0, len(rows), n)
        now = __import__("datetime").datetime(2026, 12, 1)
        with idx.store.session() as s, s.begin():
            s.execute(insert(Artwork), [{
                "path": f"synthetic/{i:06d}.jpg", "sha256": f"{i:064x}", "size": 1000,
                "mtime": 0.0, "width": 512, "height": 400,
                "title": f"{rows[j].get('artist') or 'Untitled'} study {i}",
                "artist": rows[j].get("artist") or None, "style": rows[j].get("style") or None,
                "genre": rows[j].get("genre") or None, "date": str(1400 + (i % 600)),
                "source": rows[j].get("source") or None, "license": rows[j].get("license")
                or None, "added_at": now, "updated_at": now} for i, j in enumerate(picks)])
        for name, base in spaces.items():
            dev_space = dev_idx.space(name)
            sp = idx.ensure_space(name, spec, layers=tuple(dev_space.layer.split(",")),
                                  pooling=dev_space.pooling, dims=base.shape[1],
                                  factory="IDMap2,Flat")
            if dev_space.pooling == "meanstd":
                idx.save_pooling_params(sp, dev_idx.pooling_params(dev_space) or {})
            spread = float(np.std(base - base.mean(0)))
            vectors = base[picks % len(base)] + rng.normal(0, spread, (n, base.shape[1]))
            vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(
                np.float32)
            with idx.store.session() as s, s.begin():
                s.execute(insert(Embedding), [{"space_id": sp.id, "artwork_id": i + 1,
                                               "faiss_id": i, "sha256": f"{i:064x}"}
                                              for i in range(n)])
                row = s.get(Space, sp.id)
                row.next_faiss_id = n
            vec = idx.vectors(idx.space(name))
            vec.add(range(n), vectors)
            idx.save_vectors(idx.space(name))
            built = idx.update_ann(idx.space(name), "auto")  # as `artsearch index` would
            if built:
                print(f"  {name}: {built.get('type')} index, recall@10 "
                      f"{built.get('recall10', '-')}, {built.get('build_seconds', '-')} s",
                      flush=True)
        dev_idx.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {"p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1), "n": len(ms)}


def main(argv: list[str] | None = None) -> dict[str, object]:
    import httpx
    import uvicorn
    from PIL import Image

    from artsearch.web import build

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--works", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200, help="sequential requests per kind")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if not DEV.is_dir():
        sys.exit(f"{DEV}: the dev set is needed for the synthetic index's statistics")
    work = Path(tempfile.mkdtemp(prefix="artsearch-serve-"))
    try:
        started = time.perf_counter()
        build_index(work / "index", args.works)
        built = time.perf_counter() - started
        print(f"built a {args.works:,}-work index in {built:.0f} s", flush=True)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(build(work / "index", port=port),
                                               host="127.0.0.1", port=port,
                                               log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        rng = np.random.default_rng(1)
        photo = Image.open(sorted(DEV.rglob("*.jpg"))[0]).convert("RGB").resize((1155, 866))
        buf = io.BytesIO()
        photo.save(buf, format="JPEG", quality=90)
        upload = buf.getvalue()
        kinds = {
            "work page (2 spaces)": lambda c: c.get(
                f"/work/{int(rng.integers(1, args.works))}"),
            "work page + blend": lambda c: c.get(
                f"/work/{int(rng.integers(1, args.works))}?blend=40"),
            "facet browse": lambda c: c.get(
                "/", params={"where": f"genre={rng.choice(['portrait', 'landscape'])}"}),
            "text search": lambda c: c.get("/", params={"q": "study"}),
            "neighbours JSON": lambda c: c.get(
                f"/api/works/{int(rng.integers(1, args.works))}/neighbours?k=10"),
            "upload 1 MP JPEG": lambda c: c.post("/api/query", files={
                "image": ("photo.jpg", upload, "image/jpeg")}),
        }
        rows: dict[str, dict[str, float]] = {}
        with httpx.Client(base_url=base, timeout=600) as c:
            # The map: its page, its layout laid out the first time (PCA above 10,000 works)
            # and then kept, and one atlas sheet of 256 thumbnails.
            timed: dict[str, float] = {}
            for name, url in (("page", "/map"), ("layout, first", "/api/map"),
                              ("layout, kept", "/api/map"),
                              ("layout by genre", "/api/map?colour=genre"),
                              ("atlas sheet, first", "/map/atlas/content/0.jpg"),
                              ("atlas sheet, kept", "/map/atlas/content/0.jpg")):
                t = time.perf_counter()
                r = c.get(url)
                timed[name] = time.perf_counter() - t
                assert r.status_code == 200, (url, r.status_code, r.text[:200])
                if name == "layout, kept":
                    timed["layout bytes"] = len(r.content)
            rows["map"] = {k: round(v * 1000, 1) if "bytes" not in k else v
                           for k, v in timed.items()}
            print("map (ms):", rows["map"], flush=True)
        with httpx.Client(base_url=base, timeout=60) as c:
            for kind, call in kinds.items():
                call(c)  # warm: first model build, first file reads
                times = []
                for _ in range(args.requests if "upload" not in kind
                               else max(20, args.requests // 4)):
                    t = time.perf_counter()
                    r = call(c)
                    times.append(time.perf_counter() - t)
                    assert r.status_code == 200, (kind, r.status_code, r.text[:200])
                rows[kind] = percentiles(times)
                print(f"{kind:<22} p50 {rows[kind]['p50_ms']:>7.1f} ms  "
                      f"p99 {rows[kind]['p99_ms']:>7.1f} ms", flush=True)

        async def client_loop(n: int, out: list[float], errors: list[str]) -> None:
            names = list(kinds)
            async with httpx.AsyncClient(base_url=base, timeout=120) as ac:
                for i in range(n):
                    kind = names[(i * 7 + len(out)) % len(names)]
                    t = time.perf_counter()
                    try:
                        if "upload" in kind:
                            r = await ac.post("/api/query", files={
                                "image": ("photo.jpg", upload, "image/jpeg")})
                        else:
                            url = (f"/work/{int(rng.integers(1, args.works))}"
                                   if "work" in kind else "/")
                            r = await ac.get(url)
                        if r.status_code != 200:
                            errors.append(f"{kind}: {r.status_code}")
                    except httpx.HTTPError as e:
                        errors.append(f"{kind}: {e!r}")
                    out.append(time.perf_counter() - t)

        async def crowd() -> tuple[list[float], list[str], float]:
            out: list[float] = []
            errors: list[str] = []
            t = time.perf_counter()
            await asyncio.gather(*(client_loop(10, out, errors) for _ in range(args.clients)))
            return out, errors, time.perf_counter() - t

        times, errors, wall = asyncio.run(crowd())
        rows[f"{args.clients} concurrent clients"] = {
            **percentiles(times), "errors": len(errors),
            "requests_per_s": round(len(times) / wall, 1)}
        print(f"{args.clients} clients: {len(times)} requests, {len(errors)} errors, "
              f"p50 {rows[f'{args.clients} concurrent clients']['p50_ms']} ms, "
              f"p99 {rows[f'{args.clients} concurrent clients']['p99_ms']} ms", flush=True)
        server.should_exit = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {"machine": machine(), "works": args.works, "build_seconds": round(built, 1),
               "rows": rows, "errors": errors[:20],
               "targets": {"work page p50_ms": 60, "work page p99_ms": 200,
                           "facet browse p50_ms": 60, "upload p50_ms": 150}}
    path = write_results("serve", results, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
