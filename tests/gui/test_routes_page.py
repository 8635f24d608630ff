"""The routing rules on the Settings page, and backend health on the Backends page, with the
real gateway and fake upstreams behind them."""

from __future__ import annotations

from app.config import RouteTarget
from app.config.disk import load_config
from tests.fakes import anthropic_error
from tests.gui.conftest import ask, wait_for, write_config


def test_settings_shows_the_routes_and_saves_them_with_the_next_request_following(start_app, patchbay_home,
                                                                                  upstreams, qtbot, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text, *a, **k: warnings.append(text))
    alpha, beta = upstreams
    path = write_config(patchbay_home / "config.toml", alpha.url, beta.url,
                        extra='\n[routes]\nthink = "alpha,claude-fake-large"\nfallback = ["beta"]\n')
    r = start_app(path)
    r.window.show_page("settings")
    box = r.window.page("settings").routes
    assert box.combos["think"].currentText() == "alpha,claude-fake-large"
    assert box.combos["background"].currentData() is None  # not routed
    assert box.fallback.text() == "beta"
    choices = [box.combos["background"].itemText(i) for i in range(box.combos["background"].count())]
    assert {"alpha", "beta", "beta,gpt-fake", "beta,gpt-other"} <= set(choices)

    box.combos["background"].setCurrentIndex(box.combos["background"].findData("beta,gpt-other"))
    box.threshold.setValue(90_000)
    box.fallback.setText("beta,gpt-fake; alpha")
    box.fallback.textEdited.emit(box.fallback.text())
    assert box.dirty and box.save_button.isEnabled()
    assert box.save()
    routes = load_config(path).routes
    assert routes.background == RouteTarget("beta", "gpt-other")
    assert routes.think == RouteTarget("alpha", "claude-fake-large")
    assert routes.long_context_threshold == 90_000
    assert routes.fallback == (RouteTarget("beta", "gpt-fake"), RouteTarget("alpha"))
    assert '[[prices]]\nmodel = "claude-fake"' in path.read_text()  # written with tomlkit, the rest kept
    assert not box.dirty

    # a small tool-less request now goes to beta's gpt-other
    def small() -> None:
        c = r.client()
        c.messages.create(model="claude-fake", max_tokens=100, messages=[{"role": "user", "content": "title?"}])

    from tests.gui.conftest import send_in_thread

    send_in_thread(qtbot, small)
    assert beta.requests[-1].json["model"] == "gpt-other"

    # a target naming no backend is refused with a sentence, and nothing is written
    box.combos["image"].setEditText("nope,x")
    assert not box.save()
    assert "nope,x" in warnings[-1] and "Backends page" in warnings[-1]
    assert load_config(path).routes.image is None


def test_backends_page_shows_the_breaker_state(start_app, patchbay_home, upstreams, qtbot):
    alpha, beta = upstreams
    path = write_config(patchbay_home / "config.toml", alpha.url, beta.url,
                        extra='\n[routes]\nfallback = ["beta"]\nbreaker_failures = 2\nbreaker_cooldown_s = 60\n')
    r = start_app(path)
    r.window.show_page("backends")
    page = r.window.page("backends")
    for _ in range(2):
        alpha.enqueue(anthropic_error(529, "overloaded_error", "Overloaded"))
        ask(r, qtbot, "hello")  # beta answers
    wait_for(qtbot, lambda: any(v.id == "alpha" and v.health == "open" for v in r.bridge.backends.backends()))
    v = next(v for v in r.bridge.backends.backends() if v.id == "alpha")
    assert v.failures == 2 and "Overloaded" in (v.last_error or "") and v.open_until
    wait_for(qtbot, lambda: "skipped until" in page.list.item(0).text())
    assert "Failed 2 times in a row" in page.list.item(0).toolTip()
    assert "Healthy" in page.list.item(1).toolTip()
