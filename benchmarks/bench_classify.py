"""Linear probe vs fine-tuning, per space and task, on a labelled collection (the dev set).

    python benchmarks/bench_classify.py [--data ../shared/data/art-dev] [--index DIR]
        [--spaces content,style] [--methods probe,finetune] [--epochs 10] [--quick]

Without --index, the collection is indexed first into benchmarks/.cache/classify-index with
the spaces it needs (content: Lite0 final avg; style: Lite0 stage4, stage6, final, meanstd),
and reused on later runs. Every task uses artsearch's own `train` (the same stratified
60/20/20 split, seed 0, for every method), so the rows compare like with like: accuracy,
macro-F1 and ECE on the held-out test split, and the wall-clock training time on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent
DEV = HERE.parents[1] / "shared" / "data" / "art-dev"
# name: (label field, {field: value} the works must match)
TASKS = {
    "genre": ("genre", {"source": "github.com/dads7202/assignment2"}),
    "wikiart_style": ("style", {"source": "github.com/martigasol/art-style-classification"}),
    "indian_school": ("style", {"source": "github.com/sreenatha123/digital_humanities_project"}),
}
SPACES = {"content": {"pooling": "avg", "layer": None},
          "style": {"pooling": "meanstd", "layer": None}}


def ensure_index(data: Path, path: Path, spaces: list[str]) -> Path:
    from artsearch.index import ArtIndex
    from artsearch.indexer import IndexOptions, index_collection

    with ArtIndex(path, create=True) as idx:
        have = {sp.name for sp in idx.spaces()}
        for name in spaces:
            if name in have:
                continue
            print(f"indexing {data} into space {name} ...", flush=True)
            index_collection(data, idx, IndexOptions(space=name, metadata=data / "metadata.csv",
                                                     **SPACES[name]))
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEV)
    ap.add_argument("--index", type=Path, default=None)
    ap.add_argument("--spaces", default="content,style")
    ap.add_argument("--methods", default="probe,finetune")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0",
                    help="comma-separated seeds: each gives its own split and training run; "
                         "the summary averages them")
    ap.add_argument("--quick", action="store_true", help="2 epochs, content space only")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    from artsearch.classify import TrainOptions, train
    from artsearch.index import ArtIndex
    from benchmarks._env import machine, write_results

    spaces = ["content"] if args.quick else args.spaces.split(",")
    epochs = 2 if args.quick else args.epochs
    index = ensure_index(args.data, args.index or HERE / ".cache" / "classify-index", spaces)
    rows = []
    with ArtIndex(index) as idx, tempfile.TemporaryDirectory() as tmp:
        for space in spaces:
            for task in args.tasks.split(","):
                label, where = TASKS[task]
                for seed, method in ((int(s), m) for s in args.seeds.split(",")
                                     for m in args.methods.split(",")):
                    opts = TrainOptions(label=label, space=space, method=method, where=where,
                                        epochs=epochs, seed=seed)
                    started = time.perf_counter()
                    result = train(idx, opts, Path(tmp) / f"{space}-{task}-{method}.pt",
                                   progress=lambda m: print("  " + m, flush=True))
                    m = result.metrics
                    row = {"space": space, "task": task, "method": method, "seed": seed,
                           "classes": len(m["classes"]), "train": m["works"]["train"],
                           "test": m["test"]["n"], "accuracy": m["test"]["accuracy"],
                           "macro_f1": m["test"]["macro_f1"],
                           "balanced_accuracy": m["test"]["balanced_accuracy"],
                           "test_ece_before": m["calibration"]["test_ece_before"],
                           "test_ece_after": m["calibration"]["test_ece_after"],
                           "val_ece_before": m["calibration"]["val_ece_before"],
                           "val_ece_after": m["calibration"]["val_ece_after"],
                           "temperature": m["calibration"]["temperature"],
                           "train_seconds": m["train_seconds"],
                           "total_seconds": round(time.perf_counter() - started, 1),
                           "best_epoch": m["finetune"].get("best_epoch"),
                           "set_aside": len(m["works"]["set_aside"])}
                    rows.append(row)
                    print(f"{space:8} {task:14} {method:8} acc {row['accuracy']:.3f} "
                          f"macro-F1 {row['macro_f1']:.3f} ECE {row['test_ece_before']:.3f}"
                          f"->{row['test_ece_after']:.3f} {row['train_seconds']:.0f} s",
                          flush=True)
    report = {"machine": machine(), "data": str(args.data), "epochs": epochs, "rows": rows}
    path = write_results("classify", report, args.out)
    text = table(rows) + ("\n\n" + summary(rows) if len(args.seeds.split(",")) > 1 else "")
    path.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {path}")
    print(text)
    return report


def summary(rows: list[dict[str, Any]]) -> str:
    """Mean and standard deviation over seeds, per space, task and method."""
    import numpy as np

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["space"], r["task"], r["method"]), []).append(r)
    lines = ["| space | task | method | seeds | accuracy | macro-F1 | val ECE before -> after | "
             "train s |", "|---|---|---|---:|---|---|---|---:|"]
    for (space, task, method), rs in groups.items():
        def ms(key: str, rs: list[dict[str, Any]] = rs) -> str:
            v = np.array([r[key] for r in rs])
            return f"{v.mean():.3f} ± {v.std():.3f}"
        lines.append(f"| {space} | {task} | {method} | {len(rs)} | {ms('accuracy')} | "
                     f"{ms('macro_f1')} | {np.mean([r['val_ece_before'] for r in rs]):.3f} -> "
                     f"{np.mean([r['val_ece_after'] for r in rs]):.3f} | "
                     f"{np.mean([r['train_seconds'] for r in rs]):.0f} |")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| space | task | classes | train / test | seed | method | accuracy | macro-F1 | "
             "ECE test (before -> after T) | T | train s |",
             "|---|---|---:|---:|---:|---|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['space']} | {r['task']} | {r['classes']} | {r['train']} / "
                     f"{r['test']} | {r['seed']} | {r['method']} | {r['accuracy']:.3f} | "
                     f"{r['macro_f1']:.3f} | {r['test_ece_before']:.3f} -> "
                     f"{r['test_ece_after']:.3f} | {r['temperature']:.2f} | "
                     f"{r['train_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
