"""Extraction speed on this machine's CPU or GPU, as images/s and as a share of a ceiling.

For each backbone: model-only throughput (pre-decoded pixels already on the device) for each
precision and batch size, decode-only throughput of the worker processes, and end-to-end
`Extractor.iter_files` (read, decode in workers, embed) at the default batch size; optionally
`index_collection` end-to-end (SQLite and FAISS too). A matrix-multiply probe measures the
FLOP/s this device achieves now; the model's FLOPs per image turn that into an images/s
ceiling, so figures from busy or different machines can be compared as fractions.

Speed does not depend on the weights' values, so backbones whose weights are not on the
machine run with seeded random weights (said in the output). Images are synthetic paintings
(seeded; 512 x 384 JPEGs) unless --data names a folder.

    python benchmarks/bench_speed.py [--backbones resnet50,efficientnet-lite0] [--images 4096]
        [--batch-sizes 64,128,256] [--precisions fp32,bf16] [--index] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.backbones import BackboneSpec  # noqa: E402
from artsearch.errors import WeightsError  # noqa: E402
from artsearch.extract import Extractor, ImageFiles, collate_batch, pick_device  # noqa: E402
from artsearch.images import DEFAULT_MAX_PIXELS  # noqa: E402

HERE = Path(__file__).resolve().parent


def synthetic_image(args: tuple[Path, int]) -> None:
    from PIL import Image, ImageDraw, ImageFilter

    path, seed = args
    rng = random.Random(seed)
    size = (512, 384) if seed % 3 else (384, 512)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(24):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        draw.ellipse((x0, y0, x0 + rng.randrange(20, 160), y0 + rng.randrange(20, 120)),
                     fill=tuple(rng.randrange(256) for _ in range(3)))
    img = img.filter(ImageFilter.GaussianBlur(1.5))  # soft edges: JPEG sizes like paintings
    img.save(path, quality=90)


def make_images(folder: Path, n: int, first_seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img_{i:06d}.jpg" for i in range(n)]
    todo = [(p, first_seed + i) for i, p in enumerate(paths) if not p.exists()]
    with multiprocessing.Pool() as pool:
        pool.map(synthetic_image, todo, chunksize=64)
    return paths


def with_weights_or_random(name: str) -> tuple[BackboneSpec, str]:
    """The registered backbone, or the same architecture with seeded random weights."""
    spec = backbones.get(name)
    try:
        spec.weights.verified_path()
        return spec, "pretrained"
    except WeightsError:
        pass
    path = Path(tempfile.gettempdir()) / f"artsearch-random-{name}.pth"
    if not path.exists():
        torch.manual_seed(0)
        if spec.family == "torchvision":
            import torchvision

            torch.save(torchvision.models.get_model(spec.architecture, weights=None)
                       .state_dict(), path)
        else:
            import timm

            torch.save(timm.create_model(spec.architecture).state_dict(), path)
    if spec.accepts_weights:
        return spec.with_weights(path), "random weights (speed only)"
    return dataclasses.replace(spec, weights=dataclasses.replace(
        spec.weights, locate=lambda: path, sha256=None)), "random weights (speed only)"


def flops_per_image(ex: Extractor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    size = ex.spec.preprocess.size
    pixels = torch.randint(0, 255, (1, 3, size, size), dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter:
        ex.feature_maps(pixels)
    return float(counter.get_total_flops())


def matmul_ceiling(device: torch.device, dtype: torch.dtype) -> float:
    """Achieved FLOP/s of a large square matrix product (the device's practical peak)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 10 if device.type == "cuda" else 3
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - started)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_only(ex: Extractor, batch: int, seconds: float = 3.0) -> float:
    size = ex.spec.preprocess.size
    pixels = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, device=ex.device)
    for _ in range(3):
        ex.embed_pixels(pixels)
    sync(ex.device)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        ex.embed_pixels(pixels)
        done += batch
    sync(ex.device)
    return done / (time.perf_counter() - started)


