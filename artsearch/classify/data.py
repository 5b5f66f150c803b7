"""The labelled works of a space and their stratified, seeded split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from artsearch.classify._base import LabelledSet
from artsearch.errors import MetadataError
from artsearch.index import ArtIndex


def labelled_works(index: ArtIndex, space: str, label: str, min_per_class: int,
                   group_fields: Sequence[str] = (),
                   where: dict[str, Any] | None = None) -> LabelledSet:
    """The space's works that carry `label` (and match `where`), with their vectors; rare
    classes set aside."""
    from artsearch.cluster import space_matrix
    from artsearch.index import catalogue

    field_value = catalogue.field_value
    ids, vectors = space_matrix(index, space)
    arts = {a.id: a for a in catalogue.artworks(index, ids)}
    if where:  # one value, or any of several, per field (catalogue.parse_where's shape)
        where = {f: [v] if isinstance(v, str) else list(v) for f, v in where.items()}
        catalogue.check_fields(index, list(where))
        matching = catalogue.matching_ids(index, where)
        keep = [i for i, a in enumerate(ids) if a in matching]
        if not keep:
            raise MetadataError("no work matches " + ", ".join(
                f"{f}={'|'.join(v)}" for f, v in where.items()) + f" in space {space!r}")
        ids, vectors = [ids[i] for i in keep], vectors[keep]
    values = [field_value(arts[a], label) for a in ids]
    counts: dict[str, int] = {}
    for v in values:
        if v:
            counts[str(v)] = counts.get(str(v), 0) + 1
    if not counts:
        raise MetadataError(
            f"no work in space {space!r} has a {label!r} value; attach a catalogue with "
            f"`artsearch index DIR --metadata CSV` (a column named {label})")
    dropped = {c: n for c, n in sorted(counts.items()) if n < min_per_class}
    classes = sorted(c for c in counts if c not in dropped)
    if len(classes) < 2:
        raise MetadataError(
            f"{label!r}: {len(classes)} class(es) with at least {min_per_class} works "
            f"({len(counts)} values in all); lower --min-per-class or label more works")
    rows = [i for i, v in enumerate(values) if v and str(v) in classes]
    lookup = {c: i for i, c in enumerate(classes)}
    return LabelledSet(
        artwork_ids=[ids[i] for i in rows], paths=[arts[ids[i]].path for i in rows],
        labels=[str(values[i]) for i in rows], classes=classes,
        y=np.array([lookup[str(values[i])] for i in rows], np.int64), dropped=dropped,
        unlabelled=sum(1 for v in values if not v), vectors=vectors[rows],
        fields={f: [field_value(arts[ids[i]], f) for i in rows] for f in group_fields})


def stratified_split(y: np.ndarray, seed: int, val_size: float = 0.2, test_size: float = 0.2
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test), stratified by class: each class gives round(share x n)
    works, at least one, to validation and to test, and keeps at least one for training."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c)).tolist()
        n = len(rows)
        n_test = max(1, round(test_size * n)) if n >= 3 else 0
        n_val = max(1, round(val_size * n)) if n >= 3 else 0
        parts[2] += rows[:n_test]
        parts[1] += rows[n_test:n_test + n_val]
        parts[0] += rows[n_test + n_val:]
    train, val, test = (np.array(sorted(p), np.int64) for p in parts)
    return train, val, test


