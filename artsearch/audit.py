"""Is the space fair to the collection? Hubness (a few works in everyone's results) and
coverage (is each source, century, school retrieved in proportion to its size), with a
plain reading and what to do.

Hubness: in high-dimensional spaces some points are among the k nearest neighbours of very
many others (Radovanović et al. 2010). The k-occurrence N_k of a work counts the top-k lists
it appears in; its mean is k by construction, so its skewness (0 for a fair space) and its
largest values say how concentrated the results are. CSLS (Conneau et al. 2018) discounts a
work by its mean similarity to its own neighbours, which lowers hubness;
`query --rerank csls` offers it (see benchmarks/README.md for what it costs in mAP).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.errors import MetadataError

if TYPE_CHECKING:
    from artsearch.index import ArtIndex

__all__ = ["CANDIDATES", "Neighbours", "audit", "csls", "hub_reduction", "k_occurrence",
           "lead", "neighbours", "skewness"]

K = 10
MAX_GROUPS = 60  # a field with more values than this is an identifier, not a grouping
MIN_GROUP = 5    # groups smaller than this get no coverage ratio (too noisy to read)
CANDIDATES = 50  # nearest works CSLS re-ranks in the audit's comparison


@dataclass
class Neighbours:
    """Each work's k nearest other works in a space (rows follow `ids`)."""

    ids: list[int]          # artwork ids, ascending
    rows: np.ndarray        # (n, k) row numbers of the neighbours (-1: none)
    sims: np.ndarray        # (n, k) their cosines
    vectors: np.ndarray     # (n, d) the works' vectors


def neighbours(index: ArtIndex, space: str, k: int = K) -> Neighbours:
    """The k nearest other works of every work, from the space's own searcher (an
    approximate index where the space has a current one), so it scales with the index."""
    from artsearch.cluster import space_matrix

    sp = index.space(space)
    ids, vectors = space_matrix(index, space)
    if len(ids) < 2:
        raise MetadataError(f"space {space!r} has {len(ids)} works; neighbours need two")
    searcher, _ = index.searcher(sp)
    faiss_ids, art_ids = index.id_maps(sp)
    row_of_art = {a: r for r, a in enumerate(ids)}
    row_of_faiss = {int(f): row_of_art.get(int(a), -1) for f, a in zip(faiss_ids, art_ids,
                                                                          strict=True)}
    rows = np.full((len(ids), k), -1, np.int64)
    sims = np.zeros((len(ids), k), np.float32)
    for start in range(0, len(ids), 2048):
        s, f = searcher.search(vectors[start:start + 2048], k + 1)
        for i in range(len(f)):
            r = start + i
            got = [(row_of_faiss.get(int(x), -1), float(v)) for x, v in zip(f[i], s[i],
                                                                           strict=True)]
            got = [(x, v) for x, v in got if x >= 0 and x != r][:k]
            rows[r, :len(got)] = [x for x, _ in got]
            sims[r, :len(got)] = [v for _, v in got]
    return Neighbours(ids, rows, sims, vectors)


def k_occurrence(rows: np.ndarray, n: int) -> np.ndarray:
    """How many top-k lists each of n works appears in."""
    return np.bincount(rows[rows >= 0].ravel(), minlength=n)


