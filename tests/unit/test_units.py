"""The one money formatter (app/units.py): every sum the app and the command line print."""

from __future__ import annotations

import pytest

from app.units import fmt_money, fmt_money_exact, plural

CASES = [  # value, full, short (a cramped label), exact (the tooltip)
    (0.0, "$0.00", "$0.00", "$0.00"),
    (0.0021, "$0.0021", "<$0.01", "$0.0021"),
    (0.00034, "$0.00034", "<$0.01", "$0.00034"),
    (0.000105, "$0.00011", "<$0.01", "$0.000105"),
    (0.004, "$0.004", "<$0.01", "$0.004"),
    (0.0049, "$0.0049", "<$0.01", "$0.0049"),
    (0.00999, "$0.01", "$0.01", "$0.00999"),
    (0.02825, "$0.028", "$0.03", "$0.02825"),
    (0.05, "$0.05", "$0.05", "$0.05"),
    (0.42, "$0.42", "$0.42", "$0.42"),
    (0.9949, "$0.99", "$0.99", "$0.9949"),
    (0.99999, "$1.00", "$1.00", "$0.99999"),
    (1.23, "$1.23", "$1.23", "$1.23"),
    (12.3, "$12.30", "$12.30", "$12.30"),
    (99.999, "$100", "$100", "$99.999"),
    (123.45, "$123", "$123", "$123.45"),
    (1234.0, "$1,234", "$1,234", "$1,234.00"),
    (1234567.891, "$1,234,568", "$1,234,568", "$1,234,567.891"),
    (-0.0021, "-$0.0021", "-<$0.01", "-$0.0021"),
    (-12.3, "-$12.30", "-$12.30", "-$12.30"),
    (1e-9, "<$0.00000001", "<$0.01", "<$0.00000001"),
]


@pytest.mark.parametrize(("value", "full", "short", "exact"), CASES)
def test_money_reads_right(value: float, full: str, short: str, exact: str) -> None:
    assert fmt_money(value) == full
    assert fmt_money(value, short=True) == short
    assert fmt_money_exact(value) == exact


def test_a_column_of_small_real_costs_never_shows_zero() -> None:
    for cost in (0.0000012, 0.00001, 0.0003, 0.0021, 0.0099):
        text = fmt_money(cost)
        assert text.strip("$0.") != "" and float(text.lstrip("$")) == pytest.approx(cost, rel=0.05)


def test_not_a_number_is_a_dash() -> None:
    assert fmt_money(float("nan")) == "—"


def test_plural_says_1_model_not_1_models() -> None:
    assert [plural(n, "model") for n in (0, 1, 2, 1500)] == ["0 models", "1 model", "2 models", "1,500 models"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"
