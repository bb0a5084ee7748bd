# eli/server/responses.py: POST /v1/responses, a basic stateless form of OpenAI's Responses API,
# registered by app.py.
#
# What it takes: `input` as a string (one user message) or a list of message items ({role,
# content} with content a string or input_text / output_text parts, `type: "message"` optional),
# `instructions` (a system message first), max_output_tokens, temperature, top_p, seed, stop... (the
# chat fields that apply), `stream`. The conversation is rendered with the model's chat template
# through the chat path (validation.chat_job + the render pool), so the prompt is the one
# /v1/chat/completions would build for the same messages.
# What it refuses (400, naming the field): store=true and previous_response_id (nothing is kept:
# the server is stateless), tools, non-message input items (function_call, function_call_output,
# images, files), text.format other than text, n.
# Streaming sends the Responses event sequence as SSE `event:` + `data:` lines: response.created,
# response.in_progress, response.output_item.added, response.content_part.added,
# response.output_text.delta..., response.output_text.done, response.content_part.done,
# response.output_item.done, response.completed (also when max_output_tokens cut it: its response
# then has status "incomplete", as vLLM sends, which every client's stream reader accepts; no
# `[DONE]`, as OpenAI); an error after the headers is an `error` event. Each event carries a
# sequence_number (0, 1, ...).
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Dict, List, Optional, Union

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from . import validation as V
from .core import Seq
from .protocol import ApiError, ChatCompletionRequest, kMaxSeed

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ROLES = ("system", "developer", "user", "assistant")
_TEXT_PARTS = ("input_text", "output_text", "text")


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: Optional[str] = None
    input: Union[str, List[Dict[str, Any]]]
    instructions: Optional[str] = None
    max_output_tokens: Optional[StrictInt] = None
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[StrictInt] = Field(None, ge=-(2**63), le=kMaxSeed)
    stop: Optional[Union[str, List[str]]] = None
    stream: Optional[StrictBool] = False
    store: Optional[StrictBool] = None
    previous_response_id: Optional[str] = None
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    text: Optional[Dict[str, Any]] = None
    metadata: Optional[Dict[str, Any]] = None
    user: Optional[str] = None
    n: Optional[StrictInt] = None
    cache_salt: Optional[str] = None


def _messages(req: ResponsesRequest) -> list[dict]:
    """The chat messages of a Responses request (instructions first)."""
    out = []
    if req.instructions:
        out.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        if not req.input:
            raise ApiError(400, "input must not be empty", param="input")
        out.append({"role": "user", "content": req.input})
        return out
    if not req.input:
        raise ApiError(400, "input must not be empty", param="input")
    for i, item in enumerate(req.input):
        kind = item.get("type", "message")
        if kind != "message":
            raise ApiError(400, f"input[{i}]: items of type {str(kind)[:50]!r} are not supported (only messages; "
                           f"function calls need tools, which /v1/responses does not support yet)",
                           param=f"input.{i}.type")
        role = item.get("role")
        if role not in _ROLES:
            raise ApiError(400, f"input[{i}]: role must be one of {', '.join(_ROLES)}", param=f"input.{i}.role")
        content = item.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = []
            for k, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(
                        part.get("text"), str):
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise ApiError(400, f"input[{i}].content[{k}]: only text parts are supported, got "
                                   f"{str(kind)[:50]!r}", param=f"input.{i}.content.{k}")
                parts.append(part["text"])
            text = "".join(parts)
        else:
            raise ApiError(400, f"input[{i}]: content must be a string or a list of text parts",
                           param=f"input.{i}.content")
        out.append({"role": role, "content": text})
    return out


def check_responses(req: ResponsesRequest) -> None:
    if req.store:
        raise ApiError(400, "store=true is not supported: this server is stateless and keeps no responses "
                       "(send store=false, or leave it out)", param="store")
    if req.previous_response_id is not None:
        raise ApiError(400, "previous_response_id is not supported: this server is stateless and keeps no "
                       "responses; send the whole conversation in `input`", param="previous_response_id")
    if req.tools:
        raise ApiError(400, "tools in /v1/responses not supported yet (use /v1/chat/completions)", param="tools")
    if req.n not in (None, 1):
        raise ApiError(400, "n is not supported by /v1/responses", param="n")
    fmt = (req.text or {}).get("format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise ApiError(400, "text.format other than text is not supported by /v1/responses", param="text.format")


def _chat_request(req: ResponsesRequest) -> ChatCompletionRequest:
    fields = {"messages": _messages(req), "max_completion_tokens": req.max_output_tokens,
              "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed, "stop": req.stop,
              "cache_salt": req.cache_salt}
    try:
        return ChatCompletionRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except Exception as e:  # noqa: BLE001 -- pydantic's ValidationError
        raise V.pydantic_error(e) if hasattr(e, "errors") else ApiError(400, str(e)) from None


def _usage(prompt_tokens: int, output_tokens: int) -> dict:
    return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + output_tokens}


