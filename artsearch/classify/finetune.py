"""Fine-tuning: the unfrozen layers of the backbone and a head, on augmented images."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.classify._base import Progress, TrainOptions
from artsearch.errors import MetadataError

# -- fine-tuning --------------------------------------------------------------------------------

def default_freeze(spec: Any, layers: Sequence[str]) -> str:
    """Two named layers before the deepest one the space uses (Lite0 final -> stage6: stage7
    and the head convolution train)."""
    names: list[str] = list(spec.layers)
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
    """The space's extractor (backbone cut at its layers, its preprocessing and pooling, to a
    unit vector) with a linear head: the same code that indexed the vectors, now trained."""

    def __init__(self, spec: Any, layers: Sequence[str], pooling: str,
                 params: dict[str, np.ndarray], head_w: np.ndarray, head_b: np.ndarray,
                 device: Any) -> None:
        import torch

        from artsearch.extract import Extractor

        self.spec, self.device = spec, device
        self.extractor = Extractor(spec, layer=tuple(layers), pooling=pooling, params=params,
                                   device=str(device), precision="fp32", num_workers=0)
        self.trunk = self.extractor.model
        self.head = torch.nn.Linear(head_w.shape[1], head_w.shape[0]).to(device)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(head_w))
            self.head.bias.copy_(torch.from_numpy(head_b))

    def logits(self, pixels: Any) -> Any:
        return self.head(self.extractor.forward(pixels))


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


