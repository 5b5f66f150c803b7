"""`artsearch stylize`: neural style transfer."""

from __future__ import annotations

from pathlib import Path

import click

from artsearch.cli._app import cli, index_option, out_file


@cli.command()
@click.argument("content", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--style", "style_image", type=click.Path(path_type=Path, dir_okay=False,
                                                        exists=True),
              default=None, metavar="IMAGE", help="The picture whose style to take.")
@click.option("--style-id", type=click.IntRange(1, 2**63 - 1), default=None, metavar="ID",
              help="Take the style from an indexed work (needs --index).")
@click.option("--style-query", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, metavar="IMAGE",
              help="Take the style from the work nearest to IMAGE in --space (a style space).")
@click.option("--space", default="style", show_default=True,
              help="With --style-query: the space to look in.")
@index_option
@click.option("--method", type=click.Choice(["gatys", "fast"]), default="gatys",
              show_default=True,
              help="gatys: optimise the picture against VGG16 features (minutes on a CPU). "
                   "fast: Magenta's arbitrary-style network over ONNX (under a second; extra "
                   "artsearch[stylize]).")
@click.option("--size", type=click.IntRange(64, 4096), default=None, metavar="PX",
              help="Longer side of the result. [default: gatys 256 on a CPU, 512 on a GPU; "
                   "fast 512]")
@click.option("--steps", type=click.IntRange(1, 100_000), default=300, show_default=True,
              help="gatys: L-BFGS evaluations.")
@click.option("--style-weight", type=click.FloatRange(0, min_open=True), default=0.3,
              show_default=True,
              help="gatys: weight of the style loss against the content loss (both relative "
                   "to their targets); higher paints more style over the content.")
@click.option("--device", default=None, help="gatys: cpu, cuda ... [default: cuda when "
                                             "present]")
@click.option("--out", type=click.Path(), callback=out_file, default=None,
              metavar="FILE.png", help="Where to write the result. [default: "
                                       "CONTENT-METHOD.png in the current folder]")
def stylize(content: Path, style_image: Path | None, style_id: int | None,
            style_query: Path | None, space: str, index_name: str | None, method: str,
            size: int | None, steps: int, style_weight: float, device: str | None,
            out: Path | None) -> None:
    """Paint CONTENT in the style of another picture (neural style transfer).

    The result is a PNG that records what made it (content, style, method, weights
    checksums, parameters) in a text chunk.

    \b
      artsearch stylize photo.jpg --style monet.jpg                 Gatys et al., 300 steps
      artsearch stylize photo.jpg --style monet.jpg --method fast   Ghiasi et al., ONNX
      artsearch stylize photo.jpg --style-id 12 --index example     an indexed work's style
      artsearch stylize photo.jpg --style-query sketch.jpg --space style --index example
    """

    from artsearch.images import decode_image, read_file, sha256_bytes
    from artsearch.stylize import save_with_provenance, stylize_fast, stylize_gatys

    if sum(x is not None for x in (style_image, style_id, style_query)) != 1:
        raise click.UsageError("give one of --style IMAGE, --style-id ID or --style-query IMAGE")
    style = _style_source(style_image, style_id, style_query, space, index_name)
    data = {"content": read_file(content), "style": read_file(Path(str(style["path"])))}
    pictures = {role: decode_image(raw)[0] for role, raw in data.items()}
    sources = {"content": {"path": str(content), "sha256": sha256_bytes(data["content"])},
               "style": {**style, "sha256": sha256_bytes(data["style"])}}
    if method == "fast":
        result = stylize_fast(pictures["content"], pictures["style"], size=size or 512)
    else:
        import torch

        from artsearch.progress import progress_bar

        gpu = (device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
        with progress_bar(steps, desc="stylize", unit="step") as bar:

            def show(n: int, losses: dict[str, float]) -> None:
                bar.update(1)
                bar.set_postfix(style=f"{losses['style']:.4g}",
                                content=f"{losses['content']:.4g}")

            result = stylize_gatys(pictures["content"], pictures["style"],
                                   size=size or (512 if gpu else 256), steps=steps,
                                   style_weight=style_weight, device=device, progress=show)
    target = out or Path(f"{content.stem}-{method}.png")
    save_with_provenance(result, target, sources)
    fall = ""
    if result.history:
        first, last = result.history[0]["style"], result.history[-1]["style"]
        fall = f"; style loss {first:.4g} -> {last:.4g}"
        if last > 0 and first >= 2 * last:
            fall += f" ({first / last:.0f}x lower)"
        elif last > 0 and first > last:
            fall += f" ({100 * (first - last) / first:.0f}% lower)"
    click.echo(f"wrote {target} ({result.image.width}x{result.image.height}, {method}, "
               f"{result.seconds:.1f} s{fall})")


def _style_source(style_image: Path | None, style_id: int | None, style_query: Path | None,
                  space: str, index_name: str | None) -> dict[str, object]:
    """Where the style comes from: {path, and the indexed work when it is one}."""
    if style_image is not None:
        return {"path": str(style_image)}
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.index.catalogue import find_artwork
    from artsearch.query import search

    with ArtIndex(resolve_index(index_name)) as idx:
        if style_id is not None:
            art = find_artwork(idx, id=style_id)
            if art is None:
                raise click.ClickException(f"--style-id {style_id}: no such work in {idx.path}; "
                                           "`artsearch info --works` lists them")
            how = "id"
        else:
            assert style_query is not None
            result = search(idx, image=style_query, space=space, k=2)
            hits = [h for h in result.hits if not result.query.get("indexed")
                    or h.id != result.query.get("id")]
            if not hits:
                raise click.ClickException(f"--style-query: no work in space {space!r}")
            art = find_artwork(idx, id=hits[0].id)
            how = f"nearest in space {space!r} to {style_query} (similarity {hits[0].score:.3f})"
        if idx.root is None:
            raise click.ClickException(f"{idx.path}: the index does not know its collection "
                                       "folder; give --style IMAGE")
        from artsearch.paths import work_file

        return {"path": str(work_file(idx.root, art.path)), "artwork_id": art.id,
                "title": art.title,
                "license": art.license, "chosen_by": how, "index": str(idx.path)}
