# eli/tool_parsers/grammar.py: the Lark grammar (llguidance's dialect, with %json for each tool's
# parameters schema) that forces a reply of tool calls in a family's format: tool_choice "required"
# (one or more calls of any declared tool; exactly one unless parallel calls are allowed) or a
# named function (exactly one call of it). Given to eli.SamplingParams(grammar=...).
#
# Formats (what each family's parser reads back, see its module):
#   hermes / json   <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>  (newline-separated)
#   llama3_json     {"name": "f", "parameters": {...}}                             ("; "-separated)
#   mistral         [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]           (one JSON array)
# Mistral's [TOOL_CALLS] is a special token: the grammar names it by id (<[id]>) when the caller
# gives it (marker_token_id), else as text. Each call is one %json object with "name" fixed to the
# tool's name (const) and the arguments under the tool's parameters schema (an object schema;
# {"type": "object"} when the tool gives none).
from __future__ import annotations

import json
from typing import Optional

kEmptyParams = {"type": "object"}
# Calls are written compactly (", " and ": " separators, no other whitespace): a random or weak model
# cannot pad a forced call with whitespace until max_tokens (llguidance's JSON option).
kCompact = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _params(tool: dict) -> dict:
    p = tool["function"].get("parameters")
    return p if isinstance(p, dict) and p else dict(kEmptyParams)


def _call_schema(tool: dict, args_key: str) -> dict:
    name = tool["function"]["name"]
    return {"type": "object", "properties": {"name": {"const": name}, args_key: _params(tool)},
            "required": ["name", args_key], "additionalProperties": False, "x-guidance": kCompact}


def _lark_str(s: str) -> str:
    return json.dumps(s)  # JSON string escapes are Lark's


def call_grammar(family: str, tools: list, *, parallel: bool = True,
                 marker_token_id: Optional[int] = None, answer_schema: Optional[dict] = None) -> str:
    """Lark text forcing one call (parallel=False) or one or more calls of `tools` (OpenAI tool
    dicts, already validated) in `family`'s format; with `answer_schema`, a JSON answer valid
    against it is allowed instead of the calls (tool_choice auto with a response_format)."""
    if not tools:
        raise ValueError("call_grammar needs at least one tool")
    text = _calls_grammar(family, tools, parallel, marker_token_id)
    if answer_schema is None:
        return text
    if "x-guidance" not in answer_schema:
        answer_schema = dict(answer_schema, **{"x-guidance": kCompact})
    return text.replace("start:", "calls_or_answer:", 1) + (
        f"start: calls_or_answer | answer\nanswer: %json {json.dumps(answer_schema)}\n")


def _calls_grammar(family, tools, parallel, marker_token_id) -> str:
    if family == "mistral":
        items = {"anyOf": [_call_schema(t, "arguments") for t in tools]} if len(tools) > 1 else _call_schema(tools[0], "arguments")
        array = {"type": "array", "items": items, "minItems": 1, "x-guidance": kCompact}
        if not parallel:
            array["maxItems"] = 1
        marker = f"<[{marker_token_id}]>" if marker_token_id is not None else _lark_str("[TOOL_CALLS]")
        return f"start: {marker} call_list\ncall_list: %json {json.dumps(array)}\n"
    if family == "llama3_json":
        sep, before, after, key = '"; "', "", "", "parameters"
    elif family in ("hermes", "json"):
        sep, before, after, key = r'"\n"', r'"<tool_call>\n" ', r' "\n</tool_call>"', "arguments"
    else:
        raise ValueError(f"no call grammar for tool parser {family!r}")
    lines = ["start: call" if not parallel else f"start: call ({sep} call)*"]
    alts = []
    for i, t in enumerate(tools):
        lines.append(f"call_{i}: {before}%json {json.dumps(_call_schema(t, key))}{after}")
        alts.append(f"call_{i}")
    lines.insert(1, "call: " + " | ".join(alts))
    return "\n".join(lines) + "\n"


__all__ = ["call_grammar"]
