"""Self-supervised adaptation to a collection: does it make the spaces better on art?

The lever issue 13 asked to try: fine-tune the last stages of EfficientNet-Lite0 on the
collection's own pictures, with no labels, by SimCLR-style agreement between two augmented
views of the same work (random 20-100% crops and mirror; no colour jitter, which would teach
the network to ignore the palette a style is made of). Lite0 is frozen up to stage5; stage6,
stage7 and the head convolution train (AdamW, a projection head of 512 -> 128, NT-Xent at
temperature --tau). To fit minutes on a CPU, each work's stage5 maps are computed once for
--views augmented views and the trainable stages run on those.

Judged as the quality suite judges a descriptor: same-label mAP@10 of the style space
(meanstd of stage4, stage6, final, centred) and of the content vector (final avg), with a
paired 95% bootstrap interval of the change, and k-means NMI, before and after. With
--exclude GROUP the adaptation never sees that group's works (another source, unseen
classes), and that group is the one to read.

    python benchmarks/bench_adapt.py [--epochs 6] [--lr 1e-4] [--exclude "wikiart style"]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from artsearch import backbones  # noqa: E402
from artsearch.extract import Extractor  # noqa: E402
from artsearch.pooling import FIT_SAMPLE  # noqa: E402
from benchmarks._env import machine, write_results  # noqa: E402
from benchmarks.bench_backbones import (  # noqa: E402
    DEFAULT_DATA,
    HERE,
    kmeans_agreement,
    label_groups,
    paired_difference,
    retrieval,
)


def _meanstd(fmap: torch.Tensor) -> torch.Tensor:
    flat = fmap.flatten(2)
    return torch.cat([flat.mean(2), flat.std(2, correction=0)], 1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


class Tail(torch.nn.Module):
    """Lite0 from stage5's output on: stage6, stage7 and the head convolution."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.s6, self.s7, self.head = net.blocks[5], net.blocks[6], net.head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s6 = self.s6(x)
        return s6, self.head(self.s7(s6))


