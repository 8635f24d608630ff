"""Request bodies shaped like the ones Claude Code sends (docs/protocol.md §1), for routing tests,
the token estimator's accuracy test and the benchmarks.

The text inside is real and varied, and the same on every run of one Python version: source
files of Python's standard library (code), its documentation topics (prose), and JSON tool
schemas in Claude Code's style (``$schema``, ``additionalProperties``, long descriptions).

- ``main_turn(kb=...)``: a main-agent turn: billing line + system prompt, 24 tools, a
  conversation of reads, edits and tool results, ``thinking`` adaptive, ``max_tokens`` 32000.
- ``title_request()``, ``quota_check()``, ``compact_summary()``, ``explore_subagent()``,
  ``haiku_main_loop()``: Claude Code's other kinds of request.
"""

from __future__ import annotations

import json
import random
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

MAIN_MODEL = "claude-opus-5-5"
HAIKU_MODEL = "claude-haiku-5-5"
BILLING = "x-anthropic-billing-header: cc_version=2.1.332.abc; cc_entrypoint=sdk-cli;"

TOOL_NAMES = (
    "Task", "Bash", "Glob", "Grep", "ExitPlanMode", "Read", "Edit", "MultiEdit", "Write", "NotebookEdit",
    "WebFetch", "TodoWrite", "BashOutput", "KillShell", "SlashCommand", "Skill", "AskUserQuestion", "LS",
    "EnterPlanMode", "ListMcpResources", "ReadMcpResource", "NotebookRead", "Monitor", "ToolSearch",
)
NON_ASCII = (
    "Die Größenänderung der Fenster schlägt fehl, wenn der Benutzer während des Ladens klickt. "
    "这个函数在读取配置文件时会抛出异常，请检查路径是否正确。"
    "Функция возвращает пустой список, если каталог не существует. "
    "このテストは、ネットワークが使えない環境でも成功する必要があります。"
)


@lru_cache(maxsize=1)
def _sources() -> tuple[list[str], list[str]]:
    """(code files, prose topics) from the standard library, in a fixed order."""
    std = Path(sysconfig.get_paths()["stdlib"])
    names = ("textwrap.py", "shlex.py", "difflib.py", "fnmatch.py", "glob.py", "configparser.py", "csv.py",
             "calendar.py", "gettext.py", "ipaddress.py", "tempfile.py", "zipfile/__init__.py", "json/decoder.py",
             "json/encoder.py", "http/cookies.py", "email/utils.py", "asyncio/queues.py", "asyncio/locks.py",
             "dataclasses.py", "enum.py", "statistics.py", "string.py", "tomllib/_parser.py", "uuid.py")
    code = [(std / n).read_text(encoding="utf-8", errors="replace") for n in names if (std / n).exists()]
    from pydoc_data.topics import topics

    prose = [topics[k] for k in sorted(topics) if len(topics[k]) > 1500]
    return code, prose


def _slice(text: str, rng: random.Random, size: int) -> str:
    if len(text) <= size:
        return text
    start = rng.randrange(0, len(text) - size)
    start = text.rfind("\n", 0, start) + 1
    return text[start:start + size]


def tools(rng: random.Random | None = None) -> list[JSON]:
    """24 tool definitions in Claude Code's style."""
    rng = rng or random.Random(7)
    _code, prose = _sources()
    out = []
    for i, name in enumerate(TOOL_NAMES):
        desc = _slice(prose[(i * 7) % len(prose)], rng, rng.randrange(300, 2200))
        props: JSON = {
            "file_path": {"type": "string", "description": "The absolute path to the file to work on"},
            "offset": {"type": "number", "description": "The line number to start reading from. Only provide if the "
                                                         "file is too large to read at once"},
            "mode": {"type": "string", "enum": ["content", "files_with_matches", "count"],
                     "description": "Output mode: \"content\" shows matching lines"},
            "replace_all": {"type": "boolean", "default": False, "description": "Replace all occurrences"},
            "todos": {"type": "array", "items": {"type": "object", "properties": {
                "content": {"type": "string", "minLength": 1}, "status": {"type": "string", "const": "pending"}},
                "required": ["content", "status"], "additionalProperties": False}},
        }
        keep = dict(list(props.items())[: 2 + i % 4])
        out.append({"name": name, "description": desc, "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": keep,
            "required": list(keep)[:1], "additionalProperties": False}})
    return out


