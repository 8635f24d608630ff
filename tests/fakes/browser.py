"""A browser as the sign-in tests need one: httpx with a cookie jar that follows redirects, reads the
page's first form and submits it with its non-deny button, sending ``Origin`` as a browser does for a
form POST (GATEWAY-PROTOCOL.md §5: "follow redirects, submit the page's non-deny form")."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self._done:
            self._in, self.action = True, a.get("action", "")
        elif self._in and tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in:
            self._in, self._done = False, True


class Browser:
    def __init__(self) -> None:
        self.http = httpx.Client(follow_redirects=True, timeout=15, trust_env=False)
        self.visited: list[str] = []

    def sign_in(self, url: str, code: str | None = None) -> httpx.Response:
        """Open ``url`` (the verification page), fill the code when the field is empty, continue."""
        page = self.http.get(url)
        page.raise_for_status()
        form = _Form()
        form.feed(page.text)
        assert form.action is not None, page.text
        if code is not None and not form.fields.get("user_code"):
            form.fields["user_code"] = code
        target = urljoin(str(page.url), form.action)
        parts = urlsplit(target)
        resp = self.http.post(target, data=form.fields, headers={"origin": f"{parts.scheme}://{parts.netloc}"})
        self.visited = [str(r.url) for r in resp.history] + [str(resp.url)]
        return resp

    def close(self) -> None:
        self.http.close()
