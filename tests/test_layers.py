"""The shape of the code: SQL lives behind the opened index, not in the shells around it.

The command line and the report modules ask the core (`artsearch.index`, `artsearch.catalogue`,
`artsearch.cluster`, `artsearch.classify`, `artsearch.query`) and never the database layer.
Imports under `if TYPE_CHECKING:` are for annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "artsearch"
SHELLS = sorted([*(PACKAGE / "cli").glob("*.py"), *(PACKAGE / "reports").glob("*.py")])
FORBIDDEN = ("sqlalchemy", "artsearch.store")


def runtime_imports(path: Path) -> list[str]:
    """Modules imported anywhere in the file (function bodies too), except for typing."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return found


@pytest.mark.parametrize("path", SHELLS, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_shells_do_not_touch_the_database_layer(path: Path) -> None:
    bad = [m for m in runtime_imports(path) if m.split(".")[0] == "sqlalchemy"
           or m == "artsearch.store" or m.startswith("artsearch.store.")]
    assert bad == [], f"{path.name} imports {bad}; ask the core instead"


def test_no_module_is_a_god_module() -> None:
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 600} == {}
