"""Transfer-learning classification: a linear probe or a fine-tune, calibrated, with a report.

Two ways to reuse a pretrained network for a catalogue field with few labelled works:

- probe: multinomial logistic regression on the vectors already stored in a space (nothing
  is re-extracted); the inverse regularisation C is chosen by stratified cross-validation on
  the training split (log-loss). Seconds.
- finetune: the backbone is rebuilt, frozen up to a named layer (`freeze_until`), and the
  rest trained together with a new linear head at a low learning rate (AdamW; the head at
  10x), with light augmentation (a random crop of up to 15% more than the model sees, and a
  horizontal flip), a class-balanced cross-entropy, and early stopping on the validation
  loss. The head starts from the probe's weights ("linear probe, then fine-tune": with a
  ready head the early gradients do not scramble the pretrained features). Minutes.

Both train on a stratified split with a fixed seed: train / validation / test (60/20/20 by
default; a class keeps at least one work in validation and test). Classes with fewer than
`min_per_class` labelled works are left out and reported: too few to learn from and to test.
A temperature is then fitted on the validation split (scaling the logits so the predicted
probabilities match the observed accuracy); the expected calibration error before and after
is recorded, and the test split gives the final, untouched figures.

A model file (torch.save of plain tensors and values, read with weights_only=True) holds the
backbone, its weights' SHA-256, the space, layers, pooling and its fitted parameters, the
preprocessing, the label set, the head, the temperature, the fine-tuned weights when there are
any, the training parameters and the metrics. It refuses to run on other backbone weights.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from artsearch.errors import ArtsearchError, IndexMismatchError, MetadataError
from artsearch.index import ArtIndex
from artsearch.store import Artwork

__all__ = ["FORMAT", "Classifier", "TrainOptions", "ece", "fit_temperature", "load_model",
           "stratified_split", "train"]

FORMAT = "artsearch-classifier/1"
CS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # probe: C tried by cross-validation
ECE_BINS = 15
UNCERTAIN = 0.5  # classify: below this calibrated probability a prediction says "uncertain"

Progress = Callable[[str], None]


class ModelError(ArtsearchError):
    """A model file that cannot be used here (wrong format, other backbone weights)."""


@dataclass
class TrainOptions:
    label: str
    space: str = "content"
    method: str = "probe"  # probe | finetune
    min_per_class: int = 5
    seed: int = 0
    val_size: float = 0.2
    test_size: float = 0.2
    # finetune only
    freeze_until: str | None = None  # None: two named layers before the deepest used
    lr: float = 1e-4
    epochs: int = 10
    batch_size: int = 32
    weight_decay: float = 1e-4
    patience: int = 3
    device: str | None = None
    num_workers: int | None = None
    where: dict[str, str] = field(default_factory=dict)  # only works with these field values


@dataclass
class LabelledSet:
    artwork_ids: list[int]
    paths: list[str]
    labels: list[str]
    classes: list[str]
    y: np.ndarray
    dropped: dict[str, int]
    unlabelled: int
    vectors: np.ndarray
    fields: dict[str, list[Any]] = field(default_factory=dict)


# -- data ---------------------------------------------------------------------------------------

def labelled_works(index: ArtIndex, space: str, label: str, min_per_class: int,
                   group_fields: Sequence[str] = (), where: dict[str, str] | None = None
                   ) -> LabelledSet:
    """The space's works that carry `label` (and match `where`), with their vectors; rare
    classes set aside."""
    from artsearch.cluster import field_value, space_matrix

    ids, vectors = space_matrix(index, space)
    with index.store.session() as s:
        arts = {a.id: a for a in s.scalars(select(Artwork).where(Artwork.id.in_(ids)))}
    if where:
        keep = [i for i, a in enumerate(ids)
                if all(str(field_value(arts[a], f) or "") == v for f, v in where.items())]
        if not keep:
            raise MetadataError("no work matches " + ", ".join(
                f"{f}={v}" for f, v in where.items()) + f" in space {space!r}")
        ids, vectors = [ids[i] for i in keep], vectors[keep]
    values = [field_value(arts[a], label) for a in ids]
    counts: dict[str, int] = {}
    for v in values:
        if v:
            counts[str(v)] = counts.get(str(v), 0) + 1
    if not counts:
        raise MetadataError(
            f"no work in space {space!r} has a {label!r} value; attach a catalogue with "
            f"`artsearch index DIR --metadata CSV` (a column named {label})")
    dropped = {c: n for c, n in sorted(counts.items()) if n < min_per_class}
    classes = sorted(c for c in counts if c not in dropped)
    if len(classes) < 2:
        raise MetadataError(
            f"{label!r}: {len(classes)} class(es) with at least {min_per_class} works "
            f"({len(counts)} values in all); lower --min-per-class or label more works")
    rows = [i for i, v in enumerate(values) if v and str(v) in classes]
    lookup = {c: i for i, c in enumerate(classes)}
    return LabelledSet(
        artwork_ids=[ids[i] for i in rows], paths=[arts[ids[i]].path for i in rows],
        labels=[str(values[i]) for i in rows], classes=classes,
        y=np.array([lookup[str(values[i])] for i in rows], np.int64), dropped=dropped,
        unlabelled=sum(1 for v in values if not v), vectors=vectors[rows],
        fields={f: [field_value(arts[ids[i]], f) for i in rows] for f in group_fields})


def stratified_split(y: np.ndarray, seed: int, val_size: float = 0.2, test_size: float = 0.2
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test), stratified by class: each class gives round(share x n)
    works, at least one, to validation and to test, and keeps at least one for training."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c)).tolist()
        n = len(rows)
        n_test = max(1, round(test_size * n)) if n >= 3 else 0
        n_val = max(1, round(val_size * n)) if n >= 3 else 0
        parts[2] += rows[:n_test]
        parts[1] += rows[n_test:n_test + n_val]
        parts[0] += rows[n_test + n_val:]
    train, val, test = (np.array(sorted(p), np.int64) for p in parts)
    return train, val, test


# -- probe and calibration ---------------------------------------------------------------------

def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Multinomial logistic regression (class-balanced); C by stratified k-fold log-loss.
    Returns (W: classes x dims, b, info)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = int(min(5, np.bincount(y, minlength=n_classes).min()))
    scores: dict[float, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if folds >= 2:
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
            for c in CS:
                model = LogisticRegression(C=c, class_weight="balanced", max_iter=500)
                scores[c] = float(cross_val_score(model, x, y, cv=cv,
                                                  scoring="neg_log_loss").mean())
            best = max(scores, key=lambda c: (scores[c], -c))
        else:
            best = 1.0
        model = LogisticRegression(C=best, class_weight="balanced", max_iter=2000).fit(x, y)
    w = np.zeros((n_classes, x.shape[1]), np.float32)
    b = np.full(n_classes, -1e4, np.float32)  # a class absent from training is never predicted
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # two classes: one logit z; softmax of (-z/2, z/2) is sigmoid(z)
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    w[model.classes_] = coef.astype(np.float32)
    b[model.classes_] = intercept.astype(np.float32)
    info = {"C": best, "cv_folds": folds, "cv_log_loss": {str(c): round(-v, 4)
                                                          for c, v in scores.items()}}
    return w, b, info


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising the negative log-likelihood of softmax(logits / T) (Guo et al.,
    2017): golden-section search over log T in [-3, 3], which NLL is unimodal on."""
    lo, hi = -3.0, 3.0
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits / math.exp(a), y), nll(logits / math.exp(b), y)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits / math.exp(a), y)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits / math.exp(b), y)
    best = float(math.exp((lo + hi) / 2))
    # Never worse than leaving the logits alone: that is the property callers rely on.
    if not math.isfinite(best) or nll(logits / best, y) > nll(logits, y):
        return 1.0
    return best


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: |accuracy - confidence| per confidence bin, weighted by the
    bin's share of predictions."""
    conf, hit = probs.max(axis=1), probs.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    return float(total)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    conf, hit = probs.max(axis=1), probs.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            out.append({"confidence": float(conf[inside].mean()),
                        "accuracy": float(hit[inside].mean()), "count": int(inside.sum())})
    return out


