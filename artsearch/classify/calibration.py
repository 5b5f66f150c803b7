"""The linear probe, temperature scaling, calibration error and the scores of a test split."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from artsearch.classify._base import CS, ECE_BINS

# -- probe and calibration ---------------------------------------------------------------------

def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Multinomial logistic regression (class-balanced); C by stratified k-fold log-loss.
    Returns (W: classes x dims, b, info)."""

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
    w, b = probe_with_c(x, y, n_classes, best)
    info = {"C": best, "cv_folds": folds, "cv_log_loss": {str(c): round(-v, 4)
                                                          for c, v in scores.items()}}
    return w, b, info


def probe_with_c(x: np.ndarray, y: np.ndarray, n_classes: int, c: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The class-balanced logistic regression at a chosen C, as (W: classes x dims, b)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y)
    w = np.zeros((n_classes, x.shape[1]), np.float32)
    b = np.full(n_classes, -1e4, np.float32)  # a class absent from training is never predicted
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # two classes: one logit z; softmax of (-z/2, z/2) is sigmoid(z)
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    w[model.classes_] = coef.astype(np.float32)
    b[model.classes_] = intercept.astype(np.float32)
    return w, b


def out_of_fold_logits(x: np.ndarray, y: np.ndarray, n_classes: int, c: float, seed: int,
                       folds: int = 5) -> np.ndarray:
    """Each work's logits from a probe (at C) that did not see it: stratified k-fold, so a
    model refitted on all of x can still be calibrated on predictions for unseen works."""
    from sklearn.model_selection import StratifiedKFold

    folds = int(min(folds, np.bincount(y, minlength=n_classes)[np.unique(y)].min()))
    if folds < 2:
        raise ValueError("out-of-fold logits need two works of every class")
    out = np.zeros((len(y), n_classes), np.float32)
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        w, b = probe_with_c(x[train], y[train], n_classes, c)
        out[held] = x[held] @ w.T + b
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    probabilities: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probabilities


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


