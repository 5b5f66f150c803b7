"""Nearest-artwork search: by image file, by indexed artwork, with metadata filters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.bands import K as BAND_K
from artsearch.bands import neighbour_bands
from artsearch.errors import BadImageError, MetadataError, NotIndexedError, OptionError
from artsearch.images import DEFAULT_MAX_PIXELS, decode_image, read_file, sha256_bytes
from artsearch.index import ArtIndex, check_space
from artsearch.index.catalogue import (
    artworks,
    artworks_by_faiss_id,
    check_fields,
    embedding_of,
    faiss_ids_where,
    find_artwork,
    parse_where,
    where_conditions,
)
from artsearch.index.store import Artwork, Space

if TYPE_CHECKING:
    from artsearch.extract import Extractor

__all__ = ["Hit", "QueryResult", "default_extractor", "parse_mix", "parse_where", "search"]


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
    spaces: dict[str, Any] | None = None  # blended queries: each space's cosine and z-score
    cosine: float | None = None  # re-ranked queries: the cosine behind the re-ranked score
    band: str | None = None  # one space: how close, in this collection's terms (bands.py)

    @classmethod
    def of(cls, art: Artwork, rank: int, score: float, **more: Any) -> Hit:
        """The hit for an artwork at `rank` (its catalogue fields as the index holds them)."""
        return cls(rank, round(score, 6), art.id, art.path, art.title, art.artist, art.date,
                   art.style, art.genre, art.extra, **more)


@dataclass
class QueryResult:
    query: dict[str, Any]
    space: str
    hits: list[Hit]
    notes: list[str] = field(default_factory=list)
    search: dict[str, Any] = field(default_factory=dict)  # exact, or which approximate index

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "space": self.space, "notes": self.notes,
                "search": self.search, "results": [asdict(h) for h in self.hits]}


def parse_mix(text: str) -> dict[str, float]:
    """`content=0.6,style=0.4` into {space: weight}; weights must be finite and positive,
    and each space named once."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if not name or not 0 < weight < float("inf"):
            raise OptionError(f"--mix {text!r}: write SPACE=WEIGHT pairs with finite, "
                                "positive weights, e.g. content=0.6,style=0.4")
        if name in out:
            raise OptionError(f"--mix {text!r}: space {name!r} is named twice; give each "
                                "space one weight")
        out[name] = weight
    if len(out) < 2:
        raise OptionError(f"--mix {text!r}: name at least two spaces to blend; for one "
                            "space use --space")
    return out


# Blended rankings are exact over every artwork up to this many vectors per space; above it,
# over the union of each space's top MIX_CANDIDATES, with score statistics from a sample.
MIX_EXACT_LIMIT = 50_000
MIX_CANDIDATES = 2_000


