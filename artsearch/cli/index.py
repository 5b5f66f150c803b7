"""`artsearch index`: build or update a space over a folder or a IIIF manifest."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from artsearch.cli._app import (
    FAILURES_SHOWN,
    cli,
    index_option,
    space_option,
)
from artsearch.textsafe import terminal


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path), required=False)
@index_option
@space_option
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
@click.option("--pooling",
              type=click.Choice(["avg", "cavg", "max", "gem", "rmac", "meanstd", "gram"]),
              default=None,
              help="How feature maps become a vector: avg (content), cavg (avg centred on "
                   "the collection), max, gem, rmac (same work, crops, details), meanstd or "
                   "gram (style). [default: avg, or the space's own]")
@click.option("--input-size", type=click.IntRange(32, 1024), default=None, metavar="PX",
              help="Picture size the backbone reads (shorter side, centre square) for a new "
                   "space; larger sees finer brushwork and costs (PX/224)^2 the time. Lite0 "
                   "meanstd at 320 found the same WikiArt style better (benchmarks/README.md). "
                   "[default: the backbone's, e.g. 224; a re-run keeps the space's]")
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
@click.option("--follow-links", is_flag=True,
              help="Also index what file and folder links leading out of FOLDER point to "
                   "(otherwise each is reported and skipped; links within FOLDER are "
                   "always followed). Their works are searchable; their pictures are never "
                   "read back through the link (serve, reports, duplicates show none).")
@click.option("--regions", is_flag=True,
              help="Also describe every work of the space by ~48 overlapping regions at two "
                   "scales, so `artsearch query IMG --region X,Y,W,H` and `--in-regions` find "
                   "a motif or a detail in other works (about 75 ms a work on a 2-core CPU; "
                   "once on, later runs keep it up to date).")
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
@click.option("--iiif", "iiif_source", default=None, metavar="MANIFEST",
              help="Index a IIIF Presentation 2 or 3 manifest or collection (a file or an "
                   "http(s) URL) instead of FOLDER: each canvas's picture is fetched through "
                   "the Image API into INDEX/iiif-images (once; a re-run fetches only new "
                   "canvases), with title, creator, date, rights and URIs as catalogue.")
@click.option("--iiif-size", type=click.IntRange(64, 4096), default=1024, show_default=True,
              metavar="PX", help="Longest side requested from the Image API.")
@click.option("--iiif-timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
              metavar="S", help="Seconds a request may take, from connecting to its last "
                                "byte (each is tried 3 times).")
@click.option("--iiif-concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              metavar="N", help="Pictures fetched at a time.")
@click.option("--iiif-max-documents", type=click.IntRange(1), default=10_000,
              show_default=True, metavar="N",
              help="Manifests and collections read in one run (a collection that fans out "
                   "further is cut off, with a line saying so).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="local: decode and embed in this process and its decoding workers. ray: "
                   "in a pool of extractor actors on a Ray cluster (pip install "
                   "'artsearch[ray]'); this process still plans the run and writes the index.")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="--engine ray: the cluster to join (auto: the one `ray start` made here). "
                   "[default: start a local one for this run]")
@click.option("--actors", type=click.IntRange(1), default=None, metavar="N",
              help="--engine ray: extractor actors. [default: the cluster's CPUs (or GPUs) "
                   "divided by what one actor takes]")
@click.option("--gpus-per-actor", type=click.FloatRange(0), default=0.0, show_default=True,
              metavar="G", help="--engine ray: GPUs each actor takes (fractions share one).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def index(folder: Path | None, index_name: str | None, space: str, metadata: Path | None,
          backbone: str | None, weights: Path | None, allow_download: bool, layer: str | None,
          pooling: str | None, input_size: int | None, index_type: str | None,
          prune: bool, force: bool, relocate: bool, follow_links: bool, regions: bool,
          strict: bool,
          device: str,
          precision: str, batch_size: int,
          workers: int | None, decode: str, max_pixels: int | None, max_bytes: int | None,
          checkpoint_seconds: float, iiif_source: str | None, iiif_size: int,
          iiif_timeout: float, iiif_concurrency: int, iiif_max_documents: int, engine: str,
          address: str | None, actors: int | None, gpus_per_actor: float, quiet: bool) -> None:
    """Index the images under FOLDER, or of a IIIF manifest (new and changed files only).

    Files are matched by path, size and modification time, confirmed by content hash:
    a re-run embeds only what is new or changed, moved files keep their vectors, and
    identical copies reuse them. A bad file is skipped with a one-line reason (also kept for
    `artsearch info --failures`); an interrupted run resumes where it stopped.

    \b
    An index can hold several spaces, each its own backbone, layers and pooling:
      artsearch index DIR                                   (content: Lite0, avg)
      artsearch index DIR --space style --backbone vgg16-hed --pooling gram
      artsearch index DIR --space style --pooling meanstd --input-size 320
      artsearch index --iiif https://example.org/iiif/manifest.json
      artsearch index DIR --engine ray --address auto --actors 8 --gpus-per-actor 1
    """
    from artsearch import backbones
    from artsearch.home import resolve_index
    from artsearch.index import ArtIndex
    from artsearch.indexer import IndexOptions, index_collection

    extractor: dict[str, Any] = {"device": device, "precision": precision,
                                 "batch_size": batch_size, "num_workers": workers,
                                 "decode": decode}
    if max_pixels is not None:
        extractor["max_pixels"] = max_pixels
    if max_bytes is not None:
        extractor["max_bytes"] = max_bytes
    if (folder is None) == (iiif_source is None):
        raise click.UsageError("give the FOLDER of images to index, or --iiif MANIFEST "
                               "(not both)")
    if folder is not None and not folder.is_dir():
        raise click.ClickException(f"{folder}: not a folder; give the folder of images to index")
    if iiif_source is not None and metadata is not None:
        raise click.UsageError("--metadata does not apply to --iiif: the manifest is the "
                               "catalogue")
    if metadata is not None and not metadata.is_file():
        raise click.ClickException(f"{metadata}: no such metadata file")
    path = resolve_index(index_name)
    backbones.allow_downloads(allow_download)
    options = IndexOptions(
        space=space, backbone=backbone, weights=weights, index_type=index_type,
        layer=layer, pooling=pooling, input_size=input_size, prune=prune, force=force,
        relocate=relocate, follow_links=follow_links,
        metadata=metadata,
        checkpoint_seconds=checkpoint_seconds,
        progress=not quiet and sys.stderr.isatty(), extractor=extractor)
    if engine == "ray":
        from artsearch.distributed import RayOptions, require_ray

        require_ray()  # says how to install it, before anything is read or written
        import logging

        import ray.data  # noqa: F401 - configures Ray Data's loggers, which are then quietened

        # Ray Data narrates each pipeline (start, finish, progress-bar settings) on stderr;
        # the summary below says what a user needs. Errors still show.
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        options.engine = RayOptions(address=address, actors=actors,
                                    gpus_per_actor=gpus_per_actor)
    fetched = None
    with ArtIndex(path, create=True) as idx:
        try:
            if iiif_source is not None:
                from artsearch.iiif import FetchOptions, index_iiif

                report, fetched = index_iiif(
                    iiif_source, idx, options,
                    FetchOptions(size=iiif_size, timeout=iiif_timeout,
                                 concurrency=iiif_concurrency,
                                 max_documents=iiif_max_documents),
                    progress=None if quiet else lambda m: click.echo(m, err=True))
                folder = idx.path / "iiif-images"
            else:
                assert folder is not None
                report = index_collection(folder, idx, options)
        except KeyboardInterrupt:
            kept = ""
            with contextlib.suppress(Exception):  # a courtesy: the exit must happen anyway
                kept = f" ({idx.saved_count(idx.space(space)):,} works in space {space!r})"
            click.echo(f"interrupted: every finished batch is saved{kept}; run the same "
                       "command to continue", err=True)
            sys.exit(130)
        region_report = _regions(idx, space, regions, quiet) if report.total else None
    for line in report.damaged:
        click.echo(f"repaired {line}", err=True)
    if fetched is not None:
        for uri, reason in fetched.failed[:FAILURES_SHOWN]:
            click.echo(f"not fetched {terminal(uri)}: {reason}", err=True)
        if not quiet:
            click.echo(f"IIIF: {fetched.canvases} canvases, {fetched.fetched} fetched, "
                       f"{fetched.already} already here, {len(fetched.failed)} failed "
                       "(a re-run tries them again)")
    if report.metadata is not None and report.metadata.repeated:
        rep = report.metadata.repeated
        click.echo(f"warning: {metadata}: {len(rep)} paths have more than one row (the last "
                   f"is kept), e.g. {terminal(rep[0])}", err=True)
    for rel, reason in report.failed[:FAILURES_SHOWN]:
        click.echo(f"skipped {terminal(rel)}: {reason}", err=True)
    if len(report.failed) > FAILURES_SHOWN:
        click.echo(f"... and {len(report.failed) - FAILURES_SHOWN} more; "
                   "`artsearch info --failures` lists them all", err=True)
    if not quiet:
        _print_index_report(report, path, space)
    if region_report is not None:
        _print_regions(region_report, quiet)
    if report.total == 0:
        hint = ("no image files found" if not report.scanned and not report.failed
                else "no image could be indexed")
        raise click.ClickException(f"{folder}: {hint}; nothing is in space {space!r}")
    if strict and report.failed:
        raise click.ClickException(f"{len(report.failed)} file(s) failed (--strict)")


def _regions(idx: Any, space: str, wanted: bool, quiet: bool) -> Any:
    """Bring the space's region index up to date when asked, or when it has one."""
    from artsearch.regions.store import build_regions, has_regions

    if not (wanted or has_regions(idx, idx.space(space))):
        return None
    import contextlib

    from artsearch.progress import progress_bar

    stack = contextlib.ExitStack()
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:  # the same bar as embedding's
            bar = stack.enter_context(progress_bar(total, desc="regions", unit="img"))
        bar.update(1)
        if done == total:
            stack.close()

    try:
        with stack:
            return build_regions(idx, space, progress=progress)
    except KeyboardInterrupt:
        click.echo("interrupted: the regions described up to the last save (every 2 "
                   "minutes) are kept; run the same command to describe the rest", err=True)
        sys.exit(130)


