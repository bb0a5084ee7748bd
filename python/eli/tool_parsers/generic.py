# eli/tool_parsers/generic.py: the fallback for models whose chat template shows no known tool-call
# format. eli tells such a model (tool_prompt.py) to write Hermes-style <tool_call> blocks, so
# those are parsed; a reply that is a bare JSON call, {"name": ..., "arguments"|"parameters": ...},
# or a JSON array of them, or {"tool_calls": [...]}, is accepted as well.
#
# Scanning (base.py's contract): a reply starting (after whitespace) with "{" or "[" is decided
# when that value closes: calls if it has the shapes above, else content; any other reply is
# scanned for <tool_call> blocks (hermes.py).
from __future__ import annotations

from .base import Scanner, ToolParser, as_call, loads
from .hermes import scan_blocks


def _calls_of(value):
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    calls = []
    for x in items:
        if isinstance(x, dict) and isinstance(x.get("function"), dict):  # OpenAI's own shape
            x = x["function"]
        c = as_call(x)
        if c is None:
            return None
        calls.append(c)
    return calls or None


class _GenericScanner(Scanner):
    def __init__(self):
        self.mode = "start"

    def scan(self, buf, start, final):
        if self.mode == "start":
            rest = buf[start:].lstrip()
            if not rest:
                if final and start < len(buf):
                    return [("text", buf[start:])], len(buf)
                return [], start
            if rest[0] in "{[":
                j = len(buf) - len(rest)
                end = self.value_end(buf, j)
                if end is None and not final:
                    return [], start
                self.mode = "blocks"
                calls = _calls_of(loads(buf[j:end])) if end is not None else None
                if calls is None:
                    stop = len(buf) if end is None else end
                    segs, new = [("text", buf[start:stop])], stop
                else:
                    segs, new = [("call", *c) for c in calls], end
                more, new = scan_blocks(buf, new, final, self)
                return segs + more, new
            self.mode = "blocks"
        return scan_blocks(buf, start, final, self)


class GenericJsonParser(ToolParser):
    name = "json"
    markers = ()

    def scanner(self):
        return _GenericScanner()
