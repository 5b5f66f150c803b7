"""`artsearch audit`: hubness and coverage per catalogue group."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import click

from artsearch.cli._app import (
    cli,
    dumps,
    index_option,
    licences_option,
    report_folder,
    space_option,
)
from artsearch.textsafe import terminal


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
