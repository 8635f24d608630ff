"""Global options (``--config F``) work before and after every command: ``patchbay --config F
claude -p …`` starts Claude Code (not the desktop app, not "unrecognized arguments: -p"), and
``patchbay usage --json --config F`` is accepted. Real subprocesses, a real gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, gateway_config, spawn_gateway

pytestmark = pytest.mark.e2e


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60, input=stdin)


def test_config_before_and_after_each_command(tmp_path: Path):
    gw = spawn_gateway(gateway_config("openai", "http://127.0.0.1:9/v1"), tmp_path / "home")
    try:
        cfg = str(gw.config_path)
        fake_claude = tmp_path / "claude"
        fake_claude.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\n"
                               "echo \"$ANTHROPIC_BASE_URL $CLAUDE_CODE_GATEWAY_HINT_HEADERS\" > \"$0.env\"\n")
        fake_claude.chmod(0o755)
        env = gw.env | {"PATCHBAY_CLAUDE_BIN": str(fake_claude), "HOME": str(tmp_path / "user")}

        for argv in (["--config", cfg, "claude", "-p", "hi"], [f"--config={cfg}", "claude", "-p", "hi"],
                     ["claude", "--config", cfg, "-p", "hi"]):
            out = run(env, *argv)
            assert out.returncode == 0, (argv, out.stderr)
            args = (tmp_path / "claude.args").read_text().splitlines()
            assert args[0] == "--settings" and args[2:] == ["-p", "hi"], (argv, args)
            assert (tmp_path / "claude.env").read_text().split() == [gw.url, "1"], argv

        for argv in (["check", "--config", cfg], ["--config", cfg, "check"]):
            out = run(env, *argv)
            assert out.returncode == 0 and out.stdout.startswith(f"{cfg}: OK"), (argv, out.stdout, out.stderr)

        # a request, so the ledger exists
        import httpx

        httpx.post(gw.url + "/v1/messages", headers={"x-api-key": gw.token},
                   json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, timeout=30)
        for argv in (["usage", "--json", "--config", cfg], ["--config", cfg, "usage", "--json"],
                     ["usage", "--config", cfg, "--json"]):
            out = run(env, *argv)
            assert out.returncode == 0, (argv, out.stderr)
            assert "total" in json.loads(out.stdout)

        # the table reads the budgets from the config given, wherever --config was written
        with open(cfg, "a") as fh:
            fh.write('\n[[budgets]]\nscope = "all"\nperiod = "day"\nlimit_usd = 5.0\n')
        for argv in (["usage", "--config", cfg], ["--config", cfg, "usage"]):
            out = run(env, *argv)
            assert out.returncode == 0 and "Budgets:" in out.stdout, (argv, out.stdout, out.stderr)

        lines = {tuple(argv): run(env, *argv) for argv in (["--config", cfg, "env"], ["env", "--config", cfg])}
        assert len({p.stdout for p in lines.values()}) == 1 and all(p.returncode == 0 for p in lines.values())

        status = [run(env, *argv, stdin="{}") for argv in (["--config", cfg, "statusline"],
                                                            ["statusline", "--config", cfg])]
        assert status[0].returncode == status[1].returncode == 0 and status[0].stdout == status[1].stdout
        assert "fake" in status[0].stdout
    finally:
        gw.stop()
    assert not os.path.exists(tmp_path / "user" / ".claude" / "settings.json")  # claude runs touch no file