def register(v1, srv) -> None:
    """Adds POST /responses to the /v1 router `v1` of the app serving `srv` (core.Server)."""

    @v1.post("/responses")
    async def responses(request: Request):
        start = time.perf_counter()
        req: ResponsesRequest = await srv.read_body(request, ResponsesRequest)
        check_responses(req)
        chat = _chat_request(req)
        job = V.chat_job(chat, srv.tokenizer, srv.chat_template, srv.max_prompt_chars)
        slots = srv.reserve(1, param="input")
        try:
            ids = await srv.chat_prompt_ids(job)
            max_tokens = V.check_context(len(ids), req.max_output_tokens, srv.max_model_len,
                                         param="max_output_tokens", default_max_tokens=srv.max_tokens_default)
            params = V.make_params(chat, max_tokens, None, srv.cache_salt(request, chat))[0]
            seq = Seq(index=0, prompt_ids=ids, params=params, start=start, holds_slot=slots.take())
        finally:
            slots.close()
        return await _respond(srv, request, req, seq, len(ids))


def _response(srv, req: ResponsesRequest, rid: str, created: int, status: str, output: list,
              usage: Optional[dict], finish: Optional[str] = None) -> dict:
    incomplete = {"reason": "max_output_tokens"} if finish == "length" else None
    return {"id": rid, "object": "response", "created_at": created, "status": status, "error": None,
            "incomplete_details": incomplete, "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens, "model": srv.model_name, "output": output,
            "parallel_tool_calls": True, "previous_response_id": None, "reasoning": None, "store": False,
            "temperature": req.temperature, "top_p": req.top_p, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "truncation": "disabled", "usage": usage, "user": req.user,
            "metadata": req.metadata or {}}


def _message(mid: str, text: Optional[str], status: str) -> dict:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    return {"id": mid, "type": "message", "status": status, "role": "assistant", "content": content}


async def _respond(srv, request, req: ResponsesRequest, seq: Seq, prompt_tokens: int):
    rid, mid, created = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time())
    if not req.stream:
        await srv.run_all(request, [seq])
        status = "incomplete" if seq.finish_reason == "length" else "completed"
        return _response(srv, req, rid, created, status, [_message(mid, seq.text, "completed")],
                         _usage(prompt_tokens, seq.n_tokens), seq.finish_reason)

    loc = {"item_id": mid, "output_index": 0, "content_index": 0}
    state = {"text": "", "tokens": 0, "finish": None}
    head = _response(srv, req, rid, created, "in_progress", [], None)
    first = [{"type": "response.created", "response": head},
             {"type": "response.in_progress", "response": head},
             {"type": "response.output_item.added", "output_index": 0, "item": _message(mid, None, "in_progress")},
             {"type": "response.content_part.added", **loc,
              "part": {"type": "output_text", "text": "", "annotations": []}}]

    def chunk(_seq, out):
        state["tokens"] += len(out.delta_token_ids or [])
        if out.finish_reason is not None:
            state["finish"] = out.finish_reason
        if not out.delta_text:
            return None
        state["text"] += out.delta_text
        return {"type": "response.output_text.delta", **loc, "delta": out.delta_text, "logprobs": []}

    def final():
        text = state["text"]
        status = "incomplete" if state["finish"] == "length" else "completed"
        item = _message(mid, text, "completed")
        part = {"type": "output_text", "text": text, "annotations": []}
        done = _response(srv, req, rid, created, status, [item], _usage(prompt_tokens, state["tokens"]),
                         state["finish"])
        return [{"type": "response.output_text.done", **loc, "text": text, "logprobs": []},
                {"type": "response.content_part.done", **loc, "part": part},
                {"type": "response.output_item.done", "output_index": 0, "item": item},
                {"type": "response.completed", "response": done}]

    body = await srv.open_stream([seq], first, chunk, lambda: {"type": "__final__"})
    return StreamingResponse(_events(body, final), media_type="text/event-stream", headers=_SSE_HEADERS)


async def _events(body, final):
    """core's SSE body (`data:` lines, [DONE]) as Responses events: named, numbered, no [DONE];
    the __final__ marker becomes the closing events, an error object an `error` event."""
    n = 0
    try:
        async for line in body:
            data = line[len("data: "):].strip()
            if data == "[DONE]":
                continue
            ev = json.loads(data)
            if "error" in ev and "type" not in ev:
                err = ev["error"]
                events = [{"type": "error", "code": err.get("code"), "message": err.get("message"),
                           "param": err.get("param")}]
            elif ev.get("type") == "__final__":
                events = final()
            else:
                events = [ev]
            for e in events:
                e = {"type": e["type"], "sequence_number": n, **{k: v for k, v in e.items() if k != "type"}}
                n += 1
                yield f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False, separators=(',', ':'))}\n\n"
    finally:
        await body.aclose()
