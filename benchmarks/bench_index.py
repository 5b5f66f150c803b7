"""Indexing and query speed of the default backbone on a real collection.

Measures, in one run on one machine: a naive loop (one image at a time, fp32, no workers),
model-only throughput on pre-decoded images, end-to-end `index_collection` on the whole
collection, an immediate re-run, and warm query latency. Prints a table and writes JSON to
benchmarks/results/. Usage:

    python benchmarks/bench_index.py [--data ../shared/data/art-dev] [--naive 300]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.extract import Extractor, prepare  # noqa: E402
from artsearch.images import decode_image, read_file, scan  # noqa: E402
from artsearch.index import ArtIndex  # noqa: E402
from artsearch.indexer import IndexOptions, index_collection  # noqa: E402
from artsearch.query import search  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


def naive_loop(spec: backbones.BackboneSpec, paths: list[Path], *, plain: bool) -> float:
    """images/s of the obvious script: decode, preprocess, run fp32 on one image, repeat.

    plain=True is what a user would write first: the unmodified timm model, NCHW, full-size
    JPEG decoding, torchvision transforms. plain=False keeps one image at a time in fp32 but
    uses artsearch's model (folded BatchNorm, no padding pass) and decoding.
    """
    if plain:
        import torchvision.transforms as T
        from PIL import Image

        model = backbones.pretrained_timm_model(spec)
        pre = spec.preprocess
        tf = T.Compose([T.Resize(pre.resize, interpolation=T.InterpolationMode.BICUBIC),
                        T.CenterCrop(pre.size), T.ToTensor(), T.Normalize(pre.mean, pre.std)])

        def embed(p: Path) -> None:
            with torch.inference_mode():
                x = tf(Image.open(p).convert("RGB"))[None]
                torch.nn.functional.normalize(model.forward_features(x).mean((2, 3)), dim=1)
    else:
        ex = Extractor(spec, precision="fp32", num_workers=0, device="cpu")

        def embed(p: Path) -> None:
            ex.embed_images([decode_image(read_file(p), min_side=spec.preprocess.resize)[0]])

    embed(paths[0])  # build and warm up
    start = time.perf_counter()
    for p in paths:
        embed(p)
    return len(paths) / (time.perf_counter() - start)


def cli_cold_run(data: Path) -> float:
    """Wall seconds of `artsearch index` in a fresh process on a fresh index."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "artsearch", "index", str(data), "--index",
                        str(Path(tmp) / "cold"), "-q"], check=True)
        return time.perf_counter() - start


