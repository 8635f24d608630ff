"""A strict JSON scanner that remembers where every value and object member sits in the text.

``json.loads`` tells us what a file means; to change one member of a user's file and leave every
other byte as it was, we also need to know *where* things are. :func:`scan` parses RFC 8259 JSON
(what ``JSON.parse`` accepts: no comments, no trailing commas, no NaN) and returns a tree of
:class:`Node` with character offsets; :func:`set_member` and :func:`remove_member` splice the
text, copying the surrounding layout (indentation, spacing around ``:``, line endings), and are
exact inverses of each other when the member they add goes at the end of its object.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_WS = " \t\n\r"
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MAX_DEPTH = 400


class JSONTextError(ValueError):
    """Text that is not strict JSON. ``line``/``column`` are 1-based; ``reason`` is a phrase."""

    def __init__(self, reason: str, text: str, pos: int) -> None:
        self.reason = reason
        self.pos = pos
        self.line = text.count("\n", 0, pos) + 1
        self.column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"line {self.line}, column {self.column}: {reason}")


@dataclass
class Member:
    key: str
    key_start: int
    key_end: int
    value: Node


@dataclass
class Node:
    kind: str  # object | array | string | number | literal
    start: int
    end: int  # one past the last character
    members: list[Member] = field(default_factory=list)  # objects only, in file order

    def get(self, key: str) -> list[Member]:
        return [m for m in self.members if m.key == key]


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    def fail(self, reason: str, pos: int) -> JSONTextError:
        return JSONTextError(reason, self.text, pos)

    def ws(self, i: int) -> int:
        t, n = self.text, self.n
        while i < n and t[i] in _WS:
            i += 1
        if i < n and t[i] == "/" and i + 1 < n and t[i + 1] in "/*":
            raise self.fail("a comment; Claude Code reads settings.json as strict JSON, which has no comments", i)
        return i

    def value(self, i: int, depth: int) -> Node:
        if depth > _MAX_DEPTH:
            raise self.fail("the values are nested too deeply", i)
        if i >= self.n:
            raise self.fail("the text ends where a value should be", i)
        c = self.text[i]
        if c == "{":
            return self.obj(i, depth)
        if c == "[":
            return self.arr(i, depth)
        if c == '"':
            return Node("string", i, self.string(i))
        for word in ("true", "false", "null"):
            if self.text.startswith(word, i):
                return Node("literal", i, i + len(word))
        m = _NUMBER.match(self.text, i)
        if m and m.end() > i:
            return Node("number", i, m.end())
        if c == "'":
            raise self.fail("a single quote; JSON strings use double quotes", i)
        if c in "}]":
            raise self.fail(f"'{c}' where a value should be (a trailing comma?)", i)
        bare = re.match(r"[A-Za-z_]\w*", self.text[i:])
        if bare:
            raise self.fail(f"'{bare.group(0)}' is not a JSON value (strings need double quotes)", i)
        raise self.fail(f"unexpected character {c!r}", i)

    def string(self, i: int) -> int:
        t, n = self.text, self.n
        j = i + 1
        while True:
            if j >= n:
                raise self.fail("a string that is never closed", i)
            c = t[j]
            if c == '"':
                return j + 1
            if c == "\\":
                if j + 1 >= n:
                    raise self.fail("a string that is never closed", i)
                e = t[j + 1]
                if e == "u":
                    if not re.fullmatch(r"[0-9A-Fa-f]{4}", t[j + 2 : j + 6]):
                        raise self.fail("a \\u escape without four hex digits", j)
                    j += 6
                    continue
                if e not in '"\\/bfnrt':
                    raise self.fail(f"an unknown escape \\{e}", j)
                j += 2
                continue
            if c < " ":
                raise self.fail("a control character (such as a raw line break or tab) inside a string", j)
            j += 1

    def obj(self, i: int, depth: int) -> Node:
        node = Node("object", i, i)
        j = self.ws(i + 1)
        if j < self.n and self.text[j] == "}":
            node.end = j + 1
            return node
        while True:
            if j >= self.n:
                raise self.fail("an object that is never closed", i)
            if self.text[j] != '"':
                if self.text[j] == "}":
                    raise self.fail("a trailing comma before '}'", j)
                raise self.fail("a member name that is not a double-quoted string", j)
            ks = j
            ke = self.string(j)
            key = json.loads(self.text[ks:ke])
            j = self.ws(ke)
            if j >= self.n or self.text[j] != ":":
                raise self.fail("a missing ':' after a member name", j)
            j = self.ws(j + 1)
            v = self.value(j, depth + 1)
            node.members.append(Member(key, ks, ke, v))
            j = self.ws(v.end)
            if j < self.n and self.text[j] == ",":
                j = self.ws(j + 1)
                continue
            if j < self.n and self.text[j] == "}":
                node.end = j + 1
                return node
            raise self.fail("a missing ',' or '}' after a member" if j < self.n else
                            "an object that is never closed", j)

    def arr(self, i: int, depth: int) -> Node:
        node = Node("array", i, i)
        j = self.ws(i + 1)
        if j < self.n and self.text[j] == "]":
            node.end = j + 1
            return node
        while True:
            if j < self.n and self.text[j] == "]":
                raise self.fail("a trailing comma before ']'", j)
            v = self.value(j, depth + 1)
            j = self.ws(v.end)
            if j < self.n and self.text[j] == ",":
                j = self.ws(j + 1)
                continue
            if j < self.n and self.text[j] == "]":
                node.end = j + 1
                return node
            raise self.fail("a missing ',' or ']' in an array" if j < self.n else "an array that is never closed", j)


def scan(text: str) -> Node:
    """Parse ``text`` (optionally starting with a byte-order mark) as strict JSON."""
    s = _Scanner(text)
    start = s.ws(1 if text.startswith("\ufeff") else 0)
    node = s.value(start, 0)
    end = s.ws(node.end)
    if end != len(text):
        raise s.fail("more text after the JSON value ended", end)
    return node


# --------------------------------------------------------------------------- layout


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _line_indent(text: str, pos: int) -> str:
    """The whitespace at the start of the line that holds ``pos``."""
    ls = text.rfind("\n", 0, pos) + 1
    m = re.match(r"[ \t]*", text[ls:pos])
    return m.group(0) if m else ""


def _colon(text: str, m: Member) -> str:
    """The text between a member's name and its value (``": "``, ``":"``, ``" : "``)."""
    return text[m.key_end : m.value.start]


