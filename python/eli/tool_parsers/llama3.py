# eli/tool_parsers/llama3.py: Llama 3.1 / 3.2 / 3.3 JSON tool calls: the whole reply is
# {"name": "f", "parameters": {...}} (Meta's prompt format; "arguments" is accepted too), optionally
# after the <|python_tag|> special token; several calls are separated by ";" (Llama 3.1 writes one).
#
# Scanning (base.py's contract): only a reply that *starts* (after whitespace) with "{" or
# <|python_tag|> can hold calls; anything else is content at once. Calls are decided one JSON
# value at a time; the first value that is not a call (or not JSON) turns the rest of the reply,
# from that value on, into content; so does an unfinished value at the end.
from __future__ import annotations

import json

from .base import Scanner, ToolParser, as_call, loads

kPythonTag = "<|python_tag|>"


class _Llama3Scanner(Scanner):
    def __init__(self):
        self.mode = "start"  # start -> calls -> text
        self.markup = 0  # pending markup (whitespace, <|python_tag|>) before the next value

    def scan(self, buf, start, final):
        segments: list = []
        i = start
        if self.mode == "start":
            rest = buf[i:].lstrip()
            if not rest or (not final and kPythonTag.startswith(rest)):
                if final and i < len(buf):
                    segments.append(("text", buf[i:]))
                    return segments, len(buf)
                return segments, i
            if rest.startswith(kPythonTag) or rest.startswith("{"):
                self.mode = "calls"
                j = len(buf) - len(rest)
                if rest.startswith(kPythonTag):
                    j += len(kPythonTag)
                # the tag and leading whitespace are markup: decided with the first value
                return self._calls(buf, i, j, final, segments)
            self.mode = "text"
        if self.mode == "calls":
            return self._calls(buf, i, i + self.markup, final, segments)
        if len(buf) > i:
            segments.append(("text", buf[i:]))
        return segments, len(buf)

    def _calls(self, buf, region_start, i, final, segments):
        """Calls from buf[i:]; buf[region_start:i] is markup/separators that go with the next value."""
        while True:
            j = i
            while j < len(buf) and (buf[j] in " \t\r\n;"):
                j += 1
            if j >= len(buf):
                if final and region_start < len(buf) and not segments:
                    # only markup / separators after the calls: nothing to show
                    return segments, len(buf)
                self.markup = j - region_start
                return segments, (len(buf) if final else region_start)
            if buf[j] != "{":
                break
            end = self.value_end(buf, j)
            if end is None:
                if not final:
                    self.markup = i - region_start
                    return segments, region_start
                break
            call = as_call(loads(buf[j:end]), ("parameters", "arguments"))
            if call is None:
                break
            segments.append(("call", *call))
            region_start = i = end
            self.markup = 0
        self.mode = "text"
        segments.append(("text", buf[region_start:]))
        return segments, len(buf)


class Llama3JsonParser(ToolParser):
    name = "llama3_json"
    markers = (kPythonTag,)

    def scanner(self):
        return _Llama3Scanner()


def call_text(name: str, arguments: dict) -> str:
    return json.dumps({"name": name, "parameters": arguments}, ensure_ascii=False)
