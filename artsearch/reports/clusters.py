"""The cluster report: a stored clustering run as pictures an art historian can read.

One folder, opened from disk: a map of the collection (t-SNE, or PCA when t-SNE is not
suitable) coloured by cluster; per cluster its size, label, stability, a contact sheet with the
medoid first, its outliers and the make-up of its catalogue fields; how the clusters agree
with each catalogued field; near-duplicate pairs for catalogue review; and a header with
everything needed to make the same report again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artsearch.cluster import NOISE, load_run, pca, space_matrix
from artsearch.errors import MetadataError
from artsearch.index import ArtIndex
from artsearch.index.catalogue import field_value
from artsearch.reports.page import (
    Thumbnails,
    bars,
    colour,
    esc,
    figure,
    page,
    standard_facts,
    write_report,
)

if TYPE_CHECKING:
    from artsearch.index.store import Artwork, ClusterRun, Space

__all__ = ["DUPLICATE_THRESHOLD", "ReportSummary", "cluster_report", "project_2d"]

DUPLICATE_THRESHOLD = 0.92  # cosine; the dev set's closest distinct works reach 0.88
DUPLICATES_EXACT_MAX = 50_000  # above this, the all-pairs search would take minutes
DUPLICATES_SHOWN = 100
TSNE_MAX = 10_000  # t-SNE above this takes too long on a laptop; PCA instead
PCA_FIT_ROWS = 20_000  # above this, the map's two axes come from a seeded sample of the works
MAP_MAX = 5_000  # points drawn; a larger collection is sampled (and says so)
CONTACT = 12
OUTLIERS = 6
BAR_VALUES = 6
COMPOSITION_FIELDS = ("artist", "style", "genre", "century", "source")

Progress = Callable[[str], None]


@dataclass
class ReportSummary:
    path: Path
    works: int
    clusters: int
    map_method: str
    duplicates: int
    thumbnails: int
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    withheld: int = 0


def project_2d(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates for the map: t-SNE (cosine geometry, seeded) when the collection is
    between 10 and TSNE_MAX works, otherwise the first two principal components."""
    n = len(vectors)
    if 10 <= n <= TSNE_MAX:
        try:
            from sklearn.manifold import TSNE
        except ImportError:  # pragma: no cover - scikit-learn is a dependency
            pass
        else:
            perplexity = float(min(30, (n - 1) // 3))
            coords = TSNE(n_components=2, perplexity=perplexity, init="pca",
                          random_state=seed, max_iter=750).fit_transform(pca(vectors, 50))
            return coords.astype(np.float32), (f"t-SNE of the first 50 principal components "
                                               f"(perplexity {perplexity:g}, seed {seed})")
    why = "fewer than 10 works" if n < 10 else f"more than {TSNE_MAX:,} works"
    sampled = f"; axes from a seeded sample of {PCA_FIT_ROWS:,}" if n > PCA_FIT_ROWS else ""
    return (pca(vectors, 2, fit_rows=PCA_FIT_ROWS, seed=seed),
            f"first two principal components (PCA; {why} for t-SNE{sampled})")


def kept_layout(index: ArtIndex, vectors: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """`project_2d`, kept in INDEX/maps/ by a hash of the vectors and the seed: a report
    written again (the app's copy for other licence rules, a second `--report`) lays out
    its map in no time, where t-SNE takes tens of seconds at a few thousand works."""
    import hashlib

    key = hashlib.sha256(np.ascontiguousarray(vectors, np.float32).tobytes()
                         + str((seed, vectors.shape)).encode()).hexdigest()[:24]
    path = index.path / "maps" / f"report-layout-{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["coords"], str(z["method"])
    except (OSError, ValueError, KeyError):
        pass
    coords, method = project_2d(vectors, seed)
    try:  # an index that cannot be written (or is read-only) lays it out again next time
        if os.access(index.path, os.W_OK):
            path.parent.mkdir(exist_ok=True)
            with (tmp := path.with_name(f".{path.name}.tmp")).open("wb") as fh:
                np.savez(fh, coords=coords, method=np.array(method))
            tmp.replace(path)
    except OSError:
        pass
    return coords, method


def near_duplicates(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Every pair of rows with cosine similarity >= threshold, most similar first."""
    import faiss

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    lims, sims, rows = flat.range_search(vectors, threshold)
    pairs = []
    for i in range(len(vectors)):
        for s, j in zip(sims[lims[i]:lims[i + 1]], rows[lims[i]:lims[i + 1]], strict=True):
            if j > i:
                pairs.append((i, int(j), float(s)))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs


def cluster_report(index: ArtIndex, run_id: int, out_dir: Path, *,
                   duplicate_threshold: float = DUPLICATE_THRESHOLD,
                   progress: Progress | None = None,
                   licences: Iterable[str] | None = None,
                   deferred_thumbnails: bool = False) -> ReportSummary:
    """Write the report of clustering run `run_id` to `out_dir` (index.html, report.json,
    thumbs/); only works whose licence is in `licences` (artsearch.rights) get a thumbnail
    (named but not written with `deferred_thumbnails`: `serve` makes each when asked)."""
    say = progress or (lambda _msg: None)
    stored = load_run(index, run_id)
    run, space, assigned, arts = stored.run, stored.space, stored.assigned, stored.artworks
    ids, vectors = space_matrix(index, space.name)
    keep = [i for i, a in enumerate(ids) if a in assigned and a in arts]
    gone = len(assigned) - len(keep)
    ids, vectors = [ids[i] for i in keep], vectors[keep]
    if len(ids) < 2:
        raise MetadataError(f"run {run_id}: fewer than 2 of its works are still indexed; "
                            "cluster again")
    assign = np.array([assigned[a] for a in ids])
    k = int(run.k)

    say(f"mapping {len(ids):,} works")
    rng = np.random.default_rng(run.seed)
    shown = (np.arange(len(ids)) if len(ids) <= MAP_MAX
             else np.sort(rng.choice(len(ids), MAP_MAX, replace=False)))
    coords, map_method = kept_layout(index, vectors[shown], run.seed)

    say("ordering works by centrality")
    sections = _cluster_sections(vectors, assign, k)
    duplicates: list[tuple[int, int, float]] = []
    dup_note = ""
    if len(ids) <= DUPLICATES_EXACT_MAX:
        say("looking for near-duplicates")
        duplicates = near_duplicates(vectors, duplicate_threshold)
    else:
        dup_note = (f"Near-duplicates were not searched: {len(ids):,} works is above the "
                    f"{DUPLICATES_EXACT_MAX:,} the exact all-pairs search handles in seconds.")

    wanted = set(shown.tolist())
    for sec in sections:
        wanted.update(sec["central"] + sec["outliers"])
    for i, j, _ in duplicates[:DUPLICATES_SHOWN]:
        wanted.update((i, j))
    say(f"making {len(wanted):,} thumbnails")
    thumbs = Thumbnails(index, out_dir, licences=licences, deferred=deferred_thumbnails)
    thumbs.make((ids[r], arts[ids[r]].path) for r in sorted(wanted))

    works = [_work(arts[a], thumbs[a], thumbs.withheld.get(a)) for a in ids]
    labels = {e["cluster"]: e for e in (run.metrics or {}).get("clusters", [])}
    stab = (run.params or {}).get("stability") or {}
    agreement = {f: m for f, m in (run.metrics or {}).items() if f != "clusters"}
    facts = _provenance(index, run, space, len(ids), map_method, duplicate_threshold)
    unique = mostly_unique_fields([arts[a] for a in ids])
    body = [
        _overview(run, k, assign, labels, stab, coords, shown, works, map_method, gone),
        _agreement_section(agreement, int((assign == NOISE).sum())),
        *(_cluster_html(sec, works, arts, ids, labels.get(sec["cluster"], {}), stab, unique)
          for sec in sections),
        _duplicates_section(duplicates, works, duplicate_threshold, dup_note),
        _about_section(thumbs.failed),
    ]
    toc = [("overview", "Map"), ("agreement", "Agreement"),
           *((f"cluster-{sec['cluster']}", _name(sec["cluster"])) for sec in sections),
           ("duplicates", "Near-duplicates"), ("about", "About")]
    title = f"Clusters of {Path(str(index.root or index.path)).name}: run {run_id}"
    lede = (f"{len(ids):,} works in {k} clusters"
            + (f" and {int((assign == NOISE).sum())} unclustered" if (assign == NOISE).any()
               else "") + f", {_METHOD_NAMES.get(run.method, run.method)} on the "
             f"{space.name!r} space")
    points = [[w["title"], w["artist"], int(assign[r]), w["thumb"], w["id"]]
              for r, w in ((int(r), works[int(r)]) for r in shown)]
    html_text = page(title, lede, facts, body, toc=toc,
                     script=_MAP_SCRIPT.replace("__POINTS__", _json_for_script(points)))
    data = {
        "run": run_id, "provenance": dict(facts), "map": {"method": map_method},
        "agreement": agreement, "stability": stab,
        "clusters": [{"cluster": sec["cluster"], "size": sec["size"],
                      "label": labels.get(sec["cluster"], {}).get("label"),
                      "medoid": arts[ids[sec["central"][0]]].path if sec["central"] else None,
                      "central": [arts[ids[r]].path for r in sec["central"]],
                      "outliers": [arts[ids[r]].path for r in sec["outliers"]]}
                     for sec in sections],
        "near_duplicates": [{"a": arts[ids[i]].path, "b": arts[ids[j]].path,
                             "similarity": round(s, 4)} for i, j, s in duplicates],
        "points": [{"path": works[int(r)]["path"], "cluster": int(assign[r]),
                    "x": round(float(x), 3), "y": round(float(y), 3)}
                   for r, (x, y) in zip(shown, coords, strict=True)],
        "unreadable": [{"path": p, "reason": why} for p, why in thumbs.failed],
        "rights": {"shown_licences": sorted(thumbs.licences),
                   "withheld_thumbnails": thumbs.withheld_count()},
    }
    path = write_report(out_dir, html_text, data, files=thumbs.files())
    return ReportSummary(path, len(ids), k, map_method, len(duplicates),
                         sum(1 for v in thumbs.made.values() if v), thumbs.failed,
                         thumbs.withheld_count())


# -- pieces ------------------------------------------------------------------------------------

def _name(cluster: int) -> str:
    return "Unclustered" if cluster == NOISE else f"Cluster {cluster + 1}"


def _figure(work: dict[str, Any]) -> str:
    return figure(work["thumb"], work["caption"], work["path"], withheld=work["withheld"])


def _work(art: Artwork, thumb: str | None, withheld: str | None) -> dict[str, Any]:
    # No catalogued title: say so, rather than pass the file name off as one.
    title = art.title or f"untitled ({Path(art.path).name})"
    return {"id": art.id, "path": art.path, "title": title, "artist": art.artist or "",
            "thumb": thumb,
            "withheld": withheld,
            "caption": title + (f" — {art.artist}" if art.artist else ""),
            "date": art.date or ""}


def _cluster_sections(vectors: np.ndarray, assign: np.ndarray, k: int) -> list[dict[str, Any]]:
    """Per cluster: rows by centrality (similarity to the sum of the members: the first is
    the medoid, the member with the highest mean cosine similarity to the others), the most
    central CONTACT works and up to OUTLIERS of the least central."""
    out = []
    for c in [*range(k), *([NOISE] if (assign == NOISE).any() else [])]:
        rows = np.flatnonzero(assign == c)
        if not len(rows):
            continue
        members = vectors[rows]
        score = members @ members.sum(axis=0)
        order = rows[np.argsort(-score, kind="stable")].tolist()
        central, rest = order[:CONTACT], order[CONTACT:]
        outliers = rest[::-1][:OUTLIERS] if c != NOISE else []
        out.append({"cluster": c, "size": len(rows), "rows": rows, "central": central,
                    "outliers": outliers})
    return out


def _overview(run: ClusterRun, k: int, assign: np.ndarray, labels: dict[int, Any],
              stab: dict[str, Any], coords: np.ndarray, shown: np.ndarray,
              works: list[dict[str, Any]], map_method: str, gone: int) -> str:
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    # The box takes the layout's own proportions (within 2:1 and 1:1), so the map fills the
    # page's width instead of sitting square in the middle of a wide box.
    width = 1000
    # Thumbnails on the map: as large as the works' share of the area allows, 24-72 units;
    # the margin keeps those at the edge inside the box.
    thumb = int(np.clip(0.7 * np.sqrt(width * 0.8 * width / max(len(shown), 1)), 24, 72))
    pad = max(24, thumb // 2 + 4)
    height = int(np.clip((width - 2 * pad) * span[1] / span[0] + 2 * pad, 500, width))
    scale = min((width - 2 * pad) / span[0], (height - 2 * pad) / span[1])
    xy = (coords - lo) * scale + pad
    xy += (np.array([width, height]) - 2 * pad - span * scale) / 2  # centre the layout
    radius = 5 if len(shown) <= 1500 else 3.5
    circles = "".join(
        f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{radius}' fill='{colour(int(assign[r]))}' "
        f"data-i='{n}'><title>{esc(works[int(r)]['caption'])} · "
        f"{esc(_name(int(assign[r])))}</title></circle>"
        for n, (r, (x, y)) in enumerate(zip(shown, xy, strict=True)))
    sizes = Counter(assign.tolist())
    legend = "".join(
        f"<span class=item><span class=swatch style='background:{colour(c)}'></span>"
        f"<a href='#cluster-{c}'>{_name(c)}</a>: "
        f"{esc(labels.get(c, {}).get('label', 'in no group' if c == NOISE else '?'))} "
        f"({sizes[c]})</span>"
        for c in [*range(k), *([NOISE] if NOISE in sizes else [])])
    sample = (f" Drawn: a seeded sample of {len(shown):,} of the {len(assign):,} works."
              if len(shown) < len(assign) else "")
    gone_note = (f" {gone} works of this run are no longer indexed and are left out."
                 if gone else "")
    mean_ari = stab.get("mean_ari")
    stab_note = ("" if mean_ari is None else
                 f"<p><b>Stability:</b> {_stability_sentence(mean_ari, stab)}</p>")
    return (
        "<section id=overview><h2>Map of the collection</h2>"
        f"<p class=note>Each dot is a work, coloured by cluster; works that look alike to the "
        f"model lie close together. Layout: {esc(map_method)}. Distances between far-apart "
        f"groups on such a map mean little; nearness within a group means more.{sample}"
        f"{gone_note} Hover a dot for the work (in the app, click it to open the work).</p>"
        f"<div class=legend>{legend}</div>"
        "<p><button id=toggle-thumbs type=button>Show thumbnails on the map</button></p>"
        f"<div id=map-wrap><svg id=map viewBox='0 0 {width} {height}' role=img "
        f"data-thumb='{thumb}' "
        f"aria-label='map of {len(shown)} works coloured by cluster' "
        f"xmlns='http://www.w3.org/2000/svg'><g id=dots>{circles}</g><g id=thumb-layer></g>"
        "</svg><div id=hover-card></div></div>"
        f"{stab_note}</section>")


def _stability_sentence(mean_ari: float, stab: dict[str, Any]) -> str:
    verdict = ("the grouping as a whole holds" if mean_ari >= 0.8 else
               "the grouping holds in part" if mean_ari >= 0.6 else
               "the grouping changes a lot between runs; read single clusters with care")
    return (f"mean ARI {mean_ari:.2f} between this run and {stab.get('runs', 'several')} "
            f"redos ({esc(stab.get('method', ''))}): {verdict}. Each cluster's badge gives "
            "how well it survives the redos (best Jaccard overlap, averaged).")


def _badge(jaccard: float | None) -> str:
    if jaccard is None:
        return ""
    kind, word = (("good", "robust") if jaccard >= 0.75 else ("fair", "fairly stable")
                  if jaccard >= 0.6 else ("poor", "unstable"))
    return f"<span class='badge {kind}'>{word} · Jaccard {jaccard:.2f}</span>"


def _agreement_sentence(name: str, m: dict[str, Any]) -> str:
    strength = ("closely" if m["nmi"] >= 0.5 else "partly" if m["nmi"] >= 0.25 else
                "weakly" if m["nmi"] >= 0.1 else "hardly")
    pairs = ("most pairs of works put together share a " if m["ari"] >= 0.5 else
             "many pairs of works put together differ in " if m["ari"] >= 0.1 else
             "pairs put together share a ")
    pairs += name + ("" if m["ari"] >= 0.1 else " little more often than by chance")
    return (f"The clusters {strength} follow {name}: {pairs}; {m['purity']:.0%} of the "
            f"{m['works']:,} catalogued works carry their cluster's most common {name}.")


def _agreement_section(agreement: dict[str, Any], noise: int) -> str:
    if not agreement:
        return ("<section id=agreement><h2>Agreement with the catalogue</h2><p class=note>"
                "No catalogued field to compare with: index with --metadata CSV.</p></section>")
    rows = "".join(
        f"<tr><td>{esc(f)}</td><td class=num>{m['works']:,}</td><td class=num>{m['labels']}"
        f"</td><td class=num>{m['nmi']:.3f}</td><td class=num>{m['ari']:.3f}</td>"
        f"<td class=num>{m['purity']:.3f}</td><td>{esc(_agreement_sentence(f, m))}</td></tr>"
        for f, m in agreement.items())
    return (
        "<section id=agreement><h2>Agreement with the catalogue</h2>"
        "<table><tr><th>field</th><th class=num>works</th><th class=num>values</th>"
        "<th class=num>NMI</th><th class=num>ARI</th><th class=num>purity</th><th>reading"
        f"</th></tr>{rows}</table><p class=note>NMI (0-1): how much knowing a work's cluster "
        "tells about the field. ARI: agreement of pairs, 0 = chance, 1 = the same grouping. "
        "Purity: share of works in their cluster's majority value (high by default when one "
        "value dominates). Agreement says how far the visual groups follow the catalogue, "
        "not which of the two is right."
        + (f" The {noise:,} unclustered works are left out of these figures." if noise else "")
        + "</p></section>")


def mostly_unique_fields(arts: list[Artwork]) -> list[str]:
    """Composition fields whose values are mostly distinct (more values than half the works
    that have one: URLs, inventory numbers): bars of them say nothing, as in the agreement
    table, which leaves them out by the same rule."""
    out = []
    for name in COMPOSITION_FIELDS:
        known = [v for v in (field_value(a, name) for a in arts) if v]
        if known and len(set(known)) > len(known) / 2:
            out.append(name)
    return out


def _cluster_html(sec: dict[str, Any], works: list[dict[str, Any]], arts: dict[int, Artwork],
                  ids: list[int], label: dict[str, Any], stab: dict[str, Any],
                  unique: list[str]) -> str:
    c = sec["cluster"]
    per = stab.get("per_cluster_jaccard") or []
    jaccard = per[c] if 0 <= c < len(per) else None
    sheet = "".join(
        figure(works[r]["thumb"], ("medoid · " if n == 0 and c != NOISE else "")
               + works[r]["caption"], works[r]["path"], withheld=works[r]["withheld"],
               css="work medoid" if n == 0 and c != NOISE else "work")
        for n, r in enumerate(sec["central"]))
    outliers = "".join(figure(works[r]["thumb"], works[r]["caption"], works[r]["path"],
                              withheld=works[r]["withheld"])
                       for r in sec["outliers"])
    over = label.get("over_represented", [])
    over_rows = "".join(
        f"<tr><td>{esc(e['field'])}</td><td>{esc(e['value'])}</td><td class=num>"
        f"{e['in_cluster']} of {e['of']}</td><td class=num>{e['expected']}</td>"
        f"<td class=num>{e['p_adjusted']:.1e}</td></tr>" for e in over[:8])
    over_html = (
        "<table><tr><th>field</th><th>value</th><th class=num>here</th>"
        "<th class=num>expected</th><th class=num>p (Bonferroni)</th></tr>"
        f"{over_rows}</table>" if over else
        "<p class=note>No catalogue value is over-represented here beyond chance "
        "(hypergeometric test, Bonferroni-corrected, p &lt; 0.01).</p>")
    charts = []
    members = [arts[ids[r]] for r in sec["rows"]]
    for name in (f for f in COMPOSITION_FIELDS if f not in unique):
        values = [field_value(a, name) for a in members]
        known = Counter(v for v in values if v)
        if not known:
            continue
        top = known.most_common(BAR_VALUES)
        rest = sum(known.values()) - sum(n for _, n in top)
        if rest:
            top.append((f"{len(known) - BAR_VALUES} other values", rest))
        chart = bars(top, len(members), colour(c), unknown=values.count(None),
                     rest=bool(rest))
        charts.append(f"<div><h3>{esc(name)}</h3>{chart}</div>")
    heading = _name(c) + ("" if c == NOISE else f": {label.get('label', 'unlabelled')}")
    return (
        f"<section id='cluster-{c}' class=cluster><h2><span class=swatch "
        f"style='background:{colour(c)}'></span>{esc(heading)}</h2>"
        f"<p>{sec['size']:,} works {_badge(jaccard)}</p>"
        + ("<p class=note>Works HDBSCAN placed in no group: too far from every dense region."
           "</p>" if c == NOISE else "")
        + f"<h3>Most central works</h3><div class=sheet>{sheet}</div>"
        + (f"<h3>Outliers (least like the rest of the cluster)</h3><div class=sheet>"
           f"{outliers}</div>" if outliers else "")
        + ("" if c == NOISE else f"<h3>Over-represented catalogue values</h3>{over_html}")
        + (f"<h3>Catalogue make-up</h3><div class=charts>{''.join(charts)}</div>"
           if charts else "<p class=note>No catalogue fields for these works.</p>")
        + (f"<p class=note>Not charted: {esc(', '.join(unique))} (a different value for "
           "most works).</p>" if unique and c != NOISE else "")
        + "</section>")


def _duplicates_section(pairs: list[tuple[int, int, float]], works: list[dict[str, Any]],
                        threshold: float, note: str) -> str:
    head = "<section id=duplicates><h2>Near-duplicates for catalogue review</h2>"
    if note:
        return head + f"<p class=note>{esc(note)}</p></section>"
    if not pairs:
        return head + (f"<p class=note>No pair of works has a cosine similarity of "
                       f"{threshold:g} or more in this space.</p></section>")
    items = "".join(
        f"<div class=pair>{_figure(works[i])}{_figure(works[j])}"
        f"<span class=muted>{s:.3f}</span></div>" for i, j, s in pairs[:DUPLICATES_SHOWN])
    more = (f"<p class=note>{len(pairs) - DUPLICATES_SHOWN} more pairs in report.json.</p>"
            if len(pairs) > DUPLICATES_SHOWN else "")
    return head + (
        f"<p class=note>{len(pairs)} pairs with cosine similarity {threshold:g} or more: "
        "the same image twice, a crop, a copy or a close variant. Check whether the catalogue "
        f"should link or merge them.</p><div class=pairs>{items}</div>{more}</section>")


def _about_section(failed: list[tuple[str, str]]) -> str:
    unreadable = ("<h3>Images that could not be read for thumbnails</h3><ul>" + "".join(
        f"<li>{esc(p)}: {esc(why)}</li>" for p, why in failed[:50]) + "</ul>") if failed else ""
    return (
        "<section id=about><h2>About this report</h2><p class=note>The clusters come from a "
        "network pretrained on photographs (ImageNet), which carries that data's blind spots: "
        "it groups by what it learned to see, not by art-historical category, and may do "
        "better on some traditions than others. Use the groups as prompts for looking, not as "
        "attributions. Thumbnails are reduced copies for study; rights stay with the holders "
        "named in the catalogue.</p>" + unreadable + "</section>")


def _provenance(index: ArtIndex, run: ClusterRun, space: Space, works: int, map_method: str,
                threshold: float) -> list[tuple[str, object]]:
    params = run.params or {}
    how_k = ("chosen by " + params["k_choice"]["criterion"] if "k_choice" in params else
             "found by HDBSCAN" if run.method == "hdbscan" else "given")
    layers = ",".join((space.params or {}).get("layers") or [space.layer])
    k_opt = ("" if run.method == "hdbscan" else
             f" --k {'auto' if 'k_choice' in params else run.k}")
    extra = (f" --min-cluster-size {params['min_cluster_size']}"
             if run.method == "hdbscan" else "")
    if "centred" in params:  # runs before centring existed were never centred
        extra += f" --centre {'yes' if params['centred'] else 'no'}"
    return [
        ("collection", index.root or "unknown"),
        ("index", index.path),
        ("run", f"{run.id}, made {run.created_at:%Y-%m-%d %H:%M} UTC"),
        ("space", f"{space.name}: {space.backbone}, layers {layers}, {space.pooling} pooling, "
                  f"{space.dims} dimensions"),
        ("weights sha256", space.weights_sha256),
        ("method", _METHOD_NAMES.get(run.method, run.method) + "".join(
            ", " + _PARAM_NAMES[k].format(v) for k, v in params.items() if k in _PARAM_NAMES)),
        ("k", f"{run.k} ({how_k})"),
        ("seed", run.seed),
        ("works", f"{works:,}"),
        ("map", map_method),
        ("near-duplicates", f"cosine similarity >= {threshold:g}"),
        ("reproduce", f"artsearch cluster --index {index.path} --space {space.name} "
                      f"--method {run.method}{k_opt}{extra} --seed {run.seed} --report DIR"),
        *standard_facts(),
    ]


def _json_for_script(value: Any) -> str:
    """JSON that cannot end or confuse the <script> element it sits in, whatever the
    catalogue says: <, > and & as \\u escapes (no </script>, no <!--), and ensure_ascii
    writes U+2028/U+2029 escaped too."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_METHOD_NAMES = {"kmeans": "k-means (spherical, FAISS)",
                 "agglomerative": "agglomerative (Ward linkage)", "hdbscan": "HDBSCAN"}
_PARAM_NAMES = {"nredo": "best of {} starts", "linkage": "{} linkage",
                "min_cluster_size": "smallest group {} works",
                "pca_dims": "on {} principal components",
                "centred": "centred on the works' mean: {}"}


_MAP_SCRIPT = """
(function () {
  var points = __POINTS__;
  var svg = document.getElementById('map'), card = document.getElementById('hover-card');
  var wrap = document.getElementById('map-wrap');
  function esc(s) { var d = document.createElement('div'); d.textContent = s; return d.innerHTML; }
  svg.addEventListener('mousemove', function (ev) {
    var i = ev.target.getAttribute && ev.target.getAttribute('data-i');
    if (i === null || i === undefined) { card.style.display = 'none'; return; }
    var p = points[+i], box = wrap.getBoundingClientRect();
    card.innerHTML = (p[3] ? '<img src="' + p[3] + '" alt="">' : '') + '<b>' + esc(p[0]) +
      '</b><br>' + esc(p[1] || 'artist unknown') + '<br>' +
      (p[2] < 0 ? 'unclustered' : 'cluster ' + (p[2] + 1));
    card.style.left = Math.min(ev.clientX - box.left + 14, box.width - 190) + 'px';
    card.style.top = (ev.clientY - box.top + 14) + 'px';
    card.style.display = 'block';
  });
  svg.addEventListener('mouseleave', function () { card.style.display = 'none'; });
  // Served by `artsearch serve`, the page says where works live: a dot opens its work.
  var works = document.body.getAttribute('data-work-pages');
  if (works) {
    svg.style.cursor = 'pointer';
    svg.addEventListener('click', function (ev) {
      var i = ev.target.getAttribute && ev.target.getAttribute('data-i');
      if (i !== null && i !== undefined) { location.href = works + points[+i][4]; }
    });
  }
  // Thumbnails on the map: each work's frame (its cluster's colour) is an SVG square that
  // answers the pointer; the pictures are painted on a canvas laid over the map, one
  // drawImage as each arrives. As SVG <image> elements, each arrival repainted the whole map:
  // 1,357 of them took minutes in Chromium.
  var layer = document.getElementById('thumb-layer'), shown = false, built = false;
  var canvas = null, loaded = [], size = +svg.getAttribute('data-thumb');
  var box = svg.viewBox.baseVal;
  function paint(i, im) {
    var c = document.getElementById('dots').children[i];
    var ctx = canvas.getContext('2d'), k = canvas.width / box.width;
    var side = Math.min(im.naturalWidth, im.naturalHeight);
    ctx.drawImage(im, (im.naturalWidth - side) / 2, (im.naturalHeight - side) / 2, side, side,
                  (+c.getAttribute('cx') - size / 2) * k, (+c.getAttribute('cy') - size / 2) * k,
                  size * k, size * k);
  }
  function fit() {
    var r = svg.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(r.width * dpr); canvas.height = Math.round(r.height * dpr);
    canvas.style.width = r.width + 'px'; canvas.style.height = r.height + 'px';
    loaded.forEach(function (e) { paint(e[0], e[1]); });
  }
  document.getElementById('toggle-thumbs').addEventListener('click', function (ev) {
    shown = !shown;
    if (shown && !built) {
      var ns = 'http://www.w3.org/2000/svg';
      canvas = document.createElement('canvas');
      canvas.id = 'thumb-canvas';
      canvas.style.position = 'absolute'; canvas.style.left = '0'; canvas.style.top = '0';
      canvas.style.pointerEvents = 'none';
      wrap.insertBefore(canvas, card);
      fit();
      window.addEventListener('resize', function () { if (shown) fit(); });
      document.querySelectorAll('#dots circle').forEach(function (c, n) {
        var i = c.getAttribute('data-i'), p = points[+i];
        var x = +c.getAttribute('cx') - size / 2, y = +c.getAttribute('cy') - size / 2;
        var frame = document.createElementNS(ns, 'rect');
        frame.setAttribute('x', x - 2); frame.setAttribute('y', y - 2);
        frame.setAttribute('width', size + 4); frame.setAttribute('height', size + 4);
        frame.setAttribute('fill', c.getAttribute('fill')); frame.setAttribute('data-i', i);
        layer.appendChild(frame);
        if (!p[3]) return;
        var im = new Image();
        im.onload = function () { loaded.push([n, im]); if (shown) paint(n, im);
          document.body.setAttribute('data-thumbs-drawn', String(loaded.length)); };
        im.src = p[3];
      });
      built = true;
    }
    layer.style.display = shown ? '' : 'none';
    canvas.style.display = shown ? '' : 'none';
    document.getElementById('dots').style.display = shown ? 'none' : '';
    if (shown) fit();
    ev.target.textContent = shown ? 'Show dots only' : 'Show thumbnails on the map';
  });
  document.body.setAttribute('data-map-points', String(points.length));
})();
"""