def stage_maps(paths: list[Path], views: int, seed: int) -> tuple[Any, ...]:
    """Plain stage4 style statistics and stage5 maps, and stage5 maps of augmented views."""
    import torchvision.transforms.v2 as T  # noqa: N812
    from PIL import Image

    torch.manual_seed(seed)
    ex = Extractor(backbones.get("efficientnet-lite0"), layer=("stage4", "stage5"),
                   pooling="avg")
    net = ex.model  # built here, outside inference mode, so its weights can train later
    plain4, plain5 = [], []
    for pixels in ex._pixel_batches(paths):
        m4, m5 = ex.feature_maps(pixels)
        plain4.append(_meanstd(m4).numpy())
        plain5.append(m5.half())
    aug = T.Compose([T.RandomResizedCrop(224, scale=(0.2, 1.0), antialias=True),
                     T.RandomHorizontalFlip()])
    shape = tuple(plain5[0].shape[1:])
    out = torch.empty((len(paths), views, *shape), dtype=torch.float16)
    for start in range(0, len(paths), 32):
        batch = []
        for p in paths[start:start + 32]:
            img = Image.open(p).convert("RGB")
            img.thumbnail((320, 320))
            x = T.functional.pil_to_tensor(img)
            batch += [aug(x) for _ in range(views)]
        maps = ex.feature_maps(torch.stack(batch))[1].half()
        out[start:start + len(maps) // views] = maps.view(-1, views, *shape)
        print(f"\r  views: {min(start + 32, len(paths))}/{len(paths)}", end="",
              file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return np.concatenate(plain4), torch.cat(plain5), out, net


def descriptors(tail: Tail, plain4: np.ndarray, plain5: torch.Tensor
                ) -> dict[str, np.ndarray]:
    """The style space and the content vector, as `artsearch index` makes them."""
    tail.eval()
    s6s, fs, avgs = [], [], []
    with torch.no_grad():
        for i in range(0, len(plain5), 128):
            s6, f = tail(plain5[i:i + 128].float())
            s6s.append(_meanstd(s6).numpy())
            fs.append(_meanstd(f).numpy())
            avgs.append(f.mean((2, 3)).numpy())
    sample = np.arange(len(plain4))[:: max(1, len(plain4) // FIT_SAMPLE)][:FIT_SAMPLE]
    parts = [_unit(x - x[sample].mean(0)) for x in (plain4, np.concatenate(s6s),
                                                     np.concatenate(fs))]
    return {"style meanstd": _unit(np.concatenate(parts, 1)).astype(np.float32),
            "final avg": _unit(np.concatenate(avgs)).astype(np.float32)}


def judge(vectors: dict[str, np.ndarray], groups: dict[str, Any], row_of: dict[Path, int]
          ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, v in vectors.items():
        for g, items in groups.items():
            rows = np.array([row_of[p] for p, _ in items])
            labels = [lab for _, lab in items]
            out[f"{name} | {g}"] = {
                "ap": retrieval(v[rows], labels)["map10"],
                "nmi": float(np.mean(kmeans_agreement(v[rows], labels)["nmi"]))}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-4, help="backbone stages (head: 1e-3)")
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--exclude", default=None, metavar="GROUP",
                    help="adapt without this label group's works (judge it as unseen)")
    ap.add_argument("--supervised", action="store_true",
                    help="supervised contrastive (SupCon) on half the classes of every group; "
                         "the other half's works are never seen, and are the ones judged")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    groups = label_groups(args.data, None, None)
    paths = sorted({p for items in groups.values() for p, _ in items}, key=str)
    row_of = {p: i for i, p in enumerate(paths)}
    started = time.perf_counter()
    plain4, plain5, views, net = stage_maps(paths, args.views, args.seed)
    cache_seconds = time.perf_counter() - started
    tail = Tail(net).float()
    train_rows = np.arange(len(paths))
    label_id = np.arange(len(paths)) + 10**6  # no label: each work is its own class
    if args.supervised:  # held-out classes: half of each group's labels never seen
        rng = np.random.default_rng(args.seed)
        judged: dict[str, Any] = {}
        unseen_rows: set[int] = set()
        names: dict[str, int] = {}
        for g, items in groups.items():
            classes = sorted({lab for _, lab in items})
            seen = set(rng.permutation(classes)[: len(classes) // 2].tolist())
            judged[f"{g} (unseen classes)"] = [(p, lab) for p, lab in items if lab not in seen]
            for p, lab in items:
                if lab in seen:
                    label_id[row_of[p]] = names.setdefault(f"{g}:{lab}", len(names))
                else:
                    unseen_rows.add(row_of[p])
        groups = judged
        train_rows = np.array([i for i in train_rows if i not in unseen_rows])
    before = judge(descriptors(tail, plain4, plain5), groups, row_of)
    if args.exclude:
        unseen = {row_of[p] for p, _ in groups[args.exclude]}
        train_rows = np.array([i for i in train_rows if i not in unseen])
    with torch.no_grad():  # the centres the loss measures from: fixed, from the start
        s6, f = tail(plain5[:: max(1, len(paths) // FIT_SAMPLE)].float())
        c6, cf = _meanstd(s6).mean(0), _meanstd(f).mean(0)
    tail.requires_grad_(True)
    proj = torch.nn.Sequential(torch.nn.Linear(c6.numel() + cf.numel(), 512),
                               torch.nn.ReLU(), torch.nn.Linear(512, 128))
    opt = torch.optim.AdamW([{"params": tail.parameters(), "lr": args.lr},
                             {"params": proj.parameters(), "lr": 1e-3}], weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed)
    history = []
    started = time.perf_counter()
    for epoch in range(args.epochs):
        tail.train()
        order = train_rows[torch.randperm(len(train_rows), generator=gen).numpy()]
        losses = []
        for i in range(0, len(order) - args.batch + 1, args.batch):
            idx = torch.from_numpy(order[i:i + args.batch])
            pick = torch.stack([torch.randperm(args.views, generator=gen)[:2] for _ in idx])
            x = torch.cat([views[idx, pick[:, 0]], views[idx, pick[:, 1]]]).float()
            s6, f = tail(x)
            z = torch.cat([F.normalize(_meanstd(s6) - c6, dim=1),
                           F.normalize(_meanstd(f) - cf, dim=1)], 1)
            z = F.normalize(proj(z), dim=1)
            sims = z @ z.T / args.tau
            sims.fill_diagonal_(-1e9)
            n = len(idx)
            if args.supervised:  # SupCon: every other view of the same label is a positive
                lab = torch.from_numpy(label_id[idx.numpy()]).repeat(2)
                positive = (lab[:, None] == lab[None, :]) & ~torch.eye(2 * n, dtype=torch.bool)
                log_p = sims.log_softmax(dim=1)
                loss = -(log_p * positive).sum(1).div(positive.sum(1)).mean()
            else:
                target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
                loss = F.cross_entropy(sims, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": time.perf_counter() - started})
        print(f"epoch {epoch + 1}: NT-Xent {np.mean(losses):.3f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    train_seconds = time.perf_counter() - started
    after = judge(descriptors(tail, plain4, plain5), groups, row_of)
    rows = []
    print("| descriptor | group | mAP@10 before | after | change [95% CI] | NMI before | after |")
    print("|---|---|---|---|---|---|---|")
    for key in before:
        d, ci = paired_difference(after[key]["ap"], before[key]["ap"])
        name, g = key.split(" | ")
        rows.append({"descriptor": name, "group": g, "map10_before": before[key]["ap"].mean(),
                     "map10_after": after[key]["ap"].mean(), "change": d, "ci95": ci,
                     "nmi_before": before[key]["nmi"], "nmi_after": after[key]["nmi"],
                     "unseen_in_adaptation": g == args.exclude})
        print(f"| {name} | {g}{' (unseen)' if g == args.exclude else ''} | "
              f"{before[key]['ap'].mean():.3f} | {after[key]['ap'].mean():.3f} | "
              f"{d:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] | {before[key]['nmi']:.3f} | "
              f"{after[key]['nmi']:.3f} |")
    report = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
              "adapted_on": int(len(train_rows)), "cache_seconds": cache_seconds,
              "train_seconds": train_seconds, "history": history, "results": rows}
    path = write_results("adapt", report, args.out)
    print(f"\nviews cached in {cache_seconds:.0f} s, adapted in {train_seconds:.0f} s; "
          f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
