"""The catalogue: artworks' fields (catalogued and derived), one meaning of a filter, lookups.

Every question about the works of an index that the commands, the reports and the server ask
is answered here, so they never write SQL themselves. A filter means one thing everywhere
(`query --where`, `train --where`): FIELD=VALUE pairs, case-insensitive; a field repeated
means any of its values, different fields must all match; `century` is derived from `date`
unless catalogued.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Integer, and_, column, func, not_, or_, select, text

from artsearch.errors import MetadataError, NotIndexedError, OptionError
from artsearch.index.folder import ArtIndex
from artsearch.index.store import METADATA_FIELDS, Artwork, Embedding, Failure

__all__ = [
    "DERIVED_FIELDS", "FACET_FIELDS", "artworks", "browse", "century",
    "check_fields", "embedded_works", "facets", "failures", "field_value",
    "fields_in_catalogue_order", "find_artwork",
    "known_fields", "matching_ids", "parse_where", "set_extra", "where_conditions",
]

FACET_FIELDS = ("artist", "style", "genre", "century", "source", "license")

DERIVED_FIELDS = ("century",)


def century(date: str | None) -> str | None:
    """'1663', 'c. 1650-55', 'the 1600s' -> '17th c.'; '17th century' -> '17th c.'; no year,
    or a year BC -> None. Years count as collections write them: 1600 is the 1600s, the 17th
    century (the strict reckoning, 1601-1700, would split a decade that catalogues keep
    together)."""
    if not date or re.search(r"\b(?:BC|BCE|B\.C\.)", str(date)):
        return None
    value = str(date)
    named = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)\s*(?:c\b|c\.|cent)", value, re.IGNORECASE)
    if named:
        number = int(named.group(1))
    else:
        year = re.search(r"(?<!\d)(\d{3,4})(?!\d)", value)
        if not year:
            return None
        number = int(year.group(1)) // 100 + 1
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        number % 10, "th")
    return f"{number}{suffix} c."


def field_value(art: Any, name: str) -> Any:
    """A catalogue field, with `century` derived from `date` unless catalogued itself."""
    if name == "century":
        return art.field("century") or century(art.date)
    return art.field(name)


# -- filters --------------------------------------------------------------------------------------

def parse_where(items: Sequence[str]) -> dict[str, list[str]]:
    """`field=value` strings into {field: [values]}; repeated fields mean any of the values."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionError(f"--where {item!r}: write it as FIELD=VALUE, e.g. genre=landscape")
        out.setdefault(name, []).append(value.strip())
    return out


def _field_expr(name: str) -> ColumnElement[Any]:
    if name in METADATA_FIELDS or name == "path":
        return getattr(Artwork, name)  # type: ignore[no-any-return]
    if not name.replace("_", "").replace("-", "").isalnum():
        raise MetadataError(f"field {name!r}: use letters, digits, '_' or '-'")
    return func.json_extract(Artwork.extra, f'$."{name}"')


def _equals(name: str, value: str) -> ColumnElement[bool]:
    """The works whose field is `value` (any case); an empty value: those with none."""
    expr = _field_expr(name)
    if not value:
        return or_(expr.is_(None), expr == "")
    return func.lower(expr) == value.lower()


def _derived_ids(index: ArtIndex, name: str, values: Iterable[str]) -> ColumnElement[bool]:
    """A condition for works whose derived field (century) is one of `values`: the dates
    that give one of them, each distinct date read once (not every work)."""
    wanted = {v.lower() for v in values}
    with index.store.session() as s:
        dates = [d for d in s.scalars(select(Artwork.date).distinct())
                 if str(century(d) or "").lower() in wanted]
    if "" in wanted:  # not catalogued: no date, or one that gives no century
        return or_(Artwork.date.in_(dates), Artwork.date.is_(None))
    return Artwork.date.in_(dates)


