"""The `artsearch` command: a thin shell that parses options, calls the core, prints results.

Heavy modules (torch, faiss, the database layer) are imported inside command bodies, so
`artsearch --help` answers at once.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from artsearch import __version__
from artsearch.errors import ArtsearchError
from artsearch.textsafe import terminal

__all__ = ["main"]

_FAILURES_SHOWN = 50


def _dumps(value: Any) -> str:
    """Indented JSON that is always valid: NaN and infinities become null."""
    from artsearch.textsafe import json_safe

    return json.dumps(json_safe(value), indent=2, ensure_ascii=False, allow_nan=False)


class _Group(click.Group):
    """Turns ArtsearchError, and the OS errors a user can fix (a full disk, a read-only
    folder), into a one-line message and exit status 1, everywhere."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArtsearchError as e:
            raise click.ClickException(str(e)) from e
        except OSError as e:
            if e.errno not in _FIXABLE:
                raise
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(
                f"{where}{e.strerror or e}; {_FIXABLE[e.errno]} (what was committed before is "
                "kept; run the same command again)") from e
        except Exception as e:
            # SQLite reports a full disk through the database driver, not as an OSError.
            if "database or disk is full" not in str(getattr(e, "orig", "")):
                raise
            raise click.ClickException(
                "the index database could not grow: database or disk is full; free some disk "
                "space (what was committed before is kept; run the same command again)") from e


_FIXABLE = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some space within your disk quota",
    errno.EROFS: "the file system is read-only; use a writable folder",
    errno.EACCES: "check the permissions of that path",
}


def _index_option(f: Any) -> Any:
    return click.option(
        "--index", "index_name", metavar="NAME|PATH", default=None,
        help="Index to use: a name under $ARTSEARCH_HOME (default ./indexes), or a folder path. "
             "[default: default]")(f)


def _space_option(f: Any) -> Any:
    return click.option("--space", default="content", show_default=True,
                        help="Embedding space within the index.")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="artsearch")
def cli() -> None:
    """Find related artworks by what they show and how they look.

    \b
    Build an index over a folder of images, then ask for the nearest works:
      artsearch index examples/collection --metadata examples/collection/metadata.csv
      artsearch query examples/collection/landscape/landscape_070.jpg -k 5
      artsearch info

    \b
    Group the collection, learn a catalogue field, predict it:
      artsearch cluster --k 5 --report out/     clusters + an HTML report
      artsearch train --label genre             linear probe (or --method finetune)
      artsearch classify new.jpg --model MODEL  calibrated labels, or "uncertain"

    Indexes live in $ARTSEARCH_HOME (default: ./indexes), one folder per name.
    Nothing is downloaded: the default backbone's weights ship as a Python package.
    """


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@_index_option
@_space_option
@click.option("--metadata", type=click.Path(path_type=Path, dir_okay=False), metavar="CSV",
              help="CSV with a 'path' column (relative to FOLDER); title, artist, date, style, "
                   "genre, license and source go to their fields, other columns are kept too.")
@click.option("--backbone", default=None, metavar="NAME",
              help="Backbone for a new space: a name from `artsearch backbones`, timm:ARCH or "
                   "open_clip:ARCH/TAG. [default: efficientnet-lite0, or the space's own]")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="PATH", help="Checkpoint file for a torchvision, timm or open_clip "
                                   "backbone (recorded in the space).")
@click.option("--allow-download", is_flag=True,
              help="Let a torchvision, timm or open_clip backbone fetch its published weights "
                   "once (otherwise nothing is downloaded).")
@click.option("--layer", default=None, metavar="NAME[,NAME...]",
              help="Layer(s) to pool; several are normalised and concatenated. [default: the "
                   "backbone's last; its style layers for gram and meanstd]")
@click.option("--pooling", type=click.Choice(["avg", "max", "gem", "meanstd", "gram"]),
              default=None, help="How feature maps become a vector: avg (content), max, gem, "
                                 "meanstd or gram (style). [default: avg, or the space's own]")
@click.option("--index-type", type=click.Choice(["auto", "flat", "hnsw", "ivfpq"]), default=None,
              help="Search structure: flat (exact), hnsw, or ivfpq (IVF-PQ with 8-bit "
                   "re-ranking); auto: exact up to 100,000 vectors, then HNSW while it fits "
                   "8 GiB, then IVF-PQ. Approximate ones are calibrated to recall@10 >= 0.95 "
                   "on the collection. [default: auto, or the space's own]")
