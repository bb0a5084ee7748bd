# tests/python/test_server_tools.py: tools, tool_choice, parallel_tool_calls and response_format on
# /v1/chat/completions (eli/server/chat_tools.py), with a scripted fake engine (server_helpers'
# ScriptedLLM writing a chosen text through the real byte-level llama_base tokenizer).
#
# What must hold: the model family's parser turns the reply into tool_calls (finish_reason
# "tool_calls"), streaming gives the same content and calls as the whole reply and never sends
# markup as content, malformed calls come back as content with a 200, tool_choice none hides the
# tools, forced calls and response_format become the sampler's constraint (or a clear 400 naming
# the field where this build has no constrained decoding), every bad field is a 400 naming it,
# tool-call histories with content null render, usage counts the tokens.
from __future__ import annotations

import json
import pathlib

import pytest
from fastapi.testclient import TestClient

from server_helpers import ScriptedLLM

from eli.server import chat_tools
from eli.server.app import create_app
from eli.tool_parsers import merge_deltas

MODEL_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "models" / "llama_base"
TPL = pathlib.Path(__file__).resolve().parents[1] / "data" / "chat_templates"
CHAT = "/v1/chat/completions"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Local time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string", "description": "IANA zone"}}, "required": ["tz"]}}}
MSG = [{"role": "user", "content": "Weather in Paris?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def _app(template="qwen3", **opts):
    llm = ScriptedLLM(str(MODEL_DIR))
    tpl = (TPL / f"{template}.jinja").read_text() if template else None
    opts.setdefault("render_workers", 0)
    return llm, create_app(llm, model_name="m", chat_template=tpl, allowed_hosts=["testserver"], **opts)


def _client(template="qwen3", **opts):
    llm, app = _app(template, **opts)
    return llm, TestClient(app)


def _post(client, body):
    return client.post(CHAT, json=dict({"messages": MSG}, **body))


def _stream(client, body):
    events = []
    with client.stream("POST", CHAT, json=dict({"messages": MSG, "stream": True}, **body)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


def _calls(msg):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in msg.get("tool_calls") or []]


@pytest.mark.parametrize("template,script,calls", [
    ("qwen3", CALL, [("get_weather", {"city": "Paris"})]),
    ("qwen2.5", CALL + "\n" + CALL.replace("Paris", "Lyon"), [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Lyon"})]),
    ("hermes3", CALL, [("get_weather", {"city": "Paris"})]),
    ("llama3.2", '{"name": "get_time", "parameters": {"tz": "UTC"}}', [("get_time", {"tz": "UTC"})]),
    ("mistral_nemo", '[TOOL_CALLS][{"name": "get_time", "arguments": {"tz": "UTC"}}]', [("get_time", {"tz": "UTC"})]),
    (None, CALL, [("get_weather", {"city": "Paris"})]),  # no template: the json parser, eli's tool prompt
])
def test_auto_tool_calls_whole_and_streamed(template, script, calls):
    llm, c = _client(template)
    llm.script = script
    r = _post(c, {"tools": [WEATHER, TIME]})
    assert r.status_code == 200, r.text
    body = r.json()
    ch = body["choices"][0]
    assert ch["finish_reason"] == "tool_calls"
    assert ch["message"]["content"] is None and _calls(ch["message"]) == calls
    ids = [tc["id"] for tc in ch["message"]["tool_calls"]]
    assert len(set(ids)) == len(ids) and all(tc["type"] == "function" for tc in ch["message"]["tool_calls"])
    assert body["usage"]["completion_tokens"] == len(llm.tokenizer.encode(script, add_special_tokens=False))
    # the template (or eli's prompt) showed the tools to the model
    prompt = llm.tokenizer.decode(llm.requests[-1][0])
    assert "get_weather" in prompt and "get_time" in prompt
    events = _stream(c, {"tools": [WEATHER, TIME]})
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    merged = merge_deltas([d for d in deltas[1:]])
    assert [(x.name, json.loads(x.arguments)) for x in merged.tool_calls] == calls
    assert not "".join(d.get("content") or "" for d in deltas).strip()
    finishes = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
    assert finishes[-1] == "tool_calls" and all(f is None for f in finishes[:-1])


def test_content_around_calls_and_plain_replies_stream_like_whole():
    llm, c = _client("qwen3")
    for script in ["Let me check. " + CALL + " done", "Just text, 4 < 5 <b>", "<tool_call>{broken json</tool_call>",
                   '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa']:
        llm.script = script
        msg = _post(c, {"tools": [WEATHER]}).json()["choices"][0]["message"]
        events = _stream(c, {"tools": [WEATHER]})
        merged = merge_deltas([e["choices"][0]["delta"] for e in events if e["choices"]][1:])
        assert (merged.content or None) == (msg["content"] or None)
        assert [(x.name, json.loads(x.arguments)) for x in merged.tool_calls] == _calls(msg)
        if "broken" in script or script.endswith("Pa"):
            assert msg["content"] == script and "tool_calls" not in msg  # malformed: content, a 200


def test_tools_reach_the_template_through_the_render_workers():
    llm, app = _app("llama3.2", render_workers=1)
    llm.script = '{"name": "get_time", "parameters": {"tz": "UTC"}}'
    with TestClient(app) as c:  # the lifespan starts the render pool
        r = _post(c, {"tools": [WEATHER, TIME]})
    assert r.status_code == 200, r.text
    assert _calls(r.json()["choices"][0]["message"]) == [("get_time", {"tz": "UTC"})]
    assert '"name": "get_weather"' in llm.tokenizer.decode(llm.requests[-1][0])


def test_tool_choice_none_hides_the_tools_and_parses_nothing():
    llm, c = _client("qwen3")
    llm.script = CALL
    ch = _post(c, {"tools": [WEATHER], "tool_choice": "none"}).json()["choices"][0]
    assert ch["message"]["content"] == CALL and ch["finish_reason"] == "stop"
    assert "get_weather" not in llm.tokenizer.decode(llm.requests[-1][0])


def test_no_tools_is_a_plain_chat():
    llm, c = _client("qwen3")
    llm.script = CALL
    ch = _post(c, {}).json()["choices"][0]
    assert ch["message"] == {"role": "assistant", "content": CALL}


def test_tool_history_with_null_content_renders():
    llm, c = _client("qwen3")
    msgs = MSG + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}]
    for tpl in ("qwen3", "llama3.1", "mistral_nemo", "smollm2", None):
        llm, c = _client(tpl)
        r = c.post(CHAT, json={"messages": msgs, "tools": [WEATHER]})
        assert r.status_code == 200, (tpl, r.text)
        prompt = llm.tokenizer.decode(llm.requests[-1][0])
        assert "21 C" in prompt and "Paris" in prompt


@pytest.mark.parametrize("body,param", [
    ({"tools": [{"type": "retrieval"}]}, "tools.0.type"),
    ({"tools": [{"type": "function"}]}, "tools.0.function"),
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools.0.function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools.1.function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]}, "tools.0.function.parameters"),
    ({"tools": [WEATHER] * 129}, "tools"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strict": "yes"}}},
     "response_format.json_schema.strict"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"chat_template_kwargs": {"tools": []}}, "chat_template_kwargs.tools"),
])
def test_bad_fields_are_400s_naming_them(body, param):
    _, c = _client("qwen3")
    r = _post(c, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()


@pytest.mark.parametrize("body,field,param", [
    ({"tools": [WEATHER, TIME], "tool_choice": "required"}, "grammar", "tool_choice"),
    ({"tools": [WEATHER, TIME], "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "grammar", "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "json_schema", "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}}}},
     "json_schema", "response_format.json_schema.schema"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "grammar", "response_format"),
])
def test_constraints_reach_the_sampler(body, field, param):
    llm, c = _client("qwen3")
    llm.script = CALL
    r = _post(c, body)
    if not chat_tools.constraints_supported():  # a build without constrained decoding: a clear 400
        assert r.status_code == 400 and r.json()["error"]["param"] == param
        assert "constrained decoding" in r.json()["error"]["message"]
        return
    assert r.status_code == 200, r.text
    params = llm.requests[-1][1]
    value = getattr(params, field)
    assert value not in (None, False)
    if field == "grammar" and "tool_choice" in body:
        assert "%json" in value and "<tool_call>" in value
        if isinstance(body["tool_choice"], dict):
            assert "get_weather" not in value and "get_time" in value


def test_grammar_per_family_and_parallel():
    from eli.tool_parsers.grammar import call_grammar
    g = call_grammar("mistral", [WEATHER, TIME], parallel=False, marker_token_id=5)
    assert g.startswith("start: <[5]> call_list") and '"maxItems": 1' in g and '"anyOf"' in g
    g = call_grammar("llama3_json", [WEATHER, TIME])
    assert '("; " call)*' in g and '"parameters"' in g and '{"const": "get_time"}' in g
    g = call_grammar("hermes", [WEATHER], parallel=False, answer_schema={"type": "object"})
    assert "start: calls_or_answer | answer" in g and "calls_or_answer: call\n" in g
    import llguidance  # a dependency of eli (structured output)
    for fam in ("hermes", "llama3_json", "mistral", "json"):
        for kw in ({}, {"parallel": False}, {"answer_schema": {"type": "object"}}, {"marker_token_id": 5}):
            text = call_grammar(fam, [WEATHER, TIME], **kw)
            assert llguidance.LLMatcher.validate_grammar(llguidance.grammar_from("lark", text)) == "", (fam, kw)


def test_special_token_markers_are_kept_in_the_text():
    class Tok:
        class backend:
            @staticmethod
            def token_to_id(t):
                return {"[TOOL_CALLS]": 5, "<|python_tag|>": 7}.get(t)

    from eli.tool_parsers import get_parser

    class Req:
        tools, tool_choice, parallel_tool_calls, response_format = [WEATHER], "auto", None, None

    assert chat_tools.make_plan(Req, get_parser("mistral"), Tok).keep_special
    assert chat_tools.make_plan(Req, get_parser("llama3_json"), Tok).keep_special
    assert not chat_tools.make_plan(Req, get_parser("hermes"), Tok).keep_special
    Req.tool_choice = "none"
    assert not chat_tools.make_plan(Req, get_parser("mistral"), Tok).keep_special


def test_no_template_warns_at_startup(caplog):
    import logging
    with caplog.at_level(logging.WARNING, logger="eli.server"):
        _client(None)
    assert any("no chat template" in r.message for r in caplog.records)


def test_serve_tool_parser_flag():
    from eli.cli import build_parser
    p = build_parser()
    assert p.parse_args(["serve", "m"]).tool_parser == "auto"
    assert p.parse_args(["serve", "m", "--tool-parser", "mistral"]).tool_parser == "mistral"
    with pytest.raises(SystemExit):
        p.parse_args(["serve", "m", "--tool-parser", "bogus"])
    # the flag beats detection: a Qwen3 template served with the llama3_json parser
    llm, c = _client("qwen3", tool_parser="llama3_json")
    llm.script = '{"name": "get_time", "parameters": {"tz": "UTC"}}'
    assert _calls(_post(c, {"tools": [TIME]}).json()["choices"][0]["message"]) == [("get_time", {"tz": "UTC"})]


def test_tool_prompt_goes_to_the_user_turn_when_the_template_refuses_system():
    # A Gemma-style template (raises on a system message, never reads tools): eli's tool
    # instructions go before the first user message's text instead of into a system message.
    tpl = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
           "{% endif %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
           "<start_of_turn>model\n")
    llm = ScriptedLLM(str(MODEL_DIR))
    app = create_app(llm, model_name="m", chat_template=tpl, render_workers=0, allowed_hosts=["testserver"])
    llm.script = CALL
    r = TestClient(app).post(CHAT, json={"messages": MSG, "tools": [WEATHER]})
    assert r.status_code == 200, r.text
    prompt = llm.tokenizer.decode(llm.requests[-1][0])
    assert prompt.startswith("<start_of_turn>user\nYou can call these tools") and "Weather in Paris?" in prompt
    assert _calls(r.json()["choices"][0]["message"]) == [("get_weather", {"city": "Paris"})]
