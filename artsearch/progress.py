"""The one progress bar of the command line: tqdm on standard error, with a label, a count,
a rate and the time left, drawn only on a terminal (`enabled`), so that logs and pipes get
the commands' own lines and nothing else. Embedding, regions and style transfer use it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(total: int, *, desc: str, unit: str, enabled: bool = True) -> Iterator[Any]:
    """A bar for `total` steps of `unit`; `.update(n)` moves it, `.set_postfix(...)` adds
    figures. A no-op when not `enabled` or standard error is not a terminal."""
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, desc=desc, file=sys.stderr,
              disable=not enabled or not sys.stderr.isatty(), dynamic_ncols=True,
              smoothing=0.1) as bar:
        yield bar
