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
from artsearch.errors import IndexDamagedError, NotIndexedError

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
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotIndexedError(f"{cid}: no such citation in {index.path} (citations are kept "
                              "by the index they were made with)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise IndexDamagedError(f"{path}: not readable as a citation ({type(e).__name__}); "
                                "restore it from a copy, or cite the query again") from e
    problem = _citation_problem(record)
    if problem:
        raise IndexDamagedError(f"{path}: not a citation artsearch wrote ({problem}); restore "
                                "it from a copy, or cite the query again")
    return record  # type: ignore[no-any-return]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _citation_problem(record: Any) -> str | None:
    """What makes a citation file unusable (it is read back from disk, where anyone may have
    edited it), or None."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        return "no id"
    q = record.get("question")
    if not isinstance(q, dict):
        return "no question"
    weights = q.get("weights")
    if not isinstance(weights, dict) or not weights or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in weights.items()):
        return "its spaces and weights"
    k = q.get("k")
    if not isinstance(k, int) or not _is_id(k) or k > 100_000:
        return "its k"
    if not isinstance(q.get("where") or {}, dict) or not isinstance(
            q.get("exclude_same") or [], list):
        return "its filters"
    image, artwork, text = q.get("image"), q.get("artwork"), q.get("text")
    if artwork is not None and not (isinstance(artwork, dict) and _is_id(artwork.get("id"))):
        return "its artwork"
    if image is not None and not (isinstance(image, dict) and isinstance(image.get("path"), str)
                                  and isinstance(image.get("sha256"), str)):
        return "its image"
    if artwork is None and image is None and not isinstance(text, str):
        return "nothing it asked about"
    results = record.get("results")
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and _is_id(r.get("id")) and isinstance(r.get("path"), str)
            and isinstance(r.get("score"), int | float) and _is_id(r.get("rank"))
            for r in results):
        return "its results"
    facts = record.get("provenance")
    if not isinstance(facts, dict) or not isinstance(facts.get("spaces"), list) \
            or len(facts["spaces"]) != len(weights):
        return "its provenance"
    return None


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
