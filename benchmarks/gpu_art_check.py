"""The GPU check of the art space (issue 26, part 6): how deep tuning pays, and Lite2, on the
same artist split as the CPU run, on a machine with a GPU.

A device machine receives at most 64 MiB, so this runs on a subset of art-train: every work of
some of the CPU run's held-out artists (judged) and of some of its training artists (learnt
from), made by `--make-bundle` here, with the base weights in float16 (both networks read them
back as float32; the untuned and tuned spaces compared share them). Each configuration caches
its frozen stages and trains with the default recipe; the table gives held-out same-artist mAP
untuned and tuned, and times.

    python benchmarks/gpu_art_check.py --make-bundle .gpu          # here: the data to carry
    python benchmarks/gpu_art_check.py --bundle .gpu --device cuda --out $OUT   # there
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.backbones import WeightsSource  # noqa: E402
from artsearch.learn import (  # noqa: E402
    LearnOptions,
    prepare,
    read_corpus,
    split_by_label,
    train,
)

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "data" / "art-train"
CONFIGS = [("efficientnet-lite0", 6), ("efficientnet-lite0", 5), ("efficientnet-lite0", 4),
           ("efficientnet-lite0", 3), ("efficientnet-lite2", 6), ("efficientnet-lite2", 5)]


INTS = ("epochs", "per_label", "batch", "views", "tune_from")


def variant(text: str, base: LearnOptions) -> tuple[str, LearnOptions]:
    """NAME:key=value,... over LearnOptions' training fields (style: the style label's
    weight; schedule: constant or cosine)."""
    name, _, settings = text.partition(":")
    opts = base
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        if key == "style":
            opts = dataclasses.replace(opts, labels=((opts.main, 1.0), ("style", float(value))))
        elif key == "schedule":
            opts = dataclasses.replace(opts, schedule=value)
        elif key in INTS:
            opts = dataclasses.replace(opts, **{key: int(value)})
        else:
            opts = dataclasses.replace(opts, **{key: float(value)})
    return name, opts


HELD_OUT_HEAD = ("held-out artist mAP untuned | tuned | style mAP@10 untuned | tuned | "
                 "content artist mAP@10 untuned | tuned")


def held_out_cells(before: dict[str, float], after: dict[str, float]) -> str:
    """The held-out measures, untuned and tuned, as table cells (HELD_OUT_HEAD's)."""
    return " | ".join(f"{m[k]:.3f}" for k in ("style artist mAP", "style style mAP@10",
                                              "content artist mAP@10") for m in (before, after))


def make_bundle(out: Path, train_works: int, val_works: int, seed: int = 0) -> None:
    """Copy a subset of art-train with the CPU run's split, and float16 base weights."""
    import torch

    works = read_corpus(CORPUS, CORPUS / "metadata.csv", ["artist", "style"])
    train_rows, val_rows = split_by_label(works, "artist", 0.15, seed)
    rng = np.random.default_rng(seed)

    def by_artist(rows: list[int], budget: int) -> list[int]:
        artists: dict[str, list[int]] = {}
        for r in rows:
            artists.setdefault(works[r].labels["artist"], []).append(r)
        chosen: list[int] = []
        for a in rng.permutation(sorted(artists)):
            if len(chosen) + len(artists[a]) > budget:
                continue
            chosen += artists[a]
        return chosen

    judged = by_artist(val_rows, val_works)
    keep = by_artist(train_rows, train_works) + judged
    held = sorted({works[r].labels["artist"] for r in judged})
    data = out / "art-sub"
    if data.exists():
        shutil.rmtree(data)
    rows = ["path,artist,style"]
    for r in keep:
        rel = works[r].path.relative_to(CORPUS)
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(works[r].path, data / rel)
        rows.append(f'"{rel.as_posix()}",{works[r].labels["artist"]},{works[r].labels["style"]}')
    (data / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (out / "held-out.txt").write_text("\n".join(held) + "\n", encoding="utf-8")
    for name in ("efficientnet-lite0", "efficientnet-lite2"):
        path = backbones.get(name).weights.verified_path()
        assert path is not None
        state = torch.load(path, map_location="cpu", weights_only=True)
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
                   out / f"{name}-fp16.pth")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {len(keep)} works ({len(held)} held-out artists), {size / 2**20:.1f} MiB")


def use_bundle_weights(bundle: Path) -> None:
    """Point the Lite base specs at the bundle's weights (float16 read back as float32)."""
    import torch

    for name in ("efficientnet-lite0", "efficientnet-lite2"):
        state = torch.load(bundle / f"{name}-fp16.pth", map_location="cpu", weights_only=True)
        full = Path(f"/tmp/{name}-from-fp16.pth")
        torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                   full)
        source = WeightsSource(f"{name} base weights read from float16", lambda p=full: p,
                               sha256=None, path=full)
        spec = backbones.get(name)
        backbones.register(dataclasses.replace(spec, weights=source,
                                               extra={**spec.extra, "base_weights": source}),
                           replace=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make-bundle", type=Path, default=None, metavar="DIR")
    ap.add_argument("--train-works", type=int, default=2800)
    ap.add_argument("--val-works", type=int, default=900)
    ap.add_argument("--bundle", type=Path, default=None, metavar="DIR")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--configs", default=None, metavar="BACKBONE:STAGE,...",
                    help="[default: every one of CONFIGS]")
    ap.add_argument("--limit", type=int, default=None, help="works (a smoke run)")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4, 3e-4])
    ap.add_argument("--grid", action="append", default=[], metavar="NAME:key=value,...",
                    help="recipes to train from the first configuration's cache (crop_min "
                         "prepares again)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if args.make_bundle:
        make_bundle(args.make_bundle, args.train_works, args.val_works)
        return {}
    assert args.bundle is not None
    import torch

    use_bundle_weights(args.bundle)
    data = args.bundle / "art-sub"
    works = read_corpus(data, data / "metadata.csv", ["artist", "style"])
    held = frozenset((args.bundle / "held-out.txt").read_text(encoding="utf-8").split("\n")) - {""}
    if args.limit:
        works = works[:: max(1, len(works) // args.limit)]
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.configs.split(",")] \
        if args.configs else CONFIGS
    rows: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    if args.grid:
        return grid(works, held, args, configs[0])
    for name, tune_from in configs:
        opts = LearnOptions(backbone=name, tune_from=tune_from, epochs=args.epochs,
                            device=args.device, held_out=held, batch=128)
        started = time.perf_counter()
        try:
            prep = prepare(works, opts, progress=lambda m: print(m, flush=True))
            for lr in args.lr:
                run = dataclasses.replace(opts, lr=lr)
                result = train(prep, Path(f"/tmp/{name}-{tune_from}.pt"), run,
                               progress=lambda m: print(f"  {m}", flush=True))
                rows.append(_row(name, tune_from, lr, result, started))
                # Kept as it goes: a run cut off at its limit still reports what it did.
                (args.out / "gpu-art-check-rows.json").write_text(json.dumps(rows, indent=1))
            del prep
        except (RuntimeError, MemoryError) as e:  # one configuration's failure is a row
            print(f"{name} from stage {tune_from}: {e}", flush=True)
        torch.cuda.empty_cache()
    print(f"\n| backbone | tuned from | lr | {HELD_OUT_HEAD} | best epoch | cache s | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | stage {r['tune_from']} | {r['lr']:g} | "
              f"{held_out_cells(r['before'], r['after'])} | {r['best_epoch']} | "
              f"{r['cache_seconds']:.0f} | {r['train_seconds']:.0f} |")
    report = {"machine": {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                          else None, "torch": torch.__version__,
                          "python": platform.python_version(),
                          "date": time.strftime("%Y-%m-%d %H:%M:%S")},
              "works": len(works), "held_out_artists": len(held), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-art-check.json").write_text(json.dumps(report, indent=1))
    return report


def grid(works: list[Any], held: frozenset[str], args: Any, config: tuple[str, int]
         ) -> dict[str, Any]:
    """Several recipes from one cache (a new one for each crop_min); one table."""
    import torch

    base = LearnOptions(backbone=config[0], tune_from=config[1], epochs=args.epochs,
                        device=args.device, held_out=held)
    preps: dict[float, Any] = {}
    rows = []
    for text in args.grid:
        name, opts = variant(text, base)
        if opts.crop_min not in preps:
            preps[opts.crop_min] = prepare(works, opts, progress=lambda m: None)
        started = time.perf_counter()
        try:
            result = train(preps[opts.crop_min], Path(f"/tmp/{name}.pt"), opts,
                           progress=lambda m: None)
        except (RuntimeError, ValueError) as e:
            print(f"{name}: {e}", flush=True)
            continue
        row = _row(config[0], config[1], opts.lr, result, started)
        row["recipe"] = text
        rows.append(row)
        b, a = result.before, result.after
        print(f"| {text} | {b['style artist mAP']:.3f} | {a['style artist mAP']:.3f} | "
              f"{a['style artist mAP'] - b['style artist mAP']:+.3f} | "
              f"{b['style style mAP@10']:.3f} | {a['style style mAP@10']:.3f} | "
              f"{b['content artist mAP@10']:.3f} | {a['content artist mAP@10']:.3f} | "
              f"{result.best_epoch}/{len(result.history)} |", flush=True)
        (args.out / "gpu-art-grid.json").write_text(json.dumps(rows, indent=1))
    report = {"machine": {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                          else None, "torch": torch.__version__},
              "config": list(config), "rows": rows}
    (args.out / "gpu-art-grid.json").write_text(json.dumps(report, indent=1))
    return report


def _row(name: str, tune_from: int, lr: float, result: Any, started: float) -> dict[str, Any]:
    return {"backbone": name, "tune_from": tune_from, "lr": lr, "before": result.before,
            "after": result.after, "best_epoch": result.best_epoch,
            "epochs_run": len(result.history), "cache_seconds": result.cache_seconds,
            "train_seconds": result.train_seconds,
            "total_seconds": time.perf_counter() - started, "train_works": result.train_works,
            "val_works": result.val_works, "val_artists": result.val_labels,
            "history": result.history}


if __name__ == "__main__":
    main()