def decode_only(spec: BackboneSpec, paths: list[Path], workers: int, batch: int) -> float:
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, spec.preprocess, DEFAULT_MAX_PIXELS), batch_size=batch,
        num_workers=workers, collate_fn=collate_batch, prefetch_factor=4 if workers else None)
    started = time.perf_counter()
    n = sum(len(items) for items, _ in loader)
    return n / (time.perf_counter() - started)


def end_to_end(ex: Extractor, paths: list[Path]) -> float:
    list(ex.iter_files(paths[:256]))  # warm: workers, cuDNN autotuning
    sync(ex.device)
    started = time.perf_counter()
    n = sum(len(b.indices) for b in ex.iter_files(paths))
    sync(ex.device)
    return n / (time.perf_counter() - started)


def decode_fidelity(spec: BackboneSpec, paths: list[Path], device: str) -> dict[str, float]:
    """Cosine between vectors from worker (Pillow) decoding and from nvJPEG decoding."""
    got = {}
    for decode in ("cpu", "gpu"):
        ex = Extractor(spec, device=device, precision="fp32", decode=decode)  # type: ignore[arg-type]
        vecs = {}
        for b in ex.iter_files(paths):
            vecs.update(zip(b.indices, b.vectors, strict=True))
        got[decode] = vecs
    cos = np.array([float(got["cpu"][i] @ got["gpu"][i]) for i in got["cpu"]])
    return {"mean_cosine": round(float(cos.mean()), 5), "min_cosine": round(float(cos.min()), 5)}