@click.option("--prune", is_flag=True,
              help="Remove entries whose files are gone from FOLDER. Refused when that would "
                   "remove more than half the index (an unmounted drive looks empty) unless "
                   "--force.")
@click.option("--force", is_flag=True, help="With --prune: remove however many are gone.")
@click.option("--relocate", is_flag=True,
              help="The collection moved: accept FOLDER as the index's new root.")
@click.option("--strict", is_flag=True, help="Exit with an error if any file fails.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
              show_default=True, help="auto: bf16 where the hardware runs it natively.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Images per forward pass. [default: 128 on a GPU, 12 on a CPU]")
@click.option("--workers", type=click.IntRange(0), default=None,
              help="Decoding processes. [default: one per core, up to 4; on a GPU host, up "
                   "to 16]")
@click.option("--decode", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
              show_default=True, help="Where JPEGs are decoded: worker processes (cpu) or "
                                      "nvJPEG on the GPU (gpu; other formats stay on the CPU). "
                                      "auto is cpu until nvJPEG is measured to pay.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Refuse images with more pixels (decompression bombs). [default: 150,000,000]")
@click.option("--max-bytes", type=click.IntRange(1), default=None,
              help="Skip files larger than this many bytes (each file is read into memory "
                   "once). [default: 1 GiB]")
@click.option("--checkpoint", "checkpoint_seconds", type=click.FloatRange(0), default=30.0,
              show_default=True, help="Seconds between saves of the vector index in a long run.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def index(folder: Path, index_name: str | None, space: str, metadata: Path | None,
          backbone: str | None, weights: Path | None, allow_download: bool, layer: str | None,
          pooling: str | None, index_type: str | None, prune: bool, force: bool,
          relocate: bool, strict: bool, device: str, precision: str, batch_size: int,
          workers: int | None, decode: str, max_pixels: int | None, max_bytes: int | None,
          checkpoint_seconds: float, quiet: bool) -> None:
    """Index the images under FOLDER (new and changed files only).

    Files are matched by path, size and modification time, confirmed by content hash:
    a re-run embeds only what is new or changed, moved files keep their vectors, and
    identical copies reuse them. A bad file is skipped with a one-line reason (also kept for
    `artsearch info --failures`); an interrupted run resumes where it stopped.

    \b
    An index can hold several spaces, each its own backbone, layers and pooling:
      artsearch index DIR                                   (content: Lite0, avg)
      artsearch index DIR --space style --backbone vgg16-hed --pooling gram
    """
    from artsearch import backbones
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.indexing import IndexOptions, index_collection

    extractor: dict[str, Any] = {"device": device, "precision": precision,
                                 "batch_size": batch_size, "num_workers": workers,
                                 "decode": decode}
    if max_pixels is not None:
        extractor["max_pixels"] = max_pixels
    if max_bytes is not None:
        extractor["max_bytes"] = max_bytes
    if not folder.is_dir():
        raise click.ClickException(f"{folder}: not a folder; give the folder of images to index")
    if metadata is not None and not metadata.is_file():
        raise click.ClickException(f"{metadata}: no such metadata file")
    path = resolve_index(index_name)
    backbones.allow_downloads(allow_download)
    options = IndexOptions(
        space=space, backbone=backbone, weights=weights, index_type=index_type,
        layer=layer, pooling=pooling, prune=prune, force=force, relocate=relocate,
        metadata=metadata,
        checkpoint_seconds=checkpoint_seconds,
        progress=not quiet and sys.stderr.isatty(), extractor=extractor)
    with ArtIndex(path, create=True) as idx:
        try:
            report = index_collection(folder, idx, options)
        except KeyboardInterrupt:
            click.echo("interrupted: every finished batch is saved; run the same command to "
                       "continue", err=True)
            sys.exit(130)
    for line in report.damaged:
        click.echo(f"repaired {line}", err=True)
    if report.metadata is not None and report.metadata.repeated:
        rep = report.metadata.repeated
        click.echo(f"warning: {metadata}: {len(rep)} paths have more than one row (the last "
                   f"is kept), e.g. {terminal(rep[0])}", err=True)
    for rel, reason in report.failed[:_FAILURES_SHOWN]:
        click.echo(f"skipped {terminal(rel)}: {reason}", err=True)
    if len(report.failed) > _FAILURES_SHOWN:
        click.echo(f"... and {len(report.failed) - _FAILURES_SHOWN} more; "
                   "`artsearch info --failures` lists them all", err=True)
    if not quiet:
        _print_index_report(report, path, space)
    if report.total == 0:
        hint = ("no image files found" if not report.scanned and not report.failed
                else "no image could be indexed")
        raise click.ClickException(f"{folder}: {hint}; nothing is in space {space!r}")
    if strict and report.failed:
        raise click.ClickException(f"{len(report.failed)} file(s) failed (--strict)")


