# tests/python/test_structured_output.py: structured output (issue 18 item 1) and logit_bias /
# allowed_token_ids / min_tokens (item 3) through eli.LLM and eli.AsyncLLM on the tiny llama_base
# checkpoint (random weights: its choices are arbitrary, so the assertions are the ones that must
# hold anyway): every json_schema output parses and validates (jsonschema), every regex output
# full-matches, every choice output is a choice, every grammar output is accepted by a fresh
# llguidance matcher; grammar completion ends with "stop"; bad fields are InvalidRequestErrors
# naming the field; dead ends and failing constraints end that request only, with an error;
# continuous batching, prefix caching, preemption, asynchronous scheduling, stop strings and
# streaming keep all of it. Property tests (seeded random schemas and regexes) are in
# test_structured_output_props.py.
import asyncio
import json
import re

import jsonschema
import numpy as np
import pytest

import eli
from eli import InvalidRequestError
from eli.structured import constraint as constraint_module


@pytest.fixture(scope="module")
def model_dir(data_dir):
    return str(data_dir / "models" / "llama_base")


@pytest.fixture(scope="module")
def llm(model_dir):
    with eli.LLM(model_dir, dtype="float32", n_threads=1, block_size=4, num_kv_blocks=512, progress=False) as m:
        yield m


PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 8},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    "kind": {"anyOf": [{"type": "boolean"}, {"type": "null"}]}},
    "required": ["name", "age", "tags", "kind"], "additionalProperties": False}

REF_SCHEMA = {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9}},
                               "required": ["x"], "additionalProperties": False}},
              "type": "object", "properties": {"a": {"$ref": "#/$defs/pt"},
                                               "b": {"type": "array", "items": {"$ref": "#/$defs/pt"},
                                                     "minItems": 1, "maxItems": 2},
                                               "c": {"type": "string", "pattern": "^[a-z]{2,4}$"}},
              "required": ["a", "b", "c"], "additionalProperties": False}


def sampled(max_tokens=40, **kw):
    return eli.SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=kw.pop("seed", 1), **kw)


def texts(outs):
    return [c for o in outs for c in o.outputs]


# ---- outputs obey their constraint -----------------------------------------------------------

@pytest.mark.parametrize("schema", [PERSON, REF_SCHEMA, {"type": "array", "items": {"type": "integer"}, "maxItems": 4},
                                    {"enum": ["red", "green", 3, None]}])
def test_json_schema_outputs_validate(llm, schema):
    outs = llm.generate(["A:", "B: {", "x"], sampled(80, json_schema=schema, n=3))
    for c in texts(outs):
        assert c.finish_reason == "stop", (c.finish_reason, c.error, c.text)
        jsonschema.validate(json.loads(c.text), schema)


def test_json_schema_as_string_and_json_object(llm):
    for params in (sampled(60, json_schema=json.dumps(PERSON)), sampled(60, json_object=True, n=3, seed=5)):
        for c in texts(llm.generate(["{", "z"], params)):
            if c.finish_reason == "stop":
                assert isinstance(json.loads(c.text), dict)
            else:  # free JSON can run past max_tokens: then it is a prefix of an object
                assert c.finish_reason == "length" and c.text.startswith("{")


@pytest.mark.parametrize("regex", [r"[a-c]{3}-[0-9]{2}", r"(yes|no|maybe)!?", r"-?[0-9]{1,4}(\.[0-9]{1,2})?",
                                   r"[A-Z][a-z]{0,5}( [A-Z][a-z]{0,5}){0,2}"])
def test_regex_outputs_full_match(llm, regex):
    for c in texts(llm.generate(["p", "q r"], sampled(30, regex=regex, n=4, ignore_eos=True))):
        assert c.finish_reason == "stop", (c.error, c.text)
        assert re.fullmatch(regex, c.text), c.text


def test_choice_is_one_of_the_choices_and_completion_stops(llm):
    choices = ["positive", "negative", "neutral ground"]
    for c in texts(llm.generate(["s", "t"], sampled(50, choice=choices, n=5, ignore_eos=True))):
        assert c.text in choices
        assert c.finish_reason == "stop"  # ignore_eos: the grammar's completion ended it
    one = llm.generate("s", eli.SamplingParams(max_tokens=50, temperature=0.0, choice=["yes"], ignore_eos=True))[0]
    assert one.text == "yes" and one.finish_reason == "stop"


def _accepted_by(grammar_field, value, token_ids, llm):
    """A fresh matcher of the field accepts exactly these tokens and is then complete."""
    from eli.structured.grammar import grammar_for

    spec = llm.info["spec"]
    con = constraint_module.make_constraint(grammar_for(grammar_field, value), llm.tokenizer, spec["vocab_size"],
                                            spec["eos_token_ids"])
    for t in token_ids:
        if not con.accept(t):
            return False
    return con._m.is_accepting()


