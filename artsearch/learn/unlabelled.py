"""Adapting an art space to a collection without labels (`artsearch learn --unlabelled`).

What it learns. Each work is its own class: two views of one picture (crops of several
scales, mirrored or not; never a colour change, since palette and brushwork are what a style
is made of) are pulled together in the style space and pushed from the other works of the
batch (a contrastive loss of two views per work, SimCLR's NT-Xent on the product's own
vector). Left alone that teaches the network to tell pictures apart by anything at all, and
what a picture shows drifts; so three pulls keep the start network's space: the style vector
toward the start network's (`distill_style`), each work's neighbours in the batch ranked as
the start network ranks them (`distill_relation`), and the content vector near the start
network's (`distill`). The start is a Lite backbone with its own weights, by default the
shipped art space (lite0-art).

Judged without labels. A seeded share of the works is held out and never trained on. On them,
each epoch measures: how well a cropped or mirrored view finds its own picture (`view mAP`:
the mean reciprocal rank of the plain view among the held-out works' plain views), how many
of each work's ten nearest works the start network also ranks there (`neighbours kept`), and
how spread the vectors are (`spread`: one minus the mean cosine of two works). The epoch kept
is the best view mAP among those that keep at least `min_kept` of the neighbours and half the
spread (the guard against collapse and against forgetting); none such, and the file holds the
start network's stages, said plainly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.errors import ArtsearchError
from artsearch.learn.data import Work
from artsearch.learn.features import (
    Parts,
    Progress,
    build_cache,
    layer_centres,
    style_vector,
    untuned_centres,
    untuned_vector,
)
from artsearch.learn.training import (
    LearnOptions,
    LearnResult,
    _loss,
    _relation_loss,
    save_tuned,
)

__all__ = ["MIN_WORKS", "UNLABELLED", "adapt", "unlabelled_options"]

UNLABELLED = "work"  # the "label" an unlabelled run learns: each work is its own
MIN_WORKS = 16  # fewer works than this teach nothing that could be judged
NEIGHBOURS = 10  # the neighbourhood `neighbours kept` compares


def unlabelled_options(**given: Any) -> LearnOptions:
    """The options of an unlabelled run: its defaults, with `given` over them."""
    defaults: dict[str, Any] = {
        "labels": ((UNLABELLED, 1.0),), "backbone": "lite0-art", "epochs": 6, "lr": 5e-5,
        "tau": 0.1, "views": 4, "distill": 1.0, "distill_style": 1.0,
        "distill_relation": 1.0, "crop_min": 0.2, "unlabelled": True}
    return LearnOptions(**(defaults | given))


def _split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    held = max(8, round(share * n))
    return np.sort(order[held:]), np.sort(order[:held])


def _neighbours(vectors: np.ndarray) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    found: np.ndarray = np.argsort(-sims, axis=1)[:, :NEIGHBOURS]
    return found


def _measured(parts: Parts, cache: Any, rows: np.ndarray, device: Any,
              start: np.ndarray | None) -> tuple[dict[str, float], np.ndarray]:
    """(the measures on the held-out works, their neighbour lists); `start`: the start
    network's neighbour lists, to count those kept. Every view is embedded once, with layer
    centres fitted on these works' plain views, as an index of them would be."""
    import torch

    centres = layer_centres(parts, cache, rows, device)
    index = torch.from_numpy(rows)
    with torch.no_grad():
        views = [style_vector(parts, cache, index, torch.full((len(rows),), v),
                              centres, device)[0].cpu().numpy()
                 for v in range(cache.maps.shape[1])]
    plain = views[0]
    # view mAP: the reciprocal rank of each work's plain view, queried by its other views.
    ranks = []
    for z in views[1:]:
        sims = z @ plain.T
        own = sims[np.arange(len(rows)), np.arange(len(rows))]
        ranks.append(1 + (sims > own[:, None]).sum(1))
    near = _neighbours(plain)
    sims = plain @ plain.T
    n = len(rows)
    spread = 1 - float((sims.sum() - np.trace(sims)) / (n * (n - 1)))
    kept = 1.0 if start is None else float(np.mean(
        [len(set(a) & set(b)) / NEIGHBOURS for a, b in zip(near, start, strict=True)]))
    out = {f"style {UNLABELLED} mAP": float(np.mean(1 / np.concatenate(ranks))),
           "neighbours kept": kept, "spread": spread}
    return out, near


def _acceptable(measured: dict[str, float], before: dict[str, float],
                opts: LearnOptions) -> bool:
    return (measured["neighbours kept"] >= opts.min_kept
            and measured["spread"] >= 0.5 * before["spread"])


