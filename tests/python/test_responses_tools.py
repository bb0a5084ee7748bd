# tests/python/test_responses_tools.py: function tools on /v1/responses (eli/server/responses.py,
# responses_input.py, responses_output.py) with a scripted fake engine (server_helpers'
# ScriptedLLM writing a chosen text through the real byte-level llama_base tokenizer).
#
# What must hold: the model family's parser turns the reply into function_call output items (text
# around them stays message items, in the model's order); the streamed events describe exactly the
# non-streamed output (and the openai client's stream reader accepts them); the response echoes
# tools / tool_choice / parallel_tool_calls; a function_call + function_call_output history renders
# the very prompt /v1/chat/completions renders for the same assistant tool_calls + tool messages;
# forced calls become the sampler's grammar; hosted tool types and every other bad field are 400s
# naming the field; requests without tools keep their behaviour.
from __future__ import annotations

import json
import pathlib

import pytest
from fastapi.testclient import TestClient

from server_helpers import ScriptedLLM

from eli.server import chat_tools
from eli.server.app import create_app

MODEL_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "models" / "llama_base"
TPL = pathlib.Path(__file__).resolve().parents[1] / "data" / "chat_templates"
RESP, CHAT = "/v1/responses", "/v1/chat/completions"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"type": "function", "name": "get_time", "description": "Local time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
Q = "Weather in Paris?"


def _chat_tool(t):
    return {"type": "function", "function": {k: v for k, v in t.items() if k != "type"}}


def _client(template="qwen3", script=CALL, **opts):
    llm = ScriptedLLM(str(MODEL_DIR))
    llm.script = script
    tpl = (TPL / f"{template}.jinja").read_text() if template else None
    app = create_app(llm, model_name="m", chat_template=tpl, allowed_hosts=["testserver"], render_workers=0, **opts)
    return llm, TestClient(app)


def _post(c, body):
    return c.post(RESP, json=dict({"input": Q}, **body))


def _events(c, body):
    events = []
    with c.stream("POST", RESP, json=dict({"input": Q, "stream": True}, **body)) as r:
        assert r.status_code == 200, r.read()
        for block in r.read().decode().strip().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            ev = json.loads(lines["data"])
            assert lines["event"] == ev["type"]
            events.append(ev)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def _shape(items):
    """Output items without their ids: (type, text) or (type, name, arguments object)."""
    out = []
    for it in items:
        if it["type"] == "message":
            assert [p["type"] for p in it["content"]] == ["output_text"]
            out.append(("message", it["content"][0]["text"]))
        else:
            out.append(("function_call", it["name"], json.loads(it["arguments"])))
    return out


def _replay(events):
    """The output a client assembles from the events, checking their order: an item's content events
    come between its output_item.added and .done, items finish in order."""
    items, open_ = {}, None
    for e in events:
        t = e["type"]
        if t == "response.output_item.added":
            assert open_ is None and e["output_index"] == len(items)
            open_ = e["output_index"]
            items[open_] = dict(e["item"], content=[], arguments="") if e["item"]["type"] == "message" \
                else dict(e["item"], arguments="")
            assert e["item"]["status"] == "in_progress"
        elif t == "response.content_part.added":
            items[open_]["content"].append(dict(e["part"]))
        elif t == "response.output_text.delta":
            assert e["output_index"] == open_ and e["item_id"] == items[open_]["id"]
            items[open_]["content"][e["content_index"]]["text"] += e["delta"]
        elif t == "response.function_call_arguments.delta":
            assert e["output_index"] == open_ and e["item_id"] == items[open_]["id"]
            items[open_]["arguments"] += e["delta"]
        elif t == "response.function_call_arguments.done":
            assert e["arguments"] == items[open_]["arguments"]
        elif t == "response.output_text.done":
            assert e["text"] == items[open_]["content"][0]["text"]
        elif t == "response.output_item.done":
            assert e["output_index"] == open_ and e["item"]["id"] == items[open_]["id"]
            assert e["item"]["status"] == "completed"
            items[open_] = e["item"]
            open_ = None
    assert open_ is None
    return [items[k] for k in sorted(items)]


