"""A verdict for a picture from outside the index (an upload): is it one of the collection's
works, a crop, detail or mirrored copy of one, a version, or none of these? The same local
features, geometry and thresholds as the duplicate finder (`find.classify` with the index's
fitted thresholds), applied to the picture and its nearest works; nothing new is fitted."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from artsearch.duplicates.find import (
    TYPES,
    Geometry,
    classify,
    features,
    geometry,
    load_thresholds,
)
from artsearch.errors import BadImageError
from artsearch.index import ArtIndex

__all__ = ["CANDIDATES", "Verdict", "verdict"]

CANDIDATES = 5  # the nearest works examined (and any work that is the same file)


@dataclass(frozen=True)
class Verdict:
    type: str | None          # one of find.TYPES, or None: no close match
    work: int | None          # the work it was matched to
    title: str | None
    part: str | None          # "upload" or "work": which is the part, for a crop or detail
    text: str                 # the verdict in words
    examined: int             # works compared by their local features
    how: str                  # how it was decided, in words

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "work": self.work, "title": self.title,
                "part": self.part, "text": self.text, "examined": self.examined,
                "how": self.how}


def verdict(index: ArtIndex, data: bytes, img: Image.Image,
            hits: Sequence[tuple[int, float]], space: str) -> Verdict:
    """The closest kind of match among `hits` ((artwork id, cosine), nearest first, as
    `query.search` answers in `space`) and any work whose file has the same bytes as
    `data`. The hits' cosine
    decides only where geometry cannot and only in the space the thresholds were fitted
    for (the duplicate finder's; content unless fitted on another)."""
    from artsearch.images import decode_image, read_file
    from artsearch.index.catalogue import find_artwork
    from artsearch.paths import work_file

    t, record = load_thresholds(index)
    fitted_space = (record or {}).get("space", "content")
    sha = hashlib.sha256(data).hexdigest()
    same_file = find_artwork(index, sha256=sha)
    if same_file is not None:
        return _said("exact", same_file.id, same_file.title or same_file.path, None, 0)
    mine = features(img)
    order = {name: i for i, name in enumerate(TYPES)}
    best: tuple[int, int, str | None, str, str | None] | None = None
    examined = 0
    for work_id, score in hits[:CANDIDATES]:
        art = find_artwork(index, id=int(work_id))
        if art is None or index.root is None:
            continue
        try:
            theirs = features(decode_image(read_file(work_file(index.root, art.path)))[0])
        except (BadImageError, OSError):
            continue  # an unreadable work is no evidence either way
        examined += 1
        g = geometry(mine, theirs)
        cosine = float(score) if space == fitted_space else -1.0
        kind = classify(g, cosine, t)
        if kind is None:
            continue
        rank = order[kind]
        if best is None or rank < best[0]:
            best = (rank, art.id, kind, art.title or art.path, _part(kind, g))
    if best is None:
        return _said(None, None, None, None, examined)
    return _said(best[2], best[1], best[3], best[4], examined)


def _part(kind: str, g: Geometry) -> str | None:
    if kind not in ("crop", "detail"):
        return None
    return "upload" if g.cover_a >= g.cover_b else "work"


def _said(kind: str | None, work: int | None, title: str | None, part: str | None,
          examined: int) -> Verdict:
    name = f"“{title}”"
    if kind is None:
        text = ("No close match in this collection: no work is the same picture as it, a "
                "crop, detail, mirrored copy or version of it; the nearest works below share "
                "little with it.")
    elif kind in ("exact", "re-encoded"):
        text = f"The same picture as {name}" + (" (the same file)." if kind == "exact" else
                                               " (saved again: other size or encoding).")
    elif kind == "mirrored":
        text = f"A mirrored copy of {name}."
    elif kind in ("crop", "detail") and part == "upload":
        text = f"A {kind} of {name}."
    elif kind in ("crop", "detail"):
        text = (f"{name} is inside it: a framed or bordered copy, or a wider view "
                f"({'a small part' if kind == 'detail' else 'most'} of the picture).")
    else:
        text = (f"Related to {name}: another version, a part the two share, or a close "
                "likeness, not a copy.")
    how = ("the same bytes as the work's file" if kind == "exact" and not examined else
           f"the local features of the nearest {examined} works compared, as `artsearch "
           "duplicates` compares a pair, with its thresholds")
    return Verdict(kind, work, title, part, text, examined, how)
