"""The shape of the code, derived from its imports: layers, lowest first, that import only
downward; no import circles; SQL only in the index layer; no god modules.

Every import counts, those under `if TYPE_CHECKING:` and inside functions too: a circle of
annotations is still a circle a reader must walk. Importing `a.b.c` also runs the package
`a.b`'s `__init__`, so it counts as importing `a.b` as well (unless the importer is inside
`a.b` itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "artsearch"

# The layer table, written once: each module belongs to the first entry naming it or a
# package above it. A module may import its own layer and those below, never above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("artsearch", "artsearch.errors", "artsearch.textsafe", "artsearch.paths",
              "artsearch.progress",
              "artsearch.digest",
              "artsearch.home", "artsearch.metrics", "artsearch.images", "artsearch.rights",
              "artsearch.pooling")),
    ("embed", ("artsearch.backbones", "artsearch.extract")),
    ("index", ("artsearch.index",)),
    ("features", ("artsearch.indexer", "artsearch.distributed", "artsearch.query",
                  "artsearch.bands", "artsearch.audit", "artsearch.cluster", "artsearch.classify",
                  "artsearch.learn", "artsearch.regions", "artsearch.duplicates",
                  "artsearch.explain", "artsearch.stylize",
                  "artsearch.layers", "artsearch.exchange", "artsearch.iiif",
                  "artsearch.provenance")),
    ("shells", ("artsearch.cli", "artsearch.web", "artsearch.reports", "artsearch.__main__")),
)
SQL_HOME = "artsearch.index"  # the only package that may import sqlalchemy


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_names(path: Path) -> set[str]:
    """Every module the file names in an import, relative imports resolved."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def dependencies(name: str) -> set[str]:
    """The artsearch modules `name` makes Python run: those it imports and their packages."""
    deps: set[str] = set()
    for target in imported_names(MODULES[name]):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if not target.startswith("artsearch"):
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step in MODULES and not in_package(name, step):
                deps.add(step)
    return deps


GRAPH = {name: dependencies(name) for name in MODULES}


def layer_of(name: str) -> int:
    best: tuple[int, int] | None = None  # (length of the matching entry, layer)
    for level, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if in_package(name, entry) and (
                    best is None or len(entry) > best[0]):
                best = (len(entry), level)
    assert best is not None, f"{name} is in no layer: add it to LAYERS in {__file__}"
    return best[1]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    assert circles(GRAPH) == []


def test_every_module_is_in_a_layer_and_imports_only_downward() -> None:
    upward = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
                    for m, deps in GRAPH.items() for d in deps if layer_of(d) > layer_of(m))
    assert upward == []


def test_sql_lives_only_in_the_index_layer() -> None:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    outside = sorted(p.relative_to(ROOT).as_posix() for p in files
                     if not in_package(module_name(p), SQL_HOME)
                     and any(n == "sqlalchemy" or n.startswith("sqlalchemy.")
                             for n in imported_names(p)))
    assert outside == [], f"{outside} import sqlalchemy; ask a function of artsearch.index"


def test_no_module_is_a_god_module() -> None:
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 600} == {}


def test_no_test_module_imports_another() -> None:
    tests = Path(__file__).resolve().parent
    crossing = sorted(f"{p.name} imports {n}" for p in tests.glob("*.py")
                      for n in imported_names(p)
                      if n.startswith("tests.test_") or n.startswith("tests.conftest"))
    assert crossing == [], "share through tests/helpers.py (functions) or conftest.py (fixtures)"


def private_crossings(path: Path, home: str) -> list[str]:
    """Private names (a leading underscore) `path` imports from outside its own package
    `home`: `from artsearch.x import _name`, or a private module `artsearch.x._mod`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                "artsearch"):
            continue
        module = node.module or ""
        if in_package(module, home):
            continue
        parts = module.split(".")
        found += [f"{module} ({p})" for p in parts if p.startswith("_") and p != "__main__"]
        found += [f"{module}.{a.name}" for a in node.names
                  if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_or_benchmark_borrows_another_packages_private_names() -> None:
    borrowed = {}
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        name = module_name(path)
        # A module's own package may share its private parts; a top-level module has none.
        home = name.rpartition(".")[0] if path.name != "__init__.py" else name
        if home == "artsearch" or not home.startswith("artsearch"):
            home = "\0"
        if crossings := private_crossings(path, home):
            borrowed[path.relative_to(ROOT).as_posix()] = crossings
    assert borrowed == {}, "make what others need public where it belongs"
