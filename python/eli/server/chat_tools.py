# eli/server/chat_tools.py: tools, tool_choice, parallel_tool_calls and response_format of a chat
# request: checked (a 400 naming the field), turned into a plan (what the template gets, which
# constraint the sampler enforces, how the reply is parsed), and the reply shaped into OpenAI's
# message / streamed deltas with tool_calls.
#
# Shared by /v1/chat/completions (app.py) and /v1/responses (responses.py): the two differ only in
# where a tool's fields sit (make_plan's `shape`), and every plan is in chat's shape.
# Semantics (docs/serving.md, "Tool calling"):
#   tool_choice none      tools are not shown to the model; the reply is content.
#   tool_choice auto      (default with tools) tools are shown; the reply is parsed by the model
#                         family's tool parser (eli/tool_parsers): content and/or tool calls.
#   tool_choice required  the grammar forces one or more calls of declared tools (exactly one when
#                         parallel_tool_calls is false), each call's arguments valid against the
#                         tool's parameters schema (tool_parsers/grammar.py).
#   named function        the grammar forces exactly one call of that tool.
#   response_format       json_object / json_schema (strict or not: the schema is enforced either
#                         way) -> SamplingParams json_schema ({"type": "object"} for json_object),
#                         written compactly; with tools under auto, the grammar allows tool calls
#                         or the JSON answer.
# finish_reason is "tool_calls" when the reply holds calls and generation stopped normally.
# Invariants: nothing here raises anything but ApiError (400) for a client's request; a model's
# malformed tool-call text becomes content (the parsers' contract), never an error.
from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from ..sampling_params import SamplingParams
from ..tool_parsers import ToolParser, template_renders_tools
from ..tool_parsers.grammar import call_grammar, kCompact
from .protocol import ApiError

kMaxTools = 128
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_CONSTRAINT_FIELDS = ("grammar", "json_schema", "json_object")


@dataclasses.dataclass
class ToolPlan:
    tools: list                      # validated tools shown to the model ([] for none / no tools)
    choice: str                      # "none" | "auto" | "required" | "named"
    parser: Optional[ToolParser]     # parses the reply when tools are shown
    constraint: dict                 # SamplingParams kwargs (grammar / json_schema / json_object)
    constraint_param: Optional[str]  # the request field a constraint error names
    keep_special: bool = False       # the parser reads special-token markers: keep them in the text


def constraints_supported() -> bool:
    """Whether this build's SamplingParams has the structured-output fields."""
    names = {f.name for f in dataclasses.fields(SamplingParams)}
    return all(f in names for f in _CONSTRAINT_FIELDS)


# The two request shapes a tool arrives in: chat nests the function ({"type": "function",
# "function": {"name", ...}}), the Responses API has it flat ({"type": "function", "name", ...});
# so do their named tool_choice ({"function": {"name"}} vs {"name"}).
kShapes = ("chat", "responses")
_FN_FIELDS = ("name", "description", "parameters", "strict")


def _function_of(t: Any, where: str, shape: str) -> tuple[dict, str]:
    """(the function's fields, the param prefix naming them) of tool `t`; 400 unless a function."""
    kind = t.get("type", "function" if shape == "chat" else None) if isinstance(t, dict) else None
    if kind != "function":
        got = f"tools of type {str(kind)[:40]!r}" if isinstance(kind, str) else "a tool without a type"
        raise ApiError(400, f"{where}: {got} are not supported; this server runs no hosted tools, only "
                       f"tools of type 'function' (called by the client)", param=f"{where}.type")
    if shape == "responses":
        return {k: v for k, v in t.items() if k in _FN_FIELDS}, where  # in the client's order, as chat
    fn = t.get("function")
    if not isinstance(fn, dict):
        raise ApiError(400, f"{where}.function must be an object with a name", param=f"{where}.function")
    return fn, f"{where}.function"