def decode_only(spec: backbones.BackboneSpec, paths: list[Path]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    pixels = [prepare(decode_image(read_file(p), min_side=spec.preprocess.resize)[0],
                      spec.preprocess) for p in paths]
    return len(paths) / (time.perf_counter() - start), torch.stack(pixels)


def model_only(spec: backbones.BackboneSpec, pixels: torch.Tensor, precision: str) -> float:
    ex = Extractor(spec, precision=precision)  # type: ignore[arg-type]
    batch = ex.batch_size
    ex.embed_pixels(pixels[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(pixels), batch):
        ex.embed_pixels(pixels[i:i + batch])
    return len(pixels) / (time.perf_counter() - start)


def percentiles(samples: list[float]) -> dict[str, float]:
    arr = np.array(samples) * 1000
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "n": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/art-dev")
    parser.add_argument("--naive", type=int, default=300, help="images timed in the naive loop")
    parser.add_argument("--backbone", default=backbones.DEFAULT_BACKBONE)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no such collection; pass --data DIR")
    spec = backbones.get(args.backbone)
    entries, _ = scan(args.data)
    paths = [e.path for e in entries]
    rng = random.Random(0)
    sample = rng.sample(paths, min(args.naive, len(paths)))
    results: dict[str, object] = {"machine": machine(), "backbone": spec.name,
                                  "images": len(paths)}
    print(f"{len(paths)} images in {args.data}; {results['machine']['cpu']}, "  # type: ignore[index]
          f"{results['machine']['cores']} cores, gpu={results['machine']['gpu']}",  # type: ignore[index]
          flush=True)

    naive = naive_loop(spec, sample, plain=True)
    naive_rewritten = naive_loop(spec, sample, plain=False)
    decode_rate, pixels = decode_only(spec, sample)
    model_default = model_only(spec, pixels, "auto")
    model_fp32 = model_only(spec, pixels, "fp32")

    with tempfile.TemporaryDirectory() as tmp:
        with ArtIndex(Path(tmp) / "idx", create=True) as idx:
            first = index_collection(args.data, idx, IndexOptions())
        with ArtIndex(Path(tmp) / "idx", create=True) as idx:
            again = index_collection(args.data, idx, IndexOptions())
        with ArtIndex(Path(tmp) / "idx") as idx:
            rels = [e.rel for e in rng.sample(entries, 200)]
            search(idx, artwork=rels[0], k=10)  # warm: FAISS and SQLite loaded
            by_id = []
            for rel in rels:
                t = time.perf_counter()
                search(idx, artwork=rel, k=10)
                by_id.append(time.perf_counter() - t)
            ex = Extractor(spec, num_workers=0)
            ex.embed_images([decode_image(read_file(sample[0]))[0]])
            with tempfile.TemporaryDirectory() as qdir:
                by_image = []
                for i, p in enumerate(sample[:50]):
                    q = Path(qdir) / f"q{i}.png"  # a new file, so the model must run
                    ImageOps.mirror(decode_image(read_file(p))[0]).save(q)
                    t = time.perf_counter()
                    search(idx, image=q, k=10, make_extractor=lambda _sp: ex)
                    by_image.append(time.perf_counter() - t)

    cold = cli_cold_run(args.data)
    end_to_end = first.embedded / first.seconds
    results.update({
        "runtime": first.runtime,
        "naive_images_per_s": {"plain_timm": naive, "artsearch_model": naive_rewritten},
        "cli_cold_seconds": cold, "cli_cold_images_per_s": len(paths) / cold,
        "decode_only_images_per_s_1proc": decode_rate,
        "model_only_images_per_s": {"default": model_default, "fp32": model_fp32},
        "index": {"embedded": first.embedded, "seconds": first.seconds,
                  "end_to_end_images_per_s": end_to_end,
                  "embed_loop_images_per_s": first.images_per_second,
                  "speedup_over_naive": end_to_end / naive},
        "rerun": {"embedded": again.embedded, "seconds": again.seconds,
                  "fraction_of_first": again.seconds / first.seconds},
        "query_by_indexed_artwork": percentiles(by_id),
        "query_by_new_image": percentiles(by_image),
    })
    rows = [
        ("naive loop (1 image, fp32, no workers, plain timm)", f"{naive:.1f} img/s"),
        ("naive loop with artsearch's model rewrites", f"{naive_rewritten:.1f} img/s"),
        ("decode + preprocess only (1 process)", f"{decode_rate:.1f} img/s"),
        (f"model only ({first.runtime.get('precision')}, batch {first.runtime.get('batch_size')})",
         f"{model_default:.1f} img/s"),
        (f"model only (fp32, batch {first.runtime.get('batch_size')})", f"{model_fp32:.1f} img/s"),
        ("index end-to-end (scan, hash, decode, embed, store)", f"{end_to_end:.1f} img/s"),
        ("  of which the embedding loop", f"{first.images_per_second:.1f} img/s"),
        ("  speed-up over the naive loop", f"{end_to_end / naive:.2f}x"),
        ("`artsearch index` in a fresh process (wall, incl. imports)",
         f"{cold:.1f} s = {len(paths) / cold:.1f} img/s"),
        (f"first index of {first.embedded} images", f"{first.seconds:.2f} s"),
        ("immediate re-run (nothing to embed)", f"{again.seconds:.2f} s "
         f"({again.seconds / first.seconds:.1%} of first)"),
        ("query by indexed artwork, k=10 (p50 / p99)",
         f"{percentiles(by_id)['p50_ms']:.2f} / {percentiles(by_id)['p99_ms']:.2f} ms"),
        ("query by new image, k=10 (p50 / p99)",
         f"{percentiles(by_image)['p50_ms']:.1f} / {percentiles(by_image)['p99_ms']:.1f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | result |\n|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    print(f"wrote {write_results('index', results, args.out)}")


if __name__ == "__main__":
    main()