LARK = r"""
start: expr
expr: term (("+" | "-") term)*
term: NUMBER | "(" expr ")"
NUMBER: /[0-9]{1,3}/
"""
GBNF = r"""
root ::= "[" item ("," item)* "]"
item ::= [a-z] [a-z0-9]? | "nil"
"""
LARK_JSON = r"""
start: "Answer: " obj
obj: %json {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
            "additionalProperties": false}
"""


@pytest.mark.parametrize("grammar", [LARK, GBNF, LARK_JSON], ids=["lark", "gbnf", "lark_json"])
def test_grammar_outputs_parse(llm, grammar):
    outs = texts(llm.generate(["g", "h i"], sampled(60, grammar=grammar, n=3, ignore_eos=True)))
    for c in outs:
        assert c.finish_reason in ("stop", "length"), c.error
        assert c.error is None
        if c.finish_reason == "stop":
            assert _accepted_by("grammar", grammar, c.token_ids, llm), c.text
    if grammar is LARK_JSON:
        for c in outs:
            if c.finish_reason == "stop":
                assert c.text.startswith("Answer: ") and isinstance(json.loads(c.text[8:])["ok"], bool)
    if grammar is GBNF:
        for c in outs:
            if c.finish_reason == "stop":
                assert re.fullmatch(r"\[([a-z][a-z0-9]?|nil)(,([a-z][a-z0-9]?|nil))*\]", c.text), c.text


# ---- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, match", [
    ({"json_schema": {"type": "objectx"}}, "json_schema"),
    ({"json_schema": "{not json"}, "json_schema: not valid JSON"),
    ({"json_schema": 5}, "json_schema must be"),
    ({"regex": "[a-z"}, "regex"),
    ({"regex": ""}, "regex must be a non-empty string"),
    ({"grammar": "start: foo"}, "grammar"),
    ({"grammar": "root ::= \"a\" bad_rule"}, "grammar"),
    ({"choice": []}, "choice must be a non-empty list"),
    ({"choice": ["a", 3]}, "choice"),
    ({"choice": "ab"}, "choice must be"),
    ({"json_object": "yes"}, "json_object must be True or False"),
    ({"regex": "a", "choice": ["a"]}, "only one of"),
    ({"json_object": True, "json_schema": {"type": "object"}}, "only one of"),
    ({"logit_bias": {5: 101}}, r"logit_bias\[5\] must be in \[-100, 100\]"),
    ({"logit_bias": {5: float("nan")}}, "logit_bias"),
    ({"logit_bias": {-1: 1}}, "logit_bias key"),
    ({"logit_bias": [1, 2]}, "logit_bias must be a dict"),
    ({"logit_bias": {"x": 1}}, "logit_bias key"),
    ({"allowed_token_ids": []}, "allowed_token_ids must not be empty"),
    ({"allowed_token_ids": [1, -2]}, "allowed_token_ids"),
    ({"min_tokens": -1}, "min_tokens"),
    ({"min_tokens": 20, "max_tokens": 10}, "min_tokens"),
])
def test_bad_fields_are_invalid_requests(fields, match):
    with pytest.raises(InvalidRequestError, match=match):
        eli.SamplingParams(**fields)


def test_logit_bias_string_keys_and_from_dict():
    p = eli.SamplingParams.from_dict({"logit_bias": {"7": 2.5, 9: -1}})
    assert p.logit_bias == {7: 2.5, 9: -1.0}
    assert sorted(p.engine_params().logit_bias) == [(7, 2.5), (9, -1.0)]


def test_out_of_vocab_ids_are_refused_at_admission(llm):
    V = llm.info["spec"]["vocab_size"]
    for fields in ({"logit_bias": {V: 1.0}}, {"allowed_token_ids": [V]}):
        with pytest.raises(InvalidRequestError, match="out of range"):
            llm.generate("a", eli.SamplingParams(max_tokens=2, **fields))


# ---- logit_bias / allowed_token_ids / min_tokens semantics -------------------------------------

def test_greedy_first_token_is_the_biased_masked_argmax(llm):
    prompt = llm.tokenizer.encode("hello world", add_special_tokens=False)
    z = llm.score(prompt)[-1].astype(np.float64)
    V = z.shape[0]
    rng = np.random.default_rng(0)
    for trial in range(6):
        allowed = sorted(int(t) for t in rng.choice(V, size=20, replace=False))
        bias = {int(t): float(rng.integers(-5, 6)) for t in rng.choice(V, size=30, replace=False)}
        w = z.copy()
        for t, b in bias.items():
            w[t] += b
        want = max(allowed, key=lambda t: (w[t], -t))
        out = llm.generate([prompt], eli.SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True,
                                                        logit_bias=bias, allowed_token_ids=allowed))[0]
        assert out.token_ids == [want], trial