def _print_index_report(report: Any, path: Path, space: str) -> None:
    parts = [f"{report.embedded} embedded", f"{report.unchanged} unchanged"]
    parts += [f"{n} {label}" for n, label in [(report.moved, "moved"),
              (report.copied, "copies reused"), (report.pruned, "pruned"),
              (len(report.failed), "failed")] if n]
    click.echo(f"{path} [{space}]: {report.total} artworks indexed ({', '.join(parts)}) "
               f"in {report.seconds:.1f} s")
    if report.embedded:
        rt = report.runtime
        click.echo(f"  {report.images_per_second:.1f} images/s on {rt.get('device')} "
                   f"({rt.get('precision')}, batch {rt.get('batch_size')}, "
                   f"{rt.get('workers')} decoding workers"
                   + (", JPEGs decoded on the GPU)" if rt.get('decode') == 'gpu' else ")"))
    if report.ann and "note" in report.ann:
        click.echo(f"  {report.ann['note']}")
    elif report.ann:
        a = report.ann
        setting = "efSearch" if a["type"] == "hnsw" else "nprobe"
        click.echo(f"  built a {a['type']} index in {a['build_seconds']:.1f} s: {setting} "
                   f"{a['param']} gives recall@10 {a['recall10']:.3f} against exact search")
    if report.repaired:
        click.echo(f"  repaired an interrupted run: {report.repaired.stray_vectors} stray vectors "
                   f"removed, {report.repaired.missing_vectors} lost vectors re-embedded")
    if report.missing:
        click.echo(f"  {len(report.missing)} indexed files are gone from disk (kept); "
                   "--prune removes them")
    if report.metadata is not None:
        m = report.metadata
        line = f"  metadata: {m.matched} of {m.rows} rows matched an indexed image"
        if m.unmatched:
            line += f"; unmatched, e.g. {m.unmatched[0]}"
        click.echo(line)


@cli.command()
@click.argument("image", required=False, metavar="IMAGE")
@_index_option
@_space_option
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
              help="Keep only matching artworks (case-insensitive). Repeat: different fields "
                   "must all match, the same field any of its values.")