def _check_tools(tools: Any, shape: str = "chat") -> list:
    """The tools, validated, in chat's shape ({"type": "function", "function": {...}})."""
    if not isinstance(tools, list):
        raise ApiError(400, "tools must be a list of tools", param="tools")
    if len(tools) > kMaxTools:
        raise ApiError(400, f"at most {kMaxTools} tools per request, got {len(tools)}", param="tools")
    out, names = [], set()
    for i, t in enumerate(tools):
        fn, at = _function_of(t, f"tools.{i}", shape)
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ApiError(400, f"{at}.name must be 1-64 letters, digits, '_', '-' or '.'", param=f"{at}.name")
        if name in names:
            raise ApiError(400, f"{at}.name {name!r} is declared twice", param=f"{at}.name")
        names.add(name)
        if fn.get("description") is not None and not isinstance(fn["description"], str):
            raise ApiError(400, f"{at}.description must be a string", param=f"{at}.description")
        params = fn.get("parameters")
        if params is not None and (not isinstance(params, dict) or params.get("type", "object") != "object"):
            raise ApiError(400, f"{at}.parameters must be a JSON schema of type object", param=f"{at}.parameters")
        if fn.get("strict") is not None and not isinstance(fn["strict"], bool):
            raise ApiError(400, f"{at}.strict must be a boolean", param=f"{at}.strict")
        clean = {k: v for k, v in fn.items() if v is not None}
        out.append({"type": "function", "function": clean})
    return out


def _choice_usage(shape: str) -> str:
    named = '{"type": "function", "name": ...}' if shape == "responses" else \
        '{"type": "function", "function": {"name": ...}}'
    return f"tool_choice must be 'none', 'auto', 'required' or {named}"


def _check_choice(choice: Any, tools: list, shape: str = "chat") -> tuple[str, Optional[str]]:
    if choice is None:
        return ("auto" if tools else "none"), None
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise ApiError(400, f"{_choice_usage(shape)}, got {choice[:40]!r}", param="tool_choice")
        if choice == "required" and not tools:
            raise ApiError(400, "tool_choice 'required' needs tools", param="tool_choice")
        return (choice if tools else "none"), None
    kind = choice.get("type") if isinstance(choice, dict) else None
    if isinstance(kind, str) and kind != "function":
        raise ApiError(400, f"tool_choice of type {kind[:40]!r} is not supported; {_choice_usage(shape)}",
                       param="tool_choice")
    fn = choice if shape == "responses" else (choice.get("function") if isinstance(choice, dict) else None)
    name = fn.get("name") if isinstance(fn, dict) else None
    if kind != "function" or not isinstance(name, str):
        raise ApiError(400, _choice_usage(shape), param="tool_choice")
    if name not in {t["function"]["name"] for t in tools}:
        raise ApiError(400, f"tool_choice names {name[:64]!r}, which is not in tools", param="tool_choice")
    return "named", name


def response_schema(rf: Any) -> tuple[Optional[str], Optional[dict]]:
    """("text" | "json_object" | "json_schema" | None, the schema) of a response_format; 400s."""
    if rf is None:
        return None, None
    if not isinstance(rf, dict):
        raise ApiError(400, "response_format must be an object", param="response_format")
    kind = rf.get("type")
    if kind in (None, "text"):
        return None, None
    if kind == "json_object":
        return "json_object", {"type": "object"}
    if kind == "json_schema":
        js = rf.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise ApiError(400, "response_format.json_schema.schema must be a JSON schema object",
                           param="response_format.json_schema.schema")
        if isinstance(js, dict) and js.get("strict") is not None and not isinstance(js.get("strict"), bool):
            raise ApiError(400, "response_format.json_schema.strict must be a boolean",
                           param="response_format.json_schema.strict")
        return "json_schema", schema
    raise ApiError(400, f"response_format.type must be 'text', 'json_object' or 'json_schema', got {str(kind)[:40]!r}",
                   param="response_format.type")


def _compact(schema: dict) -> dict:
    """The schema with compact JSON output (no free whitespace; a client's own x-guidance wins),
    so a weak model cannot fill max_tokens with spaces (as OpenAI, the reply is compact JSON)."""
    return schema if "x-guidance" in schema else dict(schema, **{"x-guidance": kCompact})


def _marker_token(tokenizer, marker: str) -> Optional[int]:
    try:
        tid = tokenizer.backend.token_to_id(marker)
    except Exception:  # noqa: BLE001 -- a tokenizer without a vocabulary view: no marker token
        return None
    return tid if isinstance(tid, int) else None


_NO_FORMAT = object()


