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


def with_tool_prompt(messages: list, tools: list) -> list:
    """`messages` with the tool instructions appended to the leading system message (or a new
    system message first). Client text stays where it was; the instructions are client data too
    (they list the client's tools), so they are rendered as data by the chat template."""
    text = tool_system_text(tools)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        first = dict(messages[0], content=messages[0]["content"] + "\n\n" + text)
        return [first] + list(messages[1:])
    return [{"role": "system", "content": text}] + list(messages)


__all__ = ["tool_system_text", "with_tool_prompt"]
