# eli/tool_parsers/hermes.py: Hermes-style tool calls, as Qwen2.5, Qwen3 and NousResearch Hermes
# write them: <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>, one block per call
# (parallel calls: several blocks), content allowed around them.
#
# Scanning (base.py's contract): text outside blocks is content, decided except a tail that may be
# the start of "<tool_call>"; a block is decided when "</tool_call>" arrives (or at the end of the
# output: a model may stop right after the JSON). A block whose body is not {"name", "arguments"}
# JSON is content, markup included.
from __future__ import annotations

import json

from .base import Scanner, ToolParser, as_call, loads, marker_holdback

kOpen, kClose = "<tool_call>", "</tool_call>"


def scan_blocks(buf: str, start: int, final: bool, scanner: Scanner) -> tuple[list, int]:
    """Scans buf[start:] for blocks; `scanner` remembers how far a pending block was searched for
    its close tag (so a long block streamed in pieces is searched once)."""
    segments: list = []
    i = start
    while i < len(buf):
        j = buf.find(kOpen, i)
        if j < 0:
            end = len(buf) if final else len(buf) - marker_holdback(buf[i:], (kOpen,))
            if end > i:
                segments.append(("text", buf[i:end]))
            return segments, end
        if j > i:
            segments.append(("text", buf[i:j]))
        body_start = j + len(kOpen)
        r = scanner._close_resume
        frm = max(body_start, r[1] - len(kClose) + 1) if r is not None and r[0] == j else body_start
        k = buf.find(kClose, frm)
        if k < 0 and not final:
            scanner._close_resume = (j, len(buf))
            return segments, j
        scanner._close_resume = None
        body = buf[body_start:] if k < 0 else buf[body_start:k]
        end = len(buf) if k < 0 else k + len(kClose)
        call = as_call(loads(body.strip()))
        segments.append(("call", *call) if call else ("text", buf[j:end]))
        i = end
    return segments, i


class _HermesScanner(Scanner):
    def scan(self, buf, start, final):
        return scan_blocks(buf, start, final, self)


class HermesParser(ToolParser):
    name = "hermes"
    markers = ()  # <tool_call> is an ordinary added token in Qwen's and Hermes' vocabularies

    def scanner(self):
        return _HermesScanner()


def call_text(name: str, arguments: dict) -> str:
    """How this family writes one call (for prompts and tests)."""
    return f"{kOpen}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{kClose}"
