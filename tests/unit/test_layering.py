"""The rules that hold everywhere (docs/architecture.md): no Qt below the bridge, the gateway imports no
service, views reach the engine only through the bridge's parts (never its ``engine``), no page imports another
page, no import circle between modules, and the packages stand in layers: no package imports one above it."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
QT = ("PySide6", "shiboken6", "qasync", "pyqtgraph", "PyQt5", "PyQt6")

# Packages from the ground up: each may import those before it, never one after it (``__main__`` and ``gui`` are
# the entry points on top). Modules directly in app/ (events, errors, paths, units, core) have their own place.
LAYERS = ("paths", "units", "errors", "events", "logs", "config", "catalog", "host", "ledger", "team", "proxy",
          "budgets", "admin", "claude", "desktop", "core", "bridge", "views", "cli", "gui", "__main__")
# Below the bridge nothing imports Qt; the one exception holds the desktop app's single-instance socket.
NO_QT = ("proxy", "config", "catalog", "host", "ledger", "team", "budgets", "claude", "desktop", "logs")
QT_ALLOWED = {"desktop/single_instance.py"}
# What the gateway may never import: the services built on top of it.
ABOVE_THE_GATEWAY = ("app.budgets", "app.claude", "app.host", "app.desktop", "app.ledger", "app.cli", "app.core",
                     "app.bridge", "app.views", "app.gui")


def _modules() -> dict[str, Path]:
    out = {}
    for f in APP.rglob("*.py"):
        parts = list(f.relative_to(APP.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (``from app.x import y`` names
    ``app.x.y`` where that is a module, else ``app.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _app_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    return {n for n in _imports(path) if n in modules}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "app"


def test_core_packages_never_import_qt():
    files = [f for d in NO_QT for f in (APP / d).rglob("*.py")] + [
        APP / "core.py", APP / "events.py", APP / "errors.py", APP / "paths.py", APP / "units.py"]
    assert len(files) > 100
    offenders = {str(f.relative_to(APP)): sorted(n for n in _imports(f) if n.split(".")[0] in QT)
                 for f in files if str(f.relative_to(APP)) not in QT_ALLOWED}
    assert {f: n for f, n in offenders.items() if n} == {}


def test_views_reach_the_engine_only_through_the_bridge():
    views = list((APP / "views").rglob("*.py"))
    engine = ("app.proxy", "app.ledger", "app.budgets", "app.catalog", "app.host", "app.team", "app.desktop",
              "app.cli", "app.core")
    bad = {}
    for f in views:
        hits = sorted(n for n in _imports(f) if n.startswith(engine))
        if hits:
            bad[str(f.relative_to(APP))] = hits
    assert bad == {}


def test_no_import_circle_between_modules():
    """Tarjan's strongly connected components over every app module's imports (function-level ones too: a
    circle hidden inside a function is still a circle a reader has to untie)."""
    modules = _modules()
    graph = {m: _app_imports(f, modules) - {m} for m, f in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w.endswith(".__main__"):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # a package's face importing its own modules is no circle a reader meets
            comp = [c for c in comp if not (modules[c].name == "__init__.py" and all(
                x.startswith(c + ".") or x == c for x in comp))]
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in graph:
        if m not in index:
            visit(m)
    assert circles == []


def test_packages_stand_in_layers():
    """No package imports one above it in ``LAYERS``: the arrows run down the house."""
    modules = _modules()
    rank = {name: i for i, name in enumerate(LAYERS)}
    up = {}
    for m, f in modules.items():
        here = _layer(m)
        if here not in rank:
            continue
        for n in _app_imports(f, modules):
            there = _layer(n)
            if there in rank and rank[there] > rank[here]:
                up.setdefault(m, []).append(n)
    assert {k: sorted(v) for k, v in up.items()} == {}


def test_every_package_and_loose_module_has_a_layer():
    """A new package gets a place in ``LAYERS`` (and a line in docs/architecture.md)."""
    found = {p.name for p in APP.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {
        p.stem for p in APP.glob("*.py") if p.stem != "__init__"}
    assert found - set(LAYERS) - {"app"} == set()


def test_few_loose_modules():
    """No folder is a drawer: at most eight modules directly in app/, and a prefix shared by several files
    becomes a package (``ledger_*.py`` became ``app/ledger/``)."""
    loose = sorted(p.name for p in APP.glob("*.py"))
    assert len(loose) <= 8, loose
    for folder in [APP, *(p for p in APP.rglob("*") if p.is_dir() and (p / "__init__.py").exists())]:
        stems = [p.stem for p in folder.glob("*.py") if "_" in p.stem]
        prefixes = [s.split("_")[0] for s in stems]
        crowded = {p for p in prefixes if prefixes.count(p) >= 4}
        assert crowded == set(), (folder, crowded)


def _attributes(path: Path) -> set[str]:
    return {n.attr for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Attribute)}


def test_no_view_reads_the_engine():
    views = list((APP / "views").rglob("*.py"))
    assert len(views) > 10
    assert sorted(str(f.relative_to(APP)) for f in views if "engine" in _attributes(f)) == []


def test_the_gateway_imports_no_service():
    files = list((APP / "proxy").rglob("*.py"))
    assert len(files) > 10
    bad = {str(f.relative_to(APP)): sorted(n for n in _imports(f) if n.startswith(ABOVE_THE_GATEWAY)) for f in files}
    assert {f: n for f, n in bad.items() if n} == {}


def test_no_page_imports_another_page():
    """Shared widgets live in views/widgets.py, views/plot.py, views/models.py; pages import those."""
    pages = {"dashboard", "backends", "spend", "requests", "monitor", "settings"}
    bad = {}
    for f in (APP / "views").rglob("*.py"):
        if f.stem == "main_window":  # builds the pages
            continue
        hits = sorted(n for n in _imports(f) if n.startswith("app.views.") and n.split(".")[2] in pages)
        if hits:
            bad[str(f.relative_to(APP))] = hits
    assert bad == {}


def test_the_bridge_parts_stay_small():
    """One feature, one file: each part of app/bridge/ stays a file a newcomer reads in one go."""
    sizes = {f.name: len(f.read_text(encoding="utf-8").splitlines()) for f in (APP / "bridge").glob("*.py")}
    assert {"main.py", "live.py", "backends.py", "usage.py", "monitor.py", "settings.py"} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > 320} == {}
