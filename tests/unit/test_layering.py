"""The two rules that hold everywhere (DESIGN.md): no Qt under app/proxy or app/services, and
views never reach the gateway or the services except through app/bridge.py."""

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