def index_end_to_end(spec: BackboneSpec, folder: Path, device: str, decode: str
                     ) -> dict[str, Any]:
    """index_collection on the folder, then warm query latency by id and by new image."""
    from artsearch.index import ArtIndex
    from artsearch.indexer import IndexOptions, index_collection
    from artsearch.query import search

    backbones.register(spec, replace=True)
    outside = make_images(folder.parent / (folder.name + "-queries"), 50, first_seed=10**6)
    with tempfile.TemporaryDirectory() as tmp, ArtIndex(Path(tmp) / "idx", create=True) as idx:
        report = index_collection(folder, idx, IndexOptions(
            backbone=spec.name, extractor={"device": device, "decode": decode}))
        ex = Extractor(spec, device=device, num_workers=0)
        latency: dict[str, list[float]] = {"by_id": [], "by_image": []}
        rng = random.Random(0)
        for _ in range(220):
            started = time.perf_counter()
            search(idx, artwork=rng.randrange(1, report.total + 1), k=10)
            latency["by_id"].append(time.perf_counter() - started)
        for i in range(60):
            started = time.perf_counter()
            search(idx, image=outside[i % len(outside)], k=10,
                   make_extractor=lambda _sp: ex)
            latency["by_image"].append(time.perf_counter() - started)
    out: dict[str, Any] = {"embedded": report.embedded, "seconds": round(report.seconds, 2),
                           "images_per_s": round(report.embedded / report.seconds, 1),
                           "embed_images_per_s": round(report.images_per_second, 1)}
    for kind, times in latency.items():
        warm = np.array(times[10:]) * 1e3  # the first queries load the model and the index
        out[f"query_{kind}_ms"] = {"p50": round(float(np.percentile(warm, 50)), 2),
                                   "p99": round(float(np.percentile(warm, 99)), 2)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", default="efficientnet-lite0,resnet50")
    ap.add_argument("--images", type=int, default=None,
                    help="synthetic images [default: 4096 on a GPU, 512 on a CPU]")
    ap.add_argument("--data", type=Path, default=None, help="a folder of images instead")
    ap.add_argument("--batch-sizes", default=None, help="[default: 64,128,256 GPU; 12,32 CPU]")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--index", action="store_true", help="also run index_collection")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    from benchmarks._env import machine, write_results

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    if not gpu:
        print("no GPU here: CPU rows only (GPU rows are skipped)", file=sys.stderr)
    if gpu:
        torch.backends.cudnn.benchmark = True
    n = args.images or (4096 if gpu else 512)
    folder = args.data or Path(tempfile.gettempdir()) / "artsearch-speed-images"
    paths = (sorted(p for p in folder.rglob("*.jpg")) if args.data else make_images(folder, n))
    batches = [int(b) for b in (args.batch_sizes or ("64,128,256" if gpu else "12,32"))
               .split(",")]
    ceilings = {p: matmul_ceiling(device, torch.float32 if p == "fp32" else torch.bfloat16)
                for p in args.precisions.split(",")}
    rows: list[dict[str, Any]] = []
    for name in args.backbones.split(","):
        spec, weights = with_weights_or_random(name)
        base = Extractor(spec, device=str(device), precision="fp32", num_workers=args.workers)
        flops = flops_per_image(base)
        row: dict[str, Any] = {"backbone": name, "weights": weights, "gflops_per_image":
                               round(flops / 1e9, 3), "model_only": {}}
        for precision in args.precisions.split(","):
            ex = Extractor(spec, device=str(device), precision=precision,  # type: ignore[arg-type]
                           num_workers=args.workers)
            for b in batches:
                ips = model_only(ex, b)
                row["model_only"][f"{precision} b{b}"] = {
                    "images_per_s": round(ips, 1),
                    "of_ceiling": round(ips / (ceilings[precision] / flops), 4)}
        ex = Extractor(spec, device=str(device), num_workers=args.workers)
        row["decode_only"] = round(decode_only(spec, paths, ex.num_workers, ex.batch_size), 1)
        for decode in (["cpu", "gpu"] if gpu else ["cpu"]):
            ex = Extractor(spec, device=str(device), num_workers=args.workers,
                           decode=decode)  # type: ignore[arg-type]
            ips = end_to_end(ex, paths)
            row[f"end_to_end_{decode}_decode"] = {
                "images_per_s": round(ips, 1), "precision": ex.precision,
                "batch": ex.batch_size, "workers": ex.num_workers,
                "of_ceiling": round(ips / (ceilings[ex.precision] / flops), 4)}
        row["end_to_end"] = max((v for k, v in row.items() if k.startswith("end_to_end_")),
                                key=lambda v: v["images_per_s"])
        if gpu:
            row["gpu_decode_fidelity"] = decode_fidelity(spec, paths[:512], str(device))
        if args.index:
            row["index_collection"] = index_end_to_end(
                dataclasses.replace(spec, name=f"{name}-speed"), folder, str(device),
                "gpu" if gpu else "cpu")
        rows.append(row)
        print(row, flush=True)

    print(f"\n{len(paths)} images; device {device}"
          + (f" ({torch.cuda.get_device_name(0)})" if gpu else "")
          + "; matmul ceiling " + ", ".join(f"{p} {c / 1e12:.1f} TFLOP/s"
                                            for p, c in ceilings.items()))
    print("| backbone | weights | GFLOPs/img | model-only best | decode-only (workers) | "
          "end-to-end (best decode) | end-to-end share of ceiling |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        best_key, best = max(r["model_only"].items(), key=lambda kv: kv[1]["images_per_s"])
        e = r["end_to_end"]
        print(f"| {r['backbone']} | {r['weights']} | {r['gflops_per_image']} | "
              f"{best['images_per_s']:.0f} img/s ({best_key}) | {r['decode_only']:.0f} img/s "
              f"({e['workers']}) | {e['images_per_s']:.0f} img/s ({e['precision']}, batch "
              f"{e['batch']}) | {100 * e['of_ceiling']:.1f}% |")
    for r in rows:
        q = r.get("index_collection")
        if q:
            print(f"| {r['backbone']} index_collection: {q['images_per_s']:.0f} img/s; query by "
                  f"id p50/p99 {q['query_by_id_ms']['p50']}/{q['query_by_id_ms']['p99']} ms, "
                  f"by new image {q['query_by_image_ms']['p50']}/"
                  f"{q['query_by_image_ms']['p99']} ms |")
    results = {"machine": machine(), "device": str(device), "images": len(paths),
               "gpu_rows": "measured" if gpu else "skipped: no GPU on this machine",
               "ceilings_flops": ceilings, "rows": rows}
    path = write_results("speed", results, args.out)
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    main()
