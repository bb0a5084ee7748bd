# tests/clients/test_langchain.py: langchain-openai's ChatOpenAI against `eli serve`:
# with_structured_output in json_schema, function_calling and json_mode modes, and bind_tools with a
# forced tool. json_schema and function_calling are enforced by the grammar, so the result validates;
# json_mode only promises a JSON object (the schema is a prompt hint), so that is what is asserted.
from __future__ import annotations

import json

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (CI installs it: .ci/run)")

from clients_common import API_KEY, MODEL_NAME, need
from client_schemas import SCHEMAS, TOOLS, City

pytestmark = pytest.mark.clients


def _chat(eli_server, **kw):
    lc = need("langchain_openai")
    return lc.ChatOpenAI(model=MODEL_NAME, base_url=eli_server, api_key=API_KEY, max_retries=0, timeout=120,
                         max_tokens=160, **kw)


def test_structured_output_json_schema(eli_server):
    out = _chat(eli_server, temperature=1.0, seed=5).with_structured_output(City, method="json_schema", strict=True) \
        .invoke("Describe a city.")
    assert isinstance(out, City)


def test_structured_output_function_calling(eli_server):
    out = _chat(eli_server, temperature=1.0, seed=6).with_structured_output(City, method="function_calling") \
        .invoke("Describe a city.")
    assert isinstance(out, City)


def test_structured_output_json_mode(eli_server):
    res = _chat(eli_server, temperature=0).with_structured_output(City, method="json_mode", include_raw=True) \
        .invoke("Describe a city as JSON.")
    raw = res["raw"]
    if raw.response_metadata.get("finish_reason") == "stop":
        assert isinstance(json.loads(raw.content), dict)
    assert res["parsed"] is None or isinstance(res["parsed"], City)


def test_bind_tools(eli_server):
    msg = _chat(eli_server, temperature=1.0, seed=7).bind_tools(TOOLS, tool_choice="get_weather") \
        .invoke("Weather in Paris?")
    assert len(msg.tool_calls) == 1 and msg.tool_calls[0]["name"] == "get_weather"
    jsonschema.validate(msg.tool_calls[0]["args"], SCHEMAS["get_weather"])
    msg = _chat(eli_server, temperature=1.0, seed=8).bind_tools(TOOLS, tool_choice="any").invoke("Weather?")
    assert msg.tool_calls and all(tc["name"] in SCHEMAS for tc in msg.tool_calls)
