"""The training loop: graded supervised contrastive loss, distillation toward the untuned
content vector, early stopping on held-out labels' mAP."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.errors import ArtsearchError

if TYPE_CHECKING:
    import torch

    from artsearch.backbones import BackboneSpec


from artsearch.backbones.tuned import write_tuned
from artsearch.learn.data import Work, split_works
from artsearch.learn.features import (
    Cache,
    Parts,
    Progress,
    build_cache,
    embed_rows,
    layer_centres,
    style_vector,
    untuned_centres,
    untuned_vector,
)


@dataclass
class LearnOptions:
    labels: tuple[tuple[str, float], ...] = (("artist", 1.0), ("style", 0.25))
    backbone: str = "efficientnet-lite0"
    tune_from: int = 6  # the first tuned stage; it, the later stages and the head train
    epochs: int = 8
    lr: float = 1e-4
    tau: float = 0.1
    views: int = 4  # cached views per work: one plain, the rest augmented
    per_label: int = 4  # works of one main label together in a batch
    batch: int = 128  # works per batch
    val_share: float = 0.15  # of the main label's values, held out
    distill: float = 1.0  # weight of the pull toward the untuned content vector
    patience: int = 2  # epochs without a better validation mAP before stopping
    seed: int = 0
    device: str = "cpu"
    min_per_label: int = 2  # works a main-label value needs to be used at all
    held_out: frozenset[str] | None = None  # the held-out values, when not drawn
    weight_decay: float = 1e-4
    schedule: str = "constant"  # or "cosine": the rate falls to 0 over the epochs
    crop_min: float = 0.25  # the smallest share of a picture an augmented view keeps
    held_out_side: frozenset[str] = frozenset()  # side-label values (styles) never learnt,
    # judged apart: what generalises to a style never seen
    unseen_weight: float = 0.5  # share of the held-out styles' gain in the epoch's score
    distill_style: float = 0.0  # weight of the pull toward the untuned style vector
    distill_relation: float = 0.0  # weight of keeping each work's neighbours in a batch as
    # the untuned style space ranks them (a KL term: room to move, not to reorder)
    unlabelled: bool = False  # each work its own class (learn --unlabelled: learn.unlabelled)
    min_kept: float = 0.5  # unlabelled: share of held-out works' 10 nearest an epoch must keep

    @property
    def side(self) -> str | None:
        return self.labels[1][0] if len(self.labels) > 1 else None

    @property
    def main(self) -> str:
        return self.labels[0][0]


@dataclass
class LearnResult:
    weights: Path
    options: LearnOptions
    works: int
    train_works: int
    val_works: int
    train_labels: int
    val_labels: int
    label_counts: dict[str, dict[str, int]]
    before: dict[str, float]
    after: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    cache_seconds: float = 0.0
    train_seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    unseen_works: int = 0  # works of held-out styles, judged apart



def average_precision(vectors: np.ndarray, labels: Sequence[str], k: int | None = None
                      ) -> np.ndarray:
    """Per-query average precision of same-label works among all others (self excluded), over
    the whole ranking, or its first k (then divided by min(positives, k))."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    lab = np.asarray(labels)
    order = np.argsort(-sims, axis=1)
    if k is not None:
        order = order[:, :k]
    # The query itself never counts: it ranks last, but in a set of k or fewer works it is
    # inside the first k.
    rel = (lab[order] == lab[:, None]) & (order != np.arange(len(lab))[:, None])
    positives = (lab[None, :] == lab[:, None]).sum(1) - 1
    hits = np.cumsum(rel, axis=1)
    precision = hits / np.arange(1, rel.shape[1] + 1)
    denominator = positives if k is None else np.minimum(positives, k)
    ap = (precision * rel).sum(1) / np.maximum(denominator, 1)
    kept: np.ndarray = ap[positives > 0]
    return kept


