"""Does style transfer do what it says, judged by artsearch itself? And how long does it take?

20 content/style pairs from the example collection (seeded: content and style from different
works). Each method stylises the content with the style; the result is then used as a query
(not indexed) against an index of the example collection with the content space (Lite0 avg)
and a Gram style space (VGG16-HED gram, as `make example` builds): the style image should be
among the result's 10 nearest in the style space, and the content image among its 10 nearest
in the content space. For Gatys, the style loss at the last step against the first.

    artsearch index examples/collection --metadata examples/collection/metadata.csv \
        --index /tmp/exidx
    artsearch index examples/collection --index /tmp/exidx --space style \
        --backbone vgg16-hed --pooling gram
    python benchmarks/bench_stylize.py --index /tmp/exidx [--pairs 20] [--steps 300]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch.index import ArtIndex  # noqa: E402
from artsearch.query import search  # noqa: E402
from artsearch.stylize import stylize_fast, stylize_gatys  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples" / "collection"


def rank_of(idx: ArtIndex, picture: Any, space: str, target: str, k: int = 10) -> int | None:
    """Where `target` (an indexed path) ranks among the picture's k nearest in `space`."""
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    result = search(idx, image=Path("stylised.png"), image_bytes=buf.getvalue(), space=space,
                    k=k)
    return next((h.rank for h in result.hits if h.path == target), None)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=256, help="Gatys size; fast runs at 512")
    ap.add_argument("--style-weight", type=float, default=0.3)
    ap.add_argument("--methods", default="fast,gatys")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    paths = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*.jpg"))
    rng = np.random.default_rng(0)
    pairs = []
    while len(pairs) < args.pairs:
        c, s = rng.choice(len(paths), 2, replace=False)
        if (paths[c], paths[s]) not in pairs:
            pairs.append((paths[c], paths[s]))
    rows = []
    with ArtIndex(args.index) as idx:
        for method in args.methods.split(","):
            for n, (c, s) in enumerate(pairs, 1):
                content, style = Image.open(EXAMPLES / c), Image.open(EXAMPLES / s)
                start = time.perf_counter()
                if method == "fast":
                    out = stylize_fast(content, style, size=512)
                else:
                    out = stylize_gatys(content, style, size=args.size, steps=args.steps,
                                        style_weight=args.style_weight)
                seconds = time.perf_counter() - start
                row = {"method": method, "content": c, "style": s, "seconds": seconds,
                       "style_rank": rank_of(idx, out.image, "style", s),
                       "content_rank": rank_of(idx, out.image, "content", c)}
                if out.history:
                    row["style_loss"] = [out.history[0]["style"], out.history[-1]["style"]]
                    row["fall"] = out.history[0]["style"] / max(out.history[-1]["style"], 1e-12)
                rows.append(row)
                print(n, method, c, s, f"{seconds:.1f} s", row["style_rank"],
                      row["content_rank"], f"fall {row.get('fall', 0):.0f}x", flush=True)
    summary = {}
    for method in args.methods.split(","):
        got = [r for r in rows if r["method"] == method]
        summary[method] = {
            "pairs": len(got),
            "style_in_top10": sum(r["style_rank"] is not None for r in got) / len(got),
            "content_in_top10": sum(r["content_rank"] is not None for r in got) / len(got),
            "seconds_median": float(np.median([r["seconds"] for r in got])),
            **({"fall_min": min(r["fall"] for r in got),
                "fall_median": float(np.median([r["fall"] for r in got])),
                "fall_10x": sum(r["fall"] >= 10 for r in got) / len(got)}
               if method == "gatys" else {})}
    print("| method | pairs | style image in style top 10 | content image in content top 10 "
          "| style loss fall (min / median) | s per picture (median) |")
    print("|---|---|---|---|---|---|")
    for method, m in summary.items():
        fall = (f"{m['fall_min']:.0f}x / {m['fall_median']:.0f}x" if "fall_min" in m else "–")
        print(f"| {method} | {m['pairs']} | {m['style_in_top10']:.0%} | "
              f"{m['content_in_top10']:.0%} | {fall} | {m['seconds_median']:.1f} |")
    name = "stylize-" + "-".join(args.methods.split(","))
    path = write_results(name, {"machine": machine(), "steps": args.steps,
                                "style_weight": args.style_weight, "size": args.size,
                                "summary": summary, "rows": rows}, args.out)
    print(f"results: {path}")
    return summary


if __name__ == "__main__":
    main()
