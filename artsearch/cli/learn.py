"""`artsearch learn`: tune an art space on labelled pictures (an index's own, or a corpus)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from artsearch.cli._app import cli, dumps, index_option, out_file, report_folder


def _labels(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
            ) -> tuple[tuple[str, float], ...]:
    out = []
    for i, text in enumerate(values):
        name, sep, weight = text.partition("=")
        try:
            value = float(weight) if sep else (1.0 if i == 0 else 0.25)
        except ValueError:
            raise click.BadParameter(f"{text!r}: write FIELD or FIELD=WEIGHT, e.g. "
                                     "style=0.25") from None
        if not name.strip() or not 0 <= value <= 10:
            raise click.BadParameter(f"{text!r}: a field name and a weight from 0 to 10")
        out.append((name.strip(), value))
    if len({n for n, _ in out}) != len(out):
        raise click.BadParameter("a field is named twice")
    return tuple(out)


@cli.command()
@index_option
@click.option("--label", "labels", multiple=True, callback=_labels, metavar="FIELD[=WEIGHT]",
              help="A catalogue field whose shared values make works alike (repeatable). The "
                   "first is the main one (weight 1): it is split into learnt and held-out "
                   "values and chooses the epoch. Others are weaker positives (weight 0.25 "
                   "unless given).")
@click.option("--unlabelled", is_flag=True,
              help="Learn without labels: adapt the space to this collection's own pictures "
                   "(two crops or mirrors of a work pulled together, the start network's "
                   "neighbourhoods kept). Starts from lite0-art unless --backbone says.")
@click.option("--out", "out", required=True, type=click.Path(), callback=out_file,
              metavar="FILE.pt", help="The weights file to write.")
@click.option("--corpus", type=click.Path(path_type=Path, file_okay=False, exists=True),
              default=None, metavar="DIR",
              help="Learn from this folder instead of an index (with --metadata).")
@click.option("--metadata", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, metavar="CSV",
              help="With --corpus: a CSV with a 'path' column and the label columns.")
@click.option("--report", "report_dir", type=click.Path(), callback=report_folder, default=None,
              metavar="DIR", help="Also write an HTML report (loss and validation curves, "
                                  "the labels learnt from). [default: FILE without .pt, "
                                  "plus -report]")
@click.option("--backbone", default=None,
              type=click.Choice(["efficientnet-lite0", "efficientnet-lite2", "lite0-art"]),
              help="The network tuned. [default: efficientnet-lite0; with --unlabelled, "
                   "lite0-art]")
@click.option("--tune-from", type=click.IntRange(2, 7), default=6, show_default=True,
              metavar="STAGE", help="The first stage tuned (it, later stages and the head "
                                    "train; earlier ones are cached once).")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Most epochs (early stopping may end sooner). [default: 8; --unlabelled 6]")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate (AdamW). [default: 1e-4; --unlabelled 5e-5]")
@click.option("--tau", type=click.FloatRange(0, min_open=True), default=0.1,
              show_default=True, help="Temperature of the contrastive loss.")
@click.option("--views", type=click.IntRange(2, 16), default=4, show_default=True,
              help="Views cached per work: the plain one and augmented crops and mirrors.")
@click.option("--distill", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Weight of the pull that keeps the content vector near the untuned one.")
@click.option("--val-share", type=click.FloatRange(0.05, 0.5), default=0.15,
              show_default=True, help="Share of the main label's values held out.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the split, the views and training.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def learn(index_name: str | None, labels: tuple[tuple[str, float], ...], unlabelled: bool,
          out: Path, corpus: Path | None, metadata: Path | None, report_dir: Path | None,
          backbone: str | None, tune_from: int, epochs: int | None, lr: float | None,
          tau: float, views: int, distill: float, val_share: float, seed: int, device: str,
          as_json: bool) -> None:
    """Tune an art space: teach the network's last stages which works belong together.

    Works sharing the main label (an artist, say) are pulled together in the style space,
    works sharing only a weaker label (a style) a little; a held-out share of the main
    label's values — never trained on — chooses the epoch, and the report compares them
    with the untuned space. The weights file then builds spaces:

    \b
      artsearch learn --index museum --label artist --label style --out art.pt
      artsearch index DIR --index museum --space art --backbone efficientnet-lite0 \\
          --weights art.pt --pooling meanstd
      artsearch learn --corpus art-train/ --metadata art-train/metadata.csv \\
          --label artist --label style=0.25 --out art.pt --device cuda
      artsearch learn --index museum --unlabelled --out museum-art.pt

    With --unlabelled no label is read: each work's crops and mirrors are pulled together,
    the start network's neighbourhoods kept, and a held-out share of the works judges each
    epoch (a crop finding its own picture, and how many of each work's ten nearest stay).

    Frozen stages are computed once per view (minutes on a CPU for a few thousand works);
    each epoch then runs only the tuned stages.
    """
    from artsearch.learn import LearnOptions, read_corpus, works_from_index
    from artsearch.learn import learn as run
    from artsearch.reports.learn import learn_report
    from artsearch.reports.page import claim_folder

    if unlabelled:
        if labels:
            raise click.UsageError("--unlabelled learns without labels: drop --label")
        if metadata is not None:
            raise click.UsageError("--unlabelled reads no labels: give --corpus DIR alone")
    else:
        if not labels:
            raise click.UsageError("name at least one --label (the first is the main one, "
                                   "e.g. --label artist --label style), or learn without "
                                   "labels with --unlabelled")
        if (corpus is None) != (metadata is None):
            raise click.UsageError("--corpus and --metadata go together")
    report_dir = report_dir or out.with_name(out.stem + "-report")
    claim_folder(report_dir)  # before the work: its folder holds nothing else
    fields = [n for n, _ in labels]
    if corpus is not None and unlabelled:
        from artsearch.images import scan
        from artsearch.learn import Work

        works = [Work(e.path, {}) for e in scan(corpus)[0]]
        source = f"corpus {corpus}"
    elif corpus is not None:
        assert metadata is not None
        works = read_corpus(corpus, metadata, fields)
        source = f"corpus {corpus}"
    else:
        from artsearch.home import resolve_index
        from artsearch.index import ArtIndex

        with ArtIndex(resolve_index(index_name)) as idx:
            works = works_from_index(idx, fields)
            source = f"index {idx.path}"
    given: dict[str, Any] = {"tune_from": tune_from, "tau": tau, "views": views,
                             "distill": distill, "val_share": val_share, "seed": seed,
                             "device": device}
    given |= {k: v for k, v in (("backbone", backbone), ("epochs", epochs), ("lr", lr))
              if v is not None}
    if unlabelled:
        from artsearch.learn.unlabelled import adapt, unlabelled_options

        opts = unlabelled_options(**given)
        run = adapt
    else:
        opts = LearnOptions(labels=labels, **given)

    def say(msg: str) -> None:
        if not as_json:
            click.echo(msg, err=True)

    say(f"learning from {len(works):,} works of {source}")
    result = run(works, out, opts, progress=say)
    report = learn_report(result, report_dir, source=source)
    main = opts.main
    summary = {"weights": str(out), "report": str(report), "works": result.works,
               "train_works": result.train_works, "val_works": result.val_works,
               "train_labels": result.train_labels, "val_labels": result.val_labels,
               "best_epoch": result.best_epoch, "before": result.before,
               "after": result.after, "history": result.history,
               "cache_seconds": result.cache_seconds, "train_seconds": result.train_seconds,
               "failed": len(result.failed)}
    if as_json:
        click.echo(dumps(summary))
        return
    b, a = result.before[f"style {main} mAP"], result.after[f"style {main} mAP"]
    if unlabelled:
        click.echo(f"wrote {out}: held-out view mAP {b:.3f} at the start -> {a:.3f} adapted, "
                   f"neighbours kept {result.after['neighbours kept']:.2f} (epoch "
                   f"{result.best_epoch} of {len(result.history)}; {result.val_works:,} "
                   "held-out works)")
    else:
        click.echo(f"wrote {out}: held-out {main} mAP {b:.3f} untuned -> {a:.3f} tuned "
                   f"(epoch {result.best_epoch} of {len(result.history)}; "
                   f"{result.val_labels} held-out values, {result.val_works:,} works)")
    if result.best_epoch == 0:
        click.echo(f"  no epoch beat the {'start' if unlabelled else 'untuned'} network on "
                   f"the held-out {'works' if unlabelled else 'values'}: the file holds "
                   f"the {'start' if unlabelled else 'untuned'} network's stages", err=True)
    click.echo(f"  report: {report}")
    base = "efficientnet-lite2" if opts.backbone == "efficientnet-lite2" else \
        "efficientnet-lite0"
    click.echo(f"  use it: artsearch index DIR --backbone {base} --weights {out} "
               "--pooling meanstd --space art")
    if result.failed:
        click.echo(f"  {len(result.failed)} pictures could not be read (first: "
                   f"{result.failed[0][0]})", err=True)
    sys.stdout.flush()
