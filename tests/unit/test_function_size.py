"""No function over 80 lines anywhere in app/ but the views, where a page's ``__init__`` lays out its widgets
(docs/architecture.md):
a reader follows each in one screen, and a long one is a sign that it does several jobs."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
EXEMPT = ("views",)  # Qt pages: building a page's widgets in one __init__ reads top to bottom like the page
MAX_LINES = 80


def long_functions(path: Path, root: Path = APP.parent) -> list[str]:
    """``file:line name (N lines)`` for each function or method in ``path`` longer than
    ``MAX_LINES``, counted from its ``def`` to its last line (a nested function counts in its
    parent, and alone)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_is_longer_than_80_lines() -> None:
    files = sorted(f for f in APP.rglob("*.py") if f.relative_to(APP).parts[0] not in EXEMPT)
    assert len(files) > 150
    assert [hit for f in files for hit in long_functions(f)] == []


def test_the_check_sees_a_long_function_and_a_long_method(tmp_path: Path) -> None:
    def body(n: int, indent: str) -> str:
        return "\n".join(f"{indent}x{i} = {i}" for i in range(n))

    src = (f"def long():\n{body(MAX_LINES, '    ')}\n\n\ndef fine():\n{body(MAX_LINES - 1, '    ')}\n\n\n"
           f"class C:\n    async def method(self):\n{body(MAX_LINES, '        ')}\n")
    path = tmp_path / "m.py"
    path.write_text(src, encoding="utf-8")
    assert long_functions(path, tmp_path) == [f"m.py:1 long ({MAX_LINES + 1} lines)",
                                              f"m.py:{2 * MAX_LINES + 7} method ({MAX_LINES + 1} lines)"]