def search(
    index: ArtIndex,
    *,
    image: Path | None = None,
    artwork: str | int | None = None,
    text: str | None = None,
    space: str = "content",
    mix: dict[str, float] | None = None,
    k: int = 10,
    where: dict[str, list[str]] | None = None,
    exclude_same: Sequence[str] = (),
    make_extractor: Callable[[Space], Extractor] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    image_bytes: bytes | None = None,
    rerank: str | None = None,
) -> QueryResult:
    """The k artworks nearest to an image file, an indexed artwork (id or path) or a text.

    An image file that is already in the index (same content) is answered from its stored
    vector, without loading a model. Filters are applied inside the vector search, so a
    filter matching few artworks still returns up to k of them.

    With `mix` ({space: weight}), each space's similarities are standardised over the
    collection for this query (z-scores: how far above the typical work this one is) and
    averaged with the weights, since raw cosines of different spaces are not on one scale.

    With `rerank="csls"`, the nearest RERANK_CANDIDATES works are re-ranked by CSLS
    (artsearch.audit.csls), which discounts works that are near everything (hubs).
    """
    check_k(k)
    if rerank not in (None, "csls"):
        raise OptionError(f"--rerank {rerank}: the one re-ranking is csls")
    if rerank and mix is not None:
        raise OptionError("--rerank applies to one space; drop --mix or --rerank")
    if mix is not None and len(mix) < 2:
        raise OptionError("--mix: name at least two spaces to blend, e.g. "
                            "content=0.6,style=0.4; for one space use --space")
    weights = mix or {space: 1.0}
    spaces = [index.space(name) for name in weights]
    for sp in spaces:
        if not index.saved_count(sp):
            raise NotIndexedError(
                f"space {sp.name!r} of {index.path} holds no saved vectors yet: they are "
                "still being written by an indexing run, or it was interrupted before its "
                f"first save (finish it with `artsearch index FOLDER --index {index.path} "
                f"--space {sp.name}`)")
    make = make_extractor or (lambda sp: default_extractor(index, sp))
    notes: list[str] = []
    # Read once, for all spaces; an upload's bytes come in memory (`image` is then its name).
    data = image_bytes if image_bytes is not None else (
        read_image_bytes(image) if image is not None else None)
    query_art, described = resolve_query(index, image=image, data=data, artwork=artwork,
                                         text=text)
    query_vecs = {sp.name: _query_vector(index, sp, query_art, image, data, text, make,
                                         max_pixels)
                  for sp in spaces}
    if query_art is None and image is not None:
        described = {"image": str(image), "indexed": False}

    check_fields(index, [*(where or {}), *exclude_same])
    conditions = where_conditions(index, where, exclude_same, query_art, notes)
    allowed: dict[str, np.ndarray | None] = {
        sp.name: None if not conditions else faiss_ids_where(index, sp, conditions)
        for sp in spaces}
    how: dict[str, Any] = {"index": "flat (exact)"}
    cos_by_art: dict[int, float] = {}
    if len(spaces) == 1:
        sp = spaces[0]
        wanted = max(k, RERANK_CANDIDATES) if rerank else k
        if allowed[sp.name] is None:  # filtered queries are always exact
            searcher, how = index.searcher(sp)
            scores, ids = searcher.search(query_vecs[sp.name], wanted)
        else:
            scores, ids = index.vectors(sp).search(query_vecs[sp.name], wanted,
                                                   allowed=allowed[sp.name])
        ranked = [(float(sc), int(i)) for sc, i in zip(scores[0], ids[0], strict=True)
                  if i >= 0]
        cosines = dict((i, sc) for sc, i in ranked)
        if rerank:
            ranked = _csls(index, sp, query_vecs[sp.name], ranked, query_art)
            how = {**how, "rerank": f"csls over the nearest {wanted}, r from {RERANK_K} "
                                    "neighbours"}
        ranked = ranked[:k]
        arts = artworks_by_faiss_id(index, sp, [i for _, i in ranked])
        scored: list[tuple[float, Artwork, dict[str, Any] | None]] = [
            (sc, arts[i], None) for sc, i in ranked if i in arts]
        if rerank:
            cos_by_art = {arts[i].id: cosines[i] for _, i in ranked if i in arts}
    else:
        scored = _blend(index, spaces, weights, query_vecs, allowed, k, notes)
    hits = [Hit.of(art, rank, score, spaces=parts)
            for rank, (score, art, parts) in enumerate(scored[:k], 1)]
    for hit in hits:
        if hit.id in cos_by_art:
            hit.cosine = round(cos_by_art[hit.id], 6)
    if query_art is not None:  # an exact duplicate ties with the query: the query goes first
        own = query_art.id  # (and stays first when re-ranked: CSLS is for the others)
        hits.sort(key=lambda h: (h.id != own, -h.score) if rerank else (-h.score, h.id != own))
        for rank, hit in enumerate(hits, 1):
            hit.rank = rank
    if len(spaces) == 1:
        _band(index, spaces[0].name, hits, query_art, notes)
    first = allowed[spaces[0].name]
    if first is not None and len(first) < k:
        notes.append(f"only {len(first)} artworks match the filters")
    label = "+".join(f"{n}={w:g}" for n, w in weights.items()) if mix else spaces[0].name
    return QueryResult(described, label, hits, notes, how)


def _band(index: ArtIndex, space: str, hits: list[Hit], query_art: Artwork | None,
          notes: list[str]) -> None:
    """Each hit's band (artsearch.bands); a note when even the nearest other work is
    distant."""
    bands = neighbour_bands(index, space)
    if bands is None:
        return
    for hit in hits:
        hit.band = bands.of(hit.cosine if hit.cosine is not None else hit.score)
    others = [h for h in hits if query_art is None or h.id != query_art.id]
    if others and others[0].band == "distant":
        notes.append(f"even the nearest work is distant in {space}: nothing in this "
                     "collection is much like it (its cosine is below what nine in ten works "
                     f"reach with their {BAND_K}th neighbour)")


RERANK_CANDIDATES = 100  # nearest works re-ranked by --rerank
RERANK_K = 10            # neighbours whose mean cosine is a work's CSLS radius


