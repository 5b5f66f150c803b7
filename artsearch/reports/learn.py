"""The HTML report of `artsearch learn`: what it learnt from, how the loss and the held-out
measures moved epoch by epoch, and the untuned network against the tuned one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artsearch.reports.page import PALETTE, bars, esc, page, standard_facts, write_report

__all__ = ["learn_report"]


def _curve(history: list[dict[str, float]], key: str, baseline: float | None, label: str
           ) -> str:
    """A small line chart (inline SVG, no script) of `key` per epoch, with the untuned value
    as a dashed line."""
    values = [h[key] for h in history]
    if not values:
        return "<p class=note>no epoch ran</p>"
    points = values + ([baseline] if baseline is not None else [])
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    w, h, pad = 360, 140, 28

    def xy(i: int, v: float) -> tuple[float, float]:
        x = pad + (w - 2 * pad) * (i / max(1, len(values) - 1))
        return x, h - pad - (h - 2 * pad) * (v - low) / span

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(values)))
    dots = []
    for i, v in enumerate(values):
        x, y = xy(i, v)
        dots.append(f"<circle cx={x:.1f} cy={y:.1f} r=3 fill='{PALETTE[0]}'>"
                    f"<title>epoch {i + 1}: {v:.4f}</title></circle>")
    base = ""
    if baseline is not None:
        _, y = xy(0, baseline)
        base = (f"<line x1={pad} x2={w - pad} y1={y:.1f} y2={y:.1f} stroke='#999' "
                f"stroke-dasharray='4 3'><title>untuned: {baseline:.4f}</title></line>")
    return (f"<figure class=chart><svg role=img aria-label='{esc(label)}' width={w} "
            f"height={h} viewBox='0 0 {w} {h}'>"
            f"<line x1={pad} x2={pad} y1={pad / 2} y2={h - pad} stroke='#ccc'/>"
            f"<line x1={pad} x2={w - pad} y1={h - pad} y2={h - pad} stroke='#ccc'/>"
            f"{base}<polyline fill=none stroke='{PALETTE[0]}' stroke-width=2 points='{line}'/>"
            f"{''.join(dots)}<text x={pad} y={h - 8} class=axis font-size=11>epoch 1</text>"
            f"<text x={w - pad - 50} y={h - 8} font-size=11>epoch {len(values)}</text>"
            f"<text x=2 y={pad / 2 + 4} font-size=11>{high:.3f}</text>"
            f"<text x=2 y={h - pad} font-size=11>{low:.3f}</text></svg>"
            f"<figcaption class=note>{esc(label)}"
            + (" (dashed: untuned)" if baseline is not None else "") + "</figcaption></figure>")


def learn_report(result: Any, out_dir: Path, *, source: str) -> Path:
    """Write the report folder (index.html, report.json); returns index.html's path."""
    o = result.options
    main = o.main
    if getattr(o, "unlabelled", False):
        return _unlabelled_report(result, out_dir, source=source)
    measures = sorted(result.before)
    rows = "".join(
        f"<tr><td>{esc(m)}</td><td class=num>{result.before[m]:.3f}</td>"
        f"<td class=num>{result.after.get(m, float('nan')):.3f}</td>"
        f"<td class=num>{result.after.get(m, 0) - result.before[m]:+.3f}</td></tr>"
        for m in measures)
    table = ("<table><thead><tr><th scope=col>measure (held-out works)</th>"
             "<th scope=col class=num>untuned</th><th scope=col class=num>tuned</th>"
             "<th scope=col class=num>change</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    curves = (_curve(result.history, "loss", None, "training loss (supervised contrastive)")
              + _curve(result.history, f"style {main} mAP",
                       result.before.get(f"style {main} mAP"),
                       f"held-out same-{main} mAP of the style space")
              + _curve(result.history, "content_distance", None,
                       "content vector's drift from the untuned network (1 - cosine)"))
    label_sections = []
    for name, counts in result.label_counts.items():
        shown = list(counts.items())[:25]
        rest = sum(counts.values()) - sum(n for _, n in shown)
        if rest:
            shown.append((f"{len(counts) - 25} others", rest))
        label_sections.append(
            f"<h3>{esc(name)}: {len(counts):,} values</h3>"
            + bars(shown, sum(counts.values()), PALETTE[2], rest=bool(rest)))
    weights = ", ".join(f"{n} (weight {w:g})" for n, w in o.labels)
    sections = [
        "<section id=result><h2>Held-out values: untuned against tuned</h2>"
        f"<p>The {result.val_labels:,} held-out values of <b>{esc(main)}</b> "
        f"({result.val_works:,} works) were never trained on. The epoch kept is the one with "
        f"the best held-out same-{esc(main)} mAP: epoch {result.best_epoch} of "
        f"{len(result.history)}" + (" — none beat the untuned network, so the file holds "
                                    "the untuned stages" if result.best_epoch == 0 else "")
        + ".</p>" + table + "</section>",
        "<section id=curves><h2>Epoch by epoch</h2><div class=charts>" + curves
        + "</div></section>",
        f"<section id=labels><h2>What it learnt from</h2><p>{result.train_works:,} works of "
        f"{result.train_labels:,} {esc(main)} values trained on; labels: {esc(weights)}.</p>"
        + "".join(label_sections) + "</section>",
    ]
    if result.failed:
        sections.append("<section id=failed><h2>Pictures not read</h2><ul>" + "".join(
            f"<li>{esc(p)}: {esc(r)}</li>" for p, r in result.failed[:50]) + "</ul></section>")
    facts = [("learnt from", source), ("weights", result.weights),
             ("backbone", f"{o.backbone}, stages {o.tune_from}+ and the head tuned"),
             ("settings", f"lr {o.lr:g}, tau {o.tau:g}, {o.views} views, distill "
                          f"{o.distill:g}, seed {o.seed}"),
             ("time", f"features cached in {result.cache_seconds:.0f} s, trained in "
                      f"{result.train_seconds:.0f} s"), *standard_facts()]
    html = page(f"Learning an art space from {main}",
                "How the tuned network groups works it never saw, against the untuned one.",
                facts, sections, toc=[("result", "result"), ("curves", "curves"),
                                      ("labels", "labels")])
    data = {"before": result.before, "after": result.after, "history": result.history,
            "best_epoch": result.best_epoch, "labels": [list(x) for x in o.labels],
            "label_counts": result.label_counts, "source": source,
            "weights": str(result.weights)}
    return write_report(out_dir, html, data)


