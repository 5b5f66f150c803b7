"""`artsearch duplicates`, `audit` and `show`: output a curator can check and defend."""

from __future__ import annotations

import copy
import csv
import shutil
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
                   "also examine each work with the two works whose regions match its whole "
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
    from artsearch.duplicates import find_duplicates, load_thresholds
    from artsearch.duplicates_fit import calibrate_index, read_labels
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
        where = (f"  ({r['part']} lies in {'b' if r['part'] == 'a' else 'a'} at x0,y0,x1,y1 = "
                 f"{','.join(map(str, r['box']))})" if r["box"] else "")
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


@cli.command()
@click.argument("ident", metavar="ID")
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def show(ident: str, index_name: str | None, as_json: bool) -> None:
    """Reproduce a cited query (q-… from `query --cite`) or a clustering run (its number).

    A query is asked again of the index as it is now and compared with the answer kept
    when it was cited: same works in the same order, scores within 1e-4. A clustering run
    is clustered again from its stored method, k, seed and centring, and its assignments
    compared. Exit status 0 when it reproduces, 2 when it does not.

    \b
      artsearch query IMG --cite          prints: cite as q-1a2b3c4d5e6f
      artsearch show q-1a2b3c4d5e6f
      artsearch show 3                    clustering run 3
    """
    import sys

    from artsearch.cluster import replay_run
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.provenance import ask_again, load_citation

    run = ident.removeprefix("run-")
    if run.isdigit() and (len(run) > 18 or not int(run)):
        raise click.ClickException(f"{ident}: no such clustering run (`artsearch clusters` "
                                   "lists them)")
    with ArtIndex(resolve_index(index_name)) as idx:
        if run.isdigit():
            out = replay_run(idx, int(run))
            ok = out["identical"]
        else:
            out = ask_again(idx, load_citation(idx, ident))
            ok = out["reproduced"]
    if as_json:
        click.echo(dumps(out))
    elif run.isdigit():
        click.echo(f"run {out['run']}: {out['method']} k={out['k']} seed={out['seed']} on "
                   f"{out['space']!r}{' (centred)' if out['centred'] else ''}, made "
                   f"{out['made']}, {out['works']:,} works"
                   + (f" ({out['gone']} no longer indexed)" if out["gone"] else ""))
        click.echo("reproduced: identical assignments" if ok else
                   f"NOT reproduced: {out['changed']:,} works moved (ARI {out['ari']:.3f})")
    else:
        q = out["question"]
        what = q.get("text") or (q.get("artwork") or {}).get("path") or q["image"]["path"]
        click.echo(f"{out['id']}: {what}, spaces {q['weights']}, k={q['k']}; cited "
                   f"{out['provenance']['made']} with artsearch {out['provenance']['artsearch']}")
        for then, now in zip(out["then"], out["now"], strict=False):
            mark = "" if then["id"] == now["id"] else "  <- changed"
            click.echo(f"{then['rank']:>3}  {then['score']:.4f} {terminal(then['path'])}  |  "
                       f"{now['score']:.4f} {terminal(now['path'])}{mark}")
        if out["spaces_changed"]:
            click.echo(f"spaces rebuilt since: {', '.join(out['spaces_changed'])}")
        click.echo("reproduced: same works, same order, scores within 1e-4" if ok else
                   f"NOT reproduced (largest score change {out['max_score_change']:.4g})")
    sys.exit(0 if ok else 2)


@cli.command()
@index_option
@space_option
@click.option("-k", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Length of the result lists audited.")
@click.option("--report", "report_dir", type=click.Path(), callback=report_folder,
              default=None, metavar="DIR",
              help="Write an HTML page: the biggest hubs with thumbnails, coverage tables, "
                   "links to the classifiers' reports.")
@licences_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def audit(index_name: str | None, space: str, k: int, report_dir: Path | None,
          show_licences: str | None, as_json: bool) -> None:
    """Check a space for bias in what it retrieves: hubness and coverage per group.

    \b
    Hubness: some works turn up in very many works' top-k lists (and others in none), a
    known habit of high-dimensional spaces. Coverage: for each catalogue field with 2 to 60
    values (source, century, school, genre ...), each group's share of all results against
    its share of the collection. The classifiers trained on this index are listed with
    their per-group accuracy. Ends with a plain reading and what to do.

    \b
      artsearch audit --report audit/
      artsearch audit --space style --json

    Each run also leaves its page in the index, where `artsearch serve` shows it
    (Clusters and reports).
    """
    from artsearch.audit import audit as run_audit
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.provenance import provenance
    from artsearch.reports.audit import audit_report
    from artsearch.rights import DEFAULT_SHOWN, parse_shown
    from artsearch.web.reports import audit_folder

    licences = parse_shown(show_licences)
    with ArtIndex(resolve_index(index_name)) as idx:
        result = run_audit(idx, space, k=k)
        facts = provenance(idx, space, command="audit")
        if report_dir is not None:
            path = audit_report(idx, copy.deepcopy(result), report_dir, facts, licences)
            if not as_json:
                click.echo(f"report: {path}", err=True)
        # The copy `artsearch serve` shows, made now (for the default licence classes).
        app_copy = audit_folder(idx.path, idx.space(space).name, DEFAULT_SHOWN)
        shutil.rmtree(app_copy, ignore_errors=True)  # none of an older audit's thumbnails
        audit_report(idx, copy.deepcopy(result), app_copy, facts, DEFAULT_SHOWN)
    if as_json:
        click.echo(dumps({**result, "provenance": facts}))
        return
    h = result["hubness"]
    click.echo(f"{h['works']:,} works, top-{h['k']} lists; the biggest hubs:")
    for t in h["top"]:
        click.echo(f"  {t['occurrences']:>4}  {terminal(t['path'])}"
                   + (f"  ({terminal(t['title'])})" if t["title"] else ""))
    for name, rows in result["coverage"].items():
        click.echo(f"coverage by {name} (share of results / share of works):")
        if len(rows) > 12:  # the six least and the six most retrieved groups
            rated = sorted((r for r in rows if r["ratio"] is not None),
                           key=lambda r: r["ratio"])
            rows = [*rated[:6], *rated[-6:]]
            click.echo(f"  (the extremes of {len(rated)} groups; --json or --report: all)")
        for r in rows:
            ratio = "   –" if r["ratio"] is None else f"{r['ratio']:.2f}"
            click.echo(f"  {ratio}  {terminal(str(r['value']))} ({r['works']} "
                       f"work{'s' * (r['works'] != 1)}, {r['never_retrieved']} never "
                       "retrieved)")
    for line in result["reading"]:
        click.echo(f"- {line}")
