"""Accessibility (issue 23): axe-core (vendored, tests/vendor/axe-core) finds no violation on
any page of the app or its reports, in Chromium, wide and on a phone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.browser import open_url
from tests.helpers import AXE, client, violations


def test_the_vendored_axe_is_the_one_its_readme_names() -> None:
    digest = hashlib.sha256(AXE.read_bytes()).hexdigest()
    assert digest in (AXE.parent / "README.md").read_text()


@pytest.mark.browser
def test_no_page_has_an_accessibility_violation(served: tuple[Path, Path],
                                                 live_server: str) -> None:
    from tests.helpers import invoke

    _, index = served
    assert invoke("cluster", "--index", str(index), "-k", "2", "--restarts", "0")[0] == 0
    code, out, err = invoke("train", "--index", str(index), "--label", "genre",
                            "--min-per-class", "3")
    assert code == 0, out + err
    c = client(index)
    works = c.get("/api/works").json()["works"]
    a, b = works[0]["id"], works[1]["id"]
    pages = ["/", f"/work/{a}", f"/work/{a}?blend=40", "/clusters",
             "/clusters/1/index.html", f"/explain/{a}/{b}?space=content", "/work/999999",
             "/?more=artist&where=artist%3DAnn", "/models/genre-probe-content/index.html"]
    found: dict[str, list[str]] = {}
    with open_url(live_server + "/", live_server) as (page, log):
        for size in ({"width": 1280, "height": 800}, {"width": 390, "height": 844}):
            page.set_viewport_size(size)
            for url in pages:
                page.goto(live_server + url, wait_until="load")
                bad = violations(page)
                if bad:
                    found[f"{url} @ {size['width']}"] = bad
    assert found == {}
