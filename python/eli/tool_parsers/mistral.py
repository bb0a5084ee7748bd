# eli/tool_parsers/mistral.py: Mistral tool calls: the [TOOL_CALLS] special token followed by a JSON
# array [{"name": "f", "arguments": {...}}, ...] (Mistral 7B v0.3, Nemo, Small; an "id" may ride
# along). Call ids are 9 alphanumerics, as Mistral's chat template requires of tool-call history.
#
# Scanning (base.py's contract): text before [TOOL_CALLS] is content (a tail that may start the
# marker waits); after it, one JSON array (or one object) is decided when it closes; if any element
# is not a call the whole block, marker included, is content; an unclosed block at the end too.
from __future__ import annotations

import json

from .base import Scanner, ToolParser, as_call, loads, marker_holdback, mistral_call_id

kMarker = "[TOOL_CALLS]"


class _MistralScanner(Scanner):
    def scan(self, buf, start, final):
        segments: list = []
        i = start
        while i < len(buf):
            j = buf.find(kMarker, i)
            if j < 0:
                end = len(buf) if final else len(buf) - marker_holdback(buf[i:], (kMarker,))
                if end > i:
                    segments.append(("text", buf[i:end]))
                return segments, end
            if j > i:
                segments.append(("text", buf[i:j]))
            k = j + len(kMarker)
            while k < len(buf) and buf[k] in " \t\r\n":
                k += 1
            if k >= len(buf):
                if not final:
                    return segments, j
                segments.append(("text", buf[j:]))
                return segments, len(buf)
            if buf[k] not in "[{":  # not JSON after the marker: the marker is content
                segments.append(("text", buf[j:k]))
                i = k
                continue
            end = self.value_end(buf, k)
            if end is None:
                if not final:
                    return segments, j
                segments.append(("text", buf[j:]))
                return segments, len(buf)
            value = loads(buf[k:end])
            items = value if isinstance(value, list) else [value]
            calls = [as_call(x) for x in items]
            if not calls or not all(calls):
                segments.append(("text", buf[j:end]))
                i = end
                continue
            segments.extend(("call", *c) for c in calls)
            i = end
        return segments, i


class MistralParser(ToolParser):
    name = "mistral"
    markers = (kMarker,)
    new_id = staticmethod(mistral_call_id)

    def scanner(self):
        return _MistralScanner()


def call_text(name: str, arguments: dict) -> str:
    return kMarker + json.dumps([{"name": name, "arguments": arguments}], ensure_ascii=False)