def test_allowed_token_ids_bound_every_token(llm):
    allowed = [40, 41, 42, 43]
    for c in texts(llm.generate(["a", "b"], sampled(20, allowed_token_ids=allowed, ignore_eos=True, n=3))):
        assert set(c.token_ids) <= set(allowed) and len(c.token_ids) == 20


def test_min_tokens_holds_eos_and_stop_ids_back(llm):
    eos = llm.info["spec"]["eos_token_ids"][0]
    for min_tokens in (0, 1, 5):
        p = eli.SamplingParams(max_tokens=12, temperature=0.0, logit_bias={eos: 100.0, 77: 50.0},
                               stop_token_ids=[77], min_tokens=min_tokens)
        out = llm.generate("abc", p)[0]
        assert out.finish_reason == "stop"
        assert len(out.token_ids) == min_tokens + 1
        assert all(t not in (eos, 77) for t in out.token_ids[:min_tokens])


# ---- dead ends and failures end that request only ------------------------------------------------

def test_dead_end_is_an_error_for_that_request_only(llm):
    digit_ids = [llm.tokenizer.token_to_id(c) for c in "0123456789"]
    letters = [i for i in range(llm.info["spec"]["vocab_size"]) if i not in digit_ids][:50]
    bad = sampled(10, regex="[0-9]+", allowed_token_ids=letters)
    good = eli.SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    outs = llm.generate(["a", "a"], [bad, good])
    assert outs[0].finish_reason == "error" and "dead end" in outs[0].error
    alone = llm.generate("a", good)[0]
    assert outs[1].token_ids == alone.token_ids and outs[1].finish_reason == "length"


class _Faulty:
    def __init__(self, inner, fail_at):
        self.inner, self.n, self.fail_at = inner, 0, fail_at

    def fill_mask(self, ptr, vocab):
        self.n += 1
        if self.n == self.fail_at:
            raise ValueError("injected failure")
        self.inner.fill_mask(ptr, vocab)

    def accept(self, t):
        return self.inner.accept(t)

    def is_finished(self):
        return self.inner.is_finished()


def test_a_raising_python_constraint_fails_its_request_only(llm, monkeypatch):
    real = constraint_module.make_constraint
    monkeypatch.setattr(constraint_module, "make_constraint", lambda *a: _Faulty(real(*a), 3))
    good = eli.SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    outs = llm.generate(["a", "b"], [sampled(20, regex="[a-z]{10}"), good])
    assert outs[0].finish_reason == "error"
    assert "ValueError: injected failure" in outs[0].error and len(outs[0].token_ids) == 2
    assert outs[1].finish_reason == "length" and len(outs[1].token_ids) == 6


def test_masks_of_a_step_are_filled_in_one_batch(llm, monkeypatch):
    calls = []
    real = constraint_module.LLGuidanceConstraint.fill_masks_batch.__func__

    def spy(cls, cons, index, ptr, words, vocab):
        calls.append(len(cons))
        return real(cls, cons, index, ptr, words, vocab)

    monkeypatch.setattr(constraint_module.LLGuidanceConstraint, "fill_masks_batch", classmethod(spy))
    outs = llm.generate(["a", "b", "c"], sampled(20, choice=["x y z", "yy", "zzz zz"], n=2, ignore_eos=True))
    assert max(calls) == 6  # every constrained row of the first step, in one call
    for c in texts(outs):
        assert c.text in ("x y z", "yy", "zzz zz") and c.finish_reason == "stop"


# ---- batching, prefix caching, preemption, async scheduling, stop strings, streaming -------------

def _mixed_batch():
    prompts, params = [], []
    for i in range(8):
        prompts.append(f"item {i} " * (1 + i % 3))
        if i % 2:
            params.append(eli.SamplingParams(max_tokens=150, temperature=0.0, json_schema=PERSON))
        else:
            params.append(eli.SamplingParams(max_tokens=10 + i, temperature=0.0, ignore_eos=True))
    return prompts, params


def _check_mixed(outs, params):
    for o, p in zip(outs, params):
        if p.json_schema is not None:
            assert o.finish_reason == "stop", o.error
            jsonschema.validate(json.loads(o.text), PERSON)


