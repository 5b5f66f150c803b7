"""Every name and path that arrives from a user or a file, checked in one place: space names
(which become file names), output files and folders, and files that must lie inside a
collection.

A space name comes from `--space`, `--mix`, an export's Parquet metadata or an import's
`-s`; it names `SPACE.faiss`, `SPACE.pooling.npz` and export shards, so it must be one plain
name that cannot climb out of the folder it is joined to. An output path is checked before
the work that fills it starts, so an hour's clustering never ends in "Not a directory".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from artsearch.errors import ArtsearchError

__all__ = ["SPACE_NAME_RULE", "check_space_name", "file_stem", "inside", "output_dir",
           "output_file", "work_file"]

_SPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SPACE_NAME_RULE = ("letters, digits, '_', '-' and '.', at most 64, starting with a letter or "
                   "digit (e.g. content, style, style-320)")


def check_space_name(name: object, *, where: str = "") -> str:
    """`name` if it is a plain space name, else ArtsearchError naming where it came from."""
    if isinstance(name, str) and _SPACE_NAME.fullmatch(name) and ".." not in name:
        return name
    from artsearch.textsafe import terminal

    shown = terminal(repr(name)[:80])
    prefix = f"{where}: " if where else ""
    raise ArtsearchError(f"{prefix}{shown} is not a space name; use {SPACE_NAME_RULE}")


def file_stem(text: str) -> str:
    """A label (a catalogue field's name, free text) made safe as part of a file name: runs
    of anything but letters, digits, '_', '-' and '.' become '_', and no leading dot."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:64]
    return stem or "unnamed"


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _check_parent_chain(target: Path, folder: Path, option: str) -> None:
    """Every existing ancestor of `folder` must be a folder, and the nearest one writable;
    then the missing folders are made."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise ArtsearchError(f"{option} {target}: {existing} is a file, not a folder; choose "
                             "a path under a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArtsearchError(f"{option} {target}: {existing} is not writable; choose a "
                             "writable folder")
    if existing != folder:
        folder.mkdir(parents=True, exist_ok=True)


def output_file(path: Path | str, option: str = "--out") -> Path:
    """A file artsearch will write: not a folder, under folders that exist or can be made
    (made now), writable. Checked before any work, so none is wasted."""
    if str(path) == "":
        raise ArtsearchError(f"{option}: an empty path; give a file name")
    target = Path(path).expanduser()
    if target.is_dir():
        raise ArtsearchError(f"{option} {target}: a folder; give a file name")
    if os.path.lexists(target) and not os.access(target, os.W_OK):
        raise ArtsearchError(f"{option} {target}: not writable; choose another file")
    _check_parent_chain(target, target.absolute().parent, option)
    return target


def output_dir(path: Path | str, option: str = "--report") -> Path:
    """A folder artsearch will write into: not a file, made if missing (with its parents),
    writable. Checked before any work."""
    if str(path) == "":
        raise ArtsearchError(f"{option}: an empty path; give a folder (`.` for this one)")
    target = Path(path).expanduser()
    if os.path.lexists(target) and not target.is_dir():
        raise ArtsearchError(f"{option} {target}: a file, not a folder; give a folder")
    _check_parent_chain(target, target.absolute(), option)
    return target


def inside(root: Path, rel: str) -> Path | None:
    """`root / rel` when `rel` is a relative path that stays inside `root` once links are
    resolved, else None (an absolute path, `..`, a NUL, or a link leading out)."""
    if not rel or "\x00" in rel or len(rel) > 4096:
        return None
    parts = Path(rel)
    if parts.is_absolute() or ".." in parts.parts:
        return None
    file = root / parts
    try:
        if not file.resolve().is_relative_to(root.resolve()):
            return None
    except (OSError, RuntimeError, ValueError):  # a link loop, a name the OS refuses
        return None
    return file


def work_file(root: Path | None, rel: str) -> Path:
    """An indexed work's file, for every reader (pages, thumbnails, reports, explanations,
    duplicates, layers, style sources, training): refused unless it lies inside the
    collection once links are resolved — a link placed in the collection, or a file swapped
    for one after indexing, is never read through."""
    from artsearch.errors import BadImageError, NotIndexedError

    if root is None:
        raise NotIndexedError("the index does not know its collection folder")
    file = inside(root, rel)
    if file is None:
        raise BadImageError(f"{rel}: its file leads outside the collection (a link); not read")
    return file
