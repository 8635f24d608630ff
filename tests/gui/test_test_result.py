"""Issue 26 item 11: the Backends page's Test result says a backend's error readably: the message out of
a JSON or HTML body, and a long URL or id wraps instead of widening the page past 900 px."""

from __future__ import annotations

from PySide6.QtWidgets import QScrollArea

from tests.fakes.upstreams import JSONResponse, Response, _compile
from tests.gui.conftest import wait_for

LONG = "https://platform.example.com/docs/errors/authentication/invalid-api-key-provided-see-dashboard-settings-keys"
PROXY_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
              b"</h1></center><hr><center>nginx/1.25.3</center></body></html>")


class HTMLResponse(Response):
    """What a reverse proxy in front of a provider answers when the provider is down."""

    def __init__(self, body: bytes, status: int) -> None:
        self.plan = _compile(status, {"content-type": "text/html"}, [body], split="one", framing="length",
                             delay_s=0.0, ttfb_s=0.0)


def _test(r, qtbot, row: int) -> str:  # type: ignore[no-untyped-def]
    page = r.window.page("backends")
    r.window.show_page("backends")
    page.list.setCurrentRow(row)
    page.run_test()
    wait_for(qtbot, lambda: "Failed" in page.test_result.text())
    return str(page.test_result.text())


def test_a_long_error_wraps_at_the_minimum_size(start_app, config_file, upstreams, qtbot) -> None:
    _a, b = upstreams
    b.enqueue(JSONResponse({"error": {"message": f"Incorrect API key provided: sk-abc***xyz. See {LONG}",
                                      "type": "invalid_request_error", "code": "invalid_api_key"}}, 401))
    r = start_app(config_file)
    r.window.resize(900, 600)
    text = _test(r, qtbot, 1)
    page = r.window.page("backends")
    assert "HTTP 401: Incorrect API key provided" in text
    assert LONG in page.test_result.toolTip()  # whole, for copying
    assert page.test_result.minimumSizeHint().width() < 320  # the URL breaks; the label does not set the width
    qtbot.wait(50)
    for scroll in page.findChildren(QScrollArea):
        assert scroll.horizontalScrollBar().maximum() == 0


def test_an_html_error_page_is_said_by_its_title(start_app, config_file, upstreams, qtbot) -> None:
    _a, b = upstreams
    b.enqueue(HTMLResponse(PROXY_PAGE, 502))
    r = start_app(config_file)
    text = _test(r, qtbot, 1)
    assert "502 Bad Gateway" in text and "&lt;" not in text and "<center>" not in text and "DOCTYPE" not in text
