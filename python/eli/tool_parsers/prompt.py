# eli/tool_parsers/prompt.py: the tool instructions eli adds to a chat whose template never reads
# the `tools` variable (SmolLM2's, the ChatML fallback, most base models): the tool list as JSON and
# the <tool_call> format the "json" parser reads (and the forcing grammar writes). Templates that
# render tools themselves get the tools as the `tools` variable instead (as transformers does).
from __future__ import annotations

import json

kToolPrompt = ("You can call these tools (JSON schemas):\n{tools}\n\n"
               "To call a tool, reply with one block per call:\n"
               "<tool_call>\n{{\"name\": <tool name>, \"arguments\": <arguments object>}}\n</tool_call>")


def tool_system_text(tools: list) -> str:
    listing = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
    return kToolPrompt.format(tools=listing)


def template_takes_system(template) -> bool:
    """Whether a chat template renders a system message (Gemma's refuse one; a template that never
    mentions the role would drop it)."""
    if not template:
        return True  # the ChatML fallback
    return "system" in template and "System role not supported" not in template


def with_tool_prompt(messages: list, tools: list, system_ok: bool = True) -> list:
    """`messages` with the tool instructions appended to the leading system message (or a new
    system message first; with system_ok False, put before the first user message's text instead).
    Client text stays where it was; the instructions are client data too (they list the client's
    tools), so they are rendered as data by the chat template."""
    text = tool_system_text(tools)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        first = dict(messages[0], content=messages[0]["content"] + "\n\n" + text)
        return [first] + list(messages[1:])
    if system_ok:
        return [{"role": "system", "content": text}] + list(messages)
    out = list(messages)
    for i, m in enumerate(out):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            out[i] = dict(m, content=text + "\n\n" + m["content"])
            return out
    return out


__all__ = ["template_takes_system", "tool_system_text", "with_tool_prompt"]
