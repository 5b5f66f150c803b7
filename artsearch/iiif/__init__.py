"""IIIF in and out: index the canvases of Presentation 2 or 3 manifests and collections
through the Image API, and write query results or a clustering run as a Presentation 3
manifest that Mirador or Universal Viewer opens.

Reading. A manifest or collection (a file or an http(s) URL) is walked to its canvases; each
canvas's image is fetched at a bounded size — from its Image API service (for a level-0
static tree, one of the sizes its info.json lists), or the image itself when it has no
service — into INDEX/iiif-images/, under a name made from the canvas and image URIs. That
folder is then indexed like any collection, with title, creator, date, rights and the
manifest and canvas URIs as catalogue fields. A canvas whose picture is already there (and
decoded) is not fetched again, so a re-run fetches only what is new. Each request has a total
deadline, bodies are bounded, and a picture is kept only once it decodes; requests are
retried (timeouts, dropped connections, truncated bodies, 429 and 5xx) and run a few at a
time. Every failure — of a canvas, or of a document inside a collection — is one line naming
it and a terminal-safe reason, and the run goes on. Only the top-level source may be a local
file; everything a manifest names is fetched over http(s) only, redirects included, and file
names are hashes. A run reads at most `FetchOptions.max_documents` documents, collections
nested at most MAX_DEPTH deep.

Writing. Each work becomes a canvas whose image is its IIIF image where it came from one,
else `BASE/image/ID` of `artsearch serve`; scores, ranks and clusters are in the canvases'
metadata, the query and provenance in the manifest's. iiif-prezi3 builds the manifest, which
validates it against the specification's model.
"""

from __future__ import annotations

from artsearch.iiif.fetching import FetchOptions, IIIFError, fetch, load_json
from artsearch.iiif.ingest import CATALOGUE, FOLDER, FetchReport, fetch_canvases, index_iiif
from artsearch.iiif.read import Canvas, image_request, read_canvases, text
from artsearch.iiif.write import results_manifest, run_manifest

__all__ = ["CATALOGUE", "FOLDER", "Canvas", "FetchOptions", "FetchReport", "IIIFError", "fetch",
           "fetch_canvases", "image_request", "index_iiif", "load_json", "read_canvases",
           "results_manifest", "run_manifest", "text"]
