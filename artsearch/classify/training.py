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
from artsearch.classify.calibration import (
    ece,
    fit_probe,
    fit_temperature,
    nll,
    out_of_fold_logits,
    probe_with_c,
    scores,
    softmax,
)
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
    calibration_y: np.ndarray  # the labels the calibration probabilities are for


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
    refit: dict[str, Any] = {}
    cal_y = data.y[va]
    if opts.method == "probe":
        val_logits = data.vectors[va] @ w.T + b
        test_logits = data.vectors[te] @ w.T + b
        if opts.refit and len(va):
            # Model selection is done (C by cross-validation on train); the validation works
            # now teach too. Calibration then needs predictions for works the model did not
            # see: the out-of-fold logits of the same probe over train + validation.
            t_before = fit_temperature(val_logits, data.y[va])
            before_refit = scores(data.y[te], test_logits.argmax(1), data.classes)
            both = np.sort(np.concatenate([tr, va]))
            w, b = probe_with_c(data.vectors[both], data.y[both], k, probe_info["C"])
            val_logits = out_of_fold_logits(data.vectors[both], data.y[both], k,
                                            probe_info["C"], opts.seed)
            cal_y = data.y[both]
            test_logits = data.vectors[te] @ w.T + b
            refit = {"works": int(len(both)), "calibrated_on": "out-of-fold train+validation",
                     "test_before_refit": {key: before_refit[key] for key in
                                           ("accuracy", "macro_f1", "balanced_accuracy")},
                     "temperature_before_refit": round(t_before, 4)}
            say(f"probe refitted on train + validation ({len(both)} works); test accuracy "
                f"{before_refit['accuracy']:.3f} before the refit")
    else:
        root = index.root
        if root is None:
            raise MetadataError(f"{index.path}: the index does not know its collection folder")
        from artsearch.paths import inside

        found = [inside(root, p) for p in data.paths]  # a link out of the collection: gone
        paths = [f if f is not None else root / p for f, p in zip(found, data.paths,
                                                                  strict=True)]
        missing = [str(p) for f, p in zip(found, paths, strict=True)
                   if f is None or not p.is_file()]
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
    temperature = fit_temperature(val_logits, cal_y)
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
            "fitted_on": refit.get("calibrated_on", "validation"),
            "val_ece_before": round(ece(before, cal_y), 4),
            "val_ece_after": round(ece(after, cal_y), 4),
            "test_ece_before": round(ece(softmax(test_logits), data.y[te]), 4),
            "test_ece_after": round(ece(test_probs, data.y[te]), 4),
            "val_nll_before": round(nll(val_logits, cal_y), 4),
            "val_nll_after": round(nll(val_logits / temperature, cal_y), 4),
            "bins": ECE_BINS, "val_works": int(len(cal_y))},
        "refit": refit,
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
                       {"train": tr, "val": va, "test": te}, test_probs, before, after,
                       cal_y)


def _plain(value: Any) -> Any:
    """JSON-like values only (numpy scalars and tuples become Python ones)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


