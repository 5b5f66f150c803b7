"""The `artsearch` command group and what its commands share: one-line errors, JSON that is
always valid, the --index and --space options.

Heavy modules (torch, faiss, the database layer) are imported inside command bodies, so
`artsearch --help` answers at once.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import click

from artsearch import __version__
from artsearch.errors import ArtsearchError, OptionError
from artsearch.textsafe import one_line, terminal

__all__ = ["FAILURES_SHOWN", "cli", "dumps", "index_option", "licences_option", "out_dir",
           "out_file", "report_options", "space_option"]

FAILURES_SHOWN = 50


def dumps(value: Any) -> str:
    """Indented JSON that is always valid: NaN and infinities become null."""
    from artsearch.textsafe import json_safe

    return json.dumps(json_safe(value), indent=2, ensure_ascii=False, allow_nan=False)


class _Group(click.Group):
    """Turns ArtsearchError, and the OS errors a user can fix (a full disk, a read-only
    folder), into a one-line message and exit status 1, everywhere."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OptionError as e:  # an option written wrongly: a usage error, as click's own
            raise click.UsageError(one_line(e, limit=2000), ctx) from e
        except ArtsearchError as e:
            # Messages quote names from files and servers: one line, nothing a terminal runs.
            raise click.ClickException(one_line(e, limit=2000)) from e
        except OSError as e:
            if e.errno not in _FIXABLE:
                raise
            where = f"{terminal(str(e.filename))}: " if e.filename else ""
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
    errno.ENOENT: "check that the path exists",
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
    errno.EISDIR: "that path is a folder; give a file",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def index_option(f: Any) -> Any:
    return click.option(
        "--index", "index_name", metavar="NAME|PATH", default=None,
        help="Index to use: a name under $ARTSEARCH_HOME (default ./indexes), or a folder path. "
             "[default: $ARTSEARCH_INDEX, else the only index there, else 'default'; "
             "`artsearch indexes` lists them]")(f)


def _space_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from artsearch.paths import check_space_name

    if value is None:
        return None
    try:
        return check_space_name(value, where=f"--{param.name}")
    except ArtsearchError as e:
        raise click.BadParameter(str(e).split(": ", 1)[-1]) from None


def space_option(f: Any) -> Any:
    return click.option("--space", default="content", show_default=True,
                        callback=_space_name,
                        help="Embedding space within the index.")(f)


def _checked(kind: str) -> Any:
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
        from artsearch import paths

        if value is None:
            return None
        option = "/".join(param.opts) if param.opts and param.opts[0].startswith("-") \
            else (param.metavar or param.human_readable_name)
        try:
            if kind == "file":
                return paths.output_file(value, option)
            folder = paths.output_dir(value, option)
            if kind == "report":  # a report writes only where no other files are
                from artsearch.reports.page import claim_folder

                claim_folder(folder, option)
            return folder
        except ArtsearchError as e:
            raise click.ClickException(one_line(e)) from None
    return check


# Output paths, checked (no file in the way, writable, missing folders made) before any work;
# options using them take type=click.Path() (a str: click turns "" into "." on the way to Path).
out_dir = _checked("dir")
out_file = _checked("file")
# A report's folder: also new, empty or an earlier report's (reports.page.claim_folder).
report_folder = _checked("report")


def licences_option(f: Any) -> Any:
    return click.option(
        "--show-licences", "show_licences", default=None, metavar="CLASS,...",
        help="Licence classes whose images may appear (thumbnails); others get a grey tile "
             "with their rights statement. Classes: public-domain, cc0, cc-by, cc-by-sa, "
             "cc-by-nd, cc-by-nc, cc-by-nc-sa, cc-by-nc-nd, unknown (none catalogued), "
             "other; or default, all. [default: public-domain,cc0,cc-by,cc-by-sa]")(f)


def report_options(f: Any) -> Any:
    f = licences_option(f)
    f = click.option("--duplicates", "duplicate_threshold", type=click.FloatRange(0, 1),
                     default=0.92, show_default=True, metavar="COSINE",
                     help="Similarity at or above which the report flags two works as "
                          "near-duplicates.")(f)
    return click.option("--report", "report_dir", default=None, metavar="DIR",
                        type=click.Path(), callback=report_folder,
                        help="Also write an HTML report to DIR (index.html + thumbnails; "
                             "opens from disk, no server).")(f)


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