def _measures(style: np.ndarray, content: np.ndarray, works: Sequence[Work], rows: np.ndarray,
              labels: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in labels:
        values = [works[i].labels.get(name, "") for i in rows]
        keep = np.array([bool(v) for v in values])
        if keep.sum() < 2:
            continue
        kept = [v for v in values if v]
        out[f"style {name} mAP"] = float(average_precision(style[keep], kept).mean())
        out[f"style {name} mAP@10"] = float(average_precision(style[keep], kept, 10).mean())
        out[f"content {name} mAP@10"] = float(average_precision(content[keep], kept, 10).mean())
    return out


def _loss(z: torch.Tensor, weights: torch.Tensor, tau: float) -> torch.Tensor:
    """Supervised contrastive loss with graded positives: each anchor's log-probability of
    its positives, weighted, over all other works in the batch."""
    import torch

    sims = z @ z.T / tau
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sims = sims.masked_fill(eye, -1e9)
    log_p = sims.log_softmax(dim=1)
    weights = weights.masked_fill(eye, 0)
    total = weights.sum(1)
    anchors = total > 0
    per = -(log_p * weights).sum(1)[anchors] / total[anchors]
    return per.mean() if len(per) else sims.sum() * 0


def _relation_loss(z: torch.Tensor, z0: torch.Tensor, tau: float) -> torch.Tensor:
    """KL divergence of each work's softmax over its batch neighbours (temperature `tau`)
    from the untuned space's: the tuned space may move and rotate, but what a work lies
    nearest keeps its order, so what a picture shows (genre, subject) stays near."""
    import torch

    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_q = (z @ z.T / tau).masked_fill(eye, -1e9).log_softmax(dim=1)
    p = (z0 @ z0.T / tau).masked_fill(eye, -1e9).softmax(dim=1)
    return (p * (p.clamp_min(1e-12).log() - log_q)).sum(1).mean()


def positive_weights(rows: np.ndarray, values: dict[str, np.ndarray],
                     labels: Sequence[tuple[str, float]]) -> np.ndarray:
    """(len(rows), len(rows)) weights of each pair as positives: the main label's weight
    where both share a main value, else the sum of the further labels' weights they share.
    An empty value is shared with nobody: style-only works are never same-artist pairs."""
    (main, w_main), rest = labels[0], labels[1:]

    def same(name: str) -> np.ndarray:
        v = values[name][rows]
        shared: np.ndarray = (v[:, None] == v[None, :]) & (v[:, None] != "")
        return shared

    same_main = same(main)
    out = same_main * w_main
    for name, w in rest:
        out = out + (same(name) & ~same_main) * w
    weights: np.ndarray = out.astype(np.float32)
    np.fill_diagonal(weights, 0)
    return weights


def batch_groups(main: np.ndarray, side: np.ndarray | None) -> np.ndarray:
    """Each work's batching group: its main value, or for a work without one its side
    value (style-only works come in chunks of one style), marked apart from main values."""
    if side is None:
        return main
    return np.where(main != "", np.char.add("main:", main.astype(str)),
                    np.char.add("side:", side.astype(str)))


def _batches(rows: np.ndarray, main: np.ndarray, per_label: int, size: int,
             rng: np.random.Generator) -> list[np.ndarray]:
    """Every training work once: grouped by `main` (batch_groups) in chunks of
    `per_label`, chunks shuffled and packed into batches of about `size` works."""
    by_label: dict[str, list[int]] = {}
    for r in rows:
        by_label.setdefault(main[r], []).append(int(r))
    chunks = []
    for members in by_label.values():
        members = list(rng.permutation(members))
        chunks += [members[i: i + per_label] for i in range(0, len(members), per_label)]
    order = rng.permutation(len(chunks))
    batches, current = [], []
    for c in order:
        current += chunks[c]
        if len(current) >= size:
            batches.append(np.array(current))
            current = []
    if len(current) > 1:
        batches.append(np.array(current))
    return batches



@dataclass
class Prepared:
    """Works split and their frozen features cached: what every training run over them
    shares (benchmarks train several variants from one)."""

    spec: Any
    device: Any
    parts: Parts
    cache: Any
    works: list[Work]  # the cached works, in cache order
    train: np.ndarray  # their rows
    val: np.ndarray
    unseen: np.ndarray  # works of held-out side values (styles), never learnt
    values: dict[str, np.ndarray]  # label -> value per cached work ("" when none)
    initial: dict[str, Any]  # the untuned stages, to start each run from
    before: dict[str, float]  # the untuned network's measures on the validation works
    cache_seconds: float
    failed: list[tuple[str, str]]
    options: LearnOptions


def prepare(works: Sequence[Work], options: LearnOptions | None = None, *,
            progress: Progress | None = None, cache_file: Path | None = None) -> Prepared:
    """Split `works` by their main label and cache the frozen stages' features. With
    `cache_file`, the features are read from it when it was written for the same works and
    settings, and written to it otherwise (benchmarks: a run of variants skips the caching)."""
    import torch

    from artsearch import backbones
    from artsearch.backbones.lite import LiteNet

    opts = options or LearnOptions()
    say = progress or (lambda _m: None)
    spec = backbones.get(opts.backbone)
    if spec.extra.get("family") != "lite":
        raise ArtsearchError(f"--backbone {opts.backbone}: learning tunes EfficientNet-Lite "
                             "backbones (efficientnet-lite0, efficientnet-lite2)")
    torch.manual_seed(opts.seed)
    device = torch.device(opts.device)
    split = split_works(works, opts.main, opts.val_share, opts.seed, opts.min_per_label,
                        opts.held_out, side=opts.side or "", held_out_side=opts.held_out_side)
    train_rows, val_rows, unseen_rows = split.train, split.val, split.unseen
    net = spec.build(spec, ("final",))
    assert isinstance(net, LiteNet)
    net = net.to(device).float()
    parts = Parts(net, opts.tune_from, spec.style_layers, spec)
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    used = np.array(sorted(train_rows + val_rows + unseen_rows))
    cache = load_cache(cache_file, [works[i] for i in used], opts) if cache_file else None
    if cache is None:
        cache = build_cache([works[i] for i in used], spec, parts, opts.views, opts.seed,
                            device, say, failed, crop_min=opts.crop_min)
        if cache_file:
            save_cache(cache_file, cache, [works[i] for i in used], opts)
    else:
        say(f"features read from {cache_file}")
    position = {int(w): p for p, w in enumerate(used)}  # cache rows are positions in `used`
    train = np.array([position[i] for i in train_rows if cache.ok[position[i]]])
    val = np.array([position[i] for i in val_rows if cache.ok[position[i]]])
    unseen = np.array([position[i] for i in unseen_rows if cache.ok[position[i]]], int)
    cached = [works[i] for i in used]
    names = [n for n, _ in opts.labels]
    values = {n: np.array([w.labels.get(n, "") for w in cached]) for n in names}
    parts.tail.eval()
    before = _judged(parts, cache, device, cached, val, unseen, names, opts.side)
    say("untuned, on the validation works: " + ", ".join(
        f"{k} {v:.3f}" for k, v in before.items()))
    return Prepared(spec, device, parts, cache, cached, train, val, unseen, values,
                    {k: v.clone() for k, v in parts.tuned_state().items()}, before,
                    time.perf_counter() - started, failed, opts)


def _cache_key(works: Sequence[Work], opts: LearnOptions) -> str:
    import hashlib

    text = repr((opts.backbone, opts.tune_from, opts.views, opts.seed, opts.crop_min,
                 [(str(w.path), w.letterboxed) for w in works]))
    return hashlib.sha256(text.encode()).hexdigest()


def save_cache(path: Path, cache: Cache, works: Sequence[Work], opts: LearnOptions) -> None:
    """Write the cached features beside their key (works and the settings that made them)."""
    import dataclasses

    import torch

    # The fields as they are (dataclasses.asdict would deep-copy gigabytes of tensors).
    state = {f.name: getattr(cache, f.name) for f in dataclasses.fields(cache)}
    state["ok"] = torch.from_numpy(cache.ok)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"key": _cache_key(works, opts), "cache": state}, tmp)
    tmp.replace(path)


