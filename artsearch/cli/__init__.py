"""The `artsearch` command: a thin shell that parses options, calls the core, prints results.

Each command lives in the module of its name (`clusters` with `cluster`, `indexes` with `info`,
`import-vectors` with `export`); `_app` holds the group and the options they share.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from artsearch.cli import (  # noqa: F401 - registers the commands
    audit,
    backbones,
    classify,
    cluster,
    duplicates,
    export,
    index,
    info,
    layers,
    learn,
    query,
    serve,
    show,
    stylize,
    train,
)
from artsearch.cli._app import cli

__all__ = ["cli", "main"]


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # `kill`: the same orderly stop as Ctrl-C, batches saved


def _exit_now(code: object) -> None:
    """Leave at once: the interpreter's own teardown of torch's objects costs about a
    third of a second, a tenth of a query. Only once the command is finished, its output
    flushed, and no child process (decoding workers) or tracer is left to wait for."""
    import multiprocessing

    if multiprocessing.active_children() or sys.gettrace() or sys.getprofile():
        # Let children, profilers and coverage finish in the usual way.
        sys.exit(code if code is None or isinstance(code, int | str) else str(code))
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
