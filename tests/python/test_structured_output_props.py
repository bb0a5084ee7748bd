# tests/python/test_structured_output_props.py: property tests of structured output (issue 18):
# many seeded random JSON schemas (objects, arrays, enums, anyOf, $ref, bounded integers, strings
# with lengths and patterns, booleans, null) and random regular expressions, generated at
# temperature 1 on the tiny llama_base checkpoint, all in one continuous batch. Every output must
# end with "stop" (never a dead end, never an error, never a hang) and be valid: the JSON parses
# and validates against its schema (jsonschema), the text full-matches its regex (Python's re, on
# the syntax subset both engines share). Bounds (maxLength, maxItems, integer ranges, depth) keep
# every document short enough for max_tokens.
import json
import random
import re

import jsonschema
import pytest

import eli


@pytest.fixture(scope="module")
def llm(data_dir):
    with eli.LLM(str(data_dir / "models" / "llama_base"), dtype="float32", n_threads=1, block_size=4,
                 num_kv_blocks=2048, max_num_seqs=64, progress=False) as m:
        yield m


def random_schema(rng: random.Random, depth: int = 0, defs=None) -> dict:
    kinds = ["integer", "boolean", "enum", "string", "null"]
    if depth < 2:
        kinds += ["object", "array", "anyOf", "object"]
    if defs is not None and depth > 0:
        kinds.append("ref")
    kind = rng.choice(kinds)
    if kind == "integer":
        lo = rng.randint(-50, 50)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 500)}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "null":
        return {"type": "null"}
    if kind == "enum":
        return {"enum": rng.sample(["x", "yy", "zzz", 1, 22, True, None, "a b"], rng.randint(1, 4))}
    if kind == "string":
        s = {"type": "string", "maxLength": rng.randint(0, 6)}
        if rng.random() < 0.3:
            s = {"type": "string", "pattern": rng.choice(["^[a-f]{1,3}$", "^[0-9]{2}-[a-z]$", "^(ab|cd)+$"])}
            if "+" in s["pattern"]:
                s["maxLength"] = 8
        elif rng.random() < 0.3:
            s["minLength"] = min(s["maxLength"], rng.randint(0, 3))
        return s
    if kind == "array":
        a = {"type": "array", "items": random_schema(rng, depth + 1, defs), "maxItems": rng.randint(0, 3)}
        if rng.random() < 0.5:
            a["minItems"] = rng.randint(0, a["maxItems"])
        return a
    if kind == "anyOf":
        return {"anyOf": [random_schema(rng, depth + 1, defs) for _ in range(rng.randint(2, 3))]}
    if kind == "ref":
        return {"$ref": "#/$defs/" + rng.choice(sorted(defs))}
    props = {f"k{i}": random_schema(rng, depth + 1, defs) for i in range(rng.randint(1, 3))}
    required = [k for k in props if rng.random() < 0.7]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def schemas(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        defs = {"leaf": {"type": "integer", "minimum": 0, "maximum": 9},
                "pair": {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 2}}
        s = random_schema(rng, 0, defs)
        s["$defs"] = defs
        out.append(s)
    return out


def random_regex(rng: random.Random, depth: int = 0) -> str:
    atoms = ["[a-c]", "[0-9]", "x", "-", "[A-Z]", "(ok|no)", r"\.", "[a-z0-9]"]
    parts = []
    for _ in range(rng.randint(1, 4)):
        if depth < 2 and rng.random() < 0.25:
            a = "(" + random_regex(rng, depth + 1) + "|" + random_regex(rng, depth + 1) + ")"
        else:
            a = rng.choice(atoms)
        q = rng.choice(["", "", "?", "{1,3}", "{2}", "{0,2}"])
        parts.append(a + q)
    return "".join(parts)


def test_random_schemas_always_valid(llm):
    ss = schemas(seed=1234, n=24)
    prompts = [f"doc {i}:" for i in range(len(ss))]
    params = [eli.SamplingParams(max_tokens=400, temperature=1.0, seed=i, json_schema=s, ignore_eos=True)
              for i, s in enumerate(ss)]
    for s, out in zip(ss, llm.generate(prompts, params)):
        assert out.finish_reason == "stop", (out.finish_reason, out.error, json.dumps(s), out.text)
        jsonschema.validate(json.loads(out.text), s)


def test_random_regexes_always_full_match(llm):
    rng = random.Random(99)
    regexes = [random_regex(rng) for _ in range(40)]
    params = [eli.SamplingParams(max_tokens=120, temperature=1.0, seed=i, regex=r, ignore_eos=True)
              for i, r in enumerate(regexes)]
    outs = llm.generate([f"r{i}" for i in range(len(regexes))], params)
    for r, out in zip(regexes, outs):
        assert out.finish_reason == "stop", (out.error, r, out.text)
        assert re.fullmatch(r, out.text), (r, out.text)