def make_plan(req, parser: ToolParser, tokenizer, *, shape: str = "chat", response_format: Any = _NO_FORMAT) -> ToolPlan:
    """The plan of a request with fields tools, tool_choice, parallel_tool_calls and (chat)
    response_format, its tools in `shape` (kShapes); validated (ApiError 400 naming the field).
    `response_format` (chat's shape) replaces the request's own, for endpoints that carry it
    elsewhere (/v1/responses: text.format)."""
    if shape not in kShapes:
        raise ValueError(f"unknown tool shape {shape!r}")
    tools = _check_tools(req.tools, shape) if req.tools else []
    choice, named = _check_choice(req.tool_choice, tools, shape)
    if req.parallel_tool_calls is not None and not isinstance(req.parallel_tool_calls, bool):
        raise ApiError(400, "parallel_tool_calls must be a boolean", param="parallel_tool_calls")
    parallel = req.parallel_tool_calls is not False
    rf = getattr(req, "response_format", None) if response_format is _NO_FORMAT else response_format
    rf_kind, schema = response_schema(rf)
    if choice in ("required", "named") and rf_kind is not None:
        raise ApiError(400, "response_format cannot be combined with a forced tool call (tool_choice "
                       "'required' or a named function)", param="response_format")
    shown = tools if choice != "none" else []
    markers = [m for m in (parser.markers if shown else ()) if _marker_token(tokenizer, m) is not None]
    constraint, param = {}, None
    if choice in ("required", "named"):
        subset = [t for t in tools if choice == "required" or t["function"]["name"] == named]
        constraint = {"grammar": call_grammar(parser.name, subset, parallel=parallel and choice == "required",
                                              marker_token_id=_marker_token(tokenizer, "[TOOL_CALLS]"))}
        param = "tool_choice"
    elif rf_kind is not None and shown:
        constraint = {"grammar": call_grammar(parser.name, shown, parallel=parallel, answer_schema=schema,
                                              marker_token_id=_marker_token(tokenizer, "[TOOL_CALLS]"))}
        param = "response_format"
    elif rf_kind == "json_object":
        constraint, param = {"json_schema": _compact(schema)}, "response_format"
    elif rf_kind == "json_schema":
        constraint, param = {"json_schema": _compact(schema)}, "response_format.json_schema.schema"
    if constraint and not constraints_supported():
        raise ApiError(400, f"{param.split('.')[0]} needs constrained decoding, which this build of eli lacks",
                       param=param)
    return ToolPlan(shown, choice, parser if shown else None, constraint, param, keep_special=bool(markers))


# ---- replies --------------------------------------------------------------------------------------
def finish_reason(reason: Optional[str], has_calls: bool) -> Optional[str]:
    return "tool_calls" if has_calls and reason == "stop" else reason


def message(plan: ToolPlan, text: str) -> tuple[dict, bool]:
    """The assistant message of a whole reply, and whether it holds tool calls."""
    if plan.parser is None:
        return {"role": "assistant", "content": text}, False
    r = plan.parser.parse(text)
    msg: dict = {"role": "assistant", "content": r.content}
    if r.tool_calls:
        msg["tool_calls"] = [c.to_openai() for c in r.tool_calls]
    return msg, bool(r.tool_calls)


def template_inputs(plan: ToolPlan, template: Optional[str]) -> tuple[Optional[list], bool]:
    """(tools for the template's `tools` variable, whether eli must describe the tools itself)."""
    if not plan.tools:
        return None, False
    if template_renders_tools(template):
        return plan.tools, False
    return None, True


def job_tools(plan: ToolPlan, template: Optional[str]) -> dict:
    """validation.chat_job's tools / describe_tools arguments for the plan."""
    tools_var, describe = template_inputs(plan, template)
    return {"tools": tools_var, "describe_tools": plan.tools if describe else None}


def sampling_extra(plan: ToolPlan) -> dict:
    """The SamplingParams fields the plan adds: its constraint, and skip_special_tokens off when
    the parser reads special-token markers ([TOOL_CALLS], <|python_tag|>)."""
    extra = dict(plan.constraint)
    if plan.keep_special:
        extra["skip_special_tokens"] = False
    return extra


__all__ = ["ToolPlan", "make_plan", "message", "finish_reason", "response_schema", "template_inputs",
           "job_tools", "sampling_extra", "constraints_supported", "kMaxTools", "kShapes"]
