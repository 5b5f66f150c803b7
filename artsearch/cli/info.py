"""`artsearch info` and `artsearch indexes`: what an index holds, and which indexes there are."""

from __future__ import annotations

from typing import Any

import click

from artsearch.cli._app import (
    cli,
    dumps,
    index_option,
)
from artsearch.textsafe import terminal


@cli.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--failures", is_flag=True, help="List every file that failed, with its reason.")
@click.option("--works", is_flag=True,
              help="List every indexed work: id, path (as `artsearch query` takes it), title "
                   "and artist.")
def info(index_name: str | None, as_json: bool, failures: bool, works: bool) -> None:
    """Summarise an index: artworks, spaces, backbone, failures, size on disk."""
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex, catalogue
    from artsearch.regions.store import region_summary

    with ArtIndex(resolve_index(index_name)) as idx:
        data = idx.info()
        for sp in data["spaces"]:
            sp["regions"] = region_summary(idx, idx.space(sp["name"]))
        if works:
            data["works"] = [{"id": a.id, "path": a.path, "title": a.title, "artist": a.artist}
                             for a in catalogue.artworks(idx)]
        if failures:
            data["failure_list"] = catalogue.failures(idx)
    if as_json:
        click.echo(dumps(data))
        return
    click.echo(f"index     {data['index']}  (schema {data['schema']})")
    click.echo(f"root      {data['root']}")
    click.echo(f"artworks  {data['artworks']}")
    for sp in data["spaces"]:
        click.echo(f"space     {sp['name']}: {sp['embedded']} vectors, {sp['backbone']} "
                   f"[{sp['layer']}, {sp['pooling']}] {sp['dims']}-d, {sp['faiss_factory']}, "
                   f"weights {sp['weights_sha256'][:12]}")
        if sp["being_written"]:
            click.echo(f"          +{sp['being_written']} vectors an indexing run has not "
                       "saved yet")
        if sp["ann"]:
            a = sp["ann"]
            click.echo(f"          search: {a['type']} (recall@10 {a['recall10']:.3f} at "
                       f"{'efSearch' if a['type'] == 'hnsw' else 'nprobe'} {a['param']}; "
                       f"--index-type {sp['index_type']})")
        else:
            click.echo(f"          search: exact (--index-type {sp['index_type']})")
        if (r := sp["regions"]) and r.get("damaged"):
            click.echo(f"          regions: DAMAGED: {terminal(r['damaged'])}")
        elif r:
            click.echo(f"          regions: {r['works']} works, {r['regions']:,} regions "
                       f"({r['layer']}, {r['structure']}), {_size(r['bytes'])}")
    click.echo(f"failures  {data['failures']}")
    for reason, n in data["failure_reasons"].items():
        click.echo(f"          {n:>5}  {reason}")
    b = data["bytes"]
    click.echo(f"on disk   {_size(b['sqlite'])} SQLite, {_size(b['faiss'])} FAISS")
    for f in data.get("failure_list", []):
        click.echo(f"failed    {terminal(f['path'])}: {f['reason']}")
    for w in data.get("works", []):
        click.echo(f"{w['id']:>6}  {terminal(w['path'])}"
                   + "".join(f"  {terminal(v)}" for v in (w["title"], w["artist"]) if v))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def indexes(as_json: bool) -> None:
    """List the indexes under $ARTSEARCH_HOME (default ./indexes): works, spaces, size, when
    last written, and which one commands use when --index is not given."""
    import datetime as dt

    from artsearch.errors import ArtsearchError
    from artsearch.home import home, index_names, resolve_index
    from artsearch.index import ArtIndex

    chosen = resolve_index(None)
    rows: list[dict[str, Any]] = []
    for name in index_names():
        path = home() / name
        row: dict[str, Any] = {"name": name, "path": str(path), "default": path == chosen}
        try:
            with ArtIndex(path) as idx:
                info = idx.info()
            row |= {"works": info["artworks"], "spaces": [s["name"] for s in info["spaces"]],
                    "bytes": sum(info["bytes"].values())}
        except ArtsearchError as e:
            row["problem"] = str(e)
        stamp = (path / "artsearch.db").stat().st_mtime
        row["written"] = dt.datetime.fromtimestamp(stamp).isoformat(" ", "minutes")
        rows.append(row)
    if as_json:
        click.echo(dumps({"home": str(home()), "indexes": rows}))
        return
    if not rows:
        click.echo(f"no indexes in {home()}; build one with `artsearch index DIR --index NAME`")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "*" if r["default"] else " "
        what = r.get("problem") or (f"{r['works']:>7,} works  {_size(r['bytes']):>9}  "
                                    f"spaces {', '.join(r['spaces']) or 'none'}")
        click.echo(f"{mark} {r['name']:<{width}}  {what}  (written {r['written']})")
    click.echo(f"* used when --index is not given (in {home()})")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
