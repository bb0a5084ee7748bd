# eli/server/responses.py: POST /v1/responses, a basic stateless form of OpenAI's Responses API,
# registered by app.py.
#
# What it takes: `input` as a string (one user message) or a list of items (responses_input.py:
# messages, function_call and function_call_output), `instructions` (a system message first),
# max_output_tokens, temperature, top_p, seed, stop... (the chat fields that apply), `stream`, and
# function tools: `tools` ({"type": "function", "name", "description", "parameters", "strict"}),
# `tool_choice` (none / auto / required / {"type": "function", "name"}), `parallel_tool_calls`,
# checked and planned by chat_tools.make_plan (shape "responses"), exactly as chat does it: forced
# calls are enforced by the grammar, replies parsed by the model family's tool parser. The
# conversation is rendered with the model's chat template through the chat path
# (validation.chat_job + the render pool), so the prompt is the one /v1/chat/completions would
# build for the same messages and tools.
# What it refuses (400, naming the field): store=true and previous_response_id (nothing is kept:
# the server is stateless), tools of any type but function (hosted tools: web_search, file_search,
# mcp, ...), other input items (reasoning, images, files, item references), n.
# Structured output: `text.format` {"type": "json_schema", "name", "schema", "strict"} or
# {"type": "json_object"} constrains the reply as chat's response_format does (the same plan,
# errors naming text.format...); the response echoes the format.
# Output (responses_output.py): `message` items and `function_call` items {id "fc_...", call_id
# "call_...", name, arguments, status}, in the order the model wrote them; the response echoes
# tools, tool_choice and parallel_tool_calls.
# Streaming sends the Responses event sequence as SSE `event:` + `data:` lines: response.created,
# response.in_progress, then per item response.output_item.added, its content
# (response.content_part.added, response.output_text.delta..., response.output_text.done,
# response.content_part.done for a message; response.function_call_arguments.delta / .done for
# a call), response.output_item.done; last response.completed (also when max_output_tokens cut
# it: its response then has status "incomplete", as vLLM sends, which every client's stream
# reader accepts; no `[DONE]`, as OpenAI); an error after the headers is an `error` event. Each
# event carries a sequence_number (0, 1, ...). The streamed items equal the non-streamed ones.
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any, Dict, List, Optional, Union

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from . import chat_tools
from . import validation as V
from .core import Seq
from .protocol import ApiError, ChatCompletionRequest, kMaxSeed
from .responses_input import chat_messages
from .responses_output import OutputBuilder

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
    tools: Optional[List[Any]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    parallel_tool_calls: Optional[StrictBool] = None
    text: Optional[Dict[str, Any]] = None
    metadata: Optional[Dict[str, Any]] = None
    user: Optional[str] = None
    n: Optional[StrictInt] = None
    cache_salt: Optional[str] = None


def check_responses(req: ResponsesRequest) -> None:
    if req.store:
        raise ApiError(400, "store=true is not supported: this server is stateless and keeps no responses "
                       "(send store=false, or leave it out)", param="store")
    if req.previous_response_id is not None:
        raise ApiError(400, "previous_response_id is not supported: this server is stateless and keeps no "
                       "responses; send the whole conversation in `input`", param="previous_response_id")
    if req.n not in (None, 1):
        raise ApiError(400, "n is not supported by /v1/responses", param="n")
    if req.text is not None and set(req.text) - {"format", "verbosity"}:
        raise ApiError(400, f"text takes format (and verbosity), not {sorted(set(req.text) - {'format', 'verbosity'})}",
                       param="text")


def text_format(req: ResponsesRequest) -> Optional[dict]:
    """text.format as chat's response_format (None for plain text); 400 naming text.format."""
    fmt = (req.text or {}).get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise ApiError(400, "text.format must be an object", param="text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema"), "strict": fmt.get("strict")}}
    raise ApiError(400, f"text.format.type must be 'text', 'json_object' or 'json_schema', got {str(kind)[:40]!r}",
                   param="text.format.type")


def _format_param(param: Optional[str]) -> Optional[str]:
    """A chat response_format field name as the Responses request spells it."""
    if param is None or not param.startswith("response_format"):
        return param
    return "text.format" + param[len("response_format"):].replace(".json_schema", "", 1)