def adapt(works: Sequence[Work], out: Path, options: LearnOptions | None = None, *,
          progress: Progress | None = None) -> LearnResult:
    """Adapt the start network's last stages to `works` without labels (see the module) and
    write the weights to `out`."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from artsearch import backbones
    from artsearch.backbones.lite import LiteNet

    opts = options or unlabelled_options()
    say = progress or (lambda _m: None)
    spec = backbones.get(opts.backbone)
    if spec.extra.get("family") != "lite":
        raise ArtsearchError(f"--backbone {opts.backbone}: adapting tunes EfficientNet-Lite "
                             "backbones (lite0-art, efficientnet-lite0, efficientnet-lite2)")
    if len(works) < MIN_WORKS:
        raise ArtsearchError(f"{len(works)} works: adapting without labels needs at least "
                             f"{MIN_WORKS} (some are held out to judge it)")
    torch.manual_seed(opts.seed)
    device = torch.device(opts.device)
    net = spec.build(spec, ("final",))
    assert isinstance(net, LiteNet)
    net = net.to(device).float()
    parts = Parts(net, opts.tune_from, spec.style_layers, spec)
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    cache = build_cache(works, spec, parts, opts.views, opts.seed, device, say, failed,
                        crop_min=opts.crop_min)
    cache_seconds = time.perf_counter() - started
    ok = np.flatnonzero(cache.ok)
    train_pos, val_pos = _split(len(ok), opts.val_share, opts.seed)
    train_rows, val_rows = ok[train_pos], ok[val_pos]
    if len(train_rows) < 8:
        raise ArtsearchError(f"{len(ok)} pictures could be read: too few to adapt to")
    parts.tail.eval()
    before, start_near = _measured(parts, cache, val_rows, device, None)
    say(f"start network, on {len(val_rows):,} held-out works: view mAP "
        f"{before[f'style {UNLABELLED} mAP']:.3f}, spread {before['spread']:.3f}")
    for p in parts.net.parameters():
        p.requires_grad_(False)
    for p in parts.tail.parameters():
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(parts.tail.parameters(), lr=opts.lr,
                                  weight_decay=opts.weight_decay)
    rng = np.random.default_rng(opts.seed)
    centres0 = untuned_centres(parts, cache, train_rows, device)
    best: tuple[float, int, dict[str, Any], dict[str, float]] = (
        0.0, 0, parts.tuned_state(), before)
    history: list[dict[str, float]] = []
    trained = time.perf_counter()
    stale = 0
    for epoch in range(1, opts.epochs + 1):
        parts.tail.eval()
        centres = layer_centres(parts, cache, train_rows, device)
        parts.tail.train()
        losses, distances = [], []
        order = rng.permutation(train_rows)
        for start in range(0, len(order), opts.batch):
            rows = order[start: start + opts.batch]
            if len(rows) < 2:
                continue
            # Two different views of each work: a random pair of the cached ones.
            a = rng.integers(0, opts.views, len(rows))
            b = (a + rng.integers(1, opts.views, len(rows))) % opts.views
            index = torch.from_numpy(np.concatenate([rows, rows]))
            view = torch.from_numpy(np.concatenate([a, b]))
            z, _, content = style_vector(parts, cache, index, view, centres, device)
            n = len(rows)
            pair = torch.zeros((2 * n, 2 * n), device=device)
            pair[torch.arange(n), torch.arange(n) + n] = 1
            pair[torch.arange(n) + n, torch.arange(n)] = 1
            loss = _loss(z, pair, opts.tau)
            target = cache.content[index, view].to(device).float()
            distance = (1 - F.cosine_similarity(content, target, dim=1)).mean()
            z0 = untuned_vector(parts, cache, index, view, centres0, device)
            total = (loss + opts.distill * distance
                     + opts.distill_style * (1 - F.cosine_similarity(z, z0, dim=1)).mean()
                     + opts.distill_relation * _relation_loss(z, z0, opts.tau))
            optimiser.zero_grad()
            total.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            losses.append(loss.item())
            distances.append(distance.item())
        parts.tail.eval()
        measured, _ = _measured(parts, cache, val_rows, device, start_near)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)),
                        "content_distance": float(np.mean(distances)),
                        "seconds": time.perf_counter() - trained, **measured})
        key = f"style {UNLABELLED} mAP"
        good = _acceptable(measured, before, opts)
        say(f"epoch {epoch}: loss {np.mean(losses):.3f}, held-out view mAP "
            f"{measured[key]:.3f} (start {before[key]:.3f}), neighbours kept "
            f"{measured['neighbours kept']:.2f}, spread {measured['spread']:.3f}"
            + ("" if good else " - drifted too far, not kept")
            + f"; {time.perf_counter() - trained:.0f} s")
        gain = measured[key] - before[key]
        if good and gain > best[0]:
            best, stale = (gain, epoch, parts.tuned_state(), measured), 0
        else:
            stale += 1
            if stale >= opts.patience:
                say(f"no better for {stale} epochs: keeping epoch {best[1]}")
                break
    result = LearnResult(
        weights=out, options=opts, works=len(ok), train_works=len(train_rows),
        val_works=len(val_rows), train_labels=len(train_rows), val_labels=len(val_rows),
        label_counts={}, before=before, after=best[3], history=history, best_epoch=best[1],
        cache_seconds=cache_seconds, train_seconds=time.perf_counter() - trained,
        failed=failed)
    save_tuned(out, spec, parts.saved_from, best[2], result)
    return result