def where_conditions(index: ArtIndex, where: dict[str, list[str]] | None,
                     exclude_same: Sequence[str] = (), query_art: Any = None,
                     notes: list[str] | None = None) -> list[ColumnElement[bool]]:
    """SQL conditions on Artwork for a filter and for `--exclude-same` fields of a query."""
    conditions: list[ColumnElement[bool]] = []
    for name, values in (where or {}).items():
        if name in DERIVED_FIELDS and not _catalogued(index, name):
            conditions.append(_derived_ids(index, name, values))
        else:
            conditions.append(or_(*[_equals(name, v) for v in values]))
    for name in exclude_same:
        if query_art is None:
            raise MetadataError(
                f"--exclude-same {name}: the query is not an indexed artwork, so it has no "
                f"{name}; query an indexed artwork (--id or its path) instead")
        value = field_value(query_art, name)
        if value is None:
            if notes is not None:
                notes.append(f"the query has no {name}; --exclude-same {name} excluded nothing")
            continue
        if name in DERIVED_FIELDS and not _catalogued(index, name):
            conditions.append(or_(Artwork.date.is_(None),
                                  not_(_derived_ids(index, name, [str(value)]))))
        else:
            conditions.append(or_(_field_expr(name).is_(None),
                                  not_(_equals(name, str(value)))))
    return conditions


def matching_ids(index: ArtIndex, where: dict[str, list[str]]) -> set[int]:
    """Ids of the artworks that match a filter."""
    conditions = where_conditions(index, where)
    with index.store.session() as s:
        return set(s.scalars(select(Artwork.id).where(*conditions)))


def _catalogued(index: ArtIndex, name: str) -> bool:
    return name in known_fields(index, derived=False)


def known_fields(index: ArtIndex, *, derived: bool = True) -> list[str]:
    """The fields at least one indexed work has a value for, plus `path` (and `century`
    where dates give one). Remembered on the opened index until its works change."""
    with index.store.session() as s:
        version = tuple(s.execute(select(func.count(), func.max(Artwork.updated_at))).one())
    cached = index.cache.get("known-fields")
    if cached is None or cached[0] != version:
        cached = (version, _read_fields(index))
        index.cache["known-fields"] = cached
    fields = list(cached[1])
    if derived and "date" in fields and "century" not in fields:
        fields.append("century")
    return fields


def fields_in_catalogue_order(index: ArtIndex) -> list[str]:
    """The fields works have values for (`known_fields`, none derived), in the order the
    catalogue CSVs gave their columns, `path` first; fields no CSV named (set otherwise)
    after them."""
    from artsearch.index.metadata import column_order

    with index.store.session() as s:
        order = column_order(s)
    have = known_fields(index, derived=False)
    ranked = {name: i for i, name in enumerate(["path", *order])}
    return sorted(have, key=lambda f: (ranked.get(f, len(ranked)), have.index(f)))


def _read_fields(index: ArtIndex) -> list[str]:
    with index.store.session() as s:
        columns = [name for name in METADATA_FIELDS if s.scalar(
            select(Artwork.id).where(getattr(Artwork, name).is_not(None)).limit(1))]
        extra = s.scalars(text(
            "SELECT DISTINCT je.key FROM artworks, json_each(artworks.extra) AS je "
            "WHERE artworks.extra IS NOT NULL AND je.value IS NOT NULL")).all()
    return ["path", *columns, *sorted(k for k in extra if k not in columns)]


def check_fields(index: ArtIndex, names: Sequence[str]) -> None:
    """Refuse a field no work has: a filter on it would quietly match nothing."""
    if not names:
        return
    known = known_fields(index)
    for name in names:
        if name not in known:
            raise MetadataError(
                f"field {name!r}: no indexed work has it; fields in {index.path}: "
                + ", ".join(known))


# -- lookups --------------------------------------------------------------------------------------

def artworks(index: ArtIndex, ids: Iterable[int] | None = None) -> list[Any]:
    """Artworks (all, or those with `ids`), ordered by path."""
    query = select(Artwork).order_by(Artwork.path)
    if ids is not None:
        query = query.where(Artwork.id.in_(list(ids)))
    with index.store.session() as s:
        return list(s.scalars(query))