def _chat_request(req: ResponsesRequest) -> ChatCompletionRequest:
    fields = {"messages": chat_messages(req.instructions, req.input), "max_completion_tokens": req.max_output_tokens,
              "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed, "stop": req.stop,
              "cache_salt": req.cache_salt}
    try:
        return ChatCompletionRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except Exception as e:  # noqa: BLE001 -- pydantic's ValidationError
        raise V.pydantic_error(e) if hasattr(e, "errors") else ApiError(400, str(e)) from None


def _as_input_error(e: ApiError) -> ApiError:
    """A chat-path error naming `messages` (the rendered conversation) names `input` instead."""
    if e.param is not None and e.param.split(".")[0] == "messages":
        e.param = "input"
    return e


def _echo_tools(req: ResponsesRequest) -> list:
    """The request's (validated) tools as the response lists them."""
    return [{"type": "function", "name": t["name"], "description": t.get("description"),
             "parameters": t.get("parameters"), "strict": t.get("strict")} for t in req.tools or ()]


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
        try:
            plan = chat_tools.make_plan(req, srv.tool_parser, srv.tokenizer, shape="responses",
                                        response_format=text_format(req))
        except ApiError as e:
            e.param = _format_param(e.param)
            raise
        plan = dataclasses.replace(plan, constraint_param=_format_param(plan.constraint_param))
        chat = _chat_request(req)
        try:
            job = V.chat_job(chat, srv.tokenizer, srv.chat_template, srv.max_prompt_chars,
                             **chat_tools.job_tools(plan, srv.chat_template))
        except ApiError as e:
            raise _as_input_error(e) from None
        slots = srv.reserve(1, param="input")
        try:
            try:
                ids = await srv.chat_prompt_ids(job)
                max_tokens = V.check_context(len(ids), req.max_output_tokens, srv.max_model_len,
                                             param="max_output_tokens", default_max_tokens=srv.max_tokens_default)
            except ApiError as e:
                raise _as_input_error(e) from None
            params = V.make_params(chat, max_tokens, None, srv.cache_salt(request, chat),
                                   extra=chat_tools.sampling_extra(plan), extra_param=plan.constraint_param)[0]
            seq = Seq(index=0, prompt_ids=ids, params=params, start=start, holds_slot=slots.take())
        finally:
            slots.close()
        return await _respond(srv, request, req, seq, len(ids), plan)


def _response(srv, req: ResponsesRequest, rid: str, created: int, status: str, output: list,
              usage: Optional[dict], finish: Optional[str] = None) -> dict:
    incomplete = {"reason": "max_output_tokens"} if finish == "length" else None
    return {"id": rid, "object": "response", "created_at": created, "status": status, "error": None,
            "incomplete_details": incomplete, "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens, "model": srv.model_name, "output": output,
            "parallel_tool_calls": req.parallel_tool_calls is not False, "previous_response_id": None,
            "reasoning": None, "store": False, "temperature": req.temperature, "top_p": req.top_p,
            "text": {"format": (req.text or {}).get("format") or {"type": "text"}},
            "tool_choice": req.tool_choice or "auto",
            "tools": _echo_tools(req), "truncation": "disabled", "usage": usage, "user": req.user,
            "metadata": req.metadata or {}}


def _status(finish: Optional[str]) -> str:
    return "incomplete" if finish == "length" else "completed"


async def _respond(srv, request, req: ResponsesRequest, seq: Seq, prompt_tokens: int, plan):
    rid, created = f"resp_{uuid.uuid4().hex}", int(time.time())
    out = OutputBuilder(plan.parser)
    if not req.stream:
        await srv.run_all(request, [seq])
        out.start()
        out.feed(seq.text)
        out.finish()
        return _response(srv, req, rid, created, _status(seq.finish_reason), out.items,
                         _usage(prompt_tokens, seq.n_tokens), seq.finish_reason)

    state = {"tokens": 0, "finish": None}
    head = _response(srv, req, rid, created, "in_progress", [], None)
    first = [{"type": "response.created", "response": head},
             {"type": "response.in_progress", "response": head}] + out.start()

    def chunk(_seq, o):
        state["tokens"] += len(o.delta_token_ids or [])
        if o.finish_reason is not None:
            state["finish"] = o.finish_reason
        return out.feed(o.delta_text) if o.delta_text else None

    def final():
        events = out.finish()
        done = _response(srv, req, rid, created, _status(state["finish"]), out.items,
                         _usage(prompt_tokens, state["tokens"]), state["finish"])
        return events + [{"type": "response.completed", "response": done}]

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
