# tests/python/test_responses_tools_engine.py: forced function calls on /v1/responses through the
# real engine (the tiny random llama_base on the CPU, its context raised to 4096 as the client suite
# does, with Qwen3's chat template: tools reach the model through the template and replies are
# read by the hermes parser). Random weights choose arbitrary text, so only what must hold is
# asserted: under tool_choice required / named the grammar makes every completed response a list
# of function_call items of declared tools (exactly one with a named tool or parallel_tool_calls
# false) whose arguments validate against the tool's schema; streaming gives the same items as the
# non-streamed greedy request; the calls sent back with outputs render and answer.
from __future__ import annotations

import json
import pathlib
import shutil

import pytest

pytest.importorskip("fastapi")
jsonschema = pytest.importorskip("jsonschema")
httpx = pytest.importorskip("httpx")

import eli  # noqa: E402
from eli.server import chat_tools, create_app  # noqa: E402

from server_helpers import ThreadedServer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "data" / "models" / "llama_base"
TEMPLATE = ROOT / "data" / "chat_templates" / "qwen3.jinja"
# Bounded arguments (short strings, enums) so a random model under the grammar finishes quickly.
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "maxLength": 8}, "unit": {"type": "string", "enum": ["C", "F"]}},
               "required": ["city", "unit"], "additionalProperties": False}}
TIME = {"type": "function", "name": "get_time", "description": "Local time in a time zone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "Europe/Paris"]}},
                       "required": ["tz"], "additionalProperties": False}}
SCHEMAS = {t["name"]: t["parameters"] for t in (WEATHER, TIME)}
Q = "What is the weather in Paris?"

pytestmark = pytest.mark.skipif(not chat_tools.constraints_supported(), reason="this build has no constrained decoding")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "llama_base_4k"
    model.mkdir()
    for f in MODEL_DIR.iterdir():
        if f.name != "reference.npz":
            shutil.copy(f, model / f.name)
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    cfg["max_position_embeddings"] = 4096
    (model / "config.json").write_text(json.dumps(cfg))
    llm = eli.AsyncLLM(str(model), device="cpu", dtype="float32", num_kv_blocks=1024, max_num_seqs=4)
    app = create_app(llm, model_name="tiny", owns_llm=True, chat_template=TEMPLATE.read_text(), render_workers=0)
    with ThreadedServer(app) as s:
        yield s


def _post(s, body):
    r = httpx.post(s.url + "/v1/responses", json=dict({"input": Q, "tools": [WEATHER, TIME], "max_output_tokens": 200},
                                                     **body), timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _check_calls(resp, allowed, single=False):
    assert resp["status"] == "completed", resp
    items = resp["output"]
    assert items and all(it["type"] == "function_call" for it in items), items
    assert not single or len(items) == 1
    for it in items:
        assert it["name"] in allowed and it["status"] == "completed"
        assert it["id"].startswith("fc_") and it["call_id"].startswith("call_")
        jsonschema.validate(json.loads(it["arguments"]), SCHEMAS[it["name"]])
    return items


def test_required_and_named_calls_are_valid(srv):
    for seed in range(3):
        _check_calls(_post(srv, {"tool_choice": "required", "temperature": 1.0, "seed": seed}),
                     {"get_weather", "get_time"})
    _check_calls(_post(srv, {"tool_choice": "required", "parallel_tool_calls": False, "temperature": 1.0, "seed": 4}),
                 {"get_weather", "get_time"}, single=True)
    for seed in range(2):
        _check_calls(_post(srv, {"tool_choice": {"type": "function", "name": "get_time"}, "temperature": 1.0,
                                 "seed": seed}), {"get_time"}, single=True)


def _stream_items(s, body):
    events = []
    with httpx.stream("POST", s.url + "/v1/responses", timeout=120,
                      json=dict({"input": Q, "tools": [WEATHER, TIME], "max_output_tokens": 200, "stream": True},
                                **body)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["output"] == done
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert args == "".join(it["arguments"] for it in done if it["type"] == "function_call")
    return events[-1]["response"]


def test_streaming_agrees_with_non_streaming(srv):
    body = {"tool_choice": "required", "temperature": 0}
    whole = _check_calls(_post(srv, body), {"get_weather", "get_time"})
    streamed = _check_calls(_stream_items(srv, body), {"get_weather", "get_time"})
    assert [(it["name"], json.loads(it["arguments"])) for it in streamed] == \
        [(it["name"], json.loads(it["arguments"])) for it in whole]


def test_calls_sent_back_with_outputs_answer(srv):
    first = _check_calls(_post(srv, {"tool_choice": {"type": "function", "name": "get_weather"}, "seed": 1}),
                         {"get_weather"}, single=True)
    history = [{"role": "user", "content": Q}] + first + [
        {"type": "function_call_output", "call_id": it["call_id"], "output": "21 C"} for it in first]
    r = _post(srv, {"input": history, "max_output_tokens": 8, "temperature": 0})
    assert r["status"] in ("completed", "incomplete") and r["output"]
    assert r["usage"]["input_tokens"] > 0