@click.option("--exclude-same", multiple=True, metavar="FIELD",
              help="Drop results that share FIELD's value with the query artwork, e.g. "
                   "artist, to surface works by other hands.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def query(image: str | None, index_name: str | None, space: str, mix: str | None,
          artwork_id: int | None, text: str | None, k: int, where: tuple[str, ...],
          exclude_same: tuple[str, ...], as_json: bool) -> None:
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
    """
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.query import parse_mix, parse_where, search

    if sum(x is not None for x in (image, artwork_id, text)) != 1:
        raise click.UsageError("give one of IMAGE, --id or --text")
    image_path = Path(image) if image is not None and Path(image).exists() else None
    artwork: str | int | None = artwork_id if artwork_id is not None else (
        None if image_path is not None else image)
    if image_path is not None and not image_path.is_file():
        raise click.ClickException(f"{image}: not a file; give an image file")
    with ArtIndex(resolve_index(index_name)) as idx:
        result = search(idx, image=image_path, artwork=artwork, text=text, space=space,
                        mix=parse_mix(mix) if mix is not None else None, k=k,
                        where=parse_where(where), exclude_same=exclude_same)
    if as_json:
        click.echo(_dumps(result.as_dict()))
        return
    _print_hits(result)


def _print_hits(result: Any) -> None:
    for note in result.notes:
        click.echo(f"note: {terminal(note)}", err=True)
    if not result.hits:
        click.echo("no results")
        return
    width = shutil.get_terminal_size((120, 24)).columns
    blended = "=" in result.space
    rows = [[str(h.rank), f"{h.score:.2f}" if blended else f"{h.score:.3f}", terminal(h.path),
             terminal(h.title), terminal(h.artist),
             " / ".join(terminal(v) for v in (h.style, h.genre) if v)]
            for h in result.hits]
    # A blended score is a weighted z-score (how far above this query's typical work), not a
    # cosine; the header says which.
    header = ["#", "z" if blended else "sim", "path", "title", "artist",
              "style / genre"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    # Shrink the widest text columns until the table fits the terminal.
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths[2:]) > 12:
        i = max(range(2, len(widths)), key=lambda j: widths[j])
        widths[i] -= 1
    for row in [header, *rows]:
        cells = [_fit(c, w) for c, w in zip(row, widths, strict=True)]
        cells[0], cells[1] = cells[0].rjust(widths[0]), cells[1].rjust(widths[1])
        click.echo("  ".join(cells).rstrip())


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


def _report_options(f: Any) -> Any:
    f = click.option("--duplicates", "duplicate_threshold", type=click.FloatRange(0, 1),
                     default=0.92, show_default=True, metavar="COSINE",
                     help="Similarity at or above which the report flags two works as "
                          "near-duplicates.")(f)
    return click.option("--report", "report_dir", default=None, metavar="DIR",
                        type=click.Path(path_type=Path, file_okay=False),
                        help="Also write an HTML report to DIR (index.html + thumbnails; "
                             "opens from disk, no server).")(f)


@cli.command()
@_index_option
@_space_option
@click.option("--k", "k", default="auto", show_default=True, metavar="N|auto",
              help="Number of clusters; auto picks the k from 2 to 20 with the highest mean "
                   "silhouette and says so. Not used by hdbscan.")
@click.option("--method", type=click.Choice(["kmeans", "agglomerative", "hdbscan"]),
              default="kmeans", show_default=True,
              help="kmeans: spherical k-means (FAISS). agglomerative: Ward linkage (SciPy; up "
                   "to 20,000 works). hdbscan: density clusters on a 50-d PCA projection "
                   "(scikit-learn); finds k itself and leaves outliers unclustered.")
@click.option("--min-cluster-size", type=click.IntRange(2), default=None, metavar="N",
              help="hdbscan: smallest group it reports. [default: 1% of the works, at least 5]")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same seed gives the same clusters.")
@click.option("--restarts", type=click.IntRange(0), default=5, show_default=True,
              help="Redos that measure stability: k-means from other seeds; agglomerative and "
                   "hdbscan on 80% subsamples (0: skip).")
@_report_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def cluster(index_name: str | None, space: str, k: str, method: str,
            min_cluster_size: int | None, seed: int, restarts: int, report_dir: Path | None,
            duplicate_threshold: float, as_json: bool) -> None:
    """Group the artworks of a space into clusters, and store the run.

    Prints each cluster's size, label (catalogue values over-represented in it) and
    stability, and how the clusters agree with catalogued fields (NMI, ARI, purity). The run
    gets a number: `artsearch clusters` lists runs, exports assignments and (re)writes
    reports.

    \b
      artsearch cluster --k 5 --report out/             k-means, HTML report in out/
      artsearch cluster --space style --k auto          k chosen by silhouette
      artsearch cluster --method hdbscan --report out/  density groups plus outliers
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
                               min_cluster_size=min_cluster_size)
        summary = (_write_cluster_report(idx, result.run_id, report_dir, duplicate_threshold,
                                         quiet=as_json)
                   if report_dir is not None else None)
    if as_json:
        click.echo(_dumps({"run": result.run_id, "k": result.k, "sizes": result.sizes,
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


def _write_cluster_report(idx: Any, run: int, out_dir: Path, threshold: float, *,
                          quiet: bool = False) -> Any:
    from artsearch.cluster_report import cluster_report

    def say(msg: str) -> None:
        if not quiet:
            click.echo(f"report: {msg}", err=True)

    summary = cluster_report(idx, run, out_dir, duplicate_threshold=threshold, progress=say)
    for path, why in summary.unreadable[:10]:
        click.echo(f"warning: {path}: no thumbnail ({why})", err=True)
    if not quiet:
        click.echo(f"report: {summary.works:,} works, map by {summary.map_method}, "
                   f"{summary.duplicates} near-duplicate pairs, {summary.thumbnails:,} "
                   "thumbnails", err=True)
    return summary


@cli.command()
@click.argument("run", required=False, type=int)
@_index_option
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, metavar="FILE", help="Write RUN's assignments as CSV.")
@_report_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def clusters(run: int | None, index_name: str | None, csv_path: Path | None,
             report_dir: Path | None, duplicate_threshold: float, as_json: bool) -> None:
    """List clustering runs, or show RUN's assignments (path, cluster, distance).

    Clusters are numbered from 1 in reports and printed output; exports (CSV/JSON) keep the
    stored numbers, from 0, with -1 for works HDBSCAN left unclustered.

    \b
      artsearch clusters                    every run: id, space, method, k, seed, date
      artsearch clusters 3 --csv out.csv    run 3's assignments as CSV (or --json)
      artsearch clusters 3 --report out/    (re)write run 3's HTML report
    """
    import csv

    from sqlalchemy import select

    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.store import Artwork, ClusterAssignment, ClusterRun, Space
    from artsearch.textsafe import csv_cell

    with ArtIndex(resolve_index(index_name)) as idx, idx.store.session() as s:
        if run is None:
            runs = [{"run": r.id, "space": name, "method": r.method, "k": r.k, "seed": r.seed,
                     "created": r.created_at.isoformat(timespec="seconds"),
                     "agreement": r.metrics}
                    for r, name in s.execute(select(ClusterRun, Space.name).join(
                        Space, Space.id == ClusterRun.space_id).order_by(ClusterRun.id))]
            if as_json:
                click.echo(_dumps(runs))
            elif not runs:
                click.echo("no clustering runs yet; make one with `artsearch cluster`")
            for r in runs if not as_json else []:
                click.echo(f"run {r['run']}: space {r['space']}, {r['method']} k={r['k']} "
                           f"seed {r['seed']}, {r['created']}")
            return
        if s.get(ClusterRun, run) is None:
            raise click.ClickException(f"no clustering run {run}; `artsearch clusters` lists "
                                       "them")
        if report_dir is not None:
            summary = _write_cluster_report(idx, run, report_dir, duplicate_threshold)
            click.echo(f"report: {summary.path}")
            if csv_path is None and not as_json:
                return
        rows = [{"path": path, "cluster": c, "distance": round(d, 6)}
                for path, c, d in s.execute(
                    select(Artwork.path, ClusterAssignment.cluster, ClusterAssignment.distance)
                    .join(Artwork, Artwork.id == ClusterAssignment.artwork_id)
                    .where(ClusterAssignment.run_id == run)
                    .order_by(ClusterAssignment.cluster, ClusterAssignment.distance))]
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "cluster", "distance"])
            writer.writeheader()
            writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
        click.echo(f"wrote {len(rows)} assignments of run {run} to {csv_path}")
    elif as_json:
        click.echo(_dumps(rows))
    else:
        for r in rows:
            click.echo(f"{r['cluster']:>4}  {r['distance']:.4f}  {terminal(r['path'])}")


