"""The README's example table is what `make example` finds: the same commands (fp32, so that
every CPU ranks alike) on the bundled collection, with the real weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from artsearch.index import ArtIndex
from artsearch.indexer import IndexOptions, index_collection
from artsearch.query import search

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "collection"
TABLE = re.compile(r"<!-- example-table -->\n(.*?)\n<!-- /example-table -->", re.S)


def describe(hit: object) -> str:
    """A result as the README names it: "Artist, *Title*", "*Title*" or "Artist, untitled"."""
    title, artist = getattr(hit, "title", None), getattr(hit, "artist", None)
    if title and artist:
        return f"{artist}, *{title}*"
    return f"*{title}*" if title else f"{artist}, untitled"


@pytest.mark.slow
def test_the_example_table_is_what_make_example_finds(tmp_path: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--index example --precision fp32" in makefile  # the run the table records
    with ArtIndex(tmp_path / "example", create=True) as idx:
        fp32 = {"num_workers": 0, "precision": "fp32"}
        index_collection(EXAMPLES, idx, IndexOptions(metadata=EXAMPLES / "metadata.csv",
                                                     extractor=fp32))
        index_collection(EXAMPLES, idx, IndexOptions(space="style", backbone="vgg16-hed",
                                                     pooling="gram", extractor=fp32))
        query = EXAMPLES / "genre" / "genre_195.jpg"
        columns = [search(idx, image=query, space=sp, k=5).hits for sp in ("content", "style")]
    rows = ["| # | content (EfficientNet-Lite0, avg) | style (VGG16-HED, Gram) |",
            "|---|---|---|"]
    for n, (a, b) in enumerate(zip(*columns, strict=True), 1):
        rows.append(f"| {n} | {describe(a)} | {describe(b)} |")
    found = TABLE.search((ROOT / "README.md").read_text())
    assert found, "README.md has no <!-- example-table --> block"
    assert found.group(1) == "\n".join(rows), "README's example table is stale; it should " \
        "read:\n" + "\n".join(rows)
