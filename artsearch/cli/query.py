"""`artsearch query`: the nearest works to an image, an indexed work or a text."""

from __future__ import annotations

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
from artsearch.textsafe import terminal


@cli.command()
@click.argument("image", required=False, metavar="IMAGE")
@index_option
@space_option
@click.option("--mix", default=None, metavar="SPACE=W,SPACE=W",
              help="Blend spaces, e.g. content=0.6,style=0.4: each space's similarities are "
                   "standardised for this query (z-scores), then averaged with the weights.")
@click.option("--id", "artwork_id", type=click.IntRange(1, 2**63 - 1), default=None,
              help="Query by an indexed artwork's id instead of an image.")
@click.option("--text", default=None, metavar="TEXT",
              help="Query by a description, e.g. \"a stormy seascape\" (open_clip spaces).")
@click.option("-k", type=click.IntRange(1), default=10, show_default=True,
              help="Number of results.")
@click.option("--where", multiple=True, metavar="FIELD=VALUE",
              help="Keep only matching artworks (case-insensitive; FIELD= with no value: "
                   "those not catalogued for FIELD). Repeat: different fields must all "
                   "match, the same field any of its values.")
@click.option("--exclude-same", multiple=True, metavar="FIELD",
              help="Drop results that share FIELD's value with the query artwork, e.g. "
                   "artist, to surface works by other hands.")
@click.option("--explain", "explain_dir", is_flag=False, flag_value="", default=None,
              metavar="[DIR]",
              help="Say why each result matches: each space's share of a blend, and (avg or "
                   "cavg spaces) where in both pictures the similarity lies; the maps add up "
                   "to the cosine. With DIR, also write the maps as PNG and an HTML page "
                   "there. Put it after IMAGE.")
@click.option("--rerank", type=click.Choice(["csls"]), default=None,
              help="Re-rank the 100 nearest by CSLS, which discounts works that are near "
                   "everything (hubs; see `artsearch audit`). The score is then CSLS, not a "
                   "cosine (--json keeps the cosine).")
@click.option("--cite", is_flag=True,
              help="Keep this query and its answer in the index under a stable id (printed) "
                   "that `artsearch show ID` asks again and checks.")
@click.option("--region", "region", default=None, metavar="X,Y,W,H",
              help="Find this part of IMAGE (or of --id's work) in other works: left, top, "
                   "width, height as fractions of the picture. Works rank by their "
                   "best-matching region, whose box is shown. Needs a region index "
                   "(`artsearch index DIR --regions`).")
@click.option("--in-regions", is_flag=True,
              help="IMAGE is itself a detail or fragment: find the works it may come from, "
                   "by their best-matching region.")
@click.option("--report", "report_dir", type=click.Path(), callback=report_folder, default=None,
              metavar="DIR", help="With --region or --in-regions: also write an HTML page "
                                  "of the part sought and each result, its region boxed.")
@licences_option
@click.option("--iiif-out", type=click.Path(), callback=out_file, default=None,
              metavar="FILE", help="Also write the results as a IIIF Presentation 3 manifest "
                                   "(scores in each canvas's metadata) for Mirador or "
                                   "Universal Viewer; a region query's matching regions "
                                   "are annotations on their canvases.")