@cli.command()
@_index_option
@_space_option
@click.option("--label", required=True, metavar="FIELD",
              help="Catalogue field to learn (genre, style, artist, century, or any CSV column).")
@click.option("--method", type=click.Choice(["probe", "finetune"]), default="probe",
              show_default=True,
              help="probe: logistic regression on the stored vectors (seconds). finetune: "
                   "retrain the backbone's last layers and a head on the images (minutes).")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="MODEL",
              help="Model file to write. [default: INDEX/models/LABEL-METHOD-SPACE.pt]")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, metavar="DIR",
              help="Evaluation report folder (index.html, metrics.json). [default: the model "
                   "path without .pt, plus -report]")
@click.option("--by", "by", multiple=True, metavar="FIELD",
              help="Also break accuracy down by this field (repeatable): --by source "
                   "--by century shows whether some groups are served worse.")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
              help="Train and test only on works with this value (repeatable), e.g. "
                   "--where source=WikiArt.")
@click.option("--min-per-class", type=click.IntRange(3), default=5, show_default=True,
              help="Classes with fewer labelled works are set aside (listed in the report).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the stratified 60/20/20 train/validation/test split and training.")
@click.option("--freeze-until", default=None, metavar="LAYER",
              help="finetune: layers up to and including LAYER stay frozen. [default: two "
                   "named layers before the deepest the space uses; Lite0: stage6]")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True,
              help="finetune: learning rate of the unfrozen layers (the head: 10x).")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True,
              help="finetune: most epochs (early stopping may end sooner).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
              help="finetune: images per step.")
@click.option("--weight-decay", type=click.FloatRange(0), default=1e-4, show_default=True,
              help="finetune: AdamW weight decay.")
@click.option("--patience", type=click.IntRange(1), default=3, show_default=True,
              help="finetune: stop after this many epochs without a lower validation loss.")