def embedded_works(index: ArtIndex, space: str) -> list[Any]:
    """The artworks that have a vector in `space`, ordered by path."""
    sp = index.space(space)
    with index.store.session() as s:
        return list(s.scalars(select(Artwork).join(Embedding, Embedding.artwork_id == Artwork.id)
                              .where(Embedding.space_id == sp.id).order_by(Artwork.path)))


def space_works(index: ArtIndex, sp: Any) -> dict[int, tuple[str, str]]:
    """artwork id -> (path, content hash) of every work with a vector in the space."""
    with index.store.session() as s:
        rows = s.execute(select(Artwork.id, Artwork.path, Artwork.sha256).join(
            Embedding, and_(Embedding.artwork_id == Artwork.id, Embedding.space_id == sp.id)))
        return {int(i): (p, h) for i, p, h in rows}


def faiss_artworks(index: ArtIndex, sp: Any) -> dict[int, int]:
    """FAISS id -> artwork id of every vector in the space."""
    with index.store.session() as s:
        return {int(f): int(a) for f, a in s.execute(
            select(Embedding.faiss_id, Embedding.artwork_id).where(Embedding.space_id == sp.id))}


def embedded_pairs(index: ArtIndex, sp: Any) -> list[tuple[Any, int]]:
    """(artwork, its FAISS id) of every work with a vector in the space, ordered by path."""
    with index.store.session() as s:
        return [(a, int(f)) for a, f in s.execute(
            select(Artwork, Embedding.faiss_id)
            .join(Embedding, Embedding.artwork_id == Artwork.id)
            .where(Embedding.space_id == sp.id).order_by(Artwork.path))]


def faiss_ids_where(index: ArtIndex, sp: Any, conditions: Sequence[ColumnElement[bool]]
                    ) -> np.ndarray:
    """The space's FAISS ids of the works that meet `conditions` (where_conditions')."""
    with index.store.session() as s:
        return np.fromiter(s.scalars(select(Embedding.faiss_id).join(Artwork).where(
            Embedding.space_id == sp.id, and_(*conditions))), dtype=np.int64)


def artworks_by_faiss_id(index: ArtIndex, sp: Any, ids: Sequence[int]) -> dict[int, Any]:
    """Artworks behind FAISS ids of a space; an id missing here is a vector from an
    interrupted run."""
    with index.store.session() as s:
        return {int(f): a for f, a in s.execute(
            select(Embedding.faiss_id, Artwork).join(Artwork).where(
                Embedding.space_id == sp.id, Embedding.faiss_id.in_(list(ids))))}


def embedding_of(index: ArtIndex, sp: Any, artwork_id: int) -> tuple[int, str] | None:
    """(FAISS id, hash of the bytes embedded) of a work's vector in a space; None if none."""
    with index.store.session() as s:
        emb = s.get(Embedding, (sp.id, artwork_id))
        return (int(emb.faiss_id), emb.sha256) if emb is not None else None


def work_hashes(index: ArtIndex) -> dict[str, tuple[int, str]]:
    """path -> (artwork id, content hash) of every work; empty for an index not made yet."""
    if not index.exists:
        return {}
    with index.store.session() as s:
        return {p: (int(i), h) for i, p, h in s.execute(
            select(Artwork.id, Artwork.path, Artwork.sha256))}


def field_values(index: ArtIndex, name: str) -> dict[int, Any]:
    """artwork id -> its value of one catalogued column (title, artist, date, style, genre,
    licence...), None where it has none."""
    col = getattr(Artwork, name)
    with index.store.session() as s:
        return {int(a): v for a, v in s.execute(select(Artwork.id, col))}


def find_artwork(index: ArtIndex, *, id: int | None = None, path: str | Path | None = None,
                 sha256: str | None = None) -> Any:
    """One artwork by id, by path (relative to the collection root, or absolute inside it),
    or by content hash; None when there is none."""
    with index.store.session() as s:
        if id is not None:
            return s.get(Artwork, id)
        if path is not None:
            rel = Path(path)
            root = index.root
            if rel.is_absolute() and root is not None and rel.resolve().is_relative_to(root):
                rel = rel.resolve().relative_to(root)
            return s.scalar(select(Artwork).where(Artwork.path == rel.as_posix()))
        if sha256 is not None:
            return s.scalar(select(Artwork).where(Artwork.sha256 == sha256)
                            .order_by(Artwork.id).limit(1))
    raise NotIndexedError("find_artwork: give an id, a path or a content hash")