def _csls(index: ArtIndex, sp: Space, q: np.ndarray, ranked: list[tuple[float, int]],
          query_art: Artwork | None) -> list[tuple[float, int]]:
    """(CSLS score, faiss id) for the candidates, best first. A work's radius is its mean
    cosine to its RERANK_K nearest other works, found by the space's own searcher."""
    from artsearch.audit import csls

    if not ranked:
        return ranked
    searcher, _ = index.searcher(sp)
    ids = np.array([i for _, i in ranked], np.int64)
    own = None
    if query_art is not None:
        stored = embedding_of(index, sp, query_art.id)
        own = stored[0] if stored else None
    vectors = index.vectors(sp).vectors(ids)
    sims, found = searcher.search(np.vstack([q, vectors]), RERANK_K + 1)
    skip = [own, *ids.tolist()]  # each point's own id is not its neighbour
    radius = np.array([np.mean([v for v, f in zip(sims[r], found[r], strict=True)
                                if f >= 0 and f != skip[r]][:RERANK_K] or [0.0])
                       for r in range(len(skip))])
    cos = np.array([c for c, _ in ranked])
    scores = csls(cos, float(radius[0]), radius[1:])
    order = np.argsort(-scores, kind="stable")
    return [(float(scores[o]), int(ids[o])) for o in order]


def _blend(
    index: ArtIndex, spaces: list[Space], weights: dict[str, float],
    query_vecs: dict[str, np.ndarray], allowed: dict[str, np.ndarray | None], k: int,
    notes: list[str],
) -> list[tuple[float, Artwork, dict[str, Any] | None]]:
    """Weighted mean of per-space z-scores over the artworks present in every space.

    Works as arrays indexed by artwork id throughout (a 100,000-work blend touches no ORM
    object but the k it returns).
    """
    size = 1 + max((int(a.max()) for sp in spaces if len(a := index.id_maps(sp)[1])),
                   default=0)
    cosines: dict[str, np.ndarray] = {}  # space -> cosine per artwork id (NaN: not scored)
    stats: dict[str, tuple[float, float]] = {}
    for sp in spaces:
        vec = index.vectors(sp)
        faiss_ids, art_ids = index.id_maps(sp)
        lut = np.full(int(faiss_ids.max()) + 1 if len(faiss_ids) else 1, -1, np.int64)
        lut[faiss_ids] = art_ids
        q = query_vecs[sp.name]
        exact = len(vec) <= MIX_EXACT_LIMIT
        if exact or allowed[sp.name] is not None:
            scores, ids = vec.search(q, len(vec) if exact else MIX_CANDIDATES,
                                     allowed=allowed[sp.name])
        else:  # candidates from the approximate index where there is a current one
            scores, ids = index.searcher(sp)[0].search(q, MIX_CANDIDATES)
        keep = (ids[0] >= 0) & (ids[0] < len(lut))
        ids_sp, scores_sp = ids[0][keep], scores[0][keep]
        if exact:
            population = scores_sp if allowed[sp.name] is None else vec.search(q, len(vec))[0][0]
        else:  # statistics from a fixed sample of the space's vectors
            sample = np.random.default_rng(0).choice(vec.ids(), 5_000, replace=False)
            population = vec.vectors(sample) @ q[0]
        stats[sp.name] = (float(np.mean(population)), float(np.std(population)) or 1.0)
        column = np.full(size, np.nan, np.float64)
        arts = lut[ids_sp]
        known = arts >= 0  # a vector whose row is gone (an interrupted run) is skipped
        column[arts[known]] = scores_sp[known]
        cosines[sp.name] = column
    scored = np.zeros(size, bool)
    for column in cosines.values():
        scored |= ~np.isnan(column)
    for sp in spaces:  # candidates from another space's top list: score them here exactly
        column = cosines[sp.name]
        missing = np.flatnonzero(scored & np.isnan(column))
        if not len(missing):
            continue
        faiss_ids, art_ids = index.id_maps(sp)
        rev = np.full(size, -1, np.int64)
        rev[art_ids] = faiss_ids
        vec = index.vectors(sp)
        pairs = [(int(a), int(rev[a])) for a in missing if rev[a] >= 0 and vec.has(int(rev[a]))]
        if pairs:
            vectors = vec.vectors(np.array([f for _, f in pairs], np.int64))
            column[[a for a, _ in pairs]] = vectors @ query_vecs[sp.name][0]
    total = sum(weights.values())
    z = {sp.name: (cosines[sp.name] - stats[sp.name][0]) / stats[sp.name][1] for sp in spaces}
    blended: np.ndarray = sum(
        (weights[name] * column for name, column in z.items()), np.zeros(size)) / total
    complete = ~np.isnan(blended)
    absent = int((scored & ~complete).sum())
    if absent:
        notes.append(f"{absent} artworks are missing from some blended space and were left out; "
                     "index the collection into every space")
    candidates = np.flatnonzero(complete)
    top = candidates[np.argsort(-blended[candidates], kind="stable")[: max(k, 0) + 1]]
    arts_by_id = {a.id: a for a in artworks(index, top.tolist())}
    out: list[tuple[float, Artwork, dict[str, Any] | None]] = []
    for art_id in top.tolist():
        parts = {sp.name: {"cosine": round(float(cosines[sp.name][art_id]), 6),
                           "z": round(float(z[sp.name][art_id]), 4)} for sp in spaces}
        if art_id in arts_by_id:
            out.append((float(blended[art_id]), arts_by_id[art_id], parts))
    return out