def load_cache(path: Path, works: Sequence[Work], opts: LearnOptions) -> Cache | None:
    """The features `save_cache` wrote for these works and settings; None when the file is
    absent or was written for others."""
    import torch

    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("key") != _cache_key(works, opts):
        return None
    state = saved["cache"]
    state["ok"] = state["ok"].numpy()
    return Cache(**state)


def train(prep: Prepared, out: Path, options: LearnOptions | None = None, *,
          progress: Progress | None = None) -> LearnResult:
    """Tune the prepared network (from its untuned state) and write the weights to `out`.
    `options` may change what training takes (rate, temperature, label weights, epochs),
    not what preparing fixed (backbone, split, views)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    opts = options or prep.options
    say = progress or (lambda _m: None)
    parts, cache, device = prep.parts, prep.cache, prep.device
    parts.net.load_state_dict(prep.initial, strict=False)
    names = [n for n, _ in opts.labels]
    missing = [n for n in names if n not in prep.values]
    if missing or opts.main != prep.options.main:
        raise ArtsearchError(f"labels {missing or [opts.main]} were not prepared")
    main = prep.values[opts.main]
    groups = batch_groups(main, prep.values[opts.side] if opts.side else None)
    torch.manual_seed(opts.seed)
    for p in parts.net.parameters():
        p.requires_grad_(False)
    for p in parts.tail.parameters():
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(parts.tail.parameters(), lr=opts.lr,
                                  weight_decay=opts.weight_decay)
    steps_per_epoch = max(1, len(prep.train) // opts.batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=opts.epochs * steps_per_epoch) if opts.schedule == "cosine" else None
    rng = np.random.default_rng(opts.seed)
    before = prep.before
    centres0 = (untuned_centres(parts, cache, prep.train, device)
                if opts.distill_style or opts.distill_relation else None)
    best = (0.0, 0, parts.tuned_state(), before)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    stale = 0
    for epoch in range(1, opts.epochs + 1):
        parts.tail.eval()
        centres = layer_centres(parts, cache, prep.train, device)
        parts.tail.train()
        losses, distances = [], []
        for rows in _batches(prep.train, groups, opts.per_label, opts.batch, rng):
            view = torch.from_numpy(rng.integers(0, prep.options.views, len(rows)))
            index = torch.from_numpy(rows)
            z, _, content = style_vector(parts, cache, index, view, centres, device)
            weights = torch.from_numpy(positive_weights(rows, prep.values, opts.labels))
            loss = _loss(z, weights.to(device), opts.tau)
            target = cache.content[index, view].to(device).float()
            distance = (1 - F.cosine_similarity(content, target, dim=1)).mean()
            total = loss + opts.distill * distance
            if centres0 is not None:
                z0 = untuned_vector(parts, cache, index, view, centres0, device)
                total = total + opts.distill_style * (
                    1 - F.cosine_similarity(z, z0, dim=1)).mean()
                if opts.distill_relation:
                    total = total + opts.distill_relation * _relation_loss(z, z0, opts.tau)
            optimiser.zero_grad()
            total.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
            distances.append(distance.item())
        parts.tail.eval()
        measured = _judged(parts, cache, device, prep.works, prep.val, prep.unseen,
                           list(prep.values), opts.side)
        score = epoch_score(measured, before, opts)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)),
                        "content_distance": float(np.mean(distances)),
                        "seconds": time.perf_counter() - started, **measured})
        say(f"epoch {epoch}: loss {np.mean(losses):.3f}, content drift "
            f"{np.mean(distances):.4f}, validation {opts.main} mAP "
            f"{measured[f'style {opts.main} mAP']:.3f} (untuned "
            f"{before[f'style {opts.main} mAP']:.3f})" + (
                f", unseen {opts.side} mAP@10 {measured[_unseen(opts)]:.3f} (untuned "
                f"{before[_unseen(opts)]:.3f})" if _unseen(opts) in measured else "")
            + f"; {time.perf_counter() - started:.0f} s")
        if score > best[0]:
            best, stale = (score, epoch, parts.tuned_state(), measured), 0
        else:
            stale += 1
            if stale >= opts.patience:
                say(f"no better for {stale} epochs: keeping epoch {best[1]}")
                break
    both = np.concatenate([prep.train, prep.val])
    result = LearnResult(
        weights=out, options=opts, works=len(both), train_works=len(prep.train),
        val_works=len(prep.val), train_labels=len(set(main[prep.train])),
        val_labels=len(set(main[prep.val])),
        label_counts={n: _counts(prep.values[n][both]) for n in names}, before=before,
        after=best[3], history=history, best_epoch=best[1], cache_seconds=prep.cache_seconds,
        train_seconds=time.perf_counter() - started, failed=prep.failed,
        unseen_works=len(prep.unseen))
    save_tuned(out, prep.spec, parts.saved_from, best[2], result)
    return result


def _unseen(opts: LearnOptions) -> str:
    return f"unseen style {opts.side} mAP@10"


def _judged(parts: Parts, cache: Any, device: Any, works: Sequence[Work], val: np.ndarray,
            unseen: np.ndarray, names: Sequence[str], side: str | None) -> dict[str, float]:
    """The measures on the held-out artists' works, and on the held-out styles' works (keys
    prefixed "unseen "), which no epoch learnt from."""
    out = _measures(*embed_rows(parts, cache, val, device), works, val, names)
    if side and len(unseen) > 1:
        measured = _measures(*embed_rows(parts, cache, unseen, device), works, unseen, [side])
        out |= {f"unseen {k}": v for k, v in measured.items()}
    return out


def epoch_score(measured: dict[str, float], before: dict[str, float],
                opts: LearnOptions) -> float:
    """What an epoch is chosen by: the gain in held-out-artist mAP over the untuned
    network's, mixed with the gain in held-out-style mAP@10 when styles were held out."""
    key = f"style {opts.main} mAP"
    gain = measured[key] - before[key]
    if _unseen(opts) not in measured:
        return gain
    return ((1 - opts.unseen_weight) * gain
            + opts.unseen_weight * (measured[_unseen(opts)] - before[_unseen(opts)]))


