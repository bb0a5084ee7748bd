# tests/python/test_tool_parsers_grammar.py: the forcing grammars of every tool-parser family
# (eli/tool_parsers/grammar.py) run through the real engine on the tiny llama_base checkpoint with
# the grammar helper's constrained decoding. Random weights make the model's choices arbitrary, so
# the assertions are the ones that must hold anyway: every output parses, with that family's parser,
# into calls of declared tools (the named one when forced by name; one call when parallel calls are
# off) whose arguments validate against the tool's parameters schema; with an answer schema, the
# output is either such calls or a JSON answer valid against it.
from __future__ import annotations

import json

import jsonschema
import pytest

import eli
from eli.tool_parsers import get_parser
from eli.tool_parsers.grammar import call_grammar

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 6},
                                         "unit": {"enum": ["C", "F"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99},
                                         "b": {"type": "integer", "minimum": -99, "maximum": 99}},
        "required": ["a", "b"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "ping"}},  # no parameters: any object
]
SCHEMAS = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in TOOLS}


@pytest.fixture(scope="module")
def llm(data_dir):
    with eli.LLM(str(data_dir / "models" / "llama_base"), dtype="float32", n_threads=1, block_size=4,
                 num_kv_blocks=512, progress=False) as m:
        yield m


def _run(llm, grammar, n=6, max_tokens=160):
    params = [eli.SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=s, grammar=grammar) for s in range(n)]
    outs = llm.generate(["Call a tool."] * n, params)
    return [o.outputs[0] for o in outs]


def _check_calls(family, text, allowed, parallel):
    r = get_parser(family).parse(text)
    assert r.tool_calls, (family, text)
    assert not (r.content or "").strip(), (family, text)
    assert parallel or len(r.tool_calls) == 1
    for c in r.tool_calls:
        assert c.name in allowed
        jsonschema.validate(json.loads(c.arguments), SCHEMAS[c.name])


@pytest.mark.parametrize("family", ["hermes", "llama3_json", "mistral", "json"])
@pytest.mark.parametrize("parallel", [True, False])
def test_required_calls_parse_and_validate(llm, family, parallel):
    outs = _run(llm, call_grammar(family, TOOLS, parallel=parallel))
    assert any(o.finish_reason == "stop" for o in outs), "no output finished within max_tokens"
    for out in outs:
        if out.finish_reason == "length":
            continue  # cut by max_tokens: nothing to check (the grammar was not finished)
        assert out.finish_reason == "stop"
        _check_calls(family, out.text, {"get_weather", "add", "ping"}, parallel)
        assert "\n\n" not in out.text and "\t" not in out.text  # compact calls


@pytest.mark.parametrize("family", ["hermes", "llama3_json", "mistral"])
def test_named_call(llm, family):
    outs = _run(llm, call_grammar(family, [TOOLS[1]], parallel=False))
    finished = [o for o in outs if o.finish_reason == "stop"]
    assert finished, "no output finished within max_tokens"
    for out in finished:
        _check_calls(family, out.text, {"add"}, False)


def test_calls_or_answer(llm):
    answer = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    for out in _run(llm, call_grammar("hermes", TOOLS, answer_schema=answer), n=8):
        if out.finish_reason != "stop":
            continue
        r = get_parser("hermes").parse(out.text)
        if r.tool_calls:
            for c in r.tool_calls:
                jsonschema.validate(json.loads(c.arguments), SCHEMAS[c.name])
        else:
            jsonschema.validate(json.loads(out.text), answer)