def set_member(text: str, obj: Node, key: str, raw_value: str) -> str:
    """``text`` with ``obj[key]`` set to ``raw_value`` (JSON text): replaced in place when the key
    is there (the last one, as JSON.parse keeps), otherwise added after the last member."""
    found = obj.get(key)
    if found:
        v = found[-1].value
        return text[: v.start] + raw_value + text[v.end :]
    name = json.dumps(key, ensure_ascii=False)
    if obj.members:
        last = obj.members[-1]
        if len(obj.members) > 1:
            between = text[obj.members[-2].value.end : last.key_start]
            sep = between[between.index(",") + 1 :]
        else:
            sep = text[obj.start + 1 : last.key_start]
        insert = "," + sep + name + _colon(text, last) + raw_value
        return text[: last.value.end] + insert + text[last.value.end :]
    # an empty object: lay it out like its parent (one level deeper), or compactly in a compact file
    nl = _newline(text)
    outer = _line_indent(text, obj.start)
    multiline = "\n" in text
    m = re.search(r'"([ \t]*:[ \t]*)["{\[0-9tfn-]', text)  # the file's own spacing around ':'
    colon = m.group(1) if m else ": "
    if not multiline:
        body = name + colon + raw_value
        return text[: obj.start + 1] + body + text[obj.end - 1 :]
    unit = _indent_unit(text)
    body = nl + outer + unit + name + colon + raw_value + nl + outer
    return text[: obj.start + 1] + body + text[obj.end - 1 :]


def _indent_unit(text: str) -> str:
    """The file's indentation step: a tab, or the smallest run of leading spaces (2 if none)."""
    sizes = []
    for line in text.splitlines():
        m = re.match(r"[ \t]*", line)
        lead = m.group(0) if m else ""
        if lead.startswith("\t"):
            return "\t"
        if lead:
            sizes.append(len(lead))
    return " " * (min(sizes) if sizes else 2)


def remove_member(text: str, obj: Node, key: str, *, empty_inner: str = "") -> str:
    """``text`` without ``obj[key]`` (the last one of that name), with the separator that went
    with it; the exact inverse of :func:`set_member` adding a new last member. Removing the only
    member leaves ``{`` + ``empty_inner`` + ``}``."""
    found = obj.get(key)
    if not found:
        return text
    m = found[-1]
    i = obj.members.index(m)
    if i > 0:
        return text[: obj.members[i - 1].value.end] + text[m.value.end :]
    if len(obj.members) > 1:
        return text[: m.key_start] + text[obj.members[1].key_start :]
    return text[: obj.start + 1] + empty_inner + text[obj.end - 1 :]
