# eli/server/responses_output.py: a /v1/responses reply's output items, built from the model's text
# as it streams: `message` items (output_text) and `function_call` items, with the Responses
# stream events that announce them.
#
# The text is split by the tool parser's stream (tool_parsers/base.py ToolCallStream.segments:
# decided ("text", ...) / ("call", name, arguments) segments, in order). Items follow the segments:
# text opens a message item (or goes on in the open one), a call closes it and becomes a
# function_call item. Whitespace-only text is held until it is decided: it goes into a message
# when more text follows, and is dropped beside calls (as chat's content is null then). Without a
# parser (no tools, tool_choice none) the whole text is one message item, opened before any text.
# Invariants: the events of a whole run describe exactly `items` (what the non-streamed response
# holds): the non-streamed reply is this builder fed the whole text at once, and the parser's
# decisions do not depend on the chunking; an item is announced (output_item.added) before its
# deltas and finished (output_item.done) before the next is added; nothing sent is taken back.
from __future__ import annotations

import uuid
from typing import Optional

from ..tool_parsers import ToolParser
from ..tool_parsers.base import openai_call_id


def message_item(mid: str, text: Optional[str], status: str) -> dict:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    return {"id": mid, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(fid: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {"id": fid, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


class OutputBuilder:
    """One reply's output items (`items`, finished ones) and the stream events describing them."""

    def __init__(self, parser: Optional[ToolParser]):
        self.stream = parser.stream() if parser is not None else None
        self.items: list[dict] = []
        self._msg: Optional[dict] = None  # the open message item: {"id", "index", "text"}
        self._held = ""                   # whitespace-only text not yet in a message

    def start(self) -> list[dict]:
        """The events before any text: a parserless reply's message item opens at once."""
        return self._open_message("") if self.stream is None else []

    def feed(self, text: str) -> list[dict]:
        if self.stream is None:
            return self._text(text)
        return self._segments(self.stream.segments(text, False))

    def finish(self) -> list[dict]:
        """The closing events (the open message finished; an empty message when nothing came)."""
        events = [] if self.stream is None else self._segments(self.stream.segments("", True))
        if self._msg is None and not self.items:
            events += self._open_message(self._held)
        self._held = ""
        return events + self._close_message()

    # ---- internals ------------------------------------------------------------------------------
    def _segments(self, segments: list) -> list[dict]:
        events: list[dict] = []
        for seg in segments:
            events += self._text(seg[1]) if seg[0] == "text" else self._call(seg[1], seg[2])
        return events

    def _text(self, text: str) -> list[dict]:
        if not text:
            return []
        if self._msg is None:
            if self.stream is not None and not (self._held + text).strip():
                self._held += text
                return []
            text, self._held = self._held + text, ""
            return self._open_message(text)
        self._msg["text"] += text
        return [{"type": "response.output_text.delta", **self._loc(), "delta": text, "logprobs": []}]

    def _open_message(self, text: str) -> list[dict]:
        self._msg = {"id": f"msg_{uuid.uuid4().hex}", "index": len(self.items), "text": ""}
        events = [{"type": "response.output_item.added", "output_index": self._msg["index"],
                   "item": message_item(self._msg["id"], None, "in_progress")},
                  {"type": "response.content_part.added", **self._loc(),
                   "part": {"type": "output_text", "text": "", "annotations": []}}]
        self.items.append({})  # the slot, filled when the message closes
        return events + self._text(text)

    def _close_message(self) -> list[dict]:
        m, self._msg = self._msg, None
        if m is None:
            return []
        item = message_item(m["id"], m["text"], "completed")
        self.items[m["index"]] = item
        loc = {"item_id": m["id"], "output_index": m["index"], "content_index": 0}
        return [{"type": "response.output_text.done", **loc, "text": m["text"], "logprobs": []},
                {"type": "response.content_part.done", **loc, "part": item["content"][0]},
                {"type": "response.output_item.done", "output_index": m["index"], "item": item}]

    def _call(self, name: str, arguments: str) -> list[dict]:
        events = self._close_message()
        self._held = ""
        fid, call_id, index = f"fc_{uuid.uuid4().hex}", openai_call_id(), len(self.items)
        item = function_call_item(fid, call_id, name, arguments, "completed")
        self.items.append(item)
        loc = {"item_id": fid, "output_index": index}
        return events + [
            {"type": "response.output_item.added", "output_index": index,
             "item": function_call_item(fid, call_id, name, "", "in_progress")},
            {"type": "response.function_call_arguments.delta", **loc, "delta": arguments},
            {"type": "response.function_call_arguments.done", **loc, "name": name, "arguments": arguments},
            {"type": "response.output_item.done", "output_index": index, "item": item}]

    def _loc(self) -> dict:
        return {"item_id": self._msg["id"], "output_index": self._msg["index"], "content_index": 0}


__all__ = ["OutputBuilder", "message_item", "function_call_item"]