def _conversation(rng: random.Random, kb: int, non_ascii: bool) -> list[JSON]:
    code, prose = _sources()
    msgs: list[JSON] = [{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nAs you answer the user's questions, you can use the following "
                                 "context: today's date is 2026-11-26.\n</system-reminder>"},
        {"type": "text", "text": "Fix the failing test in the config parser and explain what was wrong."
                                 + (" " + NON_ASCII if non_ascii else "")}]}]
    size = sum(len(json.dumps(m)) for m in msgs)
    n = 0
    while size < kb * 1024:
        n += 1
        tid = f"toolu_{rng.getrandbits(64):016x}"
        path = f"/home/dev/project/src/module_{n}.py"
        assistant = {"role": "assistant", "content": [
            {"type": "thinking", "thinking": _slice(prose[rng.randrange(len(prose))], rng, 400), "signature": "c2ln"},
            {"type": "text", "text": _slice(prose[rng.randrange(len(prose))], rng, rng.randrange(80, 600))},
            {"type": "tool_use", "id": tid, "name": rng.choice(["Read", "Grep", "Edit", "Bash"]),
             "input": {"file_path": path, "offset": rng.randrange(1, 400), "limit": 200}}]}
        body = _slice(code[rng.randrange(len(code))], rng, rng.randrange(1500, 9000))
        numbered = "\n".join(f"{i:>6}\u2192{line}" for i, line in enumerate(body.splitlines(), 1))
        result: JSON = {"type": "tool_result", "tool_use_id": tid, "content": numbered}
        if non_ascii and n % 3 == 0:
            result["content"] = [{"type": "text", "text": numbered}, {"type": "text", "text": NON_ASCII * 3}]
        msgs += [assistant, {"role": "user", "content": [result]}]
        size += len(json.dumps(assistant)) + len(json.dumps(result))
    return msgs


def system_blocks(rng: random.Random) -> list[JSON]:
    _code, prose = _sources()
    main = "\n\n".join(_slice(prose[rng.randrange(len(prose))], rng, 3000) for _ in range(4))
    return [{"type": "text", "text": BILLING},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": main + "\n\nWorking directory: /home/dev/project\nIs directory a git repo: Yes",
             "cache_control": {"type": "ephemeral"}}]


def _metadata(session: str = "0b1c2d3e-4f50-4617-8899-aabbccddeeff") -> JSON:
    return {"user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": session})}


def main_turn(kb: int = 60, *, seed: int = 1, non_ascii: bool = False, model: str = MAIN_MODEL) -> JSON:
    """A main-agent turn of about ``kb`` KB (system, tools, conversation)."""
    rng = random.Random(seed)
    conv_kb = max(1, kb - 35)  # system + tools take about 35 KB
    return {"model": model, "messages": _conversation(rng, conv_kb, non_ascii), "system": system_blocks(rng),
            "tools": tools(rng), "metadata": _metadata(), "max_tokens": 32000, "thinking": {"type": "adaptive"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "medium"}, "stream": True}


def title_request() -> JSON:
    """The session-title / new-topic side request: haiku, no tools, a short system prompt."""
    return {"model": HAIKU_MODEL, "max_tokens": 512, "stream": True, "metadata": _metadata(),
            "system": [{"type": "text", "text": BILLING},
                       {"type": "text", "text": "Analyze if this message indicates a new conversation topic. Format "
                                                "your response as a JSON object with two fields: 'isNewTopic' and "
                                                "'title'."}],
            "messages": [{"role": "user", "content": "Fix the failing test in the config parser"}]}


CLASSIFIER_SYSTEM = ("You are a security monitor for an autonomous coding agent. Review the classification process "
                     "and follow it carefully, making sure you deny actions that should be blocked. Use <thinking> "
                     "before responding with <block>.")


def classifier_request() -> JSON:
    """The auto-mode safety classifier's first stage (as the 2.1.332 binary builds it): a haiku
    model, no tools, ``max_tokens`` 64, a temperature and ``stop_sequences: ["</block>"]``."""
    return {"model": HAIKU_MODEL, "max_tokens": 64, "temperature": 0, "stream": True, "metadata": _metadata(),
            "system": [{"type": "text", "text": BILLING}, {"type": "text", "text": CLASSIFIER_SYSTEM}],
            "stop_sequences": ["</block>"],
            "messages": [{"role": "user", "content": "<action>Bash: rm -rf build/</action>"}]}


def classifier_second_stage() -> JSON:
    """Its second stage: the same prompt, ``max_tokens`` 8192, no stop sequence."""
    b = classifier_request()
    b["max_tokens"] = 8192
    del b["stop_sequences"]
    return b


def quota_check() -> JSON:
    return {"model": HAIKU_MODEL, "max_tokens": 1, "metadata": _metadata(),
            "messages": [{"role": "user", "content": "quota"}]}


def compact_summary(kb: int = 40) -> JSON:
    """A conversation summary (``/compact``): the main model, no tools, a large max_tokens."""
    rng = random.Random(3)
    conv = _conversation(rng, kb, False)
    conv.append({"role": "user", "content": "Your task is to create a detailed summary of the conversation so far."})
    return {"model": MAIN_MODEL, "max_tokens": 20000, "stream": True, "system": system_blocks(rng),
            "messages": conv, "metadata": _metadata()}


def explore_subagent() -> JSON:
    """A haiku subagent (Explore): tools and a large max_tokens; sent with x-claude-code-agent-id."""
    rng = random.Random(4)
    return {"model": HAIKU_MODEL, "max_tokens": 32000, "stream": True, "system": system_blocks(rng),
            "tools": tools(rng)[:6], "metadata": _metadata(),
            "messages": [{"role": "user", "content": "Find where the config file is parsed."}]}


def haiku_main_loop() -> JSON:
    """The main loop run on `--model haiku`: a haiku name, but tools and a large max_tokens."""
    body = main_turn(20, seed=5, model=HAIKU_MODEL)
    body.pop("thinking")
    return body
