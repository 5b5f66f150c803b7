"""Catalogue metadata from CSV: known columns to their fields, every other column to `extra`."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from artsearch.errors import MetadataError
from artsearch.store import METADATA_FIELDS, Artwork

__all__ = ["MetadataImport", "apply_metadata", "read_metadata_csv"]


@dataclass
class MetadataImport:
    rows: int = 0
    matched: int = 0
    unmatched: list[str] = field(default_factory=list)
    duplicates: int = 0


def _norm_path(value: str) -> str:
    return PurePosixPath(value.strip().replace("\\", "/")).as_posix().removeprefix("./")


def read_metadata_csv(path: Path) -> tuple[dict[str, dict[str, str | None]], int]:
    """Rows keyed by their `path` (relative to the collection root); and how many repeated."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "path" not in columns:
                raise MetadataError(
                    f"{path}: no 'path' column; the first row must name the columns, one of "
                    "them 'path' (each image's path relative to the collection folder)"
                )
            rows: dict[str, dict[str, str | None]] = {}
            repeats = 0
            for raw in reader:
                row = {(k or "").strip(): (v.strip() if isinstance(v, str) else None)
                       for k, v in raw.items()}
                rel = _norm_path(row.pop("path") or "")
                if not rel:
                    continue
                repeats += rel in rows
                rows[rel] = {k: (v or None) for k, v in row.items() if k}
            return rows, repeats
    except OSError as e:
        raise MetadataError(f"{path}: cannot read the metadata file ({e.strerror})") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise MetadataError(f"{path}: not a UTF-8 CSV file ({e}); save it as CSV UTF-8") from e


def apply_metadata(session: Session, path: Path) -> MetadataImport:
    """Attach the CSV's fields to the indexed artworks it names (the CSV wins on conflict)."""
    rows, repeats = read_metadata_csv(path)
    result = MetadataImport(rows=len(rows), duplicates=repeats)
    by_path = {a.path: a for a in session.scalars(select(Artwork))}
    for rel, values in rows.items():
        art = by_path.get(rel)
        if art is None:
            result.unmatched.append(rel)
            continue
        extra = dict(art.extra or {})
        for key, value in values.items():
            if key in METADATA_FIELDS:
                setattr(art, key, value)
            elif value is None:
                extra.pop(key, None)
            else:
                extra[key] = value
        art.extra = extra or None
        result.matched += 1
    return result
