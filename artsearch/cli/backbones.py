"""`artsearch backbones`: the registered backbones, and whether their weights are here."""

from __future__ import annotations

from typing import Any

import click

from artsearch.cli._app import (
    cli,
    dumps,
)


@cli.command(name="backbones")
@click.option("--check", is_flag=True,
              help="Also verify each available backbone's weights checksum (reads the files).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def backbones_cmd(check: bool, as_json: bool) -> None:
    """List the registered backbones: weights on this machine, dims, layers.

    \b
    Use a name with `artsearch index DIR --backbone NAME`; families take any model of
    their library, e.g. --backbone timm:convnext_tiny or open_clip:ViT-B-32/laion2b_s34b_b79k
    (with --weights PATH for a local checkpoint, or --allow-download).
    """
    from artsearch import backbones
    from artsearch.errors import WeightsError

    rows: list[dict[str, Any]] = []
    for spec in backbones.available():
        ok, where = spec.weights.available()
        if ok and check:
            try:
                spec.weights.verified_path()
            except WeightsError as e:
                ok, where = False, str(e)
        rows.append({
            "name": spec.name, "family": spec.family, "offline": ok, "weights": where,
            "dims": spec.dims(), "default_layer": spec.default_layer,
            "layers": spec.layers, "style_layers": list(spec.style_layers),
            "poolings": list(spec.poolings or
                             ["avg", "cavg", "max", "gem", "rmac", "meanstd", "gram"]),
            "text": spec.text, "description": spec.description,
        })
    families = [{"pattern": f.pattern, "description": f.description}
                for f in backbones.families()]
    if as_json:
        click.echo(dumps({"backbones": rows, "families": families}))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        status = "ready  " if r["offline"] else "missing"
        click.echo(f"{r['name']:<{width}}  {status}  {r['dims']:>5}-d  {r['description']}")
        layers = ", ".join(f"{n} {c}" for n, c in r["layers"].items())
        click.echo(f"{'':<{width}}  layers: {layers} (default {r['default_layer']}"
                   + (f"; style {','.join(r['style_layers'])}" if r["style_layers"] else "")
                   + ")")
        if not r["offline"]:
            click.echo(f"{'':<{width}}  {r['weights']}")
    for f in families:
        click.echo(f"{f['pattern']:<{width}}  family   {f['description']}")
