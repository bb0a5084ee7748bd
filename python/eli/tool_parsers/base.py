# eli/tool_parsers/base.py: what every tool-call parser shares: the parsed call, the scanner
# interface a model family implements, and the streaming driver that turns a scanner into OpenAI
# `tool_calls` deltas.
#
# A family's Scanner reads the model's output text and splits it into *decided* segments, in
# order: ("text", str) content and ("call", name, arguments_json) tool calls. scan(buf, start,
# final) looks at buf[start:] and returns the segments it can decide plus the new start (what is
# left, buf[new_start:], is pending: a possible marker prefix, an unfinished call). Invariants:
#   - decisions are final and do not depend on how the text was chunked: the segments decided on
#     a prefix of the text are a prefix of those decided on the whole text (streamed == whole);
#   - pending text is never emitted until decided, so partial markup never leaks as content;
#   - final=True decides everything: an unfinished or malformed call becomes content (the raw
#     text), never an error.
# A call's arguments are re-serialized JSON text of an object (json.dumps), whatever the model's
# spacing; ids are "call_" + 24 hex characters, or what the family needs (Mistral: 9 alphanumerics).
from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any, Callable, Optional

Segment = tuple  # ("text", str) | ("call", name: str, arguments: str)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text of an object

    def to_openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class ParseResult:
    content: Optional[str]  # None when the model wrote only tool calls
    tool_calls: list


def openai_call_id() -> str:
    return "call_" + secrets.token_hex(12)


_ALNUM = string.ascii_letters + string.digits


def mistral_call_id() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(9))


# ---- JSON helpers -------------------------------------------------------------------------------
_WS = " \t\r\n"


_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


def _scan_json(s: str, pos: int, depth: int, in_str: bool, esc: bool) -> tuple[Optional[int], tuple]:
    """Bracket/string scan of a JSON value from `pos` in the given state: (end, None) once the value
    closes, else (None, state to resume from at len(s)). Jumps between special characters (regex)."""
    n = len(s)
    if esc:  # the previous scan stopped right after a backslash inside a string
        if pos >= n:
            return None, (pos, depth, in_str, True)
        pos += 1
    while True:
        m = _JSON_SPECIAL.search(s, pos)
        if m is None:
            return None, (n, depth, in_str, False)
        k, c = m.start(), m.group()
        if in_str:
            if c == "\\":
                if k + 1 >= n:
                    return None, (n, depth, True, True)
                pos = k + 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return k + 1, None
        pos = k + 1


def json_value_end(s: str, i: int) -> Optional[int]:
    """The end index of the JSON object or array starting at s[i] ('{' or '['), by bracket and
    string scanning; None when s ends before the value closes. Says nothing about validity (json
    decides that on the slice)."""
    return _scan_json(s, i, 0, False, False)[0]


def loads(text: str) -> Any:
    """json.loads, None on any failure (NaN/Infinity refused: not JSON)."""
    def bad(name):
        raise ValueError(name)
    try:
        return json.loads(text, parse_constant=bad)
    except (ValueError, RecursionError):
        return None


def as_call(obj: Any, arg_keys: tuple = ("arguments", "parameters")) -> Optional[tuple[str, str]]:
    """(name, arguments JSON) when obj is {"name": str, <arg key>: object or JSON-object text}
    (the arguments may be missing: {}), else None."""
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name or len(name) > 256:
        return None
    args: Any = {}
    for k in arg_keys:
        if k in obj:
            args = obj[k]
            break
    if isinstance(args, str):
        args = loads(args)
    if not isinstance(args, dict):
        return None
    return name, json.dumps(args, ensure_ascii=False)


