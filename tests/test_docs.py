"""The documentation says what the code does: the command reference is the CLI's own help,
the module table names every module exactly, every command has its reference entry, and no
link between the pages is broken."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from artsearch.cli import cli
from artsearch.cli.reference import reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_command_reference_is_the_clis_own_help() -> None:
    assert (DOCS / "commands.md").read_text(encoding="utf-8") == reference(), \
        "docs/commands.md is stale: run `make docs`"


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_its_reference_entry(command: str) -> None:
    headings = set(re.findall(r"^## (.+)$", (DOCS / "commands.md").read_text(), re.M))
    assert f"artsearch {command}" in headings  # the whole heading: not "indexes" for "index"
    assert cli.commands[command].help


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (outside code blocks)."""
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


def test_anchors_are_githubs() -> None:
    page = DOCS / "serve.md"
    assert "artsearch-serve" in anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_between_pages_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == []


def named_modules(table: str) -> set[str]:
    """Module paths a table names, each exactly: `artsearch/x.py`, `artsearch/pkg/`, and a
    bare `y.py` or `sub/y.py` read against the row's first path's folder."""
    named: set[str] = set()
    for row in table.splitlines():
        if not row.startswith("| `artsearch/"):
            continue
        cell = row.split("|")[1]
        tokens = re.findall(r"`([^`]+)`", cell)
        first = tokens[0]
        base = first if first.endswith("/") else first.rpartition("/")[0] + "/"
        for token in tokens:
            if token.startswith("artsearch/"):
                named.add(token)
            elif token.endswith((".py", "/")):
                top = "artsearch/" if "/" in token.rstrip("/") else base
                named.add(top + token)
    return named


def test_the_module_table_reader_is_exact() -> None:
    table = "| `artsearch/regions/` (`store.py`), `reports/regions.py` | x |\n" \
            "| `artsearch/explain.py`, `metrics.py` | y |"
    assert named_modules(table) == {"artsearch/regions/", "artsearch/regions/store.py",
                                    "artsearch/reports/regions.py", "artsearch/explain.py",
                                    "artsearch/metrics.py"}


def test_every_module_is_in_the_module_table() -> None:
    named = named_modules((DOCS / "how-it-works.md").read_text(encoding="utf-8"))
    package = ROOT / "artsearch"
    wanted = set()
    for path in sorted(package.iterdir()):
        if path.name.startswith("__"):
            continue
        if path.is_dir() and any(path.glob("*.py")):
            wanted.add(f"artsearch/{path.name}/")
        elif path.suffix == ".py":
            wanted.add(f"artsearch/{path.name}")
    assert sorted(wanted - named) == [], "docs/how-it-works.md's module table lacks these"
