"""Details in a small collection (issue 37 §2): ten details of 4-12 % of a painting, cut from
ten of the example collection's works and added to it; how many `artsearch duplicates`
finds typed as a detail or crop of the right work, against `query --in-regions` (the motif
search, each detail asked of the region index). Real Lite0 weights, the product's commands.

    python benchmarks/bench_details_small.py              # results/details-small-*.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch.cli import cli  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples" / "collection"


def cut_details(root: Path, count: int = 10, seed: int = 0) -> dict[str, str]:
    """Copy the example collection into root and add `count` details (each 4-12 % of its
    painting's area, somewhere inside it, enlarged 1.5x as a photograph of a detail would
    be); {detail path: its source's path}."""
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("metadata.csv"))
    rng = np.random.default_rng(seed)
    sources = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    picks = rng.choice(len(sources), count, replace=False)
    truth = {}
    (root / "details").mkdir()
    for n, i in enumerate(sorted(picks.tolist())):
        src = Image.open(root / sources[i]).convert("RGB")
        w, h = src.size
        share = rng.uniform(0.04, 0.12)
        aspect = rng.uniform(0.75, 1.33)
        dw = int(round(w * np.sqrt(share * aspect * h / w) * np.sqrt(w / h)))
        dh = int(round(share * w * h / max(dw, 1)))
        dw, dh = min(dw, w - 2), min(dh, h - 2)
        x, y = int(rng.integers(0, w - dw)), int(rng.integers(0, h - dh))
        part = src.crop((x, y, x + dw, y + dh)).resize((int(dw * 1.5), int(dh * 1.5)))
        name = f"details/detail_{n:02d}.jpg"
        part.save(root / name, quality=90)
        truth[name] = sources[i]
    return truth


def run(out_dir: Path) -> dict[str, Any]:
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        root, index = Path(tmp) / "coll", Path(tmp) / "idx"
        truth = cut_details(root)
        started = time.perf_counter()
        res = runner.invoke(cli, ["index", str(root), "--index", str(index), "--regions",
                                  "--precision", "fp32"])
        assert res.exit_code == 0, res.output
        index_seconds = time.perf_counter() - started
        started = time.perf_counter()
        res = runner.invoke(cli, ["duplicates", "--index", str(index), "--json"])
        assert res.exit_code == 0, res.output
        dup_seconds = time.perf_counter() - started
        pairs = json.loads(res.stdout)["pairs"]
        found = {}
        for p in pairs:
            for part, whole in ((p["path_a"], p["path_b"]), (p["path_b"], p["path_a"])):
                if part in truth and truth[part] == whole and p["type"] in ("detail", "crop"):
                    found[part] = p["type"]
        motif = {}
        for detail, source in truth.items():
            q = runner.invoke(cli, ["query", str(root / detail), "--index", str(index),
                                    "--in-regions", "-k", "3", "--json"])
            hits = [h["path"] for h in json.loads(q.stdout)["results"]
                    if h["path"] != detail]
            motif[detail] = bool(hits) and hits[0] == source
    report = {"machine": machine(), "details": len(truth),
              "duplicates_found": len(found), "duplicates_types": found,
              "motif_found": sum(motif.values()), "index_seconds": round(index_seconds, 1),
              "duplicates_seconds": round(dup_seconds, 1), "pairs": len(pairs)}
    path = write_results("details-small", report, out_dir)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))
    print(f"wrote {path}")
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    run(ap.parse_args(argv).out)


if __name__ == "__main__":
    main()
