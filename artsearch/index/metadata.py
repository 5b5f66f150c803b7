"""Catalogue metadata from CSV: known columns to their fields, every other column to `extra`."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from artsearch.errors import MetadataError
from artsearch.index.store import METADATA_FIELDS, Artwork, Setting

__all__ = ["Catalogue", "MetadataImport", "apply_metadata", "column_order", "read_metadata_csv"]


@dataclass
class MetadataImport:
    rows: int = 0
    matched: int = 0
    unmatched: list[str] = field(default_factory=list)
    duplicates: int = 0
    repeated: list[str] = field(default_factory=list)  # paths with several rows: last kept


def _norm_path(value: str) -> str:
    return PurePosixPath(value.strip().replace("\\", "/")).as_posix().removeprefix("./")


@dataclass
class Catalogue:
    """A read metadata CSV: rows keyed by `path`, and the paths given more than once."""

    path: Path
    rows: dict[str, dict[str, str | None]]
    repeated: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # as the CSV's first row orders them


# Catalogue texts (descriptions, provenance) can be long; the csv module's default cap is 128 KiB.
MAX_FIELD_BYTES = 16 << 20


def read_metadata_csv(path: Path) -> Catalogue:
    """Read and check the whole CSV; a path given twice keeps its last row (and is listed)."""
    previous = csv.field_size_limit(MAX_FIELD_BYTES)
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
            repeated: list[str] = []
            for raw in reader:
                row = {(k or "").strip(): (v.strip() if isinstance(v, str) else None)
                       for k, v in raw.items()}
                rel = _norm_path(row.pop("path") or "")
                if not rel:
                    continue
                if rel in rows and rel not in repeated:
                    repeated.append(rel)  # each path once, however many rows repeat it
                rows[rel] = {k: (v or None) for k, v in row.items() if k}
            return Catalogue(path, rows, repeated, [c for c in columns if c])
    except OSError as e:
        raise MetadataError(f"{path}: cannot read the metadata file ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise MetadataError(f"{path}: not a UTF-8 CSV file ({e}); save it as CSV UTF-8") from e
    except csv.Error as e:
        raise MetadataError(f"{path}: not a readable CSV file ({e}); check the quoting near "
                            "that line, or save it again as CSV UTF-8") from e
    finally:
        csv.field_size_limit(previous)


def apply_metadata(session: Session, catalogue: Catalogue | Path) -> MetadataImport:
    """Attach the CSV's fields to the indexed artworks it names (the CSV wins on conflict)."""
    if not isinstance(catalogue, Catalogue):
        catalogue = read_metadata_csv(catalogue)
    rows = catalogue.rows
    result = MetadataImport(rows=len(rows), duplicates=len(catalogue.repeated),
                            repeated=catalogue.repeated)
    _keep_column_order(session, catalogue.columns)
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


COLUMN_ORDER = "catalogue_columns"  # the settings key: the catalogues' columns, in order


def _keep_column_order(session: Session, columns: list[str]) -> None:
    """Record the catalogue's column order (exports give the columns as the curator's CSV
    had them): the order known so far, then this CSV's new columns in its order."""
    import json

    row = session.get(Setting, COLUMN_ORDER)
    known: list[str] = json.loads(row.value) if row is not None else []
    order = known + [c for c in columns if c not in known]
    if order != known:
        session.merge(Setting(key=COLUMN_ORDER, value=json.dumps(order)))


def column_order(session: Session) -> list[str]:
    """The catalogue columns in the order their CSVs gave them (empty: none recorded)."""
    import json

    row = session.get(Setting, COLUMN_ORDER)
    try:
        order = json.loads(row.value) if row is not None else []
    except ValueError:
        return []
    return [c for c in order if isinstance(c, str)]
