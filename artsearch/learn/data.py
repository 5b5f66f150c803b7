"""The pictures to learn from and their labels: a corpus folder with a CSV, or an index;
split by label value, never by work."""

from __future__ import annotations

import csv
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artsearch.errors import ArtsearchError, MetadataError

if TYPE_CHECKING:
    from PIL import Image

    from artsearch.index import ArtIndex

__all__ = ["Split", "Work", "read_corpus", "split_by_label", "split_works", "trim_bars",
           "works_from_index"]


@dataclass
class Work:
    path: Path
    labels: dict[str, str]
    letterboxed: bool = False  # black bars added by the source: trimmed before learning


def read_corpus(folder: Path, metadata: Path, fields: Sequence[str], *,
                absent: Collection[str] = (), letterboxed: bool = False) -> list[Work]:
    """Works of a folder that is not an index, labelled by a CSV with a `path` column; a
    field named in `absent` may be missing from the CSV (every work's value is then "")."""
    if not folder.is_dir():
        raise ArtsearchError(f"{folder}: not a folder; give the folder of pictures")
    try:
        with metadata.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MetadataError(f"{metadata}: not readable as a CSV ({e})") from e
    columns = set(rows[0]) if rows else set()
    missing = [f for f in ("path", *fields) if f not in columns and f not in absent]
    if missing:
        raise MetadataError(f"{metadata}: no column {missing[0]!r} (columns: "
                            f"{', '.join(sorted(columns))})")
    from artsearch.paths import inside

    works = []
    for row in rows:
        file = inside(folder, (row.get("path") or "").strip())
        if file is None or not file.is_file():
            continue
        works.append(Work(file, {f: (row.get(f) or "").strip() for f in fields},
                          letterboxed))
    return works


def trim_bars(img: Image.Image, dark: float = 8.0, speck: int = 48,
              keep: float = 0.2) -> Image.Image:
    """`img` without the black bars a source letterboxed it with: whole rows or columns at an
    edge whose mean is at most `dark` and no pixel brighter than `speck` (JPEG ringing
    allowed). A picture that would keep less than `keep` of a side is returned as it is (a
    dark painting is not a bar)."""
    grey = np.asarray(img.convert("L"), np.float32)
    h, w = grey.shape

    def run(lines: np.ndarray) -> int:
        bar = (lines.mean(1) <= dark) & (lines.max(1) <= speck)
        return int(np.argmin(bar)) if not bar.all() else len(bar)

    top, bottom = run(grey), run(grey[::-1])
    left, right = run(grey.T), run(grey.T[::-1])
    if h - top - bottom < keep * h or w - left - right < keep * w:
        return img
    if top == bottom == left == right == 0:
        return img
    return img.crop((left, top, w - right, h - bottom))


def works_from_index(index: ArtIndex, fields: Sequence[str]) -> list[Work]:
    """An index's works with their catalogue's values for `fields` (a column or an extra)."""
    from artsearch.index.catalogue import artworks
    from artsearch.paths import inside

    if index.root is None:
        raise ArtsearchError(f"{index.path}: the index does not know its collection folder")
    works = []
    catalogue = artworks(index)
    columns = ("title", "artist", "date", "style", "genre", "license", "source")
    known = {c for c in columns if any(getattr(a, c, None) for a in catalogue)}
    known |= {k for a in catalogue for k in (a.extra or {})}
    for f in fields:
        if f not in known:
            raise MetadataError(
                f"--label {f}: no such catalogue field in {index.path}; the fields there "
                f"are: {', '.join(sorted(known)) or 'none (index with --metadata CSV)'}")
    for art in catalogue:
        file = inside(index.root, art.path)
        if file is None:
            continue
        values = {}
        for f in fields:
            value = getattr(art, f, None) if f in columns else (art.extra or {}).get(f)
            values[f] = str(value).strip() if value is not None else ""
        works.append(Work(file, values))
    return works


@dataclass
class Split:
    """Rows of works: learnt from, held-out main-label values (artists), held-out side-label
    values (styles never seen in training)."""

    train: list[int]
    val: list[int]
    unseen: list[int]


def split_works(works: Sequence[Work], main: str, share: float, seed: int,
                min_per_label: int = 2, held_out: Collection[str] | None = None, *,
                side: str = "style", held_out_side: Collection[str] = ()) -> Split:
    """Split by `main` as `split_by_label` does, and more: a work without a main value but
    with a `side` value (a style-only work) is learnt from too, and every work whose side
    value is in `held_out_side` is kept out of training (and of the main validation) and
    judged apart, so what generalises to a style never seen is measured."""
    held_side = set(held_out_side)
    rows = [i for i, w in enumerate(works) if w.labels.get(main)]
    train_main, val_main = split_by_label([works[i] for i in rows], main, share, seed,
                                          min_per_label, held_out)
    trained_values = {works[rows[i]].labels[main] for i in train_main}
    val_values = {works[rows[i]].labels[main] for i in val_main}
    split = Split([], [], [])
    for i, w in enumerate(works):
        value, other = w.labels.get(main, ""), w.labels.get(side, "")
        if other and other in held_side:
            split.unseen.append(i)
        elif value in val_values:
            split.val.append(i)
        elif value in trained_values or other:  # too few works of its artist: its style
            split.train.append(i)
    return split


def split_by_label(works: Sequence[Work], field_name: str, share: float, seed: int,
                   min_per_label: int = 2, held_out: Collection[str] | None = None
                   ) -> tuple[list[int], list[int]]:
    """(training works, validation works): the values of `field_name` with at least
    `min_per_label` works are drawn into a held-out share, by value, never by work; or
    `held_out` names the held-out values (the same split on a subset of the works)."""
    counts: dict[str, int] = {}
    for w in works:
        value = w.labels.get(field_name, "")
        if value:
            counts[value] = counts.get(value, 0) + 1
    usable = sorted(v for v, n in counts.items() if n >= min_per_label)
    if len(usable) < 4:
        raise MetadataError(
            f"--label {field_name}: {len(usable)} values with {min_per_label} or more works; "
            "learning needs at least 4 (two to learn from, two to judge on)")
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(usable)[: max(2, round(share * len(usable)))].tolist()) \
        if held_out is None else set(held_out) & set(usable)
    train = [i for i, w in enumerate(works) if w.labels.get(field_name) in usable
             and w.labels[field_name] not in held]
    val = [i for i, w in enumerate(works) if w.labels.get(field_name) in held]
    return train, val


