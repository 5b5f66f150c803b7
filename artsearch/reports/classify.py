"""The evaluation report of a trained classifier, in the cluster report's look.

A folder that opens from disk: `index.html`, `metrics.json`, `confusion.svg`,
`calibration.svg` and `thumbs/`. Every figure comes from the test split, which training
never saw, except calibration, which is fitted and first shown on the validation split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.classify import TrainResult, reliability, scores
from artsearch.index import ArtIndex
from artsearch.reports.page import (
    Thumbnails,
    claim_folder,
    esc,
    page,
    standard_facts,
    write_report,
)

__all__ = ["classify_report"]

MISTAKES = 12


def classify_report(index: ArtIndex, result: TrainResult, out_dir: Path, *,
                    group_fields: Sequence[str] = (),
                    licences: Iterable[str] | None = None) -> Path:
    """Write the report of a training run to out_dir; returns the index.html path."""
    m, data = result.metrics, result.data
    test = result.split["test"]
    y_test = data.y[test]
    probs = result.test_probs
    pred = probs.argmax(1)
    classes = result.classes
    claim_folder(out_dir)
    (out_dir / "confusion.svg").write_text(_confusion_svg(
        np.array(m["test"]["confusion"]), classes), encoding="utf-8")
    y_val = result.calibration_y
    curves = {"before": reliability(result.val_probs_before, y_val),
              "after": reliability(result.val_probs_after, y_val)}
    (out_dir / "calibration.svg").write_text(_calibration_svg(curves), encoding="utf-8")

    wrong = [int(i) for i in np.flatnonzero(pred != y_test)]
    wrong.sort(key=lambda i: -probs[i, pred[i]])
    wrong = wrong[:MISTAKES]
    thumbs = Thumbnails(index, out_dir, licences=licences)
    thumbs.make((data.artwork_ids[test[i]], data.paths[test[i]]) for i in wrong)
    groups = {f: _by_group(data.fields.get(f, []), test, y_test, pred, classes)
              for f in group_fields}

    sections = [_summary(m), _per_class(m["test"]), _calibration(m["calibration"]),
                _mistakes(wrong, test, y_test, pred, probs, data, classes, thumbs),
                *(_group_section(f, g) for f, g in groups.items()),
                _history(m), _about(m, data)]
    toc = [("summary", "Summary"), ("classes", "Per class"), ("calibration", "Calibration"),
           ("mistakes", "Confident mistakes"),
           *((f"by-{f}", f"By {f}") for f in groups), ("training", "Training"),
           ("about", "About")]
    facts = _facts(index, result)
    html_text = page(f"Classifier for {m['label']}: {m['method']}",
                     f"{len(classes)} classes; accuracy {m['test']['accuracy']:.3f} on "
                     f"{m['test']['n']} held-out works", facts, sections, toc=toc)
    metrics = {**m, "model": str(result.model_path), "model_id": result.model_id,
               "by": {f: g for f, g in groups.items()}, "provenance": dict(facts),
               "reliability_val": curves}
    write_report(out_dir, html_text, metrics, data_name="metrics.json",
                 files=["confusion.svg", "calibration.svg", *thumbs.files()])
    return out_dir / "index.html"


def _facts(index: ArtIndex, result: TrainResult) -> list[tuple[str, object]]:
    m = result.metrics
    sp = index.space(m["space"])
    training = {**({"C": m["probe"]["C"]} if m["method"] == "probe" else {}),
                **{k: v for k, v in m.get("finetune", {}).items()
                   if k in ("freeze_until", "trained_parameters", "best_epoch", "device")}}
    works = m["works"]
    return [
        ("collection", index.root or "unknown"), ("index", index.path),
        ("space", f"{sp.name}: {sp.backbone}, layers {sp.layer}, {sp.pooling} pooling"),
        ("weights sha256", sp.weights_sha256),
        ("label", m["label"]), ("method", m["method"]),
        ("training", ", ".join(f"{k} {v}" for k, v in training.items()) or "-"),
        ("split", f"{works['train']} train / {works['val']} validation / {works['test']} test "
                  f"(stratified, seed {m['seed']})"),
        ("model", f"{result.model_path} (id {result.model_id})"),
        ("trained in", f"{m['train_seconds']:.1f} s"),
        *standard_facts()]


def _bar(name: str, share: float, fill: str) -> str:
    return (f"<span class=track title='{esc(name)} {share:.2f}' style='display:block;"
            f"width:160px'><span class=fill style='display:block;width:{100 * share:.1f}%;"
            f"background:{fill}'></span></span>")


def _summary(m: dict[str, Any]) -> str:
    t = m["test"]
    return (
        "<section id=summary><h2>Summary</h2><table>"
        f"<tr><td>accuracy</td><td class=num>{t['accuracy']:.3f}</td></tr>"
        f"<tr><td>macro-F1</td><td class=num>{t['macro_f1']:.3f}</td></tr>"
        f"<tr><td>balanced accuracy</td><td class=num>{t['balanced_accuracy']:.3f}</td></tr>"
        f"<tr><td>majority-class baseline</td><td class=num>{m['majority_baseline']:.3f}</td>"
        f"</tr><tr><td>held-out works</td><td class=num>{t['n']}</td></tr></table>"
        "<p class=note>Accuracy counts every work alike; macro-F1 and balanced accuracy give "
        "each class the same weight, so a rare class the model ignores pulls them down. The "
        "baseline is what always answering the most common class would score.</p></section>")


def _per_class(t: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{esc(e['class'])}</td><td class=num>{e['precision']:.2f}</td>"
        f"<td class=num>{e['recall']:.2f}</td><td class=num>{e['f1']:.2f}</td>"
        f"<td class=num>{e['support']}</td><td style='width:180px'>"
        f"{_bar('recall', e['recall'], '#0072B2')}</td></tr>"
        for e in t["per_class"])
    axis = ("<span class=axis style='display:flex;justify-content:space-between;width:160px;"
            "font-weight:400' aria-hidden=true><span>0</span><span>0.5</span><span>1</span>"
            "</span>")
    return (
        "<section id=classes><h2>Per class</h2><table><tr><th>class</th>"
        "<th class=num>precision</th><th class=num>recall</th><th class=num>F1</th>"
        f"<th class=num>works</th><th>recall (bar){axis}</th></tr>{rows}</table>"
        "<p class=note>Precision: of the works given this label, the share that carry it. "
        "Recall: of the works that carry it, the share found.</p>"
        "<h3>Confusion matrix</h3><img src=confusion.svg alt='confusion matrix' "
        "style='max-width:100%'><p class=note>Rows: catalogued class; columns: predicted; "
        "each row shaded by its share.</p></section>")


def _calibration(c: dict[str, Any]) -> str:
    better = c["val_ece_after"] <= c["val_ece_before"]
    oof = c.get("fitted_on", "validation") != "validation"
    where = ("out-of-fold predictions over train + validation (the probe was refitted on "
             "both once C was chosen, so each work is predicted by a fold that did not see it)"
             if oof else "the validation split")
    short = "out of fold" if oof else "validation"
    return (
        "<section id=calibration><h2>Calibration</h2>"
        f"<p>Temperature {c['temperature']:.2f}, fitted on {where}: the logits "
        "are divided by it before the softmax ("
        + ("softening over-confident" if c["temperature"] > 1 else "sharpening over-cautious")
        + " probabilities). "
        f"Expected calibration error {short} {c['val_ece_before']:.3f} before, "
        f"{c['val_ece_after']:.3f} after" + ("" if better else " (not lower: temperature "
                                              "scaling fits the log-likelihood, not the ECE)")
        + f"; on the untouched test split {c['test_ece_before']:.3f} before, "
        f"{c['test_ece_after']:.3f} after.</p>"
        "<table><tr><th>measure</th><th class=num>before</th><th class=num>after</th></tr>"
        f"<tr><td>ECE, {short}</td><td class=num>{c['val_ece_before']:.4f}</td>"
        f"<td class=num>{c['val_ece_after']:.4f}</td></tr>"
        f"<tr><td>ECE, test</td><td class=num>{c['test_ece_before']:.4f}</td>"
        f"<td class=num>{c['test_ece_after']:.4f}</td></tr>"
        f"<tr><td>log-loss, {short}</td><td class=num>{c['val_nll_before']:.4f}</td>"
        f"<td class=num>{c['val_nll_after']:.4f}</td></tr></table>"
        "<img src=calibration.svg alt='calibration curve' style='max-width:520px;width:100%'>"
        f"<p class=note>Reliability diagram ({short}): predictions grouped by "
        "confidence into tenths; a calibrated model lies on the diagonal (when it says 0.8, it "
        "is right 8 times in 10). The number by each point is how many works it stands on. "
        f"ECE with {c['bins']} bins.</p>" + _few_works_note(c) + "</section>")


# Below this many validation works the reliability curve is mostly noise: a bin of 3 works
# can only show accuracies of 0, 1/3, 2/3 or 1.
FEW_VALIDATION_WORKS = 100


def _few_works_note(c: dict[str, Any]) -> str:
    n = c.get("val_works")
    if n is None or n >= FEW_VALIDATION_WORKS:
        return ""
    return (f"<p class=warn><b>Too few works to read this curve:</b> it stands on "
            f"{n} works, so most points stand on a handful and zig-zag by chance. Read the "
            "log-loss row of the table instead, and treat the probabilities as rough.</p>")


def _mistakes(wrong: list[int], test: np.ndarray, y: np.ndarray, pred: np.ndarray,
              probs: np.ndarray, data: Any, classes: Sequence[str], thumbs: Thumbnails) -> str:
    if not wrong:
        return ("<section id=mistakes><h2>Most confident mistakes</h2><p class=note>No "
                "mistakes on the test split.</p></section>")
    figs = "".join(thumbs.figure(
        data.artwork_ids[test[i]],
        f"predicted {classes[pred[i]]} ({probs[i, pred[i]]:.2f}); catalogued {classes[y[i]]}",
        data.paths[test[i]]) for i in wrong)
    return ("<section id=mistakes><h2>Most confident mistakes</h2><p class=note>Test works "
            "the model got wrong while most sure of itself. Some may be catalogue errors "
            "worth a second look; others show what the model confuses.</p>"
            f"<div class=sheet>{figs}</div></section>")


def _by_group(values: list[Any], test: np.ndarray, y: np.ndarray, pred: np.ndarray,
              classes: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    groups: dict[str, list[int]] = {}
    for n, row in enumerate(test):
        value = values[row] if row < len(values) else None
        groups.setdefault(str(value) if value else "(not catalogued)", []).append(n)
    for value, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        s = scores(y[rows], pred[rows], classes)
        out.append({"value": value, "works": len(rows), "accuracy": s["accuracy"],
                    "macro_f1": s["macro_f1"]})
    return out


def _group_section(name: str, rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{esc(r['value'])}</td><td class=num>{r['works']}</td>"
        f"<td class=num>{r['accuracy']:.3f}</td><td class=num>{r['macro_f1']:.3f}</td>"
        f"<td style='width:180px'>{_bar('accuracy', r['accuracy'], '#E69F00')}</td></tr>"
        for r in rows)
    spread = (max(r["accuracy"] for r in rows) - min(r["accuracy"] for r in rows)
              if rows else 0.0)
    return (f"<section id='by-{esc(name)}'><h2>Accuracy by {esc(name)}</h2>"
            f"<table><tr><th>{esc(name)}</th><th class=num>test works</th>"
            f"<th class=num>accuracy</th><th class=num>macro-F1</th><th>accuracy, drawn</th>"
            f"</tr>{body}"
            f"</table><p class=note>Accuracy differs by {spread:.2f} between groups. Groups "
            "with few works give noisy figures; a persistent gap means the model serves some "
            "parts of the collection worse.</p></section>")


def _history(m: dict[str, Any]) -> str:
    if not m.get("history"):
        probe = m["probe"]
        cv_rows = "".join(
            f"<tr><td class=num>{esc(c)}</td><td class=num>{v}</td>"
            f"<td>{'chosen' if float(c) == float(probe['C']) else ''}</td></tr>"
            for c, v in probe.get("cv_log_loss", {}).items())
        return ("<section id=training><h2>Training</h2><p>Multinomial logistic regression "
                f"on the stored vectors, class-balanced; C = {probe['C']:g} chosen by "
                f"{probe['cv_folds']}-fold cross-validated log-loss on the training split.</p>"
                "<table><tr><th class=num>C (inverse regularisation)</th>"
                f"<th class=num>cross-validated log-loss ({probe['cv_folds']} folds; lower is "
                f"better)</th><th>chosen</th></tr>{cv_rows}</table></section>")
    rows = "".join(
        f"<tr><td class=num>{r['epoch']}</td><td class=num>{r['train_loss']:.4f}</td>"
        f"<td class=num>{r['val_loss']:.4f}</td><td class=num>{r['val_accuracy']:.3f}</td>"
        f"<td class=num>{r['seconds']:.0f}</td><td>{'best' if r['best'] else ''}</td></tr>"
        for r in m["history"])
    ft = m["finetune"]
    return ("<section id=training><h2>Training</h2>"
            f"<p>Frozen up to {esc(ft['freeze_until'])}; {ft['trained_parameters']:,} "
            f"parameters trained on {esc(ft['device'])}, head started from the linear probe; "
            f"the weights of epoch {ft['best_epoch']} (lowest validation loss) were kept.</p>"
            "<table><tr><th class=num>epoch</th><th class=num>training log-loss</th>"
            "<th class=num>validation log-loss</th><th class=num>validation accuracy</th>"
            "<th class=num>seconds</th>"
            f"<th>kept</th></tr>{rows}</table></section>")


def _about(m: dict[str, Any], data: Any) -> str:
    aside = m["works"]["set_aside"]
    aside_html = (f"<p>Set aside, too few works to learn and test: "
                  f"{esc(', '.join(f'{c} ({n})' for c, n in aside.items()))}.</p>"
                  if aside else "")
    return ("<section id=about><h2>About this report</h2>" + aside_html +
            f"<p class=note>{m['works']['unlabelled']} works of the space have no "
            f"{esc(m['label'])} and were not used. The backbone was pretrained on photographs "
            "(ImageNet) and inherits that data's blind spots; a confident prediction is a "
            "lead for a cataloguer, not an attribution. <code>artsearch classify</code> answers "
            "'uncertain' below its threshold rather than force a label.</p></section>")


def _confusion_svg(confusion: np.ndarray, classes: Sequence[str]) -> str:
    k = len(classes)
    cell = max(14, min(44, 560 // max(k, 1)))
    # Room for the labels as long as they are (at most 24 characters), not a fixed margin.
    longest = max((len(c[:24]) for c in classes), default=1)
    left = int(16 + 7 * longest)
    top = int(16 + 7 * longest * 0.87)  # column labels are turned 60 degrees
    size = (left + k * cell + 20, top + k * cell + 20)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{size[0]}' height='{size[1]}' "
             f"font-family='system-ui, sans-serif' font-size='{min(12, cell - 3)}'>",
             f"<rect width='{size[0]}' height='{size[1]}' fill='#fff'/>"]
    for i, name in enumerate(classes):
        y = top + i * cell + cell / 2
        parts.append(f"<text x='{left - 6}' y='{y + 4:.1f}' text-anchor='end'>"
                     f"{esc(name[:24])}</text>")
        x = left + i * cell + cell / 2
        parts.append(f"<text transform='translate({x + 4:.1f},{top - 6}) rotate(-60)'>"
                     f"{esc(name[:24])}</text>")
    for i in range(k):
        total = max(int(confusion[i].sum()), 1)
        for j in range(k):
            share = confusion[i, j] / total
            shade = f"rgba(0,114,178,{share:.3f})"
            parts.append(f"<rect x='{left + j * cell}' y='{top + i * cell}' width='{cell}' "
                         f"height='{cell}' fill='{shade}' stroke='#ddd'/>")
            if confusion[i, j] and cell >= 18:
                parts.append(f"<text x='{left + j * cell + cell / 2:.1f}' "
                             f"y='{top + i * cell + cell / 2 + 4:.1f}' text-anchor='middle' "
                             f"fill='{'#fff' if share > 0.5 else '#222'}'>"
                             f"{confusion[i, j]}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _calibration_svg(curves: dict[str, list[dict[str, float]]]) -> str:
    w, h, pad = 480, 400, 48
    side = min(w, h) - 2 * pad

    def xy(conf: float, acc: float) -> tuple[float, float]:
        return pad + conf * side, pad + (1 - acc) * side

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' "
             "font-family='system-ui, sans-serif' font-size='12'>",
             f"<rect width='{w}' height='{h}' fill='#fff'/>",
             f"<rect x='{pad}' y='{pad}' width='{side}' height='{side}' fill='none' "
             "stroke='#bbb'/>",
             f"<line x1='{pad}' y1='{pad + side}' x2='{pad + side}' y2='{pad}' stroke='#999' "
             "stroke-dasharray='4 4'/>",
             f"<text x='{pad + side / 2}' y='{pad + side + 32}' text-anchor='middle'>"
             "confidence</text>",
             f"<text transform='translate({pad - 30},{pad + side / 2}) rotate(-90)' "
             "text-anchor='middle'>accuracy</text>"]
    for t in (0, 0.5, 1):
        parts.append(f"<text x='{pad + t * side}' y='{pad + side + 16}' "
                     f"text-anchor='middle'>{t:g}</text>")
        parts.append(f"<text x='{pad - 6}' y='{pad + (1 - t) * side + 4}' "
                     f"text-anchor='end'>{t:g}</text>")
    for points, col in zip(curves.values(), ("#D55E00", "#0072B2"), strict=True):
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in
                        (xy(p["confidence"], p["accuracy"]) for p in points))
        parts.append(f"<polyline points='{path}' fill='none' stroke='{col}' "
                     "stroke-width='2'/>")
        for p in points:
            x, y = xy(p["confidence"], p["accuracy"])
            r = 2 + min(6, p["count"] ** 0.5 / 2)
            parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{r:.1f}' fill='{col}' "
                         "fill-opacity='0.7'/>")
            if col == "#0072B2":  # counts once, by the calibrated curve's points
                parts.append(f"<text x='{x + r + 3:.1f}' y='{y - r:.1f}' font-size='10' "
                             f"fill='{col}'>n={p['count']}</text>")
    total = sum(p["count"] for p in next(iter(curves.values()), []))
    if total < FEW_VALIDATION_WORKS:
        parts.append(f"<text x='{pad + side}' y='{pad - 10}' text-anchor='end' "
                     f"fill='#CC3311'>only {total} works: read with care</text>")
    for n, (name, col) in enumerate((("before temperature", "#D55E00"),
                                     ("after temperature", "#0072B2"))):
        parts.append(f"<rect x='{pad + 10}' y='{pad + 10 + 18 * n}' width='12' height='12' "
                     f"fill='{col}'/><text x='{pad + 28}' y='{pad + 20 + 18 * n}'>{name}</text>")
    parts.append("</svg>")
    return "".join(parts)
