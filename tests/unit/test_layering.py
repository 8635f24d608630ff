"""The rules that hold everywhere (docs/architecture.md): no Qt under app/proxy or app/services,
the gateway imports no service, and views reach the engine only through the bridge's parts
(never its ``engine``), and no page imports another page."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
QT = ("PySide6", "shiboken6", "qasync", "pyqtgraph", "PyQt5", "PyQt6")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_packages_never_import_qt():
    files = list((APP / "proxy").rglob("*.py")) + list((APP / "services").rglob("*.py")) + [
        APP / "core.py", APP / "config.py", APP / "events.py"] + list((APP / "team").rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(APP)): sorted(n for n in _imports(f) if n.split(".")[0] in QT)
                 for f in files}
    assert {f: n for f, n in offenders.items() if n} == {}


def test_views_reach_the_engine_only_through_the_bridge():
    views = list((APP / "views").rglob("*.py"))
    bad = {}
    for f in views:
        hits = sorted(n for n in _imports(f) if n.startswith(("app.proxy", "app.services", "app.core")))
        if hits:
            bad[str(f.relative_to(APP))] = hits
    assert bad == {}


def _attributes(path: Path) -> set[str]:
    return {n.attr for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Attribute)}


def test_no_view_reads_the_engine():
    views = list((APP / "views").rglob("*.py"))
    assert len(views) > 10
    assert sorted(str(f.relative_to(APP)) for f in views if "engine" in _attributes(f)) == []


def test_the_gateway_imports_no_service():
    files = list((APP / "proxy").rglob("*.py"))
    assert len(files) > 10
    bad = {str(f.relative_to(APP)): sorted(n for n in _imports(f) if n.startswith("app.services")) for f in files}
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