def learn(works: Sequence[Work], out: Path, options: LearnOptions | None = None, *,
          progress: Progress | None = None) -> LearnResult:
    """Tune the backbone on `works` (see the package) and write the weights to `out`."""
    return train(prepare(works, options, progress=progress), out, options,
                 progress=progress)


def _counts(values: np.ndarray) -> dict[str, int]:
    found: dict[str, int] = {}
    for v in values.tolist():
        if v:
            found[v] = found.get(v, 0) + 1
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def save_tuned(out: Path, spec: BackboneSpec, tune_from: int, state: dict[str, Any],
               result: LearnResult | None = None) -> None:
    """Write a tuned-weights file (float16 tensors) atomically, with what it learnt."""
    write_tuned(out, spec, tune_from, state, _describe(result) if result is not None else {})


def _describe(r: LearnResult) -> dict[str, Any]:
    o = r.options
    return {"labels": [list(x) for x in o.labels], "tune_from": o.tune_from,
            "epochs_run": len(r.history), "best_epoch": r.best_epoch, "lr": o.lr,
            "tau": o.tau, "views": o.views, "distill": o.distill, "seed": o.seed,
            "works": r.works, "train_works": r.train_works, "val_works": r.val_works,
            "train_labels": r.train_labels, "val_labels": r.val_labels,
            "unseen_works": r.unseen_works, "held_out_side": sorted(o.held_out_side),
            "distill_style": o.distill_style, "distill_relation": o.distill_relation,
            "unlabelled": o.unlabelled, "start": o.backbone,
            "before": r.before, "after": r.after}