def scores(y: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy, per-class precision/recall/F1, confusion."""
    k = len(classes)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y, pred), 1)
    per = []
    for c, name in enumerate(classes):
        tp = confusion[c, c]
        predicted, actual = confusion[:, c].sum(), confusion[c].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        per.append({"class": name, "precision": round(float(p), 4), "recall": round(float(r), 4),
                    "f1": round(float(2 * p * r / (p + r)) if p + r else 0.0, 4),
                    "support": int(actual)})
    present = [e for e in per if e["support"]]
    return {"accuracy": round(float((y == pred).mean()), 4),
            "macro_f1": round(float(np.mean([e["f1"] for e in present])), 4),
            "balanced_accuracy": round(float(np.mean([e["recall"] for e in present])), 4),
            "per_class": per, "confusion": confusion.tolist(), "n": int(len(y))}


# -- fine-tuning --------------------------------------------------------------------------------

def default_freeze(spec: Any, layers: Sequence[str]) -> str:
    """Two named layers before the deepest one the space uses (Lite0 final -> stage6: stage7
    and the head convolution train)."""
    names = list(spec.layers)
    deepest = max(names.index(n) for n in layers)
    return names[max(deepest - 2, 0)]


def used_parameters(spec: Any, layers: Sequence[str], size: int) -> set[str]:
    """Names of the parameters that compute `layers` (found by back-propagating from them in a
    separately built copy; a registered network may carry parts these layers never use)."""
    import torch

    for layer in layers:
        if layer not in spec.layers:
            raise MetadataError(f"--freeze-until {layer}: {spec.name} has layers "
                                f"{', '.join(spec.layers)}")
    probe = spec.build(spec, tuple(layers))
    out = probe(torch.zeros(1, 3, size, size))
    sum(o.float().sum() for o in (out if isinstance(out, list | tuple) else [out])).backward()
    return {n for n, p in probe.named_parameters() if p.grad is not None}


class _Augmented:
    """Training images: decoded, shorter side scaled to preprocess.resize x U(1, 1.15), a random
    crop of the model's size, a coin-flip mirror; seeded by (seed, epoch, item)."""

    def __init__(self, paths: Sequence[Path], pre: Any, seed: int, train: bool) -> None:
        self.paths, self.pre, self.seed, self.train, self.epoch = list(paths), pre, seed, train, 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        import torch
        from PIL import Image

        from artsearch.errors import BadImageError
        from artsearch.extract import crop_extreme, prepare
        from artsearch.images import decode_image, read_file

        try:
            img, _ = decode_image(read_file(self.paths[i]), min_side=self.pre.resize)
        except BadImageError as e:
            raise BadImageError(f"{self.paths[i]}: {e}; it changed since indexing: re-run "
                                "`artsearch index` (with --prune if it is gone)") from e
        if not self.train:
            return prepare(img, self.pre)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        img = crop_extreme(img)
        w, h = img.size
        scale = self.pre.resize * rng.uniform(1.0, 1.15) / min(w, h)
        nw, nh = max(self.pre.size, round(w * scale)), max(self.pre.size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left = int(rng.integers(0, nw - self.pre.size + 1))
        top = int(rng.integers(0, nh - self.pre.size + 1))
        img = img.crop((left, top, left + self.pre.size, top + self.pre.size))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(img, np.uint8).copy()).permute(2, 0, 1)


class Network:
    """Backbone (cut at the space's layers) -> pooling -> unit vector -> linear head."""

    def __init__(self, spec: Any, layers: Sequence[str], pooling: str,
                 params: dict[str, np.ndarray], head_w: np.ndarray, head_b: np.ndarray,
                 device: Any) -> None:
        import torch

        from artsearch.pooling import get_pooling

        self.spec, self.device = spec, device
        self.trunk = spec.build(spec, tuple(layers)).to(device).eval()
        self.trunk = self.trunk.to(memory_format=torch.channels_last)
        self.pool, self.params = get_pooling(pooling), params
        self.head = torch.nn.Linear(head_w.shape[1], head_w.shape[0]).to(device)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(head_w))
            self.head.bias.copy_(torch.from_numpy(head_b))
        pre = spec.preprocess
        self.mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)

    def logits(self, pixels: Any) -> Any:
        import torch

        from artsearch.extract import model_input
        from artsearch.pooling import pool_layers

        out = self.trunk(model_input(pixels.to(self.device), self.spec.preprocess, self.mean,
                                     self.std))
        maps = [f.float() for f in (out if isinstance(out, list | tuple) else [out])]
        vectors = torch.nn.functional.normalize(pool_layers(self.pool, maps, self.params), dim=1)
        return self.head(vectors)