@click.option("--iiif-base", default="http://127.0.0.1:8765", show_default=True,
              metavar="URL", help="Where `artsearch serve` runs: images of works that did "
                                  "not come from IIIF are referenced as URL/image/ID.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def query(image: str | None, index_name: str | None, space: str, mix: str | None,
          artwork_id: int | None, text: str | None, k: int, where: tuple[str, ...],
          exclude_same: tuple[str, ...], explain_dir: str | None, rerank: str | None,
          cite: bool, region: str | None, in_regions: bool, report_dir: Path | None,
          show_licences: str | None,
          iiif_out: Path | None, iiif_base: str,
          as_json: bool) -> None:
    """Show the artworks nearest to IMAGE (or to --id, or --text).

    IMAGE is an image file (inside or outside the collection) or the path of an indexed
    artwork as `artsearch info --works` lists it. An indexed image answers from its stored
    vector, and ranks itself first.

    \b
    Spaces answer different questions; choose with --space, or blend with --mix:
      artsearch query IMG                      what shows the same thing (content)
      artsearch query IMG --space style        what is painted the same way
      artsearch query IMG --mix content=0.6,style=0.4
      artsearch query --text "a stormy seascape" --space clip
      artsearch query IMG --explain maps/      why: heat maps + shares, maps/index.html
      artsearch query IMG --cite               a citable id; `artsearch show ID` re-asks
      artsearch query IMG --iiif-out hits.json a IIIF manifest of the results
      artsearch query --id 12 --region 0.1,0.5,0.3,0.3   this motif in other works
      artsearch query FRAGMENT.jpg --in-regions  which work a detail comes from
    """
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.provenance import cite_query, provenance
    from artsearch.query import parse_mix, parse_where, search
    from artsearch.rights import parse_shown

    if explain_dir and Path(explain_dir).is_file():
        raise click.UsageError(f"--explain {explain_dir}: that is a file; put IMAGE before "
                               "--explain, or give --explain a folder for the maps")
    if sum(x is not None for x in (image, artwork_id, text)) != 1:
        raise click.UsageError("give one of IMAGE, --id or --text")
    if report_dir is not None and region is None and not in_regions:
        raise click.UsageError("--report goes with --region or --in-regions; for other "
                               "queries, --explain DIR writes a page")
    if region is not None or in_regions:
        _query_regions(image, artwork_id, index_name, space, region, k, where, as_json,
                       report_dir, show_licences, text=text, mix=mix,
                       others={"--explain": explain_dir, "--cite": cite, "--rerank": rerank,
                               "--exclude-same": exclude_same},
                       iiif=(iiif_out, iiif_base))
        return
    if explain_dir:
        from artsearch.paths import output_dir
        from artsearch.reports.page import claim_folder

        claim_folder(output_dir(explain_dir, "--explain"), "--explain")
    licences = parse_shown(show_licences)
    image_path, artwork = _asked(image, artwork_id)
    weights = parse_mix(mix) if mix is not None else {space: 1.0}
    with ArtIndex(resolve_index(index_name)) as idx:
        result = search(idx, image=image_path, artwork=artwork, text=text, space=space,
                        mix=weights if mix is not None else None, k=k,
                        where=parse_where(where), exclude_same=exclude_same, rerank=rerank)
        facts = provenance(idx, list(weights), command="query")
        out = result.as_dict()
        out["provenance"] = facts
        if explain_dir is not None:
            out["explain"] = _explain(idx, result, weights, image_path, explain_dir,
                                      facts, licences, quiet=as_json)
        if cite:
            out["citation"] = cite_query(idx, result, weights, facts, image=image_path, k=k,
                                         where=parse_where(where), exclude_same=exclude_same,
                                         rerank=rerank)
        if iiif_out is not None:
            from artsearch.iiif import results_manifest

            results_manifest(idx, result, iiif_out, image_base=iiif_base)
            out["iiif_manifest"] = str(iiif_out)
    if iiif_out is not None and not as_json:
        click.echo(f"IIIF manifest: {iiif_out}", err=True)
    if as_json:
        click.echo(dumps(out))
        return
    _print_hits(result)
    if explain_dir is not None:
        _print_explained(out["explain"])
    if cite:
        click.echo(f"cite as {out['citation']}: `artsearch show {out['citation']}"
                   f"{f' --index {index_name}' if index_name else ''}` asks again and checks",
                   err=True)


def _asked(image: str | None, artwork_id: int | None) -> tuple[Path | None, str | int | None]:
    """IMAGE and --id as every query takes them: (the picture file, if IMAGE is one; else the
    indexed artwork: --id, or IMAGE as an indexed path)."""
    image_path = Path(image) if image is not None and Path(image).exists() else None
    if image_path is not None and not image_path.is_file():
        raise click.ClickException(f"{image}: not a file; give an image file")
    artwork: str | int | None = artwork_id if artwork_id is not None else (
        None if image_path is not None else image)
    return image_path, artwork


def _query_regions(image: str | None, artwork_id: int | None, index_name: str | None,
                   space: str, region: str | None, k: int, where: tuple[str, ...],
                   as_json: bool, report_dir: Path | None, show_licences: str | None, *,
                   text: str | None, mix: str | None, others: dict[str, Any],
                   iiif: tuple[Path | None, str]) -> None:
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.query import parse_where
    from artsearch.regions import parse_box, query_regions

    if text is not None or mix is not None:
        raise click.UsageError("--region and --in-regions search pictures in one space; drop "
                               "--text and --mix")
    given = [name for name, value in others.items() if value]
    if given:
        raise click.UsageError(f"{', '.join(given)} does not apply to a region query yet; "
                               "drop it")
    if artwork_id is not None and region is None:
        raise click.UsageError("--id with --in-regions: give --region X,Y,W,H, the part of "
                               "the work to look for")
    box = parse_box(region) if region is not None else None
    image_path, artwork = _asked(image, artwork_id)
    with ArtIndex(resolve_index(index_name)) as idx:
        result = query_regions(idx, space=space, image=image_path, artwork=artwork, box=box,
                               k=k, where=parse_where(where))
        out = result.as_dict()
        if report_dir is not None:
            out["report"] = str(_regions_report(idx, result, image_path, report_dir,
                                                show_licences))
        if iiif[0] is not None:
            from artsearch.iiif import results_manifest

            results_manifest(idx, result, iiif[0], image_base=iiif[1])
            out["iiif_manifest"] = str(iiif[0])
    if as_json:
        click.echo(dumps(out))
        return
    _print_hits(result, boxes=True)
    if report_dir is not None:
        click.echo(f"report: {out['report']}", err=True)
    if iiif[0] is not None:
        click.echo(f"IIIF manifest: {iiif[0]}", err=True)