def marker_holdback(text: str, markers: tuple) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `markers` (that
    text must wait: it may become a marker)."""
    best = 0
    for m in markers:
        for k in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:k]):
                best = k
                break
    return best


# ---- scanners and the streaming driver ---------------------------------------------------------
class Scanner:
    """One model output being parsed (families subclass; instances keep per-output state)."""

    _json_resume: Optional[tuple] = None  # (value start, scan state) of the pending JSON value
    _close_resume: Optional[tuple] = None  # (block start, searched up to) of a pending <tool_call>

    def scan(self, buf: str, start: int, final: bool) -> tuple[list, int]:
        raise NotImplementedError

    def value_end(self, buf: str, i: int) -> Optional[int]:
        """json_value_end, resumed where the previous call on the same pending value stopped: a
        long call streamed token by token is scanned once, not once per token (the text only
        grows at the end while it is pending)."""
        r = self._json_resume
        state = r[1] if r is not None and r[0] == i and r[1][0] <= len(buf) else (i, 0, False, False)
        end, rest = _scan_json(buf, *state)
        self._json_resume = None if end is not None else (i, rest)
        return end

    def rebase(self, n: int) -> None:
        """The first n characters of the buffer were dropped (ToolCallStream keeps it small)."""
        r = self._json_resume
        if r is not None:
            self._json_resume = (r[0] - n, (r[1][0] - n,) + r[1][1:])
        c = self._close_resume
        if c is not None:
            self._close_resume = (c[0] - n, c[1] - n)


class ToolParser:
    """A family's parser: `name`, `markers` (special-token texts it reads, which detokenization
    must keep), `new_id` and a Scanner factory. parse() for a whole text, stream() for deltas."""

    name = "base"
    markers: tuple = ()
    new_id: Callable[[], str] = staticmethod(openai_call_id)

    def scanner(self) -> Scanner:
        raise NotImplementedError

    def parse(self, text: str) -> ParseResult:
        segments, _ = self.scanner().scan(text, 0, True)
        return _result(segments, self.new_id)

    def stream(self) -> "ToolCallStream":
        return ToolCallStream(self)


def _result(segments: list, new_id) -> ParseResult:
    content = "".join(s[1] for s in segments if s[0] == "text")
    calls = [ToolCall(new_id(), s[1], s[2]) for s in segments if s[0] == "call"]
    if calls and not content.strip():
        content = None
    return ParseResult(content, calls)


class ToolCallStream:
    """Feeds text deltas, returns OpenAI chat deltas: {"content": ...} and {"tool_calls": [...]}
    (per call: one delta with index, id, type and function.name (arguments ""), then one with
    function.arguments). A call goes out once its text is complete and valid, so nothing sent is
    ever taken back. segments() gives the same decisions as ordered segments instead (the
    Responses API's output items, server/responses_output.py)."""

    def __init__(self, parser: ToolParser):
        self.parser = parser
        self.scanner = parser.scanner()
        self.buf = ""
        self.start = 0
        self.n_calls = 0
        self.done = False

    @property
    def has_calls(self) -> bool:
        return self.n_calls > 0

    def segments(self, delta: str, final: bool) -> list:
        """The segments decided once `delta` is added, in order ("text", str) / ("call", name,
        arguments JSON); final=True decides the rest, after which nothing more comes."""
        if self.done:
            return []
        self.buf += delta
        segments, self.start = self.scanner.scan(self.buf, self.start, final)
        if self.start > 4096:  # keep the buffer small: decided text is never looked at again
            self.buf, n, self.start = self.buf[self.start:], self.start, 0
            self.scanner.rebase(n)
        self.done = final
        self.n_calls += sum(1 for seg in segments if seg[0] == "call")
        return segments

    def feed(self, delta: str) -> list:
        return self._deltas(self.segments(delta, False))

    def finish(self) -> list:
        return self._deltas(self.segments("", True))

    def _deltas(self, segments: list) -> list:
        k = self.n_calls - sum(1 for seg in segments if seg[0] == "call")  # index of the first new call
        out = []
        for seg in segments:
            if seg[0] == "text":
                if seg[1]:
                    out.append({"content": seg[1]})
            else:
                out.append({"tool_calls": [{"index": k, "id": self.parser.new_id(), "type": "function",
                                            "function": {"name": seg[1], "arguments": ""}}]})
                out.append({"tool_calls": [{"index": k, "function": {"arguments": seg[2]}}]})
                k += 1
        return out


def merge_deltas(deltas: list) -> ParseResult:
    """What a client assembles from the deltas (tests: streamed vs whole-text equality)."""
    content, calls = [], {}
    for d in deltas:
        if "content" in d:
            content.append(d["content"])
        for tc in d.get("tool_calls", ()):
            c = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
            c["id"] = tc.get("id") or c["id"]
            fn = tc.get("function", {})
            c["name"] += fn.get("name") or ""
            c["arguments"] += fn.get("arguments") or ""
    text = "".join(content)
    out = [ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
    return ParseResult(None if out and not text.strip() else text, out)


__all__ = ["ToolCall", "ParseResult", "ToolParser", "Scanner", "ToolCallStream", "json_value_end", "loads",
           "as_call", "marker_holdback", "merge_deltas", "openai_call_id", "mistral_call_id"]
