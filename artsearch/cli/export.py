"""`artsearch export` and `import-vectors`: embeddings out to Parquet or .npy, and in from
vectors computed elsewhere."""

from __future__ import annotations

from pathlib import Path

import click

from artsearch.cli._app import FAILURES_SHOWN, cli, dumps, index_option, out_dir, space_option
from artsearch.textsafe import terminal


@cli.command()
@click.argument("out", type=click.Path(), callback=out_dir, metavar="DIR")
@index_option
@space_option
@click.option("--format", "fmt", type=click.Choice(["parquet", "npy"]), default="parquet",
              show_default=True,
              help="parquet: DIR/SPACE-00000.parquet with an 'embedding' column; npy: "
                   "DIR/emb/SPACE-00000.npy with DIR/metadata/SPACE-00000.parquet beside it.")
@click.option("--json", "as_json", is_flag=True, help="Print the export's summary as JSON.")
def export(out: Path, index_name: str | None, space: str, fmt: str, as_json: bool) -> None:
    """Write a space's vectors with each work's id, path and catalogue to DIR.

    Each row: id, path (relative to the collection root), sha256, title, artist, date, style,
    genre, license, source, extra (JSON) and the vector, in files of 100,000 rows. pandas
    and pyarrow read them (pd.read_parquet(DIR)); so does embedding-reader, as
    file_format="parquet" (embedding column "embedding") or, for --format npy,
    "parquet_npy" (embeddings DIR/emb, metadata DIR/metadata), and so autofaiss.
    DIR/_SPACE.export.json describes the space (backbone, weights SHA-256, layers, pooling)
    so that `artsearch import-vectors DIR` can recreate it in another index.

    DIR may hold other files: an export writes its shards under temporary names, renames
    them into place together, and removes only files an earlier export of the same space
    recorded there. An interrupted export leaves a folder that import refuses until the
    export is run again.
    """
    from artsearch.exchange import export_space
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex

    with ArtIndex(resolve_index(index_name)) as idx:
        summary = export_space(idx, space, fmt, out)
    if as_json:
        click.echo(dumps(summary))
        return
    click.echo(f"{out}: {summary['count']} vectors of space {space!r} "
               f"({summary['space']['dims']}-d, {summary['space']['backbone']}) in "
               f"{len(summary['files'])} file(s), {fmt}")


@cli.command(name="import-vectors")
@click.argument("source", type=click.Path(path_type=Path), metavar="SOURCE")
@index_option
@click.option("-s", "--space", default=None,
              help="The space to record the vectors as (a new one, or one made the same way). "
                   "[default: the exported space's name, or 'imported']")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None,
              metavar="FOLDER",
              help="For a new index: the collection folder the rows' paths are relative to.")
@click.option("--backbone", default=None, metavar="NAME",
              help="The backbone that computed the vectors, when the files do not say "
                   "(an `artsearch export` says).")
@click.option("--layer", default=None, metavar="NAME[,NAME...]",
              help="Its layer(s). [default: the files' own, or the backbone's default]")
@click.option("--pooling", default=None,
              type=click.Choice(["avg", "cavg", "max", "gem", "rmac", "meanstd", "gram"]),
              help="Its pooling. [default: the files' own, or avg]")
@click.option("--input-size", type=click.IntRange(32, 1024), default=None, metavar="PX",
              help="The picture size it read. [default: the files' own, or the backbone's]")
@click.option("--column", default="embedding", show_default=True,
              help="The Parquet column that holds the vectors.")
@click.option("-q", "--quiet", is_flag=True, help="No summary.")
def import_vectors(source: Path, index_name: str | None, space: str | None, root: Path | None,
                   backbone: str | None, layer: str | None, pooling: str | None,
                   input_size: int | None, column: str, quiet: bool) -> None:
    """Record vectors computed elsewhere (SOURCE: a .parquet file, an export folder, or its
    _SPACE.export.json) as a space.

    Rows are matched to works by 'path' (relative to the collection root); a path the index
    does not hold yet is added when its file is there and its content matches the row's
    sha256, if it has one. The space records the declared backbone, so queries by picture
    are embedded the same way; files that declare other weights than those installed here,
    another backbone, layer or pooling than an existing space of that name, or vectors of
    other dimensions, are refused before anything changes; so is a source of which no row
    can be imported (no root is bound, no space or database made). One import holds at most
    5,000,000 rows and 8 GiB of vectors; vectors are made unit length.

    \b
      artsearch export DIR --index a --space content
      artsearch import-vectors DIR --index b --root COLLECTION
      artsearch import-vectors clip.parquet --backbone open_clip:ViT-B-32/TAG --space clip
    """
    from artsearch.exchange import import_vectors as run
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex

    if root is not None and not root.is_dir():
        raise click.ClickException(f"{root}: not a folder; give the collection folder")
    with ArtIndex(resolve_index(index_name), create=True) as idx:
        report = run(idx, source, space, root=root, backbone=backbone, layer=layer,
                     pooling=pooling, input_size=input_size, column=column)
    for rel, reason in report.skipped[:FAILURES_SHOWN]:
        click.echo(f"skipped {terminal(rel)}: {reason}", err=True)
    if len(report.skipped) > FAILURES_SHOWN:
        click.echo(f"... and {len(report.skipped) - FAILURES_SHOWN} more", err=True)
    if not quiet:
        parts = [f"{report.imported} imported"]
        parts += [f"{n} {what}" for n, what in [
            (report.replaced, "replaced a vector"), (report.new_works, "new works"),
            (report.normalised, "normalised to unit length"),
            (len(report.skipped), "skipped")] if n]
        click.echo(f"space {report.space!r}: {report.total} vectors ({', '.join(parts)}) "
                   f"in {report.seconds:.1f} s")
        if report.ann and "note" in report.ann:
            click.echo(f"  {report.ann['note']}")
    if not report.imported and report.rows:
        raise click.ClickException(f"{source}: none of its {report.rows} rows could be "
                                   "imported; see the reasons above")
