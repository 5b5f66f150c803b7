"""Training as a whole: data, probe or fine-tune, calibration, evaluation, the model file."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.classify._base import ECE_BINS, FORMAT, LabelledSet, Progress, TrainOptions
from artsearch.classify.calibration import ece, fit_probe, fit_temperature, nll, scores, softmax
from artsearch.classify.data import labelled_works, stratified_split
from artsearch.classify.finetune import finetune, network_logits
from artsearch.errors import MetadataError
from artsearch.index import ArtIndex

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