@click.option("--device", default=None, help="finetune: cpu, cuda, cuda:1 ... [default: "
                                             "cuda when present]")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def train(index_name: str | None, space: str, label: str, method: str, out: Path | None,
          report_dir: Path | None, by: tuple[str, ...], where: tuple[str, ...],
          min_per_class: int, seed: int,
          freeze_until: str | None, lr: float, epochs: int, batch_size: int,
          weight_decay: float, patience: int, device: str | None, as_json: bool) -> None:
    """Learn a catalogue field (genre, style, artist ...) from the indexed works.

    The labelled works are split 60/20/20 (stratified, seeded) into train, validation and
    test. A temperature fitted on the validation split calibrates the probabilities; the
    test split gives the figures in the report: accuracy, macro-F1, per-class precision and
    recall, confusion matrix, calibration curve (ECE before and after), the most confident
    mistakes, and accuracy per --by group.

    \b
      artsearch train --label genre                        linear probe, seconds
      artsearch train --label genre --method finetune      fine-tune, minutes on a CPU
      artsearch classify new.jpg --model MODEL             use it
    """
    from artsearch.classify import TrainOptions
    from artsearch.classify import train as run_train
    from artsearch.classify_report import classify_report
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex

    def say(msg: str) -> None:
        if not as_json:
            click.echo(msg, err=True)

    conditions = {}
    for item in where:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--where {item}: write FIELD=VALUE")
        conditions[name.strip()] = value.strip()
    opts = TrainOptions(label=label, space=space, method=method, min_per_class=min_per_class,
                        where=conditions,
                        seed=seed, freeze_until=freeze_until, lr=lr, epochs=epochs,
                        batch_size=batch_size, weight_decay=weight_decay, patience=patience,
                        device=device)
    with ArtIndex(resolve_index(index_name)) as idx:
        out = out or idx.path / "models" / f"{label}-{method}-{space}.pt"
        report_dir = report_dir or out.with_name(out.stem + "-report")
        result = run_train(idx, opts, out, group_fields=by, progress=say)
        summary = classify_report(idx, result, report_dir, group_fields=by)
    m = result.metrics
    if as_json:
        click.echo(_dumps({"model": str(result.model_path), "model_id": result.model_id,
                               "report": str(summary), **m}))
        return
    test, cal = m["test"], m["calibration"]
    click.echo(f"model {result.model_path} (id {result.model_id}): {label}, {method}, "
               f"{len(result.classes)} classes, trained in {m['train_seconds']:.1f} s")
    click.echo(f"test ({test['n']} works): accuracy {test['accuracy']:.3f}, macro-F1 "
               f"{test['macro_f1']:.3f}, balanced accuracy {test['balanced_accuracy']:.3f} "
               f"(majority class: {m['majority_baseline']:.3f})")
    click.echo(f"calibration: temperature {cal['temperature']:.2f}; ECE on validation "
               f"{cal['val_ece_before']:.3f} -> {cal['val_ece_after']:.3f}, on test "
               f"{cal['test_ece_before']:.3f} -> {cal['test_ece_after']:.3f}")
    if m["works"]["set_aside"]:
        click.echo(f"set aside (< {min_per_class} works): " + ", ".join(
            f"{c} ({n})" for c, n in m["works"]["set_aside"].items()))
    click.echo(f"report: {summary}")


@cli.command()
@click.argument("images", nargs=-1,
                type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--unlabelled", is_flag=True,
              help="Also classify every work of the index that has no value for the model's "
                   "field; with --write, fills FIELD_predicted for them. The index is the "
                   "one the model was trained on, unless --index says otherwise.")
@click.option("--model", "model_path", required=True, metavar="MODEL",
              type=click.Path(path_type=Path, dir_okay=False),
              help="A model file made by `artsearch train`.")
@click.option("--top", type=click.IntRange(1), default=3, show_default=True,
              help="Labels shown per image.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Below this calibrated probability the answer is 'uncertain'.")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Checkpoint of the model's backbone, where it is not where training found "
                   "it (checked against the SHA-256 in the model).")
@click.option("--write", "write_field", default=None, metavar="FIELD_predicted",
              help="Store each prediction in the index's metadata under this field (with the "
                   "probability and the model id); images must be indexed works. Catalogued "
                   "values are never overwritten.")
