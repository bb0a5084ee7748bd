# tests/clients/test_openai_client.py: the `openai` client against `eli serve` (tiny random model):
# plain chat and streaming, chat.completions.parse with a pydantic model (json_schema strict),
# json_object, forced and named tool calls (schema-valid arguments of a declared tool), a tool-call
# history sent back (content null), streaming == non-streaming for the same greedy request, and
# /v1/responses with function tools (forced calls, streamed, sent back with their outputs).
from __future__ import annotations

import json

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (CI installs it: .ci/run)")

from clients_common import MODEL_NAME, need
from client_schemas import SCHEMAS, TOOLS, City

pytestmark = pytest.mark.clients

MSG = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_chat_and_stream(openai_client):
    r = openai_client.chat.completions.create(model=MODEL_NAME, messages=MSG, max_tokens=8, temperature=0)
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens >= 1
    chunks = list(openai_client.chat.completions.create(model=MODEL_NAME, messages=MSG, max_tokens=8, temperature=0,
                                                        stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content


def test_parse_with_a_pydantic_model(openai_client):
    need("pydantic")
    r = openai_client.chat.completions.parse(model=MODEL_NAME, messages=MSG, response_format=City, max_tokens=120,
                                             temperature=1.0, seed=3)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(msg.parsed, City)
    assert City.model_validate_json(msg.content) == msg.parsed


def test_json_object(openai_client):
    r = openai_client.chat.completions.create(model=MODEL_NAME, messages=MSG, max_tokens=200, temperature=0,
                                              response_format={"type": "json_object"})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def _check_calls(msg, allowed, single=False):
    assert msg.tool_calls, msg
    assert not single or len(msg.tool_calls) == 1
    for tc in msg.tool_calls:
        assert tc.type == "function" and tc.id and tc.function.name in allowed
        jsonschema.validate(json.loads(tc.function.arguments), SCHEMAS[tc.function.name])


def test_required_and_named_tool_calls(openai_client):
    for seed in range(3):
        r = openai_client.chat.completions.create(model=MODEL_NAME, messages=MSG, tools=TOOLS, tool_choice="required",
                                                  max_tokens=200, temperature=1.0, seed=seed)
        assert r.choices[0].finish_reason in ("tool_calls", "length")
        if r.choices[0].finish_reason == "tool_calls":
            _check_calls(r.choices[0].message, {"get_weather", "get_time"})
    r = openai_client.chat.completions.create(
        model=MODEL_NAME, messages=MSG, tools=TOOLS, max_tokens=120, temperature=1.0, seed=1,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert r.choices[0].finish_reason == "tool_calls"
    _check_calls(r.choices[0].message, {"get_time"}, single=True)
    r = openai_client.chat.completions.create(model=MODEL_NAME, messages=MSG, tools=TOOLS, tool_choice="required",
                                              parallel_tool_calls=False, max_tokens=120, temperature=1.0, seed=2)
    assert r.choices[0].finish_reason == "tool_calls"
    _check_calls(r.choices[0].message, {"get_weather", "get_time"}, single=True)


def test_tool_history_round_trip(openai_client):
    r = openai_client.chat.completions.create(model=MODEL_NAME, messages=MSG, tools=TOOLS, max_tokens=120, seed=1,
                                              tool_choice={"type": "function", "function": {"name": "get_weather"}})
    msg = r.choices[0].message
    history = MSG + [msg.model_dump(exclude_none=False)] + [
        {"role": "tool", "tool_call_id": tc.id, "content": "21 C"} for tc in msg.tool_calls]
    assert history[1]["content"] is None  # what the client sends back: content null beside tool_calls
    r2 = openai_client.chat.completions.create(model=MODEL_NAME, messages=history, tools=TOOLS, max_tokens=8,
                                               temperature=0)
    assert r2.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_streaming_agrees_with_non_streaming(openai_client):
    kw = dict(model=MODEL_NAME, messages=MSG, tools=TOOLS, tool_choice="required", max_tokens=160, temperature=0)
    whole = openai_client.chat.completions.create(**kw).choices[0]
    calls: dict = {}
    finish = None
    for c in openai_client.chat.completions.create(stream=True, **kw):
        if not c.choices:
            continue
        ch = c.choices[0]
        finish = ch.finish_reason or finish
        for tc in ch.delta.tool_calls or []:
            d = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            d["name"] += (tc.function.name or "") if tc.function else ""
            d["arguments"] += (tc.function.arguments or "") if tc.function else ""
        assert not (ch.delta.content or "").strip()
    assert finish == whole.finish_reason
    assert [(d["name"], json.loads(d["arguments"])) for _, d in sorted(calls.items())] == \
        [(tc.function.name, json.loads(tc.function.arguments)) for tc in whole.message.tool_calls or []]


RESPONSES_TOOLS = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
                    "parameters": t["function"]["parameters"], "strict": True} for t in TOOLS]


def test_responses_function_calls(openai_client):
    # /v1/responses with tools: forced calls come back as function_call items of declared tools with
    # schema-valid arguments; the streamed response (the client's own event accumulator) agrees;
    # the calls sent back with their outputs render and answer.
    kw = dict(model=MODEL_NAME, input="What is the weather in Paris?", tools=RESPONSES_TOOLS, tool_choice="required",
              max_output_tokens=200, temperature=0)
    r = openai_client.responses.create(**kw)
    assert r.status == "completed" and r.tool_choice == "required" and [t.name for t in r.tools] == ["get_weather", "get_time"]
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and len(calls) == len(r.output)
    for c in calls:
        assert c.name in SCHEMAS and c.call_id and c.id.startswith("fc_")
        jsonschema.validate(json.loads(c.arguments), SCHEMAS[c.name])
    with openai_client.responses.stream(**kw) as st:
        final = st.get_final_response()
    assert [(o.name, json.loads(o.arguments)) for o in final.output] == [(c.name, json.loads(c.arguments)) for c in calls]
    assert all(o.parsed_arguments == json.loads(o.arguments) for o in final.output)  # strict tools: parsed
    history = [{"role": "user", "content": "What is the weather in Paris?"}] + [c.model_dump(exclude_none=True) for c in calls] + [
        {"type": "function_call_output", "call_id": c.call_id, "output": "21 C"} for c in calls]
    r2 = openai_client.responses.create(model=MODEL_NAME, input=history, tools=RESPONSES_TOOLS, max_output_tokens=8,
                                        temperature=0)
    assert r2.status in ("completed", "incomplete") and r2.output
