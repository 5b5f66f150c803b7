"""`artsearch layers`: what each layer of a backbone sees in a picture."""

from __future__ import annotations

from pathlib import Path

import click

from artsearch.cli._app import cli, index_option, licences_option, report_folder


@cli.command()
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--backbone", default="efficientnet-lite0", show_default=True,
              help="Whose layers to show (`artsearch backbones` lists them).")
@index_option
@click.option("--out", "out_dir", type=click.Path(), callback=report_folder,
              default=Path("layers"), show_default=True, metavar="DIR",
              help="Folder for the page (index.html, images).")
@click.option("--maps", type=click.IntRange(1, 32), default=6, show_default=True,
              help="Strongest feature maps shown per layer.")
@click.option("--sample", type=click.IntRange(1), default=2000, show_default=True,
              help="Compare with at most this many works of the index (evenly spaced).")
@licences_option
def layers(image: Path, backbone: str, index_name: str | None, out_dir: Path, maps: int,
           sample: int, show_licences: str | None) -> None:
    """Show what each layer of a backbone sees in IMAGE, first layer to last.

    A page per backbone layer: its strongest feature maps over the picture, its Gram matrix
    (what a Gram style space compares), and the 5 works of the index it alone finds
    nearest (with --index, or the default index when there is one) — texture gives way to
    content as the layers deepen.

    \b
      artsearch layers painting.jpg --index example --out layers/
      artsearch layers painting.jpg --backbone vgg16-hed --index example
    """
    from artsearch import backbones
    from artsearch.home import resolve_index
    from artsearch.images import decode_image, read_file
    from artsearch.index import ArtIndex
    from artsearch.layers import collection_vectors, layer_views, nearest_by_layer
    from artsearch.reports.layers import layers_report
    from artsearch.reports.page import standard_facts
    from artsearch.rights import parse_shown

    spec = backbones.get(backbone)
    picture = decode_image(read_file(image))[0]
    views = layer_views(spec, picture, maps=maps)
    facts: list[tuple[str, object]] = [
        ("picture", image), ("backbone", f"{spec.name} (weights sha256 "
                                         f"{(spec.weights.sha256 or 'none')[:16]}…)"),
        ("command", f"artsearch layers {image} --backbone {backbone}"), *standard_facts()]
    path: Path | None = resolve_index(index_name)
    if index_name is None and path is not None and not (path / "artsearch.db").is_file():
        path = None  # no default index: show the layers alone
    if path is None:
        report = layers_report(picture, image.name, spec.name, views, {}, out_dir, facts=facts)
    else:
        with ArtIndex(path) as idx:
            click.echo(f"comparing with the works of {idx.path} at every layer", err=True)
            works, vectors = collection_vectors(idx, spec, tuple(spec.layers), sample=sample)
            rel = _inside(image, idx.root)
            nearest = nearest_by_layer(views, works, vectors, exclude=rel)
            report = layers_report(picture, image.name, spec.name, views, nearest, out_dir,
                                   index=idx, compared=len(works),
                                   licences=parse_shown(show_licences),
                                   facts=[*facts, ("index", idx.path)])
    click.echo(f"wrote {report}")


def _inside(image: Path, root: Path | None) -> Path | None:
    """IMAGE's path relative to the collection, when it is one of its works."""
    if root is None:
        return None
    try:
        return image.resolve().relative_to(root)
    except ValueError:
        return None