def _print_regions(report: Any, quiet: bool) -> None:
    if report.damaged:
        click.echo(f"warning: regions: {terminal(report.damaged)}", err=True)
    for rel, reason in report.skipped[:FAILURES_SHOWN]:
        click.echo(f"regions skipped {terminal(rel)}: {reason}", err=True)
    if quiet:
        return
    how = report.structure + (f", keeping {report.work_recall:.0%} of the exact top-10 works"
                              if report.work_recall is not None else " (exact)")
    click.echo(f"  regions: {report.works} works, {report.regions:,} regions ({how}); "
               f"{report.added} described, {report.removed} dropped in {report.seconds:.1f} s")


def _print_index_report(report: Any, path: Path, space: str) -> None:
    parts = [f"{report.embedded} embedded", f"{report.unchanged} unchanged"]
    parts += [f"{n} {label}" for n, label in [(report.moved, "moved"),
              (report.copied, "copies reused"), (report.pruned, "pruned"),
              (len(report.failed), "failed")] if n]
    click.echo(f"{path} [{space}]: {report.total} artworks indexed ({', '.join(parts)}) "
               f"in {report.seconds:.1f} s")
    if report.embedded:
        rt = report.runtime
        if rt.get("engine") == "ray":
            click.echo(f"  {report.images_per_second:.1f} images/s on Ray, {rt.get('actors')} "
                       f"extractor actors on {rt.get('device')} ({rt.get('precision')}, batch "
                       f"{rt.get('batch_size')})")
        else:
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
