"""Issue 26 item 2: on a desktop with no keychain (keyring's fail backend: no Secret Service), API keys go
to a private file (0600, in the data folder, labelled as such) from the Backends page and from
`patchbay key set`, and ``auth = "keyring"`` reads them from there: the config does not change."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import keyring
from keyring.backends import fail

from app.__main__ import main as cli
from tests.gui.conftest import ask, write_config

KEY_FILE = "api-keys.json"


def _keyring_config(home: Path, alpha_url: str, beta_url: str) -> Path:
    cfg = write_config(home / "config.toml", alpha_url, beta_url)
    text = cfg.read_text(encoding="utf-8").replace('auth = "none"', 'auth = "keyring"', 1)  # alpha's
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _private_file(home: Path) -> dict[str, object]:
    path = home / "data" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text(encoding="utf-8"))
    assert "no OS keychain" in str(data["about"]) and "readable only by you" in str(data["about"])
    return data


def test_the_backends_page_stores_a_key_without_a_keychain_and_the_gateway_sends_it(
        start_app, upstreams, patchbay_home, qtbot) -> None:
    keyring.set_keyring(fail.Keyring())  # a bare desktop: no Secret Service
    cfg = _keyring_config(patchbay_home, upstreams[0].url, upstreams[1].url)
    r = start_app(cfg)
    page = r.window.page("backends")
    r.window.show_page("backends")
    page.list.setCurrentRow(0)
    assert page.auth_combo.currentData() == "keyring"
    assert "private file readable only by you" in page.key_state.text()  # said before anything is stored
    page.key_edit.setText("sk-ant-from-the-file")
    page.store_key()
    assert not any(m.key == "apikey" for m in r.window.messages())
    assert "✓ Stored in a private file readable only by you" in page.key_state.text()
    assert _private_file(patchbay_home)["keys"] == {"patchbay/backend:alpha": "sk-ant-from-the-file"}
    assert 'auth = "keyring"' in cfg.read_text(encoding="utf-8")  # the config did not change
    ask(r, qtbot, "hi", stream=False)
    sent = upstreams[0].requests_to("/v1/messages")[-1].headers
    assert sent.get("x-api-key") == "sk-ant-from-the-file"


def test_a_new_backend_without_a_keychain_still_stores_its_key(start_app, config_file, qtbot) -> None:
    from app.views.backends import TEMPLATES

    r = start_app(config_file)
    keyring.set_keyring(fail.Keyring())
    page = r.window.page("backends")
    tpl = next(t for label, t in TEMPLATES if label == "OpenRouter")
    page.add_backend(tpl)
    assert page.items[-1].auth == "keyring"  # no environment variable needed (a menu launcher cannot set one)


def test_patchbay_key_set_without_a_keychain_uses_the_file_and_says_so(upstreams, patchbay_home, monkeypatch,
                                                                       capsys) -> None:
    keyring.set_keyring(fail.Keyring())
    cfg = _keyring_config(patchbay_home, upstreams[0].url, upstreams[1].url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("sk-ant-typed\n"))
    assert cli(["key", "set", "alpha", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "private file readable only by you" in out and str(patchbay_home / "data" / KEY_FILE) in out
    assert "sk-ant-typed" not in out
    assert _private_file(patchbay_home)["keys"] == {"patchbay/backend:alpha": "sk-ant-typed"}
    assert cli(["key", "status", "alpha", "--config", str(cfg)]) == 0
    assert "a key is stored" in capsys.readouterr().out
    assert cli(["key", "delete", "alpha", "--config", str(cfg)]) == 0
    assert _private_file(patchbay_home)["keys"] == {}