@pytest.mark.parametrize("template,script,calls", [
    ("qwen3", CALL, [("get_weather", {"city": "Paris"})]),
    ("qwen2.5", CALL + "\n" + CALL.replace("Paris", "Lyon"), [("get_weather", {"city": "Paris"}),
                                                             ("get_weather", {"city": "Lyon"})]),
    ("llama3.2", '{"name": "get_time", "parameters": {"tz": "UTC"}}', [("get_time", {"tz": "UTC"})]),
    ("mistral_nemo", '[TOOL_CALLS][{"name": "get_time", "arguments": {"tz": "UTC"}}]', [("get_time", {"tz": "UTC"})]),
    (None, CALL, [("get_weather", {"city": "Paris"})]),  # no template: the json parser, eli's tool prompt
])
def test_calls_become_function_call_items_whole_and_streamed(template, script, calls):
    llm, c = _client(template, script)
    r = _post(c, {"tools": [WEATHER, TIME]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed"
    assert _shape(body["output"]) == [("function_call", n, a) for n, a in calls]
    for it in body["output"]:
        assert it["id"].startswith("fc_") and it["call_id"].startswith("call_") and it["status"] == "completed"
    assert len({it["call_id"] for it in body["output"]}) == len(calls)
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][0] == WEATHER and body["tools"][1]["strict"] is None
    assert body["usage"]["output_tokens"] == len(llm.tokenizer.encode(script, add_special_tokens=False))
    prompt = llm.tokenizer.decode(llm.requests[-1][0])
    assert "get_weather" in prompt and "get_time" in prompt  # the tools were shown to the model
    # the prompt is the one chat completions renders for the same conversation and tools
    assert c.post(CHAT, json={"messages": [{"role": "user", "content": Q}],
                              "tools": [_chat_tool(WEATHER), _chat_tool(TIME)]}).status_code == 200
    assert llm.requests[-1][0] == llm.requests[-2][0]
    events = _events(c, {"tools": [WEATHER, TIME]})
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.completed"
    replayed = _replay(events)
    assert replayed == events[-1]["response"]["output"]
    assert _shape(replayed) == _shape(body["output"])


@pytest.mark.parametrize("script,want", [
    ("Let me check. " + CALL + " done", [("message", "Let me check. "), ("function_call", "get_weather", {"city": "Paris"}),
                                         ("message", " done")]),
    (CALL + "\n\n", [("function_call", "get_weather", {"city": "Paris"})]),  # whitespace beside calls: dropped
    ("  \n" + CALL, [("function_call", "get_weather", {"city": "Paris"})]),
    ("Just text, 4 < 5 <b>", [("message", "Just text, 4 < 5 <b>")]),
    ("   ", [("message", "   ")]),  # no calls: the text as it is
    ("<tool_call>{broken json</tool_call>", [("message", "<tool_call>{broken json</tool_call>")]),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa', [("message", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa')]),
])
def test_text_around_calls_streams_like_whole(script, want):
    _, c = _client("qwen3", script)
    body = _post(c, {"tools": [WEATHER]}).json()
    assert _shape(body["output"]) == want
    events = _events(c, {"tools": [WEATHER]})
    assert _shape(_replay(events)) == want == _shape(events[-1]["response"]["output"])
    # the output_text of the messages, as the openai client's output_text joins them
    assert "".join(x[1] for x in want if x[0] == "message") == "".join(
        it["content"][0]["text"] for it in body["output"] if it["type"] == "message")


