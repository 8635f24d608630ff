"""A tiny MCP server over stdio (newline-delimited JSON-RPC 2.0, the MCP stdio transport), for
Claude Code's ``--mcp-config``: ``python -m tests.fakes.mcp_stdio N`` serves ``N`` inventory
tools ``tool_00`` … and answers each call with its arguments. Enough of MCP for a client to
list and call tools: ``initialize``, ``tools/list``, ``tools/call``; notifications are read and
ignored; any other method gets JSON-RPC's "Method not found"."""

from __future__ import annotations

import json
import sys
from typing import Any


def tools(n: int) -> list[dict[str, Any]]:
    return [{
        "name": f"tool_{i:02d}",
        "description": (f"Look up records of kind {i} in the inventory database. Returns the matching records "
                        "with their fields, owners and timestamps, filtered as asked."),
        "inputSchema": {"type": "object", "properties": {
            "query": {"type": "string", "description": "what to look for"},
            "limit": {"type": "integer", "description": "how many records at most"},
            "fields": {"type": "array", "items": {"type": "string"}, "description": "which fields to return"}},
            "required": ["query"]},
    } for i in range(n)]


def answer(msg: dict[str, Any], n: int) -> dict[str, Any]:
    method, params = msg.get("method"), msg.get("params") or {}
    if method == "initialize":
        result: dict[str, Any] = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                                  "capabilities": {"tools": {}}, "serverInfo": {"name": "inventory", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": tools(n)}
    elif method == "tools/call":
        result = {"content": [{"type": "text", "text": f"{params.get('name')} found: "
                               f"{json.dumps(params.get('arguments'), sort_keys=True)}"}]}
    else:
        return {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("id") is None:
            continue  # a notification
        print(json.dumps(answer(msg, n)), flush=True)


if __name__ == "__main__":
    main()
