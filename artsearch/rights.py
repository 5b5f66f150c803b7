"""What may leave the machine: a work's catalogued licence decides whether reports, exports
and the web app show its image, or a grey tile with its rights statement.

Licences are read into a few classes (public-domain, cc0, cc-by, cc-by-sa, cc-by-nc, ...,
unknown, other); `--show-licences` names the classes whose images are shown. The default
shows only what anyone may copy with at most an attribution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from artsearch.errors import MetadataError

__all__ = ["CLASSES", "DEFAULT_SHOWN", "licence_class", "parse_shown", "statement", "shown"]

CLASSES = ("public-domain", "cc0", "cc-by", "cc-by-sa", "cc-by-nd", "cc-by-nc", "cc-by-nc-sa",
           "cc-by-nc-nd", "unknown", "other")
DEFAULT_SHOWN = frozenset({"public-domain", "cc0", "cc-by", "cc-by-sa"})


# Rights URIs as IIIF manifests give them (creativecommons.org, rightsstatements.org).
_CC_URI = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z-]+)")
_RS_URI = re.compile(r"rightsstatements\.org/(?:vocab|page)/([a-z-]+)")


def licence_class(licence: str | None) -> str:
    """The class of a catalogued licence text or rights URI; `unknown` when none is
    catalogued."""
    uri = (licence or "").strip().lower()
    cc, rs = _CC_URI.search(uri), _RS_URI.search(uri)
    if cc:
        kind, name = cc.groups()
        if kind == "publicdomain":
            return "cc0" if name == "zero" else "public-domain" if name == "mark" else "other"
        return "cc-" + name if "cc-" + name in CLASSES else "other"
    if rs:  # only "No Copyright - United States" says the work is free to show
        code = rs.group(1)
        return "public-domain" if code == "noc-us" else "unknown" if code in (
            "und", "cne", "nkc") else "other"
    words = re.sub(r"[^a-z0-9]+", " ", (licence or "").lower()).split()
    if not words or words[0] in ("unknown", "none", "unspecified"):
        return "unknown"
    text = " ".join(words)
    if text.startswith(("public domain", "publicdomain")) or words[0] in ("pd", "pdm"):
        return "public-domain"
    if "cc0" in words or text.startswith("cc zero"):
        return "cc0"
    start = 1 if words[0] == "cc" else 2 if words[:2] == ["creative", "commons"] else -1
    if start > 0 and words[start:start + 1] in (["by"], ["attribution"]):
        rest = set(words[start + 1:])
        nc = bool(rest & {"nc", "noncommercial"})
        nd = bool(rest & {"nd", "noderivatives", "noderivs"})
        sa = bool(rest & {"sa", "sharealike"})
        return "cc-by" + ("-nc" if nc else "") + ("-nd" if nd else "-sa" if sa else "")
    return "other"


def parse_shown(text: str | None) -> frozenset[str]:
    """`--show-licences`: comma-separated classes, `all`, or `default` (plus more)."""
    if text is None:
        return DEFAULT_SHOWN
    out: set[str] = set()
    for name in (p.strip().lower() for p in text.split(",") if p.strip()):
        if name == "all":
            out.update(CLASSES)
        elif name == "default":
            out.update(DEFAULT_SHOWN)
        elif name in CLASSES:
            out.add(name)
        else:
            raise MetadataError(f"--show-licences {text!r}: {name!r} is not a licence class; "
                                f"use any of {', '.join(CLASSES)}, default or all")
    if not out:
        raise MetadataError("--show-licences is empty; name licence classes, or all")
    return frozenset(out)


def shown(licence: str | None, allowed: Iterable[str] = DEFAULT_SHOWN) -> bool:
    return licence_class(licence) in set(allowed)


def statement(licence: str | None) -> str:
    """The words on a withheld work's grey tile."""
    if not (licence or "").strip():
        return "no licence catalogued: image not shown"
    return f"rights: {licence.strip()[:120]}"  # type: ignore[union-attr]
