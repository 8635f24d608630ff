"""Issue 26 item 7: money controls in the window. The budget editor offers "downgrade" (what the 429
tells people to use) for every backend, not only local ones; Spend and Requests export as CSV with
exact numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.gui.conftest import ask, wait_for


def test_the_budget_editor_offers_downgrade_to_any_backend_and_saves_it(start_app, config_file, qtbot) -> None:
    r = start_app(config_file)  # alpha (Anthropic) and beta (OpenAI-compatible), neither local
    r.window.show_page("settings")
    page = r.window.page("settings")
    page._add_budget_row(None)
    row = page.budget_table.rowCount() - 1
    action = page.budget_table.cellWidget(row, 4)
    offered = [action.itemData(i) for i in range(action.count())]
    assert "downgrade:beta,gpt-fake" in offered and "downgrade:alpha" in offered
    action.setCurrentIndex(offered.index("downgrade:beta,gpt-fake"))
    assert action.currentText() == "Downgrade to beta · gpt-fake"
    page.save_budgets()
    assert 'action = "downgrade:beta,gpt-fake"' in config_file.read_text(encoding="utf-8")


def test_requests_and_spend_export_as_csv(start_app, config_file, qtbot, tmp_path: Path) -> None:
    r = start_app(config_file)
    ask(r, qtbot, "hi", session="sess-one")
    ask(r, qtbot, "hello", session="sess-two", stream=False)
    r.window.show_page("requests")
    req = r.window.page("requests")
    wait_for(qtbot, lambda: len(req.shown_records()) >= 2)
    out = tmp_path / "requests.csv"
    req.export_csv(str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert {x["session_id"] for x in rows} == {"sess-one", "sess-two"}
    one = next(x for x in rows if x["session_id"] == "sess-one")
    assert one["backend"] == "alpha" and one["status"] == "200"
    assert float(one["cost_usd"]) == next(x for x in req.shown_records() if x.session_id == "sess-one").cost_usd
    assert "T" in one["started_at"]  # ISO 8601
    r.window.show_page("spend")
    spend = r.window.page("spend")
    wait_for(qtbot, lambda: spend.data is not None and spend.data.series)
    out = tmp_path / "spend.csv"
    assert spend.export_csv(str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows and set(rows[0]) == {"bucket_start", "backend", "cost_usd", "tokens", "requests"}
    assert sum(int(x["requests"]) for x in rows) >= 2
    assert abs(sum(float(x["cost_usd"]) for x in rows) - spend.data.total_cost) < 1e-12


def test_prices_are_set_in_the_app_and_price_the_next_request(start_app, config_file, qtbot) -> None:
    from app.views.prices import PricesDialog

    r = start_app(config_file)
    r.window.show_page("settings")
    dialog = PricesDialog(r.bridge.settings, r.window)
    models = [dialog.table.item(i, 0).text() for i in range(dialog.table.rowCount())]
    assert models == ["claude-fake", "gpt-fake"]  # the config's [[prices]]
    dialog.table.item(0, 2).setText("not a number")
    dialog.save()
    assert "Input $/MTok must be a number" in dialog.problem.text()
    dialog.table.item(0, 2).setText("30")  # ten times dearer input
    dialog.table.item(0, 3).setText("150")
    dialog.save()
    assert dialog.result() == dialog.DialogCode.Accepted
    text = config_file.read_text(encoding="utf-8")
    assert "input = 30.0" in text and "output = 150.0" in text
    msg = ask(r, qtbot, "hi", session="sess-priced", stream=False)
    want = (msg.usage.input_tokens * 30 + msg.usage.output_tokens * 150) / 1e6
    wait_for(qtbot, lambda: (s := r.bridge.live.session("sess-priced")) is not None
             and s.requests == 1 and not s.in_flight)  # finished in the live view, not only started
    assert abs(r.bridge.live.session("sess-priced").cost_usd - want) < 1e-12
