"""Chart axes (app/views/axes.py): dollars from $0 that fit the data, tokens in k/M, shares in %."""

from __future__ import annotations

import pytest

from app.views.axes import (
    MoneyAxis,
    PercentAxis,
    TokenAxis,
    count_label,
    money_label,
    nice_step,
    nice_top,
    percent_label,
)
from tests.fakes.chunks import anthropic_text_events
from tests.fakes.upstreams import AnthropicStream
from tests.gui.conftest import ask, wait_for


def drawn(plot, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The tick labels the axis actually paints (pyqtgraph drops those that do not fit), checked to
    lie inside the plot widget: a label cut in half by the widget's edge does not count as shown."""
    from PySide6.QtGui import QImage, QPainter

    plot.grab()
    axis = plot.getPlotItem().getAxis(name)
    image = QImage(4, 4, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)[2]
    finally:
        painter.end()
    widget = plot.rect()
    for rect, _flags, text in specs:
        box = plot.mapFromScene(axis.mapRectToScene(rect)).boundingRect()
        assert widget.contains(box), (text, box, widget)
    return [text for _rect, _flags, text in specs]


def strings(axis, lo: float, hi: float) -> list[str]:  # type: ignore[no-untyped-def]
    """What the axis writes for a view from ``lo`` to ``hi``: its major ticks' labels."""
    levels = axis.tickValues(lo, hi, 300)
    assert len(levels) == 1  # major ticks only: no unlabelled minor grid of odd values
    step, values = levels[0]
    return axis.tickStrings(values, 1.0, step)


@pytest.mark.parametrize(("span", "step"), [(0.0011, 0.0005), (0.0009, 0.00025), (1.0, 0.25), (7, 2.0),
                                            (120, 50.0), (1_000_000, 250_000.0), (3e6, 1e6)])
def test_steps_are_round(span: float, step: float) -> None:
    assert nice_step(span) == pytest.approx(step)


@pytest.mark.parametrize(("peak", "top"), [(0.0011, 0.0015), (0.006, 0.008), (0.42, 0.6), (3.1, 4.0), (97, 150.0),
                                           (1_200_000, 1_500_000.0), (0, 1.0)])
def test_the_top_fits_the_data(peak: float, top: float) -> None:
    assert nice_top(peak) == pytest.approx(top)
    assert nice_top(peak) >= peak


def test_money_ticks_start_at_a_labelled_zero(qapp) -> None:
    axis = MoneyAxis("left")
    # the issue: $0.0011 of data drew an axis 0-0.01 with no zero label
    assert strings(axis, 0, nice_top(0.0011)) == ["$0", "$0.0005", "$0.001", "$0.0015"]
    assert strings(axis, 0, 2.0) == ["$0", "$0.50", "$1", "$1.50", "$2"]
    assert strings(axis, 0, 4000) == ["$0", "$1,000", "$2,000", "$3,000", "$4,000"]
    assert strings(axis, -0.1, 0.04) == ["$0", "$0.01", "$0.02", "$0.03", "$0.04"]  # never below zero


def test_token_ticks_read_k_and_m_never_1e06(qapp) -> None:
    axis = TokenAxis("left")
    assert strings(axis, 0, 3_000_000) == ["0", "1M", "2M", "3M"]
    assert strings(axis, 0, 1_000_000) == ["0", "250k", "500k", "750k", "1M"]
    assert strings(axis, 0, 40) == ["0", "10", "20", "30", "40"]
    assert all("e+" not in count_label(v) for v in (1e6, 2.5e7, 1.5e9))
    assert [count_label(v) for v in (0, 500, 1500, 20_000, 2_500_000)] == ["0", "500", "1.5k", "20k", "2.5M"]


def test_percent_ticks_for_a_budget_share_and_a_utilisation(qapp) -> None:
    # the budget plot runs to 125 % to show an overrun; the scale itself ends at the limit
    assert strings(PercentAxis("bottom", fraction=True), 0, 1.25) == ["0 %", "25 %", "50 %", "75 %", "100 %"]
    assert strings(PercentAxis("left"), 0, 100) == ["0 %", "25 %", "50 %", "75 %", "100 %"]
    assert percent_label(0.02, fraction=True) == "2 %" and percent_label(0.025, fraction=True) == "2.5 %"


def test_money_labels_use_the_decimals_the_step_needs() -> None:
    assert [money_label(v, 0.0005) for v in (0, 0.0005, 0.001)] == ["$0", "$0.0005", "$0.001"]
    assert money_label(0.25, 0.25) == "$0.25" and money_label(10, 2.5) == "$10"


def test_the_spend_page_cost_axis_fits_a_small_real_cost(start_app, config_file, upstreams, qtbot) -> None:
    alpha, _ = upstreams
    alpha.enqueue(AnthropicStream(anthropic_text_events("ok", usage=(100, 50, 0, 0))))  # $0.0003 + $0.00075
    r = start_app(config_file)
    spend = r.window.page("spend")
    r.window.show_page("spend")
    ask(r, qtbot, "cheap", session="axes")
    wait_for(qtbot, lambda: spend.plot_series().get("alpha"))
    cost = spend.plot_series()["alpha"][0][1]
    assert cost == pytest.approx(0.00105)
    _, (y0, y1) = spend.cost_plot.getPlotItem().vb.viewRange()
    assert y0 == 0 and cost <= y1 <= 2 * cost  # was 0-0.01: the bar a tenth of the plot
    labels = strings(spend.cost_plot.getPlotItem().getAxis("left"), y0, y1)
    assert labels[0] == "$0" and labels[-1] == "$0.0015"
    assert drawn(spend.cost_plot, "left") == ["$0", "$0.0005", "$0.001", "$0.0015"]  # the zero is painted too
    assert drawn(spend.tpm_plot, "left")[0] == "0"
    assert strings(spend.budget_plot.getPlotItem().getAxis("bottom"), 0, 1.25)[-1] == "100 %"
    assert drawn(spend.tpm_plot, "right")[0] == "0"