@_index_option
@click.option("--device", default=None, help="cpu, cuda ... [default: cuda when present]")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def classify(images: tuple[Path, ...], unlabelled: bool, model_path: Path, top: int,
             threshold: float,
             weights: Path | None, write_field: str | None, index_name: str | None,
             device: str | None, as_json: bool) -> None:
    """Predict a catalogue field for images, with calibrated probabilities.

    A prediction below --threshold is reported as "uncertain" rather than forced: an
    attribution is a claim, and the model may not know.

    \b
      artsearch classify new.jpg other.png --model genre-probe.pt
      artsearch classify coll/a.jpg --model genre-probe.pt --write genre_predicted
      artsearch classify --unlabelled --model genre-probe.pt --write genre_predicted
    """
    from artsearch.classify import load_model
    from artsearch.errors import BadImageError
    from artsearch.images import decode_image, read_file

    model = load_model(model_path, weights=weights, device=device)
    if index_name is None and (unlabelled or write_field) and model.model.get("index"):
        index_name = model.model["index"]  # the index it was trained on
        if not Path(index_name).is_dir():
            raise click.ClickException(f"{model_path} was trained on the index at "
                                       f"{index_name}, which is not there; give --index")
    if unlabelled:
        found = _unlabelled_works(index_name, model)
        if not found and not images:
            click.echo(f"nothing to classify: every indexed work has a {model.label}")
            return
        images = images + tuple(found)
    if not images:
        raise click.UsageError("give IMAGE files, or --unlabelled to classify the index's works "
                               "that lack the field")
    results, failures = [], 0
    for start in range(0, len(images), 32):  # decoded a batch at a time: bounded memory
        batch, decoded = [], []
        for path in images[start:start + 32]:
            try:
                img, _ = decode_image(read_file(path), min_side=model.spec.preprocess.resize)
            except BadImageError as e:
                click.echo(f"error: {path}: {e}", err=True)
                failures += 1
                continue
            batch.append(path)
            decoded.append(img)
        for path, probs in zip(batch, model.probabilities(decoded), strict=True):
            results.append(_prediction(path, probs, model.classes, top, threshold))
    written = None
    if write_field is not None:
        written = _write_predictions(index_name, model, results, write_field)
    if as_json:
        click.echo(_dumps({"model": str(model_path), "model_id": model.id,
                               "label": model.label, "threshold": threshold,
                               "results": results, "written": written}))
    else:
        for r in results:
            alternatives = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in r["top"])
            click.echo(f"{terminal(r['image'])}: {terminal(r['prediction'])} "
                       f"({terminal(alternatives)})")
        if written is not None:
            click.echo(f"wrote {write_field} for {written['written']} works"
                       + (f"; kept {written['kept']} catalogued values" if written["kept"]
                          else "")
                       + (f"; {written['not_indexed']} images are not indexed works"
                          if written["not_indexed"] else ""))
    if failures:
        sys.exit(1)


def _unlabelled_works(index_name: str | None, model: Any) -> list[Path]:
    from sqlalchemy import select

    from artsearch.cluster import field_value
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.store import Artwork, Embedding

    with ArtIndex(resolve_index(index_name)) as idx:
        sp = idx.space(model.model["space"])
        model.check_space(sp)
        if idx.root is None:
            raise click.ClickException(f"{idx.path}: the index does not know its collection "
                                       "folder")
        with idx.store.session() as s:
            arts = s.scalars(select(Artwork).join(Embedding, Embedding.artwork_id == Artwork.id)
                             .where(Embedding.space_id == sp.id).order_by(Artwork.path)).all()
        found = [idx.root / a.path for a in arts if not field_value(a, model.label)]
    click.echo(f"{len(found)} indexed works have no {model.label}", err=True)
    return found


def _prediction(path: Path, probs: Any, classes: list[str], top: int, threshold: float
                ) -> dict[str, Any]:
    import numpy as np

    order = np.argsort(-probs)[:top]
    best = float(probs[order[0]])
    return {"image": str(path),
            "prediction": classes[order[0]] if best >= threshold else "uncertain",
            "probability": round(best, 4),
            "top": [{"label": classes[i], "probability": round(float(probs[i]), 4)}
                    for i in order]}


