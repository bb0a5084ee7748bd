# tests/clients/test_litellm.py: litellm's completion() against `eli serve` as an OpenAI-compatible
# provider ("openai/<model>" with api_base): a plain completion, streaming, and tools with
# tool_choice required (every call names a declared tool with schema-valid arguments).
from __future__ import annotations

import json
import os

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (CI installs it: .ci/run)")

from clients_common import API_KEY, MODEL_NAME, need
from client_schemas import SCHEMAS, TOOLS

pytestmark = pytest.mark.clients

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
MSG = [{"role": "user", "content": "Weather in Paris?"}]


def _litellm():
    return need("litellm")


def test_completion_and_stream(eli_server):
    litellm = _litellm()
    kw = dict(model=f"openai/{MODEL_NAME}", api_base=eli_server, api_key=API_KEY, messages=MSG, max_tokens=8,
              temperature=0)
    r = litellm.completion(**kw)
    text = r.choices[0].message.content
    assert r.usage.completion_tokens >= 1
    streamed = "".join(c.choices[0].delta.content or "" for c in litellm.completion(stream=True, **kw) if c.choices)
    assert streamed == text


def test_tools_required(eli_server):
    litellm = _litellm()
    r = litellm.completion(model=f"openai/{MODEL_NAME}", api_base=eli_server, api_key=API_KEY, messages=MSG,
                           tools=TOOLS, tool_choice="required", max_tokens=160, temperature=1.0, seed=4)
    ch = r.choices[0]
    assert ch.finish_reason in ("tool_calls", "length")
    if ch.finish_reason == "tool_calls":
        assert ch.message.tool_calls
        for tc in ch.message.tool_calls:
            assert tc.function.name in SCHEMAS
            jsonschema.validate(json.loads(tc.function.arguments), SCHEMAS[tc.function.name])