def _batches(dataset: Any, batch_size: int, workers: int, shuffle_seed: int | None) -> Any:
    import torch

    order = (np.random.default_rng(shuffle_seed).permutation(len(dataset)).tolist()
             if shuffle_seed is not None else list(range(len(dataset))))
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, order), batch_size=batch_size, num_workers=workers,
        collate_fn=lambda items: torch.stack(items)), order


def finetune(spec: Any, layers: Sequence[str], pooling: str, params: dict[str, np.ndarray],
             paths: Sequence[Path], y: np.ndarray, train: np.ndarray, val: np.ndarray,
             head: tuple[np.ndarray, np.ndarray], opts: TrainOptions, n_classes: int,
             say: Progress) -> tuple[Network, list[dict[str, float]], dict[str, Any]]:
    """Train the unfrozen layers and the head; returns the best network (lowest validation
    loss), the per-epoch history and what was frozen."""
    import torch

    from artsearch.extract import default_workers, pick_device

    torch.manual_seed(opts.seed)
    device = pick_device(opts.device)
    freeze = opts.freeze_until or default_freeze(spec, layers)
    frozen = used_parameters(spec, (freeze,), spec.preprocess.size)
    tuned = used_parameters(spec, layers, spec.preprocess.size) - frozen
    net = Network(spec, layers, pooling, params, *head, device)
    trainable = []
    for name, p in net.trunk.named_parameters():
        p.requires_grad_(name in tuned)
        if name in tuned:
            trainable.append(p)
    if not trainable:
        raise MetadataError(f"--freeze-until {freeze} freezes every layer the space uses; "
                            "choose an earlier layer")
    counts = np.bincount(y[train], minlength=n_classes).astype(np.float64)
    weights = torch.tensor(len(train) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32,
                           device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW([{"params": trainable, "lr": opts.lr},
                             {"params": net.head.parameters(), "lr": opts.lr * 10}],
                            weight_decay=opts.weight_decay)
    # On a CPU, decoding workers would compete with training for the same cores.
    workers = (opts.num_workers if opts.num_workers is not None else
               default_workers(device) if device.type == "cuda" else 0)
    train_set = _Augmented([paths[i] for i in train], spec.preprocess, opts.seed, train=True)
    val_pixels = torch.stack([_Augmented([paths[i] for i in val], spec.preprocess, 0,
                                         train=False)[j] for j in range(len(val))])
    y_train = torch.from_numpy(y[train]).to(device)
    y_val = torch.from_numpy(y[val]).to(device)
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, Any]] | None = None
    since_best = 0
    for epoch in range(1, opts.epochs + 1):
        train_set.epoch = epoch
        loader, order = _batches(train_set, opts.batch_size, workers, opts.seed + epoch)
        total, seen, started = 0.0, 0, time.perf_counter()
        for b, pixels in enumerate(loader):
            rows = torch.tensor(order[b * opts.batch_size:(b + 1) * opts.batch_size],
                                device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(net.logits(pixels).float(), y_train[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                             enabled=autocast):
            val_logits = torch.cat([net.logits(val_pixels[i:i + 64]).float()
                                    for i in range(0, len(val_pixels), 64)])
            val_loss = float(loss_fn(val_logits, y_val))
            val_acc = float((val_logits.argmax(1) == y_val).float().mean())
        row = {"epoch": epoch, "train_loss": round(total / max(seen, 1), 4),
               "val_loss": round(val_loss, 4), "val_accuracy": round(val_acc, 4),
               "seconds": round(time.perf_counter() - started, 1)}
        improved = best is None or val_loss < best[0] - 1e-4
        history.append(row | {"best": improved})
        say(f"epoch {epoch}/{opts.epochs}  loss {row['train_loss']:.4f}  val loss "
            f"{val_loss:.4f}  val accuracy {val_acc:.3f}  ({row['seconds']:.0f} s)"
            + ("  best so far" if improved else ""))
        if improved:
            best = (val_loss, {"trunk": {k: v.detach().clone()
                                         for k, v in net.trunk.state_dict().items()},
                               "head": {k: v.detach().clone()
                                        for k, v in net.head.state_dict().items()}})
            since_best = 0
        else:
            since_best += 1
            if since_best >= opts.patience:
                say(f"early stop: no lower validation loss for {opts.patience} epochs")
                break
    assert best is not None
    net.trunk.load_state_dict(best[1]["trunk"])
    net.head.load_state_dict(best[1]["head"])
    info = {"freeze_until": freeze, "frozen_tensors": len(frozen),
            "trained_parameters": int(sum(p.numel() for p in trainable)),
            "device": str(device), "best_epoch": min(history, key=lambda r: r["val_loss"])[
                "epoch"]}
    return net, history, info


def network_logits(net: Network, paths: Sequence[Path], batch_size: int = 32) -> np.ndarray:
    import torch

    data = _Augmented(paths, net.spec.preprocess, 0, train=False)
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            pixels = torch.stack([data[i] for i in range(start, min(start + batch_size,
                                                                     len(data)))])
            out.append(net.logits(pixels).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.head.out_features), np.float32)


# -- training as a whole --------------------------------------------------------------------------

@dataclass
class TrainResult:
    model_path: Path
    model_id: str
    classes: list[str]
    metrics: dict[str, Any]
    data: LabelledSet
    split: dict[str, np.ndarray]
    test_probs: np.ndarray
    val_probs_before: np.ndarray
    val_probs_after: np.ndarray


def train(index: ArtIndex, opts: TrainOptions, out: Path, *, group_fields: Sequence[str] = (),
          progress: Progress | None = None) -> TrainResult:
    """Train, calibrate and evaluate a classifier for `opts.label`; write the model file."""
    import torch

    from artsearch.index import check_space

    say = progress or (lambda _m: None)
    if opts.method not in ("probe", "finetune"):
        raise MetadataError(f"--method {opts.method}: choose probe or finetune")
    sp = index.space(opts.space)
    spec = index.spec_for(sp)
    check_space(sp, spec, layer=sp.layer, pooling=sp.pooling)
    data = labelled_works(index, opts.space, opts.label, opts.min_per_class, group_fields,
                          opts.where)
    tr, va, te = stratified_split(data.y, opts.seed, opts.val_size, opts.test_size)
    k = len(data.classes)
    say(f"{len(data.y):,} works in {k} classes: {len(tr)} train, {len(va)} validation, "
        f"{len(te)} test" + (f"; set aside {len(data.dropped)} classes with fewer than "
                             f"{opts.min_per_class} works" if data.dropped else ""))
    started = time.perf_counter()
    w, b, probe_info = fit_probe(data.vectors[tr], data.y[tr], k, opts.seed)
    say(f"probe: C = {probe_info['C']:g} by {probe_info['cv_folds']}-fold cross-validation")
    params = index.pooling_params(sp) or {}
    layers = tuple(sp.layer.split(","))
    trunk_state: dict[str, Any] = {}
    history: list[dict[str, float]] = []
    ft_info: dict[str, Any] = {}
    if opts.method == "probe":
        val_logits = data.vectors[va] @ w.T + b
        test_logits = data.vectors[te] @ w.T + b
    else:
        root = index.root
        if root is None:
            raise MetadataError(f"{index.path}: the index does not know its collection folder")
        paths = [root / p for p in data.paths]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise MetadataError(
                f"{len(missing)} labelled works are no longer in the collection (first: "
                f"{missing[0]}); fine-tuning reads the images: re-run `artsearch index "
                f"{root} --prune`, or use --method probe")
        net, history, ft_info = finetune(spec, layers, sp.pooling, params, paths, data.y, tr,
                                         va, (w, b), opts, k, say)
        val_logits = network_logits(net, [paths[i] for i in va])
        test_logits = network_logits(net, [paths[i] for i in te])
        w = net.head.weight.detach().cpu().numpy()
        b = net.head.bias.detach().cpu().numpy()
        trunk_state = {n: p.detach().cpu() for n, p in net.trunk.named_parameters()
                       if p.requires_grad}
    seconds = time.perf_counter() - started
    temperature = fit_temperature(val_logits, data.y[va])
    before, after = softmax(val_logits), softmax(val_logits / temperature)
    test_probs = softmax(test_logits / temperature)
    metrics = {
        "label": opts.label, "method": opts.method, "space": opts.space, "seed": opts.seed,
        "where": opts.where,
        "classes": data.classes, "works": {"train": len(tr), "val": len(va), "test": len(te),
                  "unlabelled": data.unlabelled, "set_aside": data.dropped},
        "test": scores(data.y[te], test_probs.argmax(1), data.classes),
        "calibration": {
            "temperature": round(temperature, 4),
            "val_ece_before": round(ece(before, data.y[va]), 4),
            "val_ece_after": round(ece(after, data.y[va]), 4),
            "test_ece_before": round(ece(softmax(test_logits), data.y[te]), 4),
            "test_ece_after": round(ece(test_probs, data.y[te]), 4),
            "val_nll_before": round(nll(val_logits, data.y[va]), 4),
            "val_nll_after": round(nll(val_logits / temperature, data.y[va]), 4),
            "bins": ECE_BINS, "val_works": int(len(va))},
        "majority_baseline": round(float((data.y[te] == np.bincount(data.y[tr]).argmax())
                                         .mean()), 4),
        "train_seconds": round(seconds, 2), "probe": probe_info, "finetune": ft_info,
        "history": history,
    }
    model = {
        "format": FORMAT, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "label": opts.label, "classes": data.classes, "method": opts.method,
        "backbone": sp.backbone, "weights_sha256": sp.weights_sha256,
        "weights_path": (sp.params or {}).get("weights"), "space": sp.name,
        "layers": list(layers), "pooling": sp.pooling,
        "pooling_params": {k_: torch.from_numpy(np.asarray(v)) for k_, v in params.items()},
        "preprocess": asdict(spec.preprocess), "head_weight": torch.from_numpy(w.copy()),
        "head_bias": torch.from_numpy(b.copy()), "temperature": temperature,
        "trunk_state": trunk_state,
        "training": {k_: v for k_, v in asdict(opts).items() if k_ not in ("device",
                                                                         "num_workers")},
        "metrics": _plain(metrics), "index": str(index.path.resolve()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(model, tmp)
    model_id = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
    tmp.replace(out)
    return TrainResult(out, model_id, data.classes, metrics, data,
                       {"train": tr, "val": va, "test": te}, test_probs, before, after)


def _plain(value: Any) -> Any:
    """JSON-like values only (numpy scalars and tuples become Python ones)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- using a model --------------------------------------------------------------------------------

class Classifier:
    """A trained model file, ready to classify images with calibrated probabilities."""

    def __init__(self, path: Path, model: dict[str, Any], weights: Path | None = None,
                 device: str | None = None) -> None:
        from artsearch import backbones

        self.path, self.model = path, model
        self.id = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.classes: list[str] = list(model["classes"])
        self.label: str = model["label"]
        self.spec = backbones.resolve(model["backbone"], weights or model.get("weights_path"))
        dims = self.spec.dims(tuple(model["layers"]), model["pooling"])
        if model["head_weight"].shape[1] != dims:
            raise ModelError(f"{path}: damaged model file (head takes "
                             f"{model['head_weight'].shape[1]} features, {model['backbone']} "
                             f"gives {dims}); train it again with `artsearch train`")
        found = self.spec.weights.checksum()
        if found != model["weights_sha256"]:
            raise ModelError(
                f"{path}: trained on {model['backbone']} weights {model['weights_sha256'][:12]}, "
                f"but the weights found here are {found[:12]} ({self.spec.weights.description}); "
                "install or pass (--weights) the ones it was trained with")
        self.device = device
        self._net: Network | None = None

    def check_space(self, space: Any) -> None:
        """Refuse a space built with another backbone, weights, layers or pooling."""
        made = (space.backbone, space.weights_sha256, space.layer, space.pooling)
        wanted = (self.model["backbone"], self.model["weights_sha256"],
                  ",".join(self.model["layers"]), self.model["pooling"])
        if made != wanted:
            raise IndexMismatchError(
                f"space {space.name!r} uses {space.backbone} ({space.layer}, {space.pooling}), "
                f"but model {self.path.name} was trained on {wanted[0]} ({wanted[2]}, "
                f"{wanted[3]}); classify into an index whose space matches")

    @property
    def network(self) -> Network:
        if self._net is None:
            from artsearch.extract import pick_device

            m = self.model
            params = {k: v.numpy() for k, v in m["pooling_params"].items()}
            net = Network(self.spec, m["layers"], m["pooling"], params,
                          m["head_weight"].numpy(), m["head_bias"].numpy(),
                          pick_device(self.device))
            if m["trunk_state"]:
                missing = set(m["trunk_state"]) - set(dict(net.trunk.named_parameters()))
                if missing:
                    raise ModelError(f"{self.path}: fine-tuned layers {sorted(missing)[:3]} "
                                     f"do not exist in {m['backbone']} as built here (a "
                                     "model made by an older artsearch?); train it again")
                net.trunk.load_state_dict(m["trunk_state"], strict=False)
            net.trunk.requires_grad_(False)
            self._net = net
        return self._net

    def probabilities(self, images: Sequence[Any]) -> np.ndarray:
        """Calibrated class probabilities for decoded RGB pictures."""
        import torch

        from artsearch.extract import prepare

        if not images:
            return np.zeros((0, len(self.classes)), np.float32)
        pixels = torch.stack([prepare(im, self.spec.preprocess) for im in images])
        with torch.no_grad():
            logits = self.network.logits(pixels).float().cpu().numpy()
        return softmax(logits / self.model["temperature"])


def load_model(path: Path, *, weights: Path | None = None, device: str | None = None
               ) -> Classifier:
    import torch

    try:
        model = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file; make one with `artsearch train`") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ModelError(f"{path}: not an artsearch model file ({type(e).__name__}); make one "
                         "with `artsearch train`") from e
    if not isinstance(model, dict) or model.get("format") != FORMAT:
        raise ModelError(f"{path}: not an artsearch model file (format "
                         f"{model.get('format') if isinstance(model, dict) else None!r}, "
                         f"expected {FORMAT})")
    _check_model(path, model)
    return Classifier(path, model, weights, device)


_MODEL_KEYS = ("label", "classes", "backbone", "weights_sha256", "space", "layers", "pooling",
               "pooling_params", "head_weight", "head_bias", "temperature", "trunk_state")


def _check_model(path: Path, model: dict[str, Any]) -> None:
    """Refuse a damaged or hand-edited model file with the reason, not a traceback later."""
    import torch

    def bad(why: str) -> ModelError:
        return ModelError(f"{path}: damaged model file ({why}); train it again with "
                          "`artsearch train`")

    missing = [k for k in _MODEL_KEYS if k not in model]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    classes, w, b, t = (model["classes"], model["head_weight"], model["head_bias"],
                        model["temperature"])
    if not isinstance(classes, list) or len(classes) < 2:
        raise bad("fewer than two classes")
    if not (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)) or w.ndim != 2 \
            or b.shape != (len(classes),) or w.shape[0] != len(classes):
        raise bad(f"head of shape {tuple(getattr(w, 'shape', ()))} for {len(classes)} classes")
    if not bool(torch.isfinite(w).all()) or not bool(torch.isfinite(b).all()):
        raise bad("non-finite head weights")
    if not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
        raise bad(f"temperature {t!r}; it must be a finite number above 0")