def check_k(k: int) -> None:
    if k < 1:
        raise OptionError(f"-k {k}: ask for at least one result")


def resolve_query(
    index: ArtIndex, *, image: Path | None = None, data: bytes | None = None,
    artwork: str | int | None = None, text: str | None = None,
) -> tuple[Artwork | None, dict[str, Any]]:
    """What a query asks, for every kind of search (whole works, regions): the indexed
    artwork it is (by id, by path, or a file whose content is indexed) and how the answer
    describes it. `data` is the picture's bytes (`image` names it: a file or an upload)."""
    picture = image is not None or data is not None
    if sum((picture, artwork is not None, text is not None)) != 1:
        raise NotIndexedError("give one of: an image file, an indexed path or --id, or --text")
    if text is not None:
        if not text.strip():
            raise OptionError("--text is empty; describe what to look for")
        return None, {"text": text}
    if artwork is not None:
        art = (find_artwork(index, id=int(artwork)) if str(artwork).isdigit()
               else find_artwork(index, path=str(artwork)))
        if art is None:
            raise NotIndexedError(
                f"{artwork}: no such artwork in {index.path} (not an indexed id or path, "
                "and no image file there); `artsearch info --works` lists the indexed "
                "paths")
        return art, {"id": art.id, "path": art.path, "indexed": True}
    assert data is not None
    name = str(image) if image is not None else "upload"
    art = find_artwork(index, sha256=sha256_bytes(data))
    if art is None:
        return None, {"image": name, "indexed": False}
    return art, {"id": art.id, "path": art.path, "indexed": True, "image": name}


def _query_vector(
    index: ArtIndex, sp: Space, art: Artwork | None, image: Path | None, data: bytes | None,
    text: str | None, make: Callable[[Space], Extractor], max_pixels: int,
) -> np.ndarray:
    """(1, dims): the stored vector of an indexed artwork, else a freshly embedded one."""
    if art is not None:
        emb = embedding_of(index, sp, art.id)
        if emb is not None and emb[1] == art.sha256:
            try:
                return index.vectors(sp).reconstruct(emb[0])[None]
            except KeyError:  # committed, not yet saved: an indexing run is under way
                if image is None:
                    raise NotIndexedError(
                        f"{art.path}: its vector in space {sp.name!r} is still being written "
                        "by an indexing run; query again when it has finished") from None
        if image is None:
            raise NotIndexedError(
                f"{art.path} has no vector in space {sp.name!r}; re-run `artsearch index`")
    if text is not None:
        spec = index.spec_for(sp)
        if not spec.text:
            raise MetadataError(
                f"--text: space {sp.name!r} uses {sp.backbone}, which has no text encoder; "
                "text queries need an open_clip space (artsearch index DIR --space clip "
                "--backbone open_clip:ARCH/TAG)")
        return make(sp).embed_texts([text])
    assert image is not None and data is not None
    try:  # decode before loading a model, so a bad file fails fast
        img, _ = decode_image(data, max_pixels=max_pixels,
                              min_side=index.spec_for(sp).preprocess.resize)
    except BadImageError as e:
        raise BadImageError(f"{image}: {e}") from e
    return make(sp).embed_images([img])


def read_image_bytes(image: Path) -> bytes:
    try:
        return read_file(image)
    except BadImageError as e:
        raise BadImageError(f"{image}: {e}") from e


def default_extractor(index: ArtIndex, sp: Space) -> Extractor:
    """An extractor that rebuilds the space's vectors exactly, or refuses with the reason."""
    from artsearch.extract import Extractor

    spec = index.spec_for(sp)
    check_space(sp, spec, layer=sp.layer, pooling=sp.pooling)
    return Extractor(spec, layer=tuple(sp.layer.split(",")), pooling=sp.pooling,
                     params=index.pooling_params(sp), num_workers=0)
