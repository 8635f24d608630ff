"""Backend colours (app/views/colors.py): distinct, stable across restarts, readable light and dark."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

from app.views.colors import PALETTE, assign_colors, color_for, preferred_slot

REPO = Path(__file__).resolve().parents[2]


def _rgb(hex_color: str) -> tuple[float, float, float]:
    return tuple(int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def _lin(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(hex_color: str) -> float:
    r, g, b = (_lin(c) for c in _rgb(hex_color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def lab(hex_color: str) -> tuple[float, float, float]:
    r, g, b = (_lin(c) for c in _rgb(hex_color))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_the_palette_reads_on_light_and_dark_and_its_colours_differ() -> None:
    for c in PALETTE:
        assert contrast(c, "#ffffff") >= 3.0, c  # graphics on a light window (WCAG 1.4.11)
        assert contrast(c, "#1e1e1e") >= 3.0, c  # and on a dark one
    closest = min(math.dist(lab(a), lab(b)) for a, b in itertools.combinations(PALETTE, 2))
    assert closest >= 20


def test_n_backends_get_n_distinct_colours() -> None:
    for n in (2, 5, 11, 12, 20):
        ids = [f"backend-{i}" for i in range(n)]
        colours = assign_colors(ids)
        assert sorted(colours) == sorted(ids)
        assert len(set(colours.values())) == n
        for c in colours.values():
            assert contrast(c, "#ffffff") >= 2.5 and contrast(c, "#1e1e1e") >= 2.5, c


def test_ids_that_hash_to_the_same_slot_are_resolved_the_same_way_every_time() -> None:
    by_slot: dict[int, list[str]] = {}
    for i in range(200):
        by_slot.setdefault(preferred_slot(f"b{i}"), []).append(f"b{i}")
    a, b = next(v for v in by_slot.values() if len(v) >= 2)[:2]
    first = assign_colors([a, b])
    assert first[a] != first[b]
    assert assign_colors([b, a]) == first  # the config's order does not matter
    assert first[a] == PALETTE[preferred_slot(a)]  # the first by id keeps its own colour


def test_the_issue_case_brand_names_that_used_to_share_a_colour() -> None:
    ids = ["anthropic", "openrouter", "deepseek", "ollama", "groq", "together", "vllm", "lmstudio"]
    colours = assign_colors(ids)
    assert len(set(colours.values())) == len(ids)
    # not merely different hex codes: openrouter and deepseek were two near-identical blues
    assert min(math.dist(lab(a), lab(b)) for a, b in itertools.combinations(colours.values(), 2)) >= 20
    assert colours["anthropic"] == PALETTE[0] and colours["ollama"] == PALETTE[10]
    assert assign_colors(["Anthropic-Work", "anthropic"]).keys() == {"Anthropic-Work", "anthropic"}


def test_the_same_colours_in_a_new_process() -> None:
    ids = ["anthropic", "openrouter", "deepseek", "ollama", "groq", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"]
    here = assign_colors(ids)
    code = f"import json; from app.views.colors import assign_colors; print(json.dumps(assign_colors({ids!r})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout
    import json

    assert json.loads(out) == here


def test_a_backend_no_longer_configured_still_gets_its_own_colour() -> None:
    assigned = assign_colors(["a", "b"])
    assert color_for("a", assigned) == assigned["a"]
    assert color_for("gone", assigned) == PALETTE[preferred_slot("gone")]
