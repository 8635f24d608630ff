"""The real Claude Code CLI through the gateway to providers with history rules (docs/protocol.md §7).

Each fake (``tests/fakes/providers.py``) refuses, with the provider's own wording, what the
provider refuses: DeepSeek's and Kimi's thinking models an assistant tool-call message without
``reasoning_content``; OpenRouter's Gemini 3 one without the ``reasoning_details`` it signed;
Mistral any tool-call id that is not nine letters and digits. A ``Write`` tool loop must
complete through each, and go on where Claude Code no longer sends the reasoning back:
``claude --continue`` (it drops old thinking blocks), ``--model`` onto DeepSeek after a tool call
on another backend, and a gateway restart between the two runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.conftest import spawn_gateway
from tests.fakes import FakeUpstream
from tests.fakes.providers import CONTENT, DeepSeekThinking, MistralIds, OpenRouterGemini, PlainOpenAI, tool_turns

if TYPE_CHECKING:
    from tests.e2e.conftest import ClaudeResult, GatewayProcess

pytestmark = pytest.mark.e2e

WRITE = ("--output-format", "json", "--allowedTools", "Write")
CONTINUE = ("--continue", *WRITE)


def _config(*backends: tuple[str, str, str], extra: str = "") -> str:
    """``[[backends]]`` for (id, base_url, model) each, the first one active."""
    text = "[gateway]\nport = 0\n\n"
    for bid, url, model in backends:
        text += (f'[[backends]]\nid = "{bid}"\nkind = "openai"\nbase_url = "{url}/v1"\nauth = "none"\n'
                 f'models = ["{model}"]\n{extra}\n')
    bid, _url, model = backends[0]
    return text + f'[active]\nbackend = "{bid}"\nmodel = "{model}"\n'


def _why(result: ClaudeResult, provider: Any, gw: GatewayProcess) -> str:
    return (f"claude: {result.describe()}\nrefused: {provider.refused}\n"
            f"gateway stderr:\n{gw.log()[-3000:]}")


def _wrote(result: ClaudeResult, path: Path, provider: Any, gw: GatewayProcess) -> None:
    why = _why(result, provider, gw)
    assert result.returncode == 0 and result.json.get("is_error") is False, why
    assert path.read_text() == CONTENT, why
    assert provider.refused == [], why


def _old_tool_turn(provider: Any) -> dict[str, Any]:
    """The first assistant tool-call message of the last tool turn the provider served."""
    msgs = provider.served[-1]["messages"]
    return msgs[tool_turns(msgs)[0]]


def _serving(provider: Any) -> FakeUpstream:
    """An OpenAI-format fake that answers as ``provider`` and refuses what its guard refuses."""
    return FakeUpstream(provider.respond, wire="openai", guard=provider.guard)


@contextmanager
def _gateway(config: str, home: Path) -> Iterator[GatewayProcess]:
    gw = spawn_gateway(config, home)
    try:
        yield gw
    finally:
        gw.stop()


def _write(run_claude: Callable[..., ClaudeResult], gw: GatewayProcess, workdir: Path, provider: Any, n: int,
           prompt: str = "", model: str = "") -> None:
    """Claude Code writes ``file{n}.txt`` through ``gw``: the first in a new session, later ones
    with ``--continue`` (and ``--model`` when given); the file is right and the provider refused nothing."""
    prompt = prompt or ("write the file" if n == 1 else "write another file")
    args = (("--model", model) if model else ()) + (WRITE if n == 1 else CONTINUE)
    _wrote(run_claude(prompt, base_url=gw.url, cwd=workdir, args=args), workdir / f"file{n}.txt", provider, gw)


@pytest.mark.parametrize("wording,model", [("deepseek", "deepseek-reasoner"), ("kimi", "kimi-k2.5")])
def test_thinking_model_tool_loop_and_continue(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                               tmp_path: Path, wording: str, model: str) -> None:
    provider = DeepSeekThinking(workdir, wording=wording, model=model)
    with _serving(provider) as up:
        with _gateway(_config(("ds", up.url, model)), tmp_path / "patchbay-home") as gw:
            _write(run_claude, gw, workdir, provider, 1)
            _write(run_claude, gw, workdir, provider, 2)
    # Claude Code sent the old tool call without its thinking; the reasoning went back anyway
    assert _old_tool_turn(provider)["reasoning_content"] == DeepSeekThinking.REASONING


def test_model_switch_onto_deepseek_after_a_tool_call_elsewhere(run_claude: Callable[..., ClaudeResult],
                                                                 workdir: Path, tmp_path: Path) -> None:
    plain = PlainOpenAI(workdir)
    deepseek = DeepSeekThinking(workdir)
    with FakeUpstream(plain.respond, wire="openai") as oai, \
            _serving(deepseek) as ds:
        config = _config(("oai", oai.url, "gpt-fake"), ("ds", ds.url, "deepseek-reasoner"))
        with _gateway(config, tmp_path / "patchbay-home") as gw:
            _write(run_claude, gw, workdir, plain, 1)
            _write(run_claude, gw, workdir, deepseek, 2, "now on deepseek", model="ds,deepseek-reasoner")
    # the other backend never reasoned: DeepSeek gets the empty string it accepts
    assert _old_tool_turn(deepseek)["reasoning_content"] == ""


def test_deepseek_reasoning_survives_a_gateway_restart(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                                       tmp_path: Path) -> None:
    provider = DeepSeekThinking(workdir)
    home = tmp_path / "patchbay-home"
    with _serving(provider) as up:
        config = _config(("ds", up.url, "deepseek-reasoner"))
        with _gateway(config, home) as gw:
            _write(run_claude, gw, workdir, provider, 1)
        with _gateway(config, home) as gw:
            _write(run_claude, gw, workdir, provider, 2)
    assert _old_tool_turn(provider)["reasoning_content"] == DeepSeekThinking.REASONING


def test_openrouter_gemini_tool_loop_echoes_reasoning_details(run_claude: Callable[..., ClaudeResult],
                                                             workdir: Path, tmp_path: Path) -> None:
    provider = OpenRouterGemini(workdir)
    home = tmp_path / "patchbay-home"
    with _serving(provider) as up:
        config = _config(("openrouter", up.url, OpenRouterGemini.model))
        with _gateway(config, home) as gw:
            _write(run_claude, gw, workdir, provider, 1)
        with _gateway(config, home) as gw:  # and after a restart, in a continued session
            _write(run_claude, gw, workdir, provider, 2)
    details = _old_tool_turn(provider)["reasoning_details"]
    assert [d["type"] for d in details] == ["reasoning.text", "reasoning.encrypted"]


def test_mistral_tool_loop_with_nine_character_ids(run_claude: Callable[..., ClaudeResult], workdir: Path,
                                                   tmp_path: Path) -> None:
    provider = MistralIds(workdir)
    home = tmp_path / "patchbay-home"
    with _serving(provider) as up:
        config = _config(("mistral", up.url, MistralIds.model))
        with _gateway(config, home) as gw:
            _write(run_claude, gw, workdir, provider, 1)
            first_id = provider.issued[0]
            assert _old_tool_turn(provider)["tool_calls"][0]["id"] == first_id
        with _gateway(config, home) as gw:
            _write(run_claude, gw, workdir, provider, 2)
    # the id Mistral gave its first call comes back to it unchanged, even after the restart
    msgs = provider.served[-1]["messages"]
    assert [msgs[n]["tool_calls"][0]["id"] for n in tool_turns(msgs)][0] == first_id
    assert json.dumps(msgs).count(first_id) == 2  # the call and its tool message