def _write_predictions(index_name: str | None, model: Any, results: list[dict[str, Any]],
                       field: str) -> dict[str, int]:
    from sqlalchemy import select

    from artsearch.home import resolve_index
    from artsearch.images import sha256_bytes
    from artsearch.index import ArtIndex
    from artsearch.store import METADATA_FIELDS, Artwork

    if not field.endswith("_predicted") or field in METADATA_FIELDS:
        raise click.UsageError(f"--write {field}: name the field FIELD_predicted (e.g. "
                               f"{model.label}_predicted), so predictions never mix with "
                               "catalogued values")
    counts = {"written": 0, "kept": 0, "not_indexed": 0}
    with ArtIndex(resolve_index(index_name)) as idx:
        idx.lock()
        model.check_space(idx.space(model.model["space"]))
        root = idx.root
        with idx.store.session() as s, s.begin():
            for r in results:
                path = Path(r["image"]).resolve()
                art = None
                if root is not None and path.is_relative_to(root):
                    art = s.scalar(select(Artwork).where(
                        Artwork.path == path.relative_to(root).as_posix()))
                if art is None:
                    art = s.scalar(select(Artwork).where(
                        Artwork.sha256 == sha256_bytes(path.read_bytes())).limit(1))
                if art is None:
                    counts["not_indexed"] += 1
                    click.echo(f"warning: {r['image']}: not an indexed work; index it first "
                               "to store its prediction", err=True)
                    continue
                extra = dict(art.extra or {})
                if field in extra and f"{field}_model" not in extra:
                    counts["kept"] += 1  # a catalogued column of that name: never overwrite
                    continue
                extra |= {field: r["prediction"], f"{field}_probability": r["probability"],
                          f"{field}_model": model.id}
                art.extra = extra
                counts["written"] += 1
    return counts


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

    rows = []
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
            "poolings": list(spec.poolings or ["avg", "max", "gem", "meanstd", "gram"]),
            "text": spec.text, "description": spec.description,
        })
    families = [{"pattern": f.pattern, "description": f.description}
                for f in backbones.families()]
    if as_json:
        click.echo(_dumps({"backbones": rows, "families": families}))
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


@cli.command()
@_index_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--failures", is_flag=True, help="List every file that failed, with its reason.")
@click.option("--works", is_flag=True,
              help="List every indexed work: id, path (as `artsearch query` takes it), title "
                   "and artist.")
def info(index_name: str | None, as_json: bool, failures: bool, works: bool) -> None:
    """Summarise an index: artworks, spaces, backbone, failures, size on disk."""
    from sqlalchemy import select

    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.store import Artwork, Failure

    with ArtIndex(resolve_index(index_name)) as idx:
        data = idx.info()
        if works:
            with idx.store.session() as s:
                data["works"] = [{"id": a.id, "path": a.path, "title": a.title,
                                  "artist": a.artist}
                                 for a in s.scalars(select(Artwork).order_by(Artwork.path))]
        if failures:
            with idx.store.session() as s:
                data["failure_list"] = [{"path": f.path, "reason": f.reason, "at": f.at.isoformat()}
                                        for f in s.scalars(select(Failure).order_by(Failure.path))]
    if as_json:
        click.echo(_dumps(data))
        return
    click.echo(f"index     {data['index']}  (schema {data['schema']})")
    click.echo(f"root      {data['root']}")
    click.echo(f"artworks  {data['artworks']}")
    for sp in data["spaces"]:
        if sp["being_written"]:
            click.echo(f"          (+{sp['being_written']} vectors an indexing run has not "
                       "saved yet)")
        click.echo(f"space     {sp['name']}: {sp['embedded']} vectors, {sp['backbone']} "
                   f"[{sp['layer']}, {sp['pooling']}] {sp['dims']}-d, {sp['faiss_factory']}, "
                   f"weights {sp['weights_sha256'][:12]}")
        if sp["ann"]:
            a = sp["ann"]
            click.echo(f"          search: {a['type']} (recall@10 {a['recall10']:.3f} at "
                       f"{'efSearch' if a['type'] == 'hnsw' else 'nprobe'} {a['param']}; "
                       f"--index-type {sp['index_type']})")
        else:
            click.echo(f"          search: exact (--index-type {sp['index_type']})")
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


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # `kill`: the same orderly stop as Ctrl-C, batches saved


def _exit_now(code: object) -> None:
    """Leave at once: the interpreter's own teardown of torch's objects costs about a
    third of a second, a tenth of a query. Only once the command is finished, its output
    flushed, and no child process (decoding workers) or tracer is left to wait for."""
    import multiprocessing

    if multiprocessing.active_children() or sys.gettrace() or sys.getprofile():
        sys.exit(code)  # let children, profilers and coverage finish in the usual way
    if code is not None and not isinstance(code, int):
        click.echo(code, err=True)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (`| head`): nothing more can be said anyway
        pass
    os._exit(code or 0)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(prog_name="artsearch")
    except SystemExit as e:
        _exit_now(e.code)
