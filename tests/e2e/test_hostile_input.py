"""Small hostile inputs against a real ``patchbay serve`` (and ``patchbay check``):

- a newline in a model name must not start a line of its own in the log file or on stderr;
- non-ASCII in ``anthropic-version``/``anthropic-beta`` is the client's mistake (400 with a
  sentence), not Patchbay's own 500 "this is a bug";
- ``[ledger] url`` with ``?password=`` is refused by ``patchbay check``: the config never holds a
  secret.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO, GatewayProcess, _base_env
from tests.fakes.upstreams import FakeUpstream, ReceivedRequest, Response, anthropic_error

FORGED = "2026-01-01 00:00:00,000 INFO patchbay.gateway: FORGED by the client"


def not_found(req: ReceivedRequest) -> Response:
    """Anthropic's 404 for a model it does not serve, quoting the name as sent."""
    return anthropic_error(404, "not_found_error", f"model: {(req.json or {}).get('model', '')}")


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(not_found, wire="anthropic") as up:
        yield up


def post(gw: GatewayProcess, model: str, **headers: bytes) -> httpx.Response:
    h: dict[str, str | bytes] = {"x-api-key": gw.token, "anthropic-version": "2023-06-01"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.post(gw.url + "/v1/messages", headers=h, timeout=30,
                      json={"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})


def test_a_newline_in_a_model_name_cannot_forge_a_log_line(
        upstream: FakeUpstream, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway("anthropic", upstream.url)
    for model in (f"fake,evil\n{FORGED}", f"fake,evil\r\n{FORGED}", f"fake,evil\u2028{FORGED}"):
        r = post(gw, model)
        assert r.status_code == 404  # the upstream's answer, passed on
    log_file = gw.home / "logs" / "patchbay.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and log_file.read_text().count("FORGED") < 3:
        time.sleep(0.1)
    gw.stop()
    for where, text in (("patchbay.log", log_file.read_text()), ("stderr", gw.log())):
        assert text.count("FORGED") >= 3, f"{where} lost the requests:\n{text}"
        lines = text.splitlines()  # splitlines also breaks at \u2028, as a log viewer may
        assert not [ln for ln in lines if ln.startswith("2026-01-01") or ln.startswith("FORGED")], \
            f"{where} holds a forged line:\n{text}"
        assert f"evil\\n{FORGED}" in text and f"evil\\r\\n{FORGED}" in text and f"evil\\u2028{FORGED}" in text


@pytest.mark.parametrize("header, value", [
    ("anthropic-version", "2023-06-01\u00e9".encode()),
    ("anthropic-beta", "claude-code-20250219,caf\u00e9".encode()),
])
def test_non_ascii_in_forwarded_headers_is_the_clients_400(
        upstream: FakeUpstream, start_gateway: Callable[..., GatewayProcess], header: str, value: bytes) -> None:
    gw = start_gateway("anthropic", upstream.url, model="claude-sonnet-4-5")
    r = post(gw, "claude-sonnet-4-5", **{header: value})
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert f"The {header} header holds characters other than printable ASCII" in err["error"]["message"]
    assert "bug in Patchbay" not in r.text
    assert upstream.requests == []


def test_check_refuses_a_password_in_the_ledger_url(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    env = _base_env() | {"PATCHBAY_HOME": str(tmp_path / "home")}
    backend = ('[[backends]]\nid = "a"\nkind = "anthropic"\nbase_url = "https://api.anthropic.com"\n'
               'auth = "client"\n')
    for url in ("postgresql://patchbay@db.internal:5432/patchbay?password=hunter2",
                "postgresql://patchbay@db.internal/patchbay?sslmode=require&PassWord=hunter2",
                "postgres://db.internal/patchbay?sslpassword=hunter2"):
        cfg.write_text(backend + f'\n[ledger]\nurl = "{url}"\n')
        p = subprocess.run([sys.executable, "-m", "app", "check", "--config", str(cfg)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0, p.stdout
        assert "ledger.url holds a password" in p.stderr and "PGPASSWORD" in p.stderr and ".pgpass" in p.stderr \
            and "env:" in p.stderr, p.stderr
        assert "hunter2" not in p.stderr + p.stdout
    cfg.write_text(backend + '\n[ledger]\nurl = "postgresql://patchbay@db.internal/patchbay?sslmode=require"\n')
    ok = subprocess.run([sys.executable, "-m", "app", "check", "--config", str(cfg)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