def test_openai_client_reads_function_calls_whole_and_streamed():
    openai = pytest.importorskip("openai")
    _, c = _client("qwen3", "Sure. " + CALL)
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=c, max_retries=0)
    r = client.responses.create(model="m", input=Q, tools=[WEATHER, TIME])
    assert [o.type for o in r.output] == ["message", "function_call"]
    fc = r.output[1]
    assert fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "Paris"} and fc.call_id.startswith("call_")
    assert r.output_text == "Sure. "
    with client.responses.stream(model="m", input=Q, tools=[WEATHER, TIME]) as st:
        kinds = [e.type for e in st]
        final = st.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert [o.type for o in final.output] == ["message", "function_call"]
    assert (final.output[1].name, final.output[1].arguments) == (fc.name, fc.arguments)
    # strict tools: the client parses the arguments itself
    assert final.output[1].parsed_arguments == {"city": "Paris"}


def test_tool_choice_none_hides_the_tools_and_parses_nothing():
    llm, c = _client("qwen3", CALL)
    body = _post(c, {"tools": [WEATHER], "tool_choice": "none"}).json()
    assert _shape(body["output"]) == [("message", CALL)] and body["tool_choice"] == "none"
    assert "get_weather" not in llm.tokenizer.decode(llm.requests[-1][0])


def test_no_tools_keeps_the_plain_reply():
    llm, c = _client("qwen3", CALL)
    body = _post(c, {}).json()
    assert _shape(body["output"]) == [("message", CALL)]
    assert body["tools"] == [] and body["tool_choice"] == "auto"
    types = [e["type"] for e in _events(c, {})]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]  # the message opens before any text, as before
    assert getattr(llm.requests[-1][1], "grammar", None) is None


HISTORY = [{"role": "user", "content": Q},
           {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city": "Paris"}',
            "id": "fc_1", "status": "completed"},
           {"type": "function_call_output", "call_id": "call_abc", "output": "21 C and sunny"}]
