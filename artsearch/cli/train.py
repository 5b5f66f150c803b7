"""`artsearch train`: learn a catalogue field from the indexed works."""

from __future__ import annotations

from pathlib import Path

import click

from artsearch.cli._app import (
    cli,
    dumps,
    index_option,
    licences_option,
    out_file,
    report_folder,
    space_option,
)


@cli.command()
@index_option
@space_option
@click.option("--label", required=True, metavar="FIELD",
              help="Catalogue field to learn (genre, style, artist, century, or any CSV column).")
@click.option("--method", type=click.Choice(["probe", "finetune"]), default="probe",
              show_default=True,
              help="probe: logistic regression on the stored vectors (seconds). finetune: "
                   "retrain the backbone's last layers and a head on the images (minutes).")
@click.option("--out", "out", type=click.Path(), callback=out_file, default=None,
              metavar="MODEL",
              help="Model file to write. [default: INDEX/models/LABEL-METHOD-SPACE.pt]")
@click.option("--report", "report_dir", type=click.Path(), callback=report_folder,
              default=None, metavar="DIR",
              help="Evaluation report folder (index.html, metrics.json). [default: the model "
                   "path without .pt, plus -report]")
@click.option("--by", "by", multiple=True, metavar="FIELD",
              help="Also break accuracy down by this field (repeatable): --by source "
                   "--by century shows whether some groups are served worse.")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
              help="Train and test only on works with this value, as in `query --where`: "
                   "case-insensitive; repeat a field for any of its values, e.g. "
                   "--where source=WikiArt --where century=\"17th c.\".")
@click.option("--min-per-class", type=click.IntRange(3), default=5, show_default=True,
              help="Classes with fewer labelled works are set aside (listed in the report).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the stratified 60/20/20 train/validation/test split and training.")
@click.option("--refit/--no-refit", default=True, show_default=True,
              help="probe: once C is chosen on train, refit on train + validation and "
                   "calibrate on out-of-fold predictions (the test split stays untouched).")
@click.option("--freeze-until", default=None, metavar="LAYER",
              help="finetune: layers up to and including LAYER stay frozen. [default: two "
                   "named layers before the deepest the space uses; Lite0: stage6]")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True,
              help="finetune: learning rate of the unfrozen layers (the head: 10x).")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True,
              help="finetune: most epochs (early stopping may end sooner).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
              help="finetune: images per step.")
@click.option("--weight-decay", type=click.FloatRange(0), default=1e-4, show_default=True,
              help="finetune: AdamW weight decay.")
@click.option("--patience", type=click.IntRange(1), default=3, show_default=True,
              help="finetune: stop after this many epochs without a lower validation loss.")
@click.option("--device", default=None, help="finetune: cpu, cuda, cuda:1 ... [default: "
                                             "cuda when present]")
@licences_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def train(index_name: str | None, space: str, label: str, method: str, out: Path | None,
          report_dir: Path | None, by: tuple[str, ...], where: tuple[str, ...],
          min_per_class: int, seed: int, refit: bool,
          freeze_until: str | None, lr: float, epochs: int, batch_size: int,
          weight_decay: float, patience: int, device: str | None, show_licences: str | None,
          as_json: bool) -> None:
    """Learn a catalogue field (genre, style, artist ...) from the indexed works.

    The labelled works are split 60/20/20 (stratified, seeded) into train, validation and
    test. A temperature fitted on the validation split calibrates the probabilities (a probe
    is then refitted on train + validation and calibrated out of fold; --no-refit keeps the
    train-only probe); the test split gives the figures in the report: accuracy, macro-F1,
    per-class precision and recall, confusion matrix, calibration curve (ECE before and
    after), the most confident mistakes, and accuracy per --by group.

    \b
      artsearch train --label genre                        linear probe, seconds
      artsearch train --label genre --method finetune      fine-tune, minutes on a CPU
      artsearch classify new.jpg --model MODEL             use it
    """
    from artsearch.classify import TrainOptions
    from artsearch.classify import train as run_train
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.paths import file_stem
    from artsearch.reports.classify import classify_report
    from artsearch.reports.page import claim_folder
    from artsearch.rights import parse_shown

    def say(msg: str) -> None:
        if not as_json:
            click.echo(msg, err=True)

    from artsearch.index.catalogue import parse_where

    opts = TrainOptions(label=label, space=space, method=method, min_per_class=min_per_class,
                        where=parse_where(where), refit=refit,
                        seed=seed, freeze_until=freeze_until, lr=lr, epochs=epochs,
                        batch_size=batch_size, weight_decay=weight_decay, patience=patience,
                        device=device)
    with ArtIndex(resolve_index(index_name)) as idx:
        out = out or idx.path / "models" / f"{file_stem(label)}-{method}-{space}.pt"
        report_dir = report_dir or out.with_name(out.stem + "-report")
        claim_folder(report_dir)  # before the work: its folder holds nothing else
        result = run_train(idx, opts, out, group_fields=by, progress=say)
        summary = classify_report(idx, result, report_dir, group_fields=by,
                                  licences=parse_shown(show_licences))
    m = result.metrics
    if as_json:
        click.echo(dumps({"model": str(result.model_path), "model_id": result.model_id,
                               "report": str(summary), **m}))
        return
    test, cal = m["test"], m["calibration"]
    click.echo(f"model {result.model_path} (id {result.model_id}): {label}, {method}, "
               f"{len(result.classes)} classes, trained in {m['train_seconds']:.1f} s")
    click.echo(f"test ({test['n']} works): accuracy {test['accuracy']:.3f}, macro-F1 "
               f"{test['macro_f1']:.3f}, balanced accuracy {test['balanced_accuracy']:.3f} "
               f"(majority class: {m['majority_baseline']:.3f})")
    click.echo(f"calibration: temperature {cal['temperature']:.2f}; ECE "
               f"{'out of fold' if m.get('refit') else 'on validation'} "
               f"{cal['val_ece_before']:.3f} -> {cal['val_ece_after']:.3f}, on test "
               f"{cal['test_ece_before']:.3f} -> {cal['test_ece_after']:.3f}")
    if m["works"]["set_aside"]:
        click.echo(f"set aside (< {min_per_class} works): " + ", ".join(
            f"{c} ({n})" for c, n in m["works"]["set_aside"].items()))
    click.echo(f"report: {summary}")
