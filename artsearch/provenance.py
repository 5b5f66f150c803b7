"""Where an output came from: the provenance block every report and JSON carries, and the
citable ids of query results (`artsearch query --cite`, `artsearch show ID`).

A citation is the question (image hash, spaces, filters, k), the answer and the provenance,
kept as INDEX/citations/ID.json. Its id is a hash of the question and of what answered it
(each space's backbone, weights, layers, pooling), so the same question to the same spaces
gets the same id, and `show` can ask again and say whether the answer still holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artsearch import __version__
from artsearch.errors import NotIndexedError

if TYPE_CHECKING:
    from artsearch.index import ArtIndex

__all__ = ["CITATION_ID", "citation_id", "command_line", "load_citation", "provenance",
           "save_citation", "space_facts"]

CITATION_ID = re.compile(r"^q-[0-9a-f]{12}$")


def command_line() -> str:
    """The command as typed (argv), quoted so it can be pasted back."""
    return " ".join(shlex.quote(a) for a in ["artsearch", *sys.argv[1:]])


def space_facts(index: ArtIndex, name: str) -> dict[str, Any]:
    sp = index.space(name)
    return {"space": sp.name, "backbone": sp.backbone, "weights_sha256": sp.weights_sha256,
            "layers": (sp.params or {}).get("layers") or sp.layer.split(","),
            "pooling": sp.pooling, "dims": sp.dims,
            "input_size": (sp.preprocessing or {}).get("resize"),
            **({"pooling_sha256": sp.params["pooling_sha256"]}
               if "pooling_sha256" in (sp.params or {}) else {})}


def provenance(index: ArtIndex, spaces: str | Sequence[str] | None, *,
               command: str | None = None) -> dict[str, Any]:
    """The block that says what made an output: index, collection, spaces (backbone and
    weights SHA-256), the command, artsearch's version and the time."""
    names = [spaces] if isinstance(spaces, str) else list(spaces or [])
    if command is None or sys.argv[1:2] == [command]:
        said = command_line()  # run from the shell: the command as typed
    elif command.startswith("serve"):
        said = command  # the web app names the request
    else:
        said = f"artsearch {command}"  # called from Python (tests, notebooks)
    return {"index": str(index.path), "collection": str(index.root or ""),
            "spaces": [space_facts(index, n) for n in names], "command": said,
            "artsearch": __version__,
            "made": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def citation_id(question: dict[str, Any], spaces: list[dict[str, Any]]) -> str:
    text = json.dumps({"question": question, "spaces": spaces}, sort_keys=True)
    return "q-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def save_citation(index: ArtIndex, record: dict[str, Any]) -> Path:
    folder = index.path / "citations"
    folder.mkdir(exist_ok=True)
    path = folder / f"{record['id']}.json"
    tmp = folder / f".{record['id']}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_citation(index: ArtIndex, cid: str) -> dict[str, Any]:
    if not CITATION_ID.match(cid):
        raise NotIndexedError(f"{cid}: not a citation id (q- and 12 hex digits, as "
                              "`artsearch query --cite` prints) nor a clustering run number")
    path = index.path / "citations" / f"{cid}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise NotIndexedError(f"{cid}: no such citation in {index.path} (citations are kept "
                              "by the index they were made with)") from None


def cite_query(index: ArtIndex, result: Any, weights: dict[str, float],
               facts: dict[str, Any], *, image: Path | None, k: int,
               where: dict[str, list[str]] | None, exclude_same: Sequence[str],
               rerank: str | None = None) -> str:
    """Keep a query and its answer as a citation; return its id."""
    from artsearch.images import sha256_bytes
    from artsearch.query import read_image_bytes

    q = result.query
    question: dict[str, Any] = {"weights": weights, "k": k, "where": where or {},
                                "exclude_same": sorted(exclude_same),
                                **({"rerank": rerank} if rerank else {})}
    if "text" in q:
        question["text"] = q["text"]
    elif q.get("indexed"):
        question["artwork"] = {"id": q["id"], "path": q["path"]}
    if image is not None:  # the file's bytes identify the query whatever its name
        question["image"] = {"path": str(image.resolve()),
                             "sha256": sha256_bytes(read_image_bytes(image))}
    cid = citation_id(question, facts["spaces"])
    save_citation(index, {"id": cid, "question": question, "provenance": facts,
                          "results": [{"rank": h.rank, "id": h.id, "path": h.path,
                                       "score": h.score} for h in result.hits]})
    return cid


def ask_again(index: ArtIndex, record: dict[str, Any]) -> dict[str, Any]:
    """Run a citation's question on the index as it is now; say whether the answer holds."""
    from artsearch.images import sha256_bytes
    from artsearch.query import read_image_bytes, search

    q = record["question"]
    weights = q["weights"]
    now = [space_facts(index, s) for s in weights]
    changed = [s["space"] for s, then in zip(now, record["provenance"]["spaces"], strict=True)
               if s != then]
    image = artwork = text = None
    if "image" in q and not q.get("artwork"):
        image = Path(q["image"]["path"])
        if not image.is_file() or sha256_bytes(read_image_bytes(image)) != q["image"]["sha256"]:
            raise NotIndexedError(
                f"{record['id']}: the query image {image} is gone or has changed since it was "
                "cited; the stored answer is in the citation (--json)")
    elif "artwork" in q:
        artwork = q["artwork"]["id"]
    else:
        text = q["text"]
    result = search(index, image=image, artwork=artwork, text=text,
                    space=next(iter(weights)), mix=weights if len(weights) > 1 else None,
                    k=q["k"], where=q["where"] or None, exclude_same=q["exclude_same"],
                    rerank=q.get("rerank"))
    then = [(r["id"], r["score"]) for r in record["results"]]
    again = [(h.id, h.score) for h in result.hits]
    same_order = [a for a, _ in then] == [a for a, _ in again]
    drift = max((abs(s1 - s2) for (_, s1), (_, s2) in zip(then, again, strict=False)),
                default=0.0)
    return {"id": record["id"], "reproduced": same_order and drift <= 1e-4,
            "same_order": same_order, "max_score_change": drift, "spaces_changed": changed,
            "then": record["results"],
            "now": [{"rank": h.rank, "id": h.id, "path": h.path, "score": h.score}
                    for h in result.hits], "question": q,
            "provenance": record["provenance"]}
