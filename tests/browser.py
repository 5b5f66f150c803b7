"""Headless Chromium for report tests: Debian's /usr/bin/chromium driven by Playwright.

Without Chromium the browser tests skip, unless ARTSEARCH_REQUIRE_BROWSER=1 (set by .ci/run,
which installs it): there a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in (os.environ.get("ARTSEARCH_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    return None


@contextmanager
def open_page(path: Path) -> Iterator[tuple[Any, dict[str, list[str]]]]:
    """The page at `path` (file://), loaded; yields (page, log) where log holds console
    errors, page errors and every request that left the report folder."""
    with open_url(path.resolve().as_uri(), path.parent.resolve().as_uri()) as opened:
        yield opened


@contextmanager
def open_url(url: str, allowed: str, **options: Any
             ) -> Iterator[tuple[Any, dict[str, list[str]]]]:
    """The page at `url`, loaded; requests outside `allowed` (a URL prefix) are blocked and
    logged, with console errors and page errors. `options` go to the new page (a phone:
    viewport, has_touch, is_mobile)."""
    exe = chromium_path()
    if exe is None:
        if os.environ.get("ARTSEARCH_REQUIRE_BROWSER"):
            pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver")
        pytest.skip("Chromium not installed (apt-get install chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api")
    log: dict[str, list[str]] = {"console": [], "errors": [], "outside": []}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=FLAGS, chromium_sandbox=False)
        try:
            page = browser.new_page(**{"viewport": {"width": 1280, "height": 900},
                                       **options})
            page.on("console", lambda m: log["console"].append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: log["errors"].append(str(e)))

            def guard(route: Any) -> None:
                if route.request.url.startswith(allowed):
                    route.continue_()
                else:
                    log["outside"].append(route.request.url)
                    route.abort()

            page.route("**/*", guard)
            page.goto(url, wait_until="load")
            yield page, log
        finally:
            browser.close()


def images_that_failed(page: Any) -> list[str]:
    """Every <img> that did not load (after waiting for the page's load event); an image
    loaded lazily (as it comes into view) is asked for now, and waited for."""
    return page.evaluate("""async () => {
        const all = Array.from(document.images);
        await Promise.all(all.map(im => {
            if (im.loading === "lazy") { im.loading = "eager"; }
            return im.complete ? null : new Promise(done => {
                im.addEventListener("load", done, {once: true});
                im.addEventListener("error", done, {once: true});
                setTimeout(done, 15000);
            });
        }));
        return all.filter(im => !(im.complete && im.naturalWidth > 0)).map(im => im.src);
    }""")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    page.screenshot(path=str(out), full_page=True)
    return out
