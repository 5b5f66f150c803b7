"""Nearest-artwork search: by image file, by indexed artwork, with metadata filters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import ColumnElement, and_, func, not_, or_, select

from artsearch import backbones
from artsearch.errors import BadImageError, MetadataError, NotIndexedError
from artsearch.images import DEFAULT_MAX_PIXELS, decode_image, read_file, sha256_bytes
from artsearch.index import ArtIndex, check_space
from artsearch.store import METADATA_FIELDS, Artwork, Embedding, Space

if TYPE_CHECKING:
    from artsearch.extract import Extractor

__all__ = ["Hit", "QueryResult", "parse_where", "search"]


@dataclass
class Hit:
    rank: int
    score: float
    id: int
    path: str
    title: str | None
    artist: str | None
    date: str | None
    style: str | None
    genre: str | None
    extra: dict[str, Any] | None = None


@dataclass
class QueryResult:
    query: dict[str, Any]
    space: str
    hits: list[Hit]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "space": self.space, "notes": self.notes,
                "results": [asdict(h) for h in self.hits]}


def parse_where(items: Sequence[str]) -> dict[str, list[str]]:
    """`field=value` strings into {field: [values]}; repeated fields mean any of the values."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise MetadataError(f"--where {item!r}: write it as FIELD=VALUE, e.g. genre=landscape")
        out.setdefault(name, []).append(value.strip())
    return out


def _field_expr(name: str) -> ColumnElement[Any]:
    if name in METADATA_FIELDS or name == "path":
        return getattr(Artwork, name)  # type: ignore[no-any-return]
    if not name.replace("_", "").replace("-", "").isalnum():
        raise MetadataError(f"field {name!r}: use letters, digits, '_' or '-'")
    return func.json_extract(Artwork.extra, f'$."{name}"')


def _equals(name: str, value: str) -> ColumnElement[bool]:
    return func.lower(_field_expr(name)) == value.lower()


def search(
    index: ArtIndex,
    *,
    image: Path | None = None,
    artwork: str | int | None = None,
    space: str = "content",
    k: int = 10,
    where: dict[str, list[str]] | None = None,
    exclude_same: Sequence[str] = (),
    make_extractor: Callable[[Space], Extractor] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> QueryResult:
    """The k artworks nearest to an image file or an indexed artwork (id or indexed path).

    An image file that is already in the index (same content) is answered from its stored
    vector, without loading the model. Filters are applied inside the vector search, so a
    filter matching few artworks still returns up to k of them.
    """
    if k < 1:
        raise MetadataError(f"-k {k}: ask for at least one result")
    sp = index.space(space)
    vec = index.vectors(sp)
    notes: list[str] = []
    query_art, query_vec, described = _resolve_query(
        index, sp, vec, image, artwork, make_extractor, max_pixels)

    conditions: list[ColumnElement[bool]] = []
    for name, values in (where or {}).items():
        conditions.append(or_(*[_equals(name, v) for v in values]))
    for name in exclude_same:
        if query_art is None:
            raise MetadataError(
                f"--exclude-same {name}: the query image is not in the index, so it has no "
                f"{name}; query an indexed artwork (--id or its path) instead")
        value = query_art.field(name)
        if value is None:
            notes.append(f"the query has no {name}; --exclude-same {name} excluded nothing")
            continue
        conditions.append(or_(_field_expr(name).is_(None), not_(_equals(name, str(value)))))

    allowed = None
    with index.store.session() as s:
        if conditions:
            allowed = np.fromiter(s.scalars(
                select(Embedding.faiss_id).join(Artwork).where(
                    Embedding.space_id == sp.id, and_(*conditions))), dtype=np.int64)
        scores, ids = vec.search(query_vec, k, allowed=allowed)
        ranked = [(float(sc), int(i)) for sc, i in zip(scores[0], ids[0], strict=True) if i >= 0]
        rows = {e.faiss_id: e.artwork for e in s.scalars(
            select(Embedding).where(Embedding.space_id == sp.id,
                                    Embedding.faiss_id.in_([i for _, i in ranked])))}
        hits = []
        for score, fid in ranked:
            art = rows.get(fid)
            if art is None:  # a vector from an interrupted run; the next `index` removes it
                continue
            hits.append(Hit(len(hits) + 1, round(score, 6), art.id, art.path, art.title,
                            art.artist, art.date, art.style, art.genre, art.extra))
    if query_art is not None:  # an exact duplicate ties with the query: the query goes first
        hits.sort(key=lambda h: (-h.score, h.id != query_art.id))
        for rank, hit in enumerate(hits, 1):
            hit.rank = rank
    if allowed is not None and len(allowed) < k:
        notes.append(f"only {len(allowed)} artworks match the filters")
    return QueryResult(described, sp.name, hits, notes)


def _resolve_query(
    index: ArtIndex, sp: Space, vec: Any, image: Path | None, artwork: str | int | None,
    make_extractor: Callable[[Space], Extractor] | None, max_pixels: int,
) -> tuple[Artwork | None, np.ndarray, dict[str, Any]]:
    with index.store.session() as s:
        art: Artwork | None = None
        if artwork is not None:
            art = (s.get(Artwork, int(artwork)) if str(artwork).isdigit()
                   else s.scalar(select(Artwork).where(Artwork.path == str(artwork))))
            if art is None:
                raise NotIndexedError(f"{artwork}: no such artwork in {index.path}; "
                                      "see `artsearch info` or query by image file")
        elif image is not None:
            data = read_image_bytes(image)
            sha = sha256_bytes(data)
            art = s.scalar(select(Artwork).join(Embedding).where(
                Artwork.sha256 == sha, Embedding.space_id == sp.id, Embedding.sha256 == sha))
            if art is None:
                try:  # decode before loading a model, so a bad file fails fast
                    img, _ = decode_image(data, max_pixels=max_pixels,
                                          min_side=backbones.get(sp.backbone).preprocess.resize)
                except BadImageError as e:
                    raise BadImageError(f"{image}: {e}") from e
                extractor = (make_extractor or _default_extractor)(sp)
                described = {"image": str(image), "indexed": False}
                return None, extractor.embed_images([img]), described
        else:
            raise NotIndexedError("give an image file, an indexed path, or --id")
        emb = s.get(Embedding, (sp.id, art.id))
        if emb is None:
            raise NotIndexedError(
                f"{art.path} has no vector in space {sp.name!r}; re-run `artsearch index`")
        described = {"id": art.id, "path": art.path, "indexed": True}
        if image is not None:
            described["image"] = str(image)
        return art, vec.reconstruct(emb.faiss_id)[None], described


def read_image_bytes(image: Path) -> bytes:
    try:
        return read_file(image)
    except BadImageError as e:
        raise BadImageError(f"{image}: {e}") from e


def _default_extractor(sp: Space) -> Extractor:
    from artsearch.extract import Extractor

    spec = backbones.get(sp.backbone)
    check_space(sp, spec, layer=sp.layer, pooling=sp.pooling)
    return Extractor(spec, layer=sp.layer, pooling=sp.pooling, num_workers=0)