def _regions_report(idx: Any, result: Any, image_path: Path | None, report_dir: Path,
                    show_licences: str | None) -> Path:
    from artsearch.images import decoded, read_work
    from artsearch.index.catalogue import find_artwork
    from artsearch.provenance import provenance
    from artsearch.query import read_image_bytes
    from artsearch.reports.regions import regions_report
    from artsearch.rights import parse_shown, shown

    licences = parse_shown(show_licences)
    own = find_artwork(idx, id=result.query["id"]) if "id" in result.query else None
    # The user's own file is theirs to see; an indexed work follows its licence.
    data = read_image_bytes(image_path) if image_path is not None else (
        read_work(idx.root, own.path) if own is not None else None)
    query_shown = image_path is not None or own is None or shown(own.license, licences)
    return regions_report(idx, result, decoded(data), query_shown, report_dir,
                          provenance(idx, [result.space], command="query"), licences)


def _explain(idx: Any, result: Any, weights: dict[str, float], image_path: Path | None,
             explain_dir: str, facts: dict[str, Any], licences: frozenset[str], *,
             quiet: bool) -> dict[str, Any]:
    from artsearch.explain import explain_hits
    from artsearch.images import decoded, read_work
    from artsearch.index.catalogue import find_artwork
    from artsearch.query import read_image_bytes
    from artsearch.rights import shown

    query_art = find_artwork(idx, id=result.query["id"]) if "id" in result.query else None
    data: bytes | None
    if image_path is not None:
        data = read_image_bytes(image_path)
    elif query_art is not None:
        data = read_work(idx.root, query_art.path)
    else:
        data = None
    explained = explain_hits(idx, result, weights, data)
    picture = decoded(data)
    if explain_dir:
        from artsearch.reports.explain import explain_report

        # The user's own file is theirs to see; an indexed work follows its licence.
        query_shown = query_art is None or shown(query_art.license, licences)
        path = explain_report(idx, result, explained, picture, query_shown,
                              Path(explain_dir), facts, licences)
        if not quiet:
            click.echo(f"explained: {path}", err=True)
    return {str(rank): {"spaces": e["spaces"], "notes": e["notes"],
                        "maps": {s: pm.as_dict() for s, pm in e["maps"].items()}}
            for rank, e in explained.items()}


def _print_explained(explained: dict[str, Any]) -> None:
    for rank, e in explained.items():
        parts = [f"{s} {v['share']:.0%}" for s, v in e["spaces"].items()
                 if len(e["spaces"]) > 1]
        maps = [f"{s}: query map sums to {m['sum_query']:.4f}, result map to "
                f"{m['sum_result']:.4f} (cosine {m['cosine']:.4f})"
                for s, m in e["maps"].items()]
        click.echo(f"#{rank}: " + "; ".join(parts + maps or ["no map"]))


def _print_hits(result: Any, *, boxes: bool = False) -> None:
    for note in result.notes:
        click.echo(f"note: {terminal(note)}", err=True)
    if not result.hits:
        click.echo("no results")
        return
    width = shutil.get_terminal_size((120, 24)).columns
    blended = "=" in result.space
    bands = any(getattr(h, "band", None) for h in result.hits)
    rows = [[str(h.rank), f"{h.score:.2f}" if blended else f"{h.score:.3f}", terminal(h.path),
             terminal(h.title), terminal(h.artist),
             " / ".join(terminal(v) for v in (h.style, h.genre) if v)]
            + ([h.band or ""] if bands else [])
            + ([",".join(f"{v:.2f}" for v in h.box)] if boxes else [])
            for h in result.hits]
    # A blended score is a weighted z-score (how far above this query's typical work), not a
    # cosine; the header says which.
    header = ["#", "z" if blended else "csls" if "rerank" in result.search else "sim", "path",
              "title", "artist", "style / genre"] + (["band"] if bands else []) \
        + (["region x,y,w,h"] if boxes else [])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    # Shrink the widest text columns until the table fits the terminal.
    shrinkable = range(2, 6)  # text columns; numbers and boxes keep their width
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths[2:6]) > 12:
        i = max(shrinkable, key=lambda j: widths[j])
        widths[i] -= 1
    for row in [header, *rows]:
        cells = [_fit(c, w) for c, w in zip(row, widths, strict=True)]
        cells[0], cells[1] = cells[0].rjust(widths[0]), cells[1].rjust(widths[1])
        click.echo("  ".join(cells).rstrip())


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


