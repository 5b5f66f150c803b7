"""Bands (artsearch.bands): each neighbour read against the collection's own nearest
neighbours — very close, close, related, distant — in `query`, its JSON and the API; a
query that nothing resembles is told so."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from artsearch.bands import BANDS, Bands, neighbour_bands
from artsearch.cli import cli
from artsearch.index import ArtIndex
from tests.helpers import client, index_args, two_palettes


def test_bands_are_ordered_cuts() -> None:
    b = Bands(very_close=0.9, close=0.8, related=0.5, works=10)
    assert [b.of(x) for x in (0.95, 0.9, 0.85, 0.6, 0.49)] == [
        "very close", "very close", "close", "related", "distant"]
    assert set(BANDS) == {b.of(x) for x in (1.0, 0.85, 0.6, 0.0)}


def test_neighbours_carry_bands_and_a_query_nothing_resembles_is_told_so(
        tmp_path: Path) -> None:
    root = tmp_path / "coll"
    root.mkdir()
    meta = two_palettes(root)
    index = tmp_path / "idx"
    runner = CliRunner()
    assert runner.invoke(cli, [*index_args(root, "--metadata", str(meta)), "--index",
                               str(index)]).exit_code == 0
    with ArtIndex(index) as idx:
        cuts = neighbour_bands(idx, "content")
        assert cuts is not None and cuts.works == 24
        assert cuts.very_close >= cuts.close >= cuts.related
        kept = json.loads((index / "bands.json").read_text())
        assert kept["content"]["bands"] == cuts.as_dict()
        assert neighbour_bands(idx, "content") == cuts  # read back, not measured again

    warm = runner.invoke(cli, ["query", "--id", "1", "-k", "5", "--index", str(index),
                               "--json"])
    hits = json.loads(warm.stdout)["results"]
    assert all(h["band"] in BANDS for h in hits)
    assert hits[1]["band"] != "distant"  # a warm picture among eleven other warm ones
    assert not any("distant" in n for n in json.loads(warm.stdout)["notes"])
    api = client(index).get("/api/works/1/neighbours", params={"k": 5}).json()["results"]
    by_id = {h["id"]: h["band"] for h in hits}
    assert api and all(h["band"] == by_id[h["id"]] for h in api if h["id"] in by_id)

    green = tmp_path / "green.png"
    Image.new("RGB", (64, 48), (0, 255, 0)).save(green)
    odd = runner.invoke(cli, ["query", str(green), "-k", "3", "--index", str(index), "--json"])
    answer = json.loads(odd.stdout)
    assert answer["results"][0]["band"] == "distant"
    assert any("even the nearest work is distant in content" in n for n in answer["notes"])
    table = runner.invoke(cli, ["query", str(green), "-k", "3", "--index", str(index)])
    assert "band" in table.stdout.splitlines()[0] and "distant" in table.stdout
    assert "even the nearest work is distant" in table.stderr