def failures(index: ArtIndex) -> list[dict[str, str]]:
    """Every file that could not be indexed, with its reason and when."""
    with index.store.session() as s:
        return [{"path": f.path, "reason": f.reason, "at": f.at.isoformat()}
                for f in s.scalars(select(Failure).order_by(Failure.path))]


def set_extra(index: ArtIndex, values: dict[int, dict[str, Any]]) -> None:
    """Merge {artwork id: {field: value}} into the works' extra fields, in one transaction
    (the caller holds the writer's lock)."""
    with index.store.session() as s, s.begin():
        for art_id, fields in values.items():
            art = s.get(Artwork, art_id)
            if art is not None:
                art.extra = {**(art.extra or {}), **fields}


# -- browsing -------------------------------------------------------------------------------------

def _browse_conditions(index: ArtIndex, where: dict[str, list[str]] | None,
                       text_query: str | None) -> list[ColumnElement[bool]]:
    conditions = where_conditions(index, where)
    words = [w for w in (text_query or "").split() if w.strip('"*')][:8]
    if words:
        # FTS5 (migration 0005): each word a quoted prefix, all of them required; quoting
        # makes every character literal, so nothing typed is read as query syntax.
        match = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
        fts = text("SELECT rowid FROM artworks_fts WHERE artworks_fts MATCH :match")
        conditions.append(Artwork.id.in_(fts.bindparams(match=match).columns(
            column("rowid", Integer))))
    return conditions


def browse(index: ArtIndex, *, where: dict[str, list[str]] | None = None,
           text_query: str | None = None, offset: int = 0, limit: int = 60
           ) -> tuple[int, list[Any]]:
    """(how many works match, one page of them by path) for a filter and words typed."""
    conditions = _browse_conditions(index, where, text_query)
    with index.store.session() as s:
        total = s.scalar(select(func.count()).select_from(Artwork).where(*conditions)) or 0
        page = list(s.scalars(select(Artwork).where(*conditions).order_by(Artwork.path)
                              .offset(max(0, offset)).limit(max(1, min(limit, 500)))))
    return total, page


def facets(index: ArtIndex, *, where: dict[str, list[str]] | None = None,
           text_query: str | None = None, fields: Sequence[str] = FACET_FIELDS,
           top: int = 12, all_of: str | None = None) -> dict[str, list[tuple[str, int]]]:
    """For each field, its most common values (`top`; every value of field `all_of`) among
    the works that match the search and the *other* fields' filters, with counts: a field's
    own chosen values never hide its others, so several can be chosen ("A or B")."""
    out: dict[str, list[tuple[str, int]]] = {}
    with index.store.session() as s:
        for name in fields:
            others = {f: v for f, v in (where or {}).items() if f != name}
            conditions = _browse_conditions(index, others, text_query)
            limit = 5000 if name == all_of else top
            if name in DERIVED_FIELDS and not _catalogued(index, name):
                counts: dict[str, int] = {}  # per distinct date (None too), then by century
                missing = 0  # no date, or one that gives no century: not catalogued
                for date, n in s.execute(select(Artwork.date, func.count()).where(
                        *conditions).group_by(Artwork.date)):
                    value = century(date)
                    if value:
                        counts[value] = counts.get(value, 0) + int(n)
                    else:
                        missing += int(n)
                rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
            else:
                expr = _field_expr(name)
                rows = [(str(v), int(n)) for v, n in s.execute(
                    select(expr, func.count()).where(*conditions, expr.is_not(None),
                                                     expr != "")
                    .group_by(expr).order_by(func.count().desc(), expr).limit(limit))]
                missing = int(s.scalar(select(func.count()).select_from(Artwork).where(
                    *conditions, or_(expr.is_(None), expr == ""))) or 0)
            if rows:
                # The works that lack a value, as a bucket of their own ("" = not catalogued)
                out[name] = rows + ([("", missing)] if missing else [])
    return out
