"""`patchbay disconnect --remove-model` puts back the "model" the user had before `patchbay
connect` (remembered in Patchbay's own state, not in their file) in place of the
``backend,model`` that Claude Code's /model saved while it used Patchbay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_claude_connect import patchbay, two_backends, user_env  # noqa: F401 - two_backends: a fixture

pytestmark = pytest.mark.e2e

BEFORE = {"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "echo done"}]}]}}


def test_disconnect_remove_model_restores_the_users_model(two_backends, tmp_path: Path) -> None:  # noqa: F811
    gw, _a, _o = two_backends
    home = tmp_path / "user-home"
    settings = home / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps(BEFORE, indent=2) + "\n")
    env = user_env(gw, home)
    assert patchbay(env, "connect").returncode == 0

    data = json.loads(settings.read_text())  # `/model o,gpt-default` in Claude Code: it saves the whole file
    data["model"] = "o,gpt-default"
    settings.write_text(json.dumps(data, indent=2) + "\n")

    out = patchbay(env, "disconnect", "--remove-model")
    assert out.returncode == 0, out.stderr
    assert json.loads(settings.read_text()) == BEFORE
    assert 'Put back "model": "opus"' in out.stdout and '"o,gpt-default"' in out.stdout
