# eli/server/responses_input.py: the `instructions` and `input` of a /v1/responses request as the
# chat messages /v1/chat/completions renders (system first, then the items in order).
#
# Items: a message ({role, content}, `type: "message"` optional; content a string or input_text /
# output_text parts) -> that message; function_call ({call_id, name, arguments}) -> a tool call of
# an assistant message (joined to the assistant message right before it, so a reply's text and its
# parallel calls stay one turn); function_call_output ({call_id, output: a string or text parts})
# -> a `tool` message answering that call_id.
# Invariants: every refusal is an ApiError 400 naming the item's field (input.<i>.<field>); an
# output's call_id must be a function_call earlier in `input` (the server keeps no earlier
# responses to find it in, as OpenAI refuses an output without its call); other item types
# (reasoning, images, files, item references) are refused.
from __future__ import annotations

from typing import Any, Optional, Union

from .protocol import ApiError

kRoles = ("system", "developer", "user", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")
_ITEMS = ("message", "function_call", "function_call_output")


def _text(content: Any, where: str, field: str) -> str:
    """A string, or the text of a list of text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, f"{where}: {field} must be a string or a list of text parts", param=f"{where}.{field}")
    parts = []
    for k, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ApiError(400, f"{where}.{field}[{k}]: only text parts are supported, got {str(kind)[:50]!r}",
                           param=f"{where}.{field}.{k}")
        parts.append(part["text"])
    return "".join(parts)


def _field(item: dict, key: str, where: str) -> str:
    v = item.get(key)
    if not isinstance(v, str) or not v:
        raise ApiError(400, f"{where}: {key} must be a non-empty string", param=f"{where}.{key}")
    return v


def chat_messages(instructions: Optional[str], input: Union[str, list]) -> list[dict]:  # noqa: A002
    """The chat messages of a Responses request (see the header)."""
    out: list[dict] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    if isinstance(input, str):
        if not input:
            raise ApiError(400, "input must not be empty", param="input")
        return out + [{"role": "user", "content": input}]
    if not input:
        raise ApiError(400, "input must not be empty", param="input")
    calls: set[str] = set()
    for i, item in enumerate(input):
        where = f"input.{i}"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in kRoles:
                raise ApiError(400, f"{where}: role must be one of {', '.join(kRoles)}", param=f"{where}.role")
            out.append({"role": role, "content": _text(item.get("content"), where, "content")})
        elif kind == "function_call":
            call_id, name = _field(item, "call_id", where), _field(item, "name", where)
            args = item.get("arguments")
            if not isinstance(args, str):
                raise ApiError(400, f"{where}: arguments must be a string (JSON text)", param=f"{where}.arguments")
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            calls.add(call_id)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = _field(item, "call_id", where)
            if call_id not in calls:
                raise ApiError(400, f"{where}: no function_call with call_id {call_id[:64]!r} comes before this "
                               f"output in input (the server is stateless: send the call too)",
                               param=f"{where}.call_id")
            out.append({"role": "tool", "tool_call_id": call_id, "content": _text(item.get("output"), where, "output")})
        else:
            raise ApiError(400, f"input[{i}]: items of type {str(kind)[:50]!r} are not supported (only "
                           f"{', '.join(_ITEMS)})", param=f"{where}.type")
    return out


__all__ = ["chat_messages", "kRoles"]
