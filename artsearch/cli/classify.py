"""`artsearch classify`: predict a catalogue field, with calibrated probabilities."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from artsearch.cli._app import (
    cli,
    dumps,
    index_option,
)
from artsearch.textsafe import terminal


@cli.command()
@click.argument("images", nargs=-1,
                type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--unlabelled", is_flag=True,
              help="Also classify every work of the index that has no value for the model's "
                   "field; with --write, fills FIELD_predicted for them. The index is the "
                   "one the model was trained on, unless --index says otherwise.")
@click.option("--model", "model_path", required=True, metavar="MODEL",
              type=click.Path(path_type=Path, dir_okay=False),
              help="A model file made by `artsearch train`.")
@click.option("--top", type=click.IntRange(1), default=3, show_default=True,
              help="Labels shown per image.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Below this calibrated probability the answer is 'uncertain'.")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Checkpoint of the model's backbone, where it is not where training found "
                   "it (checked against the SHA-256 in the model).")
@click.option("--write", "write_field", default=None, metavar="FIELD_predicted",
              help="Store each prediction in the index's metadata under this field (with the "
                   "probability and the model id); images must be indexed works. Catalogued "
                   "values are never overwritten.")
@index_option
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda when present]")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def classify(images: tuple[Path, ...], unlabelled: bool, model_path: Path, top: int,
             threshold: float,
             weights: Path | None, write_field: str | None, index_name: str | None,
             device: str | None, as_json: bool) -> None:
    """Predict a catalogue field for images, with calibrated probabilities.

    A prediction below --threshold is reported as "uncertain" rather than forced: an
    attribution is a claim, and the model may not know.

    \b
      artsearch classify new.jpg other.png --model genre-probe.pt
      artsearch classify coll/a.jpg --model genre-probe.pt --write genre_predicted
      artsearch classify --unlabelled --model genre-probe.pt --write genre_predicted
    """
    from artsearch.classify import load_model
    from artsearch.classify.predict import (
        predict_files,
        prediction_field_problem,
        unlabelled_works,
        write_predictions,
    )
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex

    model = load_model(model_path, weights=weights, device=device)
    if write_field is not None and (problem := prediction_field_problem(write_field,
                                                                        model.label)):
        raise click.UsageError(problem)
    if index_name is None and (unlabelled or write_field) and model.model.get("index"):
        index_name = model.model["index"]  # the index it was trained on
        if not Path(index_name).is_dir():
            raise click.ClickException(f"{model_path} was trained on the index at "
                                       f"{index_name}, which is not there; give --index")
    if unlabelled:
        with ArtIndex(resolve_index(index_name)) as idx:
            found = unlabelled_works(idx, model)
        click.echo(f"{len(found)} indexed works have no {model.label}", err=True)
        if not found and not images:
            click.echo(f"nothing to classify: every indexed work has a {model.label}")
            return
        images = images + tuple(found)
    if not images:
        raise click.UsageError("give IMAGE files, or --unlabelled to classify the index's works "
                               "that lack the field")
    failures: list[Path] = []

    def failed(path: Path, reason: str) -> None:
        click.echo(f"error: {terminal(str(path))}: {reason}", err=True)
        failures.append(path)

    results = list(predict_files(model, images, top=top, threshold=threshold,
                                 on_error=failed))
    written = None
    if write_field is not None:
        with ArtIndex(resolve_index(index_name)) as idx:
            written = write_predictions(
                idx, model, results, write_field,
                warn=lambda m: click.echo(f"warning: {terminal(m)}", err=True))
    if as_json:
        click.echo(dumps({"model": str(model_path), "model_id": model.id,
                               "label": model.label, "threshold": threshold,
                               "results": results, "written": written}))
    else:
        for r in results:
            alternatives = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in r["top"])
            click.echo(f"{terminal(r['image'])}: {terminal(r['prediction'])} "
                       f"({terminal(alternatives)})")
        if written is not None:
            click.echo(f"wrote {write_field} for {written['written']} works"
                       + (f"; kept {written['kept']} catalogued values" if written["kept"]
                          else "")
                       + (f"; {written['not_indexed']} images are not indexed works"
                          if written["not_indexed"] else ""))
    if failures:
        sys.exit(1)
