"""`artsearch show`: reproduce a cited query or a clustering run."""

from __future__ import annotations

import click

from artsearch.cli._app import (
    cli,
    dumps,
    index_option,
)
from artsearch.textsafe import terminal


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