def skewness(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    sd = x.std()
    return 0.0 if sd == 0 else float(((x - x.mean()) ** 3).mean() / sd ** 3)


def csls(cosines: np.ndarray, r_query: float, r_items: np.ndarray) -> np.ndarray:
    """Cross-domain similarity local scaling: 2 cos - r_query - r_item, r being a point's mean
    cosine to its k nearest neighbours (a hub's is high, so it is discounted)."""
    scores: np.ndarray = 2 * cosines - r_query - r_items
    return scores


def hub_reduction(nb: Neighbours, k: int = K) -> np.ndarray:
    """Top-k lists re-ranked by CSLS from each work's neighbours in `nb` (as many as were
    fetched: the audit fetches CANDIDATES), r from the first k; rows as in `nb`."""
    r = nb.sims[:, :k].mean(axis=1)
    out = np.full((len(nb.rows), k), -1, np.int64)
    for i, (rows, sims) in enumerate(zip(nb.rows, nb.sims, strict=True)):
        keep = rows >= 0  # -1: fewer works than neighbours asked for
        cand, cos = rows[keep], sims[keep]
        order = np.argsort(-csls(cos, r[i], r[cand]), kind="stable")[:k]
        out[i, :len(order)] = cand[order]
    return out


def audit(index: ArtIndex, space: str = "content", *, k: int = K, top: int = 10
          ) -> dict[str, Any]:
    """Hubness, coverage per catalogue group and the classifiers' per-group figures of one
    space, with a plain reading (see the module docstring)."""
    from artsearch.index.catalogue import artworks, field_value, known_fields

    nb = neighbours(index, space, max(k, CANDIDATES))  # one search serves both rankings
    n = len(nb.ids)
    if n <= k:
        raise MetadataError(f"space {space!r} has {n} works; an audit of top-{k} lists "
                            f"needs more than {k}")
    occ = k_occurrence(nb.rows[:, :k], n)
    reranked = k_occurrence(hub_reduction(nb, k), n)
    arts = {a.id: a for a in artworks(index, nb.ids)}
    order = np.argsort(-occ, kind="stable")[:top]
    hubness = {
        "k": k, "works": n, "skewness": round(skewness(occ), 3),
        "max": int(occ.max()), "hubs": int((occ >= 2 * k).sum()),
        "never_retrieved": int((occ == 0).sum()),
        "share_of_slots_top_1pc": round(float(np.sort(occ)[::-1][:max(1, n // 100)].sum()
                                               / max(1, occ.sum())), 4),
        "histogram": _histogram(occ, k),
        "csls": {"skewness": round(skewness(reranked), 3), "max": int(reranked.max()),
                 "never_retrieved": int((reranked == 0).sum())},
        "top": [{"id": nb.ids[r], "path": arts[nb.ids[r]].path,
                 "title": arts[nb.ids[r]].title, "occurrences": int(occ[r]),
                 "field_values": {f: field_value(arts[nb.ids[r]], f)
                                  for f in ("artist", "style", "genre", "source")
                                  if field_value(arts[nb.ids[r]], f)}}
                for r in order],
    }
    coverage = {}
    for name in known_fields(index):
        values = [field_value(arts[a], name) for a in nb.ids]
        counts = Counter(v for v in values if v not in (None, ""))
        if not 2 <= len(counts) <= MAX_GROUPS \
                or sum(1 for c in counts.values() if c >= MIN_GROUP) < 2:
            continue  # an identifier, or groups too small to compare
        coverage[name] = _coverage(values, counts, occ)
    return {"space": space, "hubness": hubness, "coverage": coverage,
            "classifiers": _classifiers(index, space), "reading": reading(hubness, coverage)}


def _histogram(occ: np.ndarray, k: int) -> list[dict[str, Any]]:
    edges = [0, 1, k // 2, k, 2 * k, 4 * k, 8 * k, int(occ.max()) + 1]
    edges = sorted(set(edges))
    return [{"from": lo, "to": hi - 1, "works": int(((occ >= lo) & (occ < hi)).sum())}
            for lo, hi in zip(edges, edges[1:], strict=False)]


def _coverage(values: list[Any], counts: Counter[Any], occ: np.ndarray) -> list[dict[str, Any]]:
    """Per group: share of the works, share of all top-k slots, their ratio (1 = fair)."""
    known = [i for i, v in enumerate(values) if v not in (None, "")]
    slots = float(occ[known].sum()) or 1.0
    total = len(known)
    rows = []
    for value, size in counts.most_common():
        members = [i for i in known if values[i] == value]
        share, got = size / total, float(occ[members].sum()) / slots
        rows.append({"value": value, "works": size, "share": round(share, 4),
                     "retrieved_share": round(got, 4),
                     "ratio": round(got / share, 3) if size >= MIN_GROUP else None,
                     "never_retrieved": int((occ[members] == 0).sum())})
    return rows


def _classifiers(index: ArtIndex, space: str) -> list[dict[str, Any]]:
    """The models in INDEX/models with their reports and per-group accuracy, if any."""
    import json

    out = []
    for metrics in sorted((index.path / "models").glob("*-report/metrics.json")):
        try:
            m = json.loads(metrics.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append({"model": metrics.parent.name.removesuffix("-report"),
                    "report": str(metrics.parent / "index.html"), "label": m.get("label"),
                    "space": m.get("space"), "accuracy": (m.get("test") or {}).get("accuracy"),
                    "by": m.get("by") or {}})
    return out


def lead(hubness: dict[str, Any], coverage: dict[str, Any]) -> str:
    """The audit's first sentence: who crowds the results and who is missing from them, in
    numbers a curator can act on."""
    k, n = hubness["k"], hubness["works"]
    busiest = max(1, n // 100)
    said = (f"{busiest:,} work{'s' if busiest > 1 else ''} (the busiest 1 %) fill "
            f"{hubness['share_of_slots_top_1pc']:.0%} of all top-{k} result places; "
            f"{hubness['never_retrieved']:,} of the {n:,} works are never among anyone's "
            f"{k} nearest, so search never shows them as a neighbour")
    worst = None
    for name, rows in coverage.items():
        for r in rows:
            if r["ratio"] is not None and (worst is None or r["ratio"] < worst[1]["ratio"]):
                worst = (name, r)
    if worst is not None and worst[1]["ratio"] <= 0.67:
        name, r = worst
        never = (" and none of them is ever retrieved" if r["never_retrieved"] == r["works"]
                 else f", {r['never_retrieved']} of them never")
        said += (f"; the {r['works']} works of {name} {r['value']} are retrieved "
                 f"{r['ratio']:.2f}x their share of the collection{never}")
    return said + "."


def reading(hubness: dict[str, Any], coverage: dict[str, Any]) -> list[str]:
    """What the figures mean, in plain words, and what to do: the lead sentence first."""
    out = [lead(hubness, coverage)]
    sk, k = hubness["skewness"], hubness["k"]
    strength = "strong" if sk > 3 else "moderate" if sk > 1 else "weak"
    out.append(
        f"Hubness is {strength} (skewness of the {k}-occurrence {sk:.2f}; 0 would be even). "
        f"{hubness['hubs']} works appear in at least {2 * k} top-{k} lists, the busiest in "
        f"{hubness['max']}; {hubness['never_retrieved']} works are in no one's top {k}.")
    c = hubness["csls"]
    if sk > 1:
        out.append(
            f"CSLS re-ranking would bring the skewness to {c['skewness']:.2f} and the busiest "
            f"work to {c['max']} lists: try `artsearch query IMG --rerank csls`, and check "
            "the cost in accuracy in benchmarks/README.md (Hubness).")
    for name, rows in coverage.items():
        rated = [r for r in rows if r["ratio"] is not None]
        if not rated:
            continue
        hi = max(rated, key=lambda r: r["ratio"])
        lo = min(rated, key=lambda r: r["ratio"])
        if hi["ratio"] >= 1.5 or lo["ratio"] <= 0.67:
            never = (f"; {lo['never_retrieved']} of its works are in no one's top {K}"
                     if lo["never_retrieved"] else "")
            out.append(
                f"By {name}: {hi['value']} is retrieved {hi['ratio']:.2f}x its share of the "
                f"collection and {lo['value']} {lo['ratio']:.2f}x{never}; results lean "
                f"towards {hi['value']}. To look at a group on its own terms, filter: "
                f"--where {name}=VALUE.")
        else:
            out.append(f"By {name}: every group of {MIN_GROUP} or more works is retrieved "
                       f"within 0.67x-1.5x of its share.")
    return out
