"""`artsearch duplicates`: typed near-duplicates and the details of other works."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

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
from artsearch.textsafe import csv_cell, terminal


@cli.command()
@index_option
@space_option
@click.option("-k", "--candidates", "k", type=click.IntRange(1, 200), default=10,
              show_default=True,
              help="Neighbours per work that are examined (the shortlist comes from the "
                   "space's own index, so no all-pairs matrix is built).")
@click.option("--calibrate", "calibrate_works", type=click.IntRange(10), default=None,
              metavar="N",
              help="First fit the thresholds to this collection: derivatives of N of its "
                   "works (crops, details, mirror, JPEG, colour, rotation, halftone) and "
                   "their nearest other works; prints precision and recall per type on a "
                   "held-out half, and keeps the thresholds in the index.")
@click.option("--labels", "labels_csv", type=click.Path(path_type=Path, dir_okay=False,
                                                        exists=True),
              default=None, metavar="CSV",
              help="With --calibrate: pairs you have checked (the --csv file with a `label` "
                   "column: a type, or none) join the fitting.")
@click.option("--regions/--no-regions", "use_regions", default=True, show_default=True,
              help="Where the space has a region index (`artsearch index DIR --regions`), "
                   "also examine each work with the ten works whose regions match its whole "
                   "picture best: finds details and crops far from their source in the "
                   "space.")
@click.option("--all", "keep_all", is_flag=True,
              help="Also list examined pairs that are not duplicates (type none), to label.")
@click.option("--csv", "csv_path", type=click.Path(), callback=out_file,
              default=None, metavar="FILE", help="Write the pairs as CSV (for relabelling).")
@click.option("--report", "report_dir", type=click.Path(), callback=report_folder,
              default=None, metavar="DIR",
              help="Write an HTML page of the pairs, side by side, crops boxed.")
@licences_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def duplicates(index_name: str | None, space: str, k: int, calibrate_works: int | None,
               labels_csv: Path | None, use_regions: bool, keep_all: bool,
               csv_path: Path | None,
               report_dir: Path | None, show_licences: str | None, as_json: bool) -> None:
    """Find pairs of works that are the same image or one derived from the other, typed.

    \b
    Types, decided by matching local features (SIFT) and fitting a transform (RANSAC):
      exact        the same pixels
      re-encoded   the whole image again: resized, recompressed, recoloured, turned
      mirrored     the whole image, mirrored
      crop         one shows part of the other (its box is given)
      detail       one shows a small part of the other, enlarged
      related      very close in the space, but neither lies inside the other
    \b
      artsearch duplicates --report dups/
      artsearch duplicates --calibrate 200              fit thresholds to this collection
      artsearch duplicates --all --csv pairs.csv        then add a label column, and:
      artsearch duplicates --calibrate 200 --labels pairs.csv
    """
    from artsearch.duplicates.find import find_duplicates, load_thresholds
    from artsearch.duplicates.fit import calibrate_index, read_labels
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.provenance import provenance
    from artsearch.rights import parse_shown

    if labels_csv is not None and calibrate_works is None:
        raise click.UsageError("--labels refits the thresholds: give --calibrate N with it")
    licences = parse_shown(show_licences)
    labels = read_labels(labels_csv) if labels_csv is not None else []

    def say(msg: str) -> None:
        if not as_json:
            click.echo(msg, err=True)

    with ArtIndex(resolve_index(index_name)) as idx:
        if calibrate_works is not None:
            fitted = calibrate_index(idx, space, works=calibrate_works, labels=labels,
                                     progress=say)
            if not as_json:
                _print_calibration(fitted)
        thresholds, record = load_thresholds(idx)
        if use_regions:  # a damaged region index: the space's own pairs are still found
            from artsearch.errors import IndexDamagedError
            from artsearch.regions.store import load_regions

            try:
                load_regions(idx, idx.space(space), cached=True)
            except IndexDamagedError as e:
                click.echo(f"warning: details not sought, the region index is damaged: "
                           f"{terminal(str(e))}", err=True)
                use_regions = False
        pairs = find_duplicates(idx, space, k=k, thresholds=thresholds,
                                keep_unrelated=keep_all, regions=use_regions, progress=say)
        facts = provenance(idx, space, command="duplicates")
        if report_dir is not None:
            from artsearch.reports.duplicates import duplicates_report

            path = duplicates_report(idx, pairs, report_dir, record, list(facts.items()),
                                     facts, licences)
            say(f"report: {path}")
    rows = [p.as_dict() for p in pairs]
    if csv_path is not None:
        _write_csv(csv_path, rows)
        say(f"wrote {len(rows):,} pairs to {csv_path}")
    if as_json:
        click.echo(dumps({"provenance": facts, "thresholds": record, "pairs": rows}))
        return
    if not rows:
        click.echo("no duplicates found")
    for r in rows:
        share = min(r["cover_a"], r["cover_b"])
        where = (f"  ({r['part']} is {share:.0%} of {'b' if r['part'] == 'a' else 'a'}, at "
                 f"x0,y0,x1,y1 = {','.join(map(str, r['box']))})" if r["box"] else "")
        click.echo(f"{r['type'] or 'none':<10}  {r['cosine']:.3f}  {r['inliers']:>4}  "
                   f"{terminal(r['path_a'])}  {terminal(r['path_b'])}"
                   f"{' (mirrored)' if r['mirrored'] and r['type'] != 'mirrored' else ''}"
                   f"{where}")


def _print_calibration(record: dict[str, Any]) -> None:
    t = record["thresholds"]
    click.echo(f"thresholds fitted on {record['fitted_on']} synthesised pairs, judged on "
               f"{record['judged_on']} others: min_inliers {t['min_inliers']}, full "
               f"{t['full']}, detail {t['detail']}", err=True)
    click.echo(f"{'type':<11}{'precision':>10}{'recall':>8}{'pairs':>7}", err=True)
    for kind, row in record["held_out"].items():
        p, r = (("–" if v is None else f"{v:.2f}") for v in (row["precision"], row["recall"]))
        click.echo(f"{kind:<11}{p:>10}{r:>8}{row['pairs']:>7}", err=True)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import os

    fields = ["path_a", "path_b", "type", "label", "cosine", "inliers", "mirrored", "part",
              "box", "cover_a", "cover_b", "scale", "rotation", "a", "b"]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**{k: csv_cell(v) if isinstance(v, str) else v
                           for k, v in r.items()},
                        "type": r["type"] or "none", "label": "",
                        "box": " ".join(map(str, r["box"])) if r["box"] else ""})
    os.replace(tmp, path)