def test_continuous_batching_keeps_neighbours_and_constraints(llm):
    prompts, params = _mixed_batch()
    together = llm.generate(prompts, params)
    _check_mixed(together, params)
    for i, (pr, p) in enumerate(zip(prompts, params)):
        assert llm.generate(pr, p)[0].token_ids == together[i].token_ids, i


@pytest.mark.parametrize("options", [{"async_scheduling": True}, {"enable_prefix_caching": True},
                                     {"num_kv_blocks": 60, "max_num_seqs": 8}],
                         ids=["async", "prefix_cache", "small_pool"])
def test_engine_modes_give_the_same_constrained_outputs(llm, model_dir, options):
    prompts, params = _mixed_batch()
    want = [o.token_ids for o in llm.generate(prompts, params)]
    opts = dict(dtype="float32", n_threads=1, block_size=4, num_kv_blocks=512, progress=False)
    opts.update(options)
    with eli.LLM(model_dir, **opts) as m:
        for _ in range(2):  # twice: the second run hits the prefix cache
            outs = m.generate(prompts, params)
            _check_mixed(outs, params)
            assert [o.token_ids for o in outs] == want
        if "num_kv_blocks" in options:
            assert m.stats()["preemptions"] > 0  # the small pool preempted (and recomputed) requests


def test_preemption_storm_keeps_constrained_outputs(llm, model_dir):
    prompts, params = _mixed_batch()
    want = [o.token_ids for o in llm.generate(prompts, params)]
    with eli.LLM(model_dir, dtype="float32", n_threads=1, block_size=4, num_kv_blocks=512, progress=False) as m:
        eli._eli.arm_fault("preempt_storm", "prob=0.5:seed=3")
        try:
            outs = m.generate(prompts, params)
        finally:
            eli._eli.disarm_faults()
        assert m.stats()["preemptions"] > 0
    _check_mixed(outs, params)
    assert [o.token_ids for o in outs] == want


def test_stop_strings_cut_constrained_output(llm):
    full = llm.generate("q", eli.SamplingParams(max_tokens=150, temperature=0.0, json_schema=PERSON))[0]
    assert '"age":' in full.text
    cut = llm.generate("q", eli.SamplingParams(max_tokens=150, temperature=0.0, json_schema=PERSON, stop=['"age"']))[0]
    assert cut.finish_reason == "stop" and full.text.startswith(cut.text) and '"age"' not in cut.text


def test_streaming_matches_generate(llm, model_dir):
    p = eli.SamplingParams(max_tokens=150, temperature=0.0, json_schema=PERSON)
    want = llm.generate("s", p)[0]
    assert "".join(llm.stream("s", p)) == want.text

    async def run():
        async with eli.AsyncLLM(model_dir, dtype="float32", n_threads=1, block_size=4, num_kv_blocks=256,
                                progress=False) as alm:
            pieces, last = [], None
            async for out in alm.generate("s", p):
                pieces.append(out.delta_text)
                last = out
            return "".join(pieces), last

    text, last = asyncio.run(run())
    assert text == want.text and last.finish_reason == "stop"
    jsonschema.validate(json.loads(text), PERSON)


def test_structured_output_without_a_tokenizer_is_refused(llm):
    # SamplingParams builds without a model; admission needs the model's tokenizer.
    p = eli.SamplingParams(max_tokens=4, regex="[0-9]+")
    tok, llm.tokenizer = llm.tokenizer, None
    try:
        with pytest.raises(InvalidRequestError, match="needs a tokenizer"):
            llm.generate([[1, 2, 3]], p)
    finally:
        llm.tokenizer = tok


# ---- the default model (a real 49K BPE vocabulary from GGUF metadata) ------------------------------

def test_default_model_json_schema_regex_and_choice(smollm2_gguf):
    with eli.LLM(str(smollm2_gguf), n_threads=2, num_kv_blocks=256, progress=False) as m:
        outs = m.generate(["A person as JSON:", "A product code:", "Is the sky blue?"], [
            eli.SamplingParams(max_tokens=120, temperature=0.0, json_schema=PERSON),
            eli.SamplingParams(max_tokens=20, temperature=0.8, seed=3, regex=r"[A-Z]{3}-[0-9]{4}", n=3),
            eli.SamplingParams(max_tokens=10, temperature=0.8, seed=4, choice=["yes", "no"], n=3)])
        assert outs[0].finish_reason == "stop", outs[0].error
        jsonschema.validate(json.loads(outs[0].text), PERSON)
        for c in outs[1].outputs:
            assert re.fullmatch(r"[A-Z]{3}-[0-9]{4}", c.text), c.text
        for c in outs[2].outputs:
            assert c.text in ("yes", "no") and c.finish_reason == "stop"
