"""The real Claude Code CLI interrupted (SIGINT, as Ctrl-C; Esc closes the connection the same way)
while a long answer streams through a team gateway: the answer's row is charged for the output
Claude Code had received, not for ``message_start``'s one token (tests/team/test_cut_streams.py has
the same with a plain client, on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.books import raw_rows
from tests.fakes.idp import FakeIdP
from tests.serve_config import start_engine
from tests.team.test_cut_streams import ALICE, long_answer, team_config


def test_claude_code_interrupted_mid_answer_is_charged_for_what_it_showed(
        claude_bin: Path, tmp_path: Path, patchbay_home: Path) -> None:
    idp = FakeIdP().start()
    up = long_answer(delay_s=0.01)  # 400 deltas over about 4 s
    eng = start_engine(patchbay_home, team_config(up.url, idp, 100.0))
    try:
        env = {k: os.environ[k] for k in ("PATH", "LANG", "TMPDIR") if k in os.environ} | {
            "HOME": str(tmp_path / "claude-home"), "ANTHROPIC_BASE_URL": eng.url,
            "ANTHROPIC_AUTH_TOKEN": idp.oidc_token(ALICE, aud="patchbay"), "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
        (tmp_path / "claude-home").mkdir()
        proc = subprocess.Popen([str(claude_bin), "-p", "Write a long story.", "--model", "priced"], cwd=tmp_path,
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not any(r.json and r.json.get("model") == "priced" and r.json.get("tools") for r in up.requests):
                assert time.monotonic() < deadline and proc.poll() is None, "Claude Code never asked"
                time.sleep(0.05)
            time.sleep(1.5)  # about a third of the answer is on screen
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        deadline = time.monotonic() + 10
        while True:
            assert eng.ledger.drain(10)
            got = raw_rows(eng.paths.ledger_file, None, "SELECT output_tokens, interrupted, usage_counted, cost_usd "
                           "FROM requests WHERE interrupted = 1")
            if got or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        print(f"\nClaude Code interrupted: rows {got}")
        assert got, "the interrupted answer has its row"
        out, _flag, counted, cost = got[0]
        # 1.5 s of a 4 s answer of ~36,000 tokens: thousands of tokens, not message_start's 1
        assert counted == "streamed" and 2000 <= out <= 36_000 and (cost or 0) > 0.15, got
    finally:
        eng.stop()
        up.stop()
        idp.stop()