def _unlabelled_report(result: Any, out_dir: Path, *, source: str) -> Path:
    """The report of `learn --unlabelled`: no label, so the held-out works' own measures."""
    o = result.options
    key = f"style {o.main} mAP"
    names = {key: "view mAP (a crop or mirror finds its own picture)",
             "neighbours kept": "neighbours kept (of each work's 10 nearest at the start)",
             "spread": "spread (1 - mean cosine of two works)"}
    rows = "".join(
        f"<tr><td>{esc(names.get(m, m))}</td><td class=num>{result.before[m]:.3f}</td>"
        f"<td class=num>{result.after.get(m, float('nan')):.3f}</td>"
        f"<td class=num>{result.after.get(m, 0) - result.before[m]:+.3f}</td></tr>"
        for m in result.before)
    table = ("<table><thead><tr><th scope=col>measure (held-out works)</th>"
             "<th scope=col class=num>start</th><th scope=col class=num>adapted</th>"
             "<th scope=col class=num>change</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    curves = (_curve(result.history, "loss", None, "training loss (two views of each work)")
              + _curve(result.history, key, result.before.get(key), names[key])
              + _curve(result.history, "neighbours kept", o.min_kept,
                       "neighbours kept; an epoch below the line is not kept")
              + _curve(result.history, "content_distance", None,
                       "content vector's drift from the start network (1 - cosine)"))
    sections = [
        "<section id=result><h2>Held-out works: start against adapted</h2>"
        f"<p>No label was read. {result.val_works:,} works were held out and never trained "
        f"on; the epoch kept is the one with the best view mAP among those keeping at "
        f"least {o.min_kept:.0%} of each work's ten nearest and half the spread: epoch "
        f"{result.best_epoch} of {len(result.history)}" + (
            " — none did, so the file holds the start network's stages"
            if result.best_epoch == 0 else "")
        + ". A better view mAP says the space tells this collection's pictures apart "
          "better; it does not say that it groups them as a historian would.</p>"
        + table + "</section>",
        "<section id=curves><h2>Epoch by epoch</h2><div class=charts>" + curves
        + "</div></section>",
    ]
    if result.failed:
        sections.append("<section id=failed><h2>Pictures not read</h2><ul>" + "".join(
            f"<li>{esc(p)}: {esc(r)}</li>" for p, r in result.failed[:50]) + "</ul></section>")
    facts = [("learnt from", f"{source}, without labels ({result.train_works:,} works)"),
             ("weights", result.weights),
             ("start", f"{o.backbone}, stages {o.tune_from}+ and the head adapted"),
             ("settings", f"lr {o.lr:g}, tau {o.tau:g}, {o.views} views, keep style "
                          f"{o.distill_style:g}, keep neighbours {o.distill_relation:g}, "
                          f"keep content {o.distill:g}, seed {o.seed}"),
             ("time", f"features cached in {result.cache_seconds:.0f} s, trained in "
                      f"{result.train_seconds:.0f} s"), *standard_facts()]
    html = page("Adapting an art space to a collection",
                "Learnt from the collection's own pictures, without labels.",
                facts, sections, toc=[("result", "result"), ("curves", "curves")])
    data = {"before": result.before, "after": result.after, "history": result.history,
            "best_epoch": result.best_epoch, "unlabelled": True, "source": source,
            "weights": str(result.weights)}
    return write_report(out_dir, html, data)
