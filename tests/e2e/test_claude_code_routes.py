"""The real Claude Code CLI through a gateway with [routes]: its main-agent turns (tools,
thinking adaptive, max_tokens 128000) stay on the active backend — adaptive thinking is on every
turn, so it is no ask to think, and they are never "background" — with Claude Code's hint
headers on (as `patchbay connect` and `patchbay claude` set them) and without; the ledger records
the rule that decided."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import spawn_gateway
from tests.e2e.test_claude_code import CONTENT, PROMPT, _explain, _turns, anthropic_responder
from tests.fakes import FakeUpstream

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("hints", ["1", ""])
def test_claude_code_main_turns_stay_on_the_active_backend(run_claude: Callable[..., ClaudeResult],
                                                           workdir: Path, tmp_path: Path, hints: str) -> None:
    from app.ledger.reader import LedgerReader

    target = workdir / "hello.txt"
    with FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as deep, \
            FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as main, \
            FakeUpstream(anthropic_responder(str(target)), wire="anthropic") as side:
        config = "[gateway]\nport = 0\n\n" + "".join(
            f'[[backends]]\nid = "{name}"\nkind = "anthropic"\nbase_url = "{up.url}"\nauth = "none"\n\n'
            for name, up in (("main", main), ("deep", deep), ("side", side)))
        config += ('[active]\nbackend = "main"\n\n[routes]\nbackground = "side,side-model"\n'
                   'think = "deep,deep-model"\nlong_context = "side"\nlong_context_threshold = 200000\n')
        gw = spawn_gateway(config, tmp_path / "patchbay-home")
        try:
            result = run_claude(PROMPT, base_url=gw.url, cwd=workdir,
                                extra_env={"CLAUDE_CODE_GATEWAY_HINT_HEADERS": hints})
        finally:
            gw.stop()
        assert result.returncode == 0 and target.read_text() == CONTENT, _explain(result, main, gw)
        turns = _turns(main, "/v1/messages")
        assert len(turns) == 2, _explain(result, main, gw)
        assert all(t.json["thinking"]["type"] == "adaptive" for t in turns)
        assert not deep.requests_to("/v1/messages") and not side.requests_to("/v1/messages")
    reader = LedgerReader(tmp_path / "patchbay-home" / "data" / "usage.sqlite3")
    try:
        rows = reader.requests(limit=20)
    finally:
        reader.close()
    assert [(r.route, r.backend, r.attempts) for r in rows if r.status == 200] == [("active", "main", 1)] * 2
