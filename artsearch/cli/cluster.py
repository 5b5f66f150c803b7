"""`artsearch cluster` and `clusters`: group a space, list and export runs, write reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from artsearch.cli._app import cli, dumps, index_option, out_file, report_options, space_option
from artsearch.textsafe import terminal


@cli.command()
@index_option
@space_option
@click.option("-k", "--k", "k", default="auto", show_default=True, metavar="N|auto",
              help="Number of clusters; auto picks the k from 2 to 20 with the highest mean "
                   "silhouette and says so. Not used by hdbscan.")
@click.option("--method", type=click.Choice(["kmeans", "agglomerative", "hdbscan"]),
              default="kmeans", show_default=True,
              help="kmeans: spherical k-means (FAISS). agglomerative: Ward linkage (SciPy; up "
                   "to 20,000 works). hdbscan: density clusters on a 50-d PCA projection "
                   "(scikit-learn); finds k itself and leaves outliers unclustered.")
@click.option("--centre", type=click.Choice(["auto", "yes", "no"]), default="auto",
              show_default=True,
              help="Subtract the works' mean vector (and re-normalise) before clustering, so "
                   "what all paintings share does not dominate; auto: as measured on the dev "
                   "set: yes for hdbscan, and for kmeans and agglomerative on the lite0-art "
                   "space (kmeans on lite0-art-mix); otherwise no.")
@click.option("--min-cluster-size", type=click.IntRange(2), default=None, metavar="N",
              help="hdbscan: smallest group it reports. [default: 1% of the works, at least 5]")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same seed gives the same clusters.")
@click.option("--restarts", type=click.IntRange(0), default=5, show_default=True,
              help="Redos that measure stability: k-means from other seeds; agglomerative and "
                   "hdbscan on 80% subsamples (0: skip).")
@report_options
@click.option("--iiif-out", type=click.Path(), callback=out_file, default=None,
              metavar="FILE", help="Also write the run as a IIIF Presentation 3 manifest: "
                                   "canvases by cluster, one range per cluster.")
@click.option("--iiif-base", default="http://127.0.0.1:8765", show_default=True,
              metavar="URL", help="Where `artsearch serve` runs: images of works that did "
                                  "not come from IIIF are referenced as URL/image/ID.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def cluster(index_name: str | None, space: str, k: str, method: str, centre: str,
            min_cluster_size: int | None, seed: int, restarts: int, report_dir: Path | None,
            duplicate_threshold: float, show_licences: str | None, iiif_out: Path | None,
            iiif_base: str, as_json: bool) -> None:
    """Group the artworks of a space into clusters, and store the run.

    Prints each cluster's size, label (catalogue values over-represented in it) and
    stability, and how the clusters agree with catalogued fields (NMI, ARI, purity). The run
    gets a number: `artsearch clusters` lists runs, exports assignments and (re)writes
    reports.

    \b
      artsearch cluster --k 5 --report out/             k-means, HTML report in out/
      artsearch cluster --space style --k auto          k chosen by silhouette
      artsearch cluster --method hdbscan --report out/  density groups plus outliers
      artsearch cluster --k 5 --iiif-out run.json       a IIIF manifest, a range per cluster
    """
    from artsearch.cluster import cluster_space
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex

    if k != "auto" and not k.isdigit():
        raise click.UsageError(f"--k {k}: give a number of clusters or auto")
    if method == "hdbscan" and k != "auto":
        raise click.UsageError("--k does not apply to --method hdbscan (it finds the number "
                               "of groups itself); use --min-cluster-size")
    with ArtIndex(resolve_index(index_name)) as idx:
        result = cluster_space(idx, space, k=k if k == "auto" else int(k), method=method,
                               seed=seed, restarts=restarts,
                               min_cluster_size=min_cluster_size,
                               centre=None if centre == "auto" else centre == "yes")
        summary = (_write_cluster_report(idx, result.run_id, report_dir, duplicate_threshold,
                                         show_licences, quiet=as_json)
                   if report_dir is not None else None)
        _write_app_report(idx, result.run_id, duplicate_threshold, summary,
                          show_licences)
        if iiif_out is not None:
            from artsearch.iiif import run_manifest

            run_manifest(idx, result.run_id, iiif_out, image_base=iiif_base)
            if not as_json:
                click.echo(f"IIIF manifest: {iiif_out}", err=True)
    if as_json:
        click.echo(dumps({"run": result.run_id, "k": result.k, "sizes": result.sizes,
                               "noise": result.noise, "agreement": result.metrics,
                               "params": result.params,
                               "report": str(summary.path) if summary else None}))
        return
    how = (" (chosen by silhouette)" if "k_choice" in result.params else
           " (found by HDBSCAN)" if method == "hdbscan" else "")
    click.echo(f"run {result.run_id}: {method}, k={result.k}{how}, seed {seed}, "
               f"space {space}")
    click.echo("sizes     " + ", ".join(f"#{i + 1}: {n}" for i, n in enumerate(result.sizes))
               + (f"; unclustered: {result.noise}" if result.noise else ""))
    stab = result.params.get("stability")
    if stab:
        click.echo(f"stability mean ARI {stab['mean_ari']:.3f} over {restarts} redos; per "
                   "cluster (Jaccard, < 0.6 = not robust): " + ", ".join(
                       f"#{i + 1}: {j:.2f}" for i, j in enumerate(stab["per_cluster_jaccard"])))
    for entry in result.metrics.get("clusters", []):
        click.echo(f"  #{entry['cluster'] + 1}: {terminal(entry['label'])}")
    fields = {f: m for f, m in result.metrics.items() if f != "clusters"}
    for field, m in fields.items():
        click.echo(f"{field:<9} NMI {m['nmi']:.3f}  ARI {m['ari']:.3f}  purity "
                   f"{m['purity']:.3f}  ({m['works']} works, {m['labels']} values)")
    if not fields:
        click.echo("no catalogued field to compare with (index with --metadata)")
    if summary is not None:
        click.echo(f"report: {summary.path}")


def _write_app_report(idx: Any, run: int, threshold: float, summary: Any,
                      show_licences: str | None) -> None:
    """The report `artsearch serve` shows for this run, made now rather than on its first
    view (for the default licence classes; a copy of --report's when that used them: only
    the files that report wrote, never the rest of its folder)."""
    import shutil

    from artsearch.reports.clusters import cluster_report
    from artsearch.reports.page import copy_report
    from artsearch.rights import DEFAULT_SHOWN, parse_shown
    from artsearch.web.reports import run_folder

    folder = run_folder(idx.path, run, DEFAULT_SHOWN)
    if summary is not None and parse_shown(show_licences) == DEFAULT_SHOWN:
        copy_report(summary.path.parent, folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)  # the index's own folder: one report
        cluster_report(idx, run, folder, duplicate_threshold=threshold,
                       licences=DEFAULT_SHOWN)


def _write_cluster_report(idx: Any, run: int, out_dir: Path, threshold: float,
                          show_licences: str | None, *, quiet: bool = False) -> Any:
    from artsearch.reports.clusters import cluster_report
    from artsearch.rights import parse_shown

    def say(msg: str) -> None:
        if not quiet:
            click.echo(f"report: {msg}", err=True)

    summary = cluster_report(idx, run, out_dir, duplicate_threshold=threshold, progress=say,
                             licences=parse_shown(show_licences))
    for path, why in summary.unreadable[:10]:
        click.echo(f"warning: {path}: no thumbnail ({why})", err=True)
    if not quiet:
        click.echo(f"report: {summary.works:,} works, map by {summary.map_method}, "
                   f"{summary.duplicates} near-duplicate pairs, {summary.thumbnails:,} "
                   "thumbnails" + (f", {summary.withheld:,} withheld by licence (grey tiles; "
                                   "see --show-licences)" if summary.withheld else ""),
                   err=True)
    return summary


@cli.command()
@click.argument("run", required=False, type=click.IntRange(1, 2**63 - 1))
@index_option
@click.option("--csv", "csv_path", type=click.Path(), callback=out_file,
              default=None, metavar="FILE", help="Write RUN's assignments as CSV.")
@report_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def clusters(run: int | None, index_name: str | None, csv_path: Path | None,
             report_dir: Path | None, duplicate_threshold: float, show_licences: str | None,
             as_json: bool) -> None:
    """List clustering runs, or show RUN's assignments (path, cluster, distance).

    Clusters are numbered from 1 in reports and printed output; exports (CSV/JSON) keep the
    stored numbers, from 0, with -1 for works HDBSCAN left unclustered.

    \b
      artsearch clusters                    every run: id, space, method, k, seed, date
      artsearch clusters 3 --csv out.csv    run 3's assignments as CSV (or --json)
      artsearch clusters 3 --report out/    (re)write run 3's HTML report
    """
    import csv

    from artsearch import cluster as clustering
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.textsafe import csv_cell

    with ArtIndex(resolve_index(index_name)) as idx:
        if run is None:
            runs = clustering.runs(idx)
            if as_json:
                click.echo(dumps(runs))
            elif not runs:
                click.echo("no clustering runs yet; make one with `artsearch cluster`")
            for r in runs if not as_json else []:
                click.echo(f"run {r['run']}: space {r['space']}, {r['method']} k={r['k']} "
                           f"seed {r['seed']}, {r['created']}")
            return
        rows = clustering.assignments(idx, run)  # refuses an unknown run
        if report_dir is not None:
            summary = _write_cluster_report(idx, run, report_dir, duplicate_threshold,
                                            show_licences)
            click.echo(f"report: {summary.path}")
            if csv_path is None and not as_json:
                return
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "cluster", "distance"])
            writer.writeheader()
            writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
        click.echo(f"wrote {len(rows)} assignments of run {run} to {csv_path}")
    elif as_json:
        click.echo(dumps(rows))
    else:
        for r in rows:
            click.echo(f"{r['cluster']:>4}  {r['distance']:.4f}  {terminal(r['path'])}")


