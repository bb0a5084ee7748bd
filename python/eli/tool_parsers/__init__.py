# eli/tool_parsers: reading tool calls out of a model's text, per model family, as vLLM does.
#
#   hermes       <tool_call>{"name", "arguments"}</tool_call> blocks: Qwen2.5, Qwen3, Hermes 2/3
#   llama3_json  {"name", "parameters"} JSON replies, optionally after <|python_tag|>: Llama 3.1-3.3
#   mistral      [TOOL_CALLS][{"name", "arguments"}, ...]: Mistral 7B v0.3, Nemo, Small
#   json         the fallback: <tool_call> blocks or a bare JSON call / array of calls
#
# detect_parser(template) picks one from the chat template's text (its markers); `eli serve
# --tool-parser NAME` overrides it. Each parser parses whole texts (parse) and streams
# (stream(): OpenAI tool_calls deltas, base.py); grammar.py builds the Lark grammar that forces
# calls in the family's format (tool_choice required / named).
from __future__ import annotations

import re
from typing import Optional

from .base import ParseResult, ToolCall, ToolCallStream, ToolParser, merge_deltas
from .generic import GenericJsonParser
from .hermes import HermesParser
from .llama3 import Llama3JsonParser
from .mistral import MistralParser

PARSERS = {p.name: p for p in (HermesParser, Llama3JsonParser, MistralParser, GenericJsonParser)}
ALIASES = {"qwen": "hermes", "qwen2.5": "hermes", "qwen3": "hermes", "llama3": "llama3_json",
           "llama3.1": "llama3_json", "llama3.2": "llama3_json", "llama": "llama3_json",
           "generic": "json"}
kAuto = "auto"


def parser_names() -> list[str]:
    return sorted(PARSERS) + [kAuto]


def get_parser(name: str) -> ToolParser:
    """The parser called `name` (or an alias); ValueError naming the choices otherwise."""
    key = ALIASES.get(name, name)
    if key not in PARSERS:
        raise ValueError(f"unknown tool parser {name!r} (choices: {', '.join(parser_names())})")
    return PARSERS[key]()


def detect_parser_name(template: Optional[str]) -> str:
    """The family whose tool-call markers the chat template writes; "json" when none is known."""
    t = template or ""
    if "[TOOL_CALLS]" in t:
        return "mistral"
    if "<tool_call>" in t:
        return "hermes"
    if "<|python_tag|>" in t or ("<|start_header_id|>" in t and '"parameters"' in t):
        return "llama3_json"
    return "json"


def resolve_parser(name: Optional[str], template: Optional[str]) -> ToolParser:
    """`name` ("auto" or None: detected from the template)."""
    if name in (None, "", kAuto):
        return get_parser(detect_parser_name(template))
    return get_parser(name)


_TOOLS_VAR = re.compile(r"\btools\b")


def template_renders_tools(template: Optional[str]) -> bool:
    """Whether the chat template reads the `tools` variable (else eli describes the tools itself)."""
    return bool(template) and bool(_TOOLS_VAR.search(template))


__all__ = ["PARSERS", "ParseResult", "ToolCall", "ToolCallStream", "ToolParser", "detect_parser_name",
           "get_parser", "merge_deltas", "parser_names", "resolve_parser", "template_renders_tools"]