CHAT_HISTORY = [{"role": "user", "content": Q},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_abc", "content": "21 C and sunny"}]


@pytest.mark.parametrize("template", ["qwen3", "llama3.1", "mistral_nemo", "hermes3", "smollm2", None])
def test_history_renders_as_chat_does(template):
    llm, c = _client(template, "It is 21 C.")
    r = c.post(RESP, json={"input": HISTORY, "tools": [WEATHER]})
    assert r.status_code == 200, (template, r.text)
    assert _shape(r.json()["output"]) == [("message", "It is 21 C.")]
    prompt = llm.requests[-1][0]
    text = llm.tokenizer.decode(prompt)
    assert "21 C and sunny" in text and "Paris" in text
    r = c.post(CHAT, json={"messages": CHAT_HISTORY, "tools": [_chat_tool(WEATHER)]})
    assert r.status_code == 200, r.text
    assert llm.requests[-1][0] == prompt


def test_history_joins_text_and_parallel_calls_into_one_assistant_turn():
    llm, c = _client("qwen3", "ok")
    call2 = dict(HISTORY[1], call_id="call_def", arguments='{"city": "Lyon"}')
    items = [HISTORY[0], {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
             HISTORY[1], call2, HISTORY[2], dict(HISTORY[2], call_id="call_def", output=[{"type": "input_text", "text": "18 C"}])]
    assert c.post(RESP, json={"input": items, "instructions": "Be brief.", "tools": [WEATHER]}).status_code == 200
    chat = [{"role": "system", "content": "Be brief."}, CHAT_HISTORY[0],
            dict(CHAT_HISTORY[1], content="Checking.", tool_calls=CHAT_HISTORY[1]["tool_calls"] + [
                {"id": "call_def", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]),
            CHAT_HISTORY[2], {"role": "tool", "tool_call_id": "call_def", "content": "18 C"}]
    assert c.post(CHAT, json={"messages": chat, "tools": [_chat_tool(WEATHER)]}).status_code == 200
    assert llm.requests[-1][0] == llm.requests[-2][0]


def test_round_trip_of_a_reply():
    # the function_call items of a response, sent back with their outputs, render and answer
    llm, c = _client("qwen3", CALL)
    first = _post(c, {"tools": [WEATHER]}).json()
    outputs = [{"type": "function_call_output", "call_id": it["call_id"], "output": "21 C"}
               for it in first["output"] if it["type"] == "function_call"]
    assert len(outputs) == 1
    llm.script = "It is 21 C."
    r = c.post(RESP, json={"input": [{"role": "user", "content": Q}] + first["output"] + outputs, "tools": [WEATHER]})
    assert r.status_code == 200, r.text
    assert _shape(r.json()["output"]) == [("message", "It is 21 C.")]
    assert "21 C" in llm.tokenizer.decode(llm.requests[-1][0])


@pytest.mark.parametrize("choice,parallel,names", [
    ("required", None, {"get_weather", "get_time"}),
    ("required", False, {"get_weather", "get_time"}),
    ({"type": "function", "name": "get_time"}, None, {"get_time"}),
])
def test_forced_calls_reach_the_sampler_as_a_grammar(choice, parallel, names):
    llm, c = _client("qwen3", CALL)
    body = {"tools": [WEATHER, TIME], "tool_choice": choice}
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    r = _post(c, body)
    if not chat_tools.constraints_supported():
        assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"
        return
    assert r.status_code == 200, r.text
    assert r.json()["tool_choice"] == choice and r.json()["parallel_tool_calls"] is (parallel is not False)
    grammar = llm.requests[-1][1].grammar
    assert "%json" in grammar and "<tool_call>" in grammar
    assert {n for n in ("get_weather", "get_time") if n in grammar} == names
    assert grammar.startswith("start: call\n") is (parallel is False or isinstance(choice, dict))


@pytest.mark.parametrize("body,param,words", [
    ({"tools": [{"type": "web_search"}]}, "tools.0.type", "'web_search'"),
    ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["v"]}]}, "tools.1.type", "'file_search'"),
    ({"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://x"}]}, "tools.0.type", "'mcp'"),
    ({"tools": [{"type": "computer_use_preview"}]}, "tools.0.type", "'computer_use_preview'"),
    ({"tools": [{"name": "f"}]}, "tools.0.type", "without a type"),
    ({"tools": ["get_weather"]}, "tools.0.type", None),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools.0.name", None),  # chat's nesting
    ({"tools": [{"type": "function", "name": "bad name"}]}, "tools.0.name", None),
    ({"tools": [WEATHER, WEATHER]}, "tools.1.name", "twice"),
    ({"tools": [dict(WEATHER, parameters={"type": "array"})]}, "tools.0.parameters", None),
    ({"tools": [dict(WEATHER, description=5)]}, "tools.0.description", None),
    ({"tools": [dict(WEATHER, strict="yes")]}, "tools.0.strict", None),
    ({"tools": [WEATHER] * 129}, "tools", None),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", None),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice", "not in tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice", None),
    ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice", "'web_search_preview'"),
    ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}, "tool_choice", "'allowed_tools'"),
    ({"tool_choice": "required"}, "tool_choice", None),
    ({"tools": [WEATHER], "parallel_tool_calls": "no"}, "parallel_tool_calls", None),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}, "input.0.call_id", "no function_call"),
    ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input.0.name", None),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input.0.call_id", None),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]}, "input.0.arguments", None),
    ({"input": HISTORY[:2] + [dict(HISTORY[2], output=5)]}, "input.2.output", None),
    ({"input": HISTORY[:2] + [dict(HISTORY[2], output=[{"type": "input_image", "image_url": "x"}])]},
     "input.2.output.0", "'input_image'"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input.0.type", "'reasoning'"),
    ({"input": [{"type": "item_reference", "id": "fc_1"}]}, "input.0.type", "'item_reference'"),
])
def test_bad_fields_are_400s_naming_them(body, param, words):
    _, c = _client("qwen3")
    r = _post(c, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    if words is not None:
        assert words in err["message"], err


def test_template_refusal_names_input():
    # Llama 3.1's template refuses parallel calls in history: a 400 naming the input
    _, c = _client("llama3.1", "ok")
    items = HISTORY[:2] + [dict(HISTORY[1], call_id="call_2")] + HISTORY[2:]
    r = c.post(RESP, json={"input": items, "tools": [WEATHER]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input", r.text
