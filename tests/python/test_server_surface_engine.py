# tests/python/test_server_surface_engine.py: the parts of the server surface that need the real
# engine (tests/data/models/llama_base on the CPU): /v1/embeddings (openai client: base64 by
# default, float, token inputs, dimensions, errors), echo with logprobs (the prompt tokens'
# logprobs, first null, against transformers' logits in reference.npz) and the prompt_logprobs
# extension (vLLM's shape).
from __future__ import annotations

import pathlib

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import eli  # noqa: E402
from eli.server import create_app  # noqa: E402

from server_helpers import ThreadedServer  # noqa: E402

MODEL_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "models" / "llama_base"
KEY = "sk-engine"
NAME = "llama-tiny"


@pytest.fixture(scope="module")
def srv():
    llm = eli.AsyncLLM(str(MODEL_DIR), device="cpu", num_kv_blocks=64, max_num_seqs=16, max_num_batched_tokens=8)
    app = create_app(llm, model_name=NAME, api_key=KEY, owns_llm=True)
    with ThreadedServer(app) as s:
        s.llm = llm
        yield s


def _client(s):
    return openai.OpenAI(base_url=s.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def _post(s, path, body):
    return httpx.post(s.url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def _ref():
    ref = np.load(MODEL_DIR / "reference.npz")
    logits = ref["logits"].astype(np.float64)
    m = logits.max(axis=1, keepdims=True)
    lp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return [int(t) for t in ref["input_ids"]], lp, ref["hidden"].astype(np.float64)


def test_embeddings(srv):
    ids, _, hidden = _ref()
    c = _client(srv)
    r = c.embeddings.create(model=NAME, input=[ids, ids[:5]])  # the client asks for base64
    assert [d.index for d in r.data] == [0, 1] and r.model == NAME
    v = np.array(r.data[0].embedding)
    want = hidden[-1] / np.linalg.norm(hidden[-1])
    assert v.shape == want.shape and np.abs(v - want).max() <= 1e-4 * np.abs(want).max()
    assert r.usage.prompt_tokens == len(ids) + 5 == r.usage.total_tokens
    f = c.embeddings.create(model=NAME, input=ids, encoding_format="float")
    np.testing.assert_array_equal(np.array(f.data[0].embedding, dtype=np.float32), v.astype(np.float32))
    mean = _post(srv, "/v1/embeddings", {"input": ids, "pooling": "mean", "normalize": False}).json()
    got = np.array(mean["data"][0]["embedding"])
    assert np.abs(got - hidden.mean(0)).max() <= 1e-4 * np.abs(hidden.mean(0)).max()
    texts = c.embeddings.create(model=NAME, input=["hello", "world"], dimensions=hidden.shape[1])
    assert len(texts.data) == 2 and texts.data[0].embedding != texts.data[1].embedding
    assert c.embeddings.create(model=NAME, input="hello").data[0].embedding == texts.data[0].embedding


@pytest.mark.parametrize("body,param", [
    ({"input": "x", "dimensions": 8}, "dimensions"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": [[1, 2], []]}, "input"),
    ({"input": [1, 100000]}, "input"),
    ({"input": ["a"] * 257}, "input"),
    ({"input": [5] * 300}, "input"),  # over the context
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
])
def test_embedding_errors(srv, body, param):
    r = _post(srv, "/v1/embeddings", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_echo_logprobs(srv):
    ids, ref_lp, _ = _ref()
    r = _client(srv).completions.create(model=NAME, prompt=ids, max_tokens=2, echo=True, logprobs=2, temperature=0)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(ids) + 2 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for p in range(1, len(ids)):
        assert lp.token_logprobs[p] == pytest.approx(ref_lp[p - 1, ids[p]], abs=1e-4)
        assert 1 <= len(lp.top_logprobs[p]) <= 2  # keyed by token text: byte tokens may share one
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    assert r.choices[0].text.startswith(srv.llm.tokenizer.decode(ids, skip_special_tokens=False))
    # streamed: the first chunk carries the prompt's entries
    chunks = list(_client(srv).completions.create(model=NAME, prompt=ids, max_tokens=2, echo=True, logprobs=2,
                                                  temperature=0, stream=True))
    first = chunks[0].choices[0].logprobs
    assert first.token_logprobs[0] is None
    assert first.token_logprobs[1:len(ids)] == pytest.approx(lp.token_logprobs[1:len(ids)], abs=1e-6)


def test_prompt_logprobs_extension(srv):
    ids, ref_lp, _ = _ref()
    r = _post(srv, "/v1/completions", {"prompt": ids, "max_tokens": 1, "prompt_logprobs": 1}).json()
    plp = r["choices"][0]["prompt_logprobs"]
    assert len(plp) == len(ids) and plp[0] is None
    for p in range(1, len(ids)):
        entry = plp[p][str(ids[p])]
        assert entry["logprob"] == pytest.approx(ref_lp[p - 1, ids[p]], abs=1e-4)
        best = int(np.argmax(ref_lp[p - 1]))
        assert plp[p][str(best)]["rank"] == 1 and plp[p][str(best)]["decoded_token"] is not None
    assert _post(srv, "/v1/completions", {"prompt": "x", "prompt_logprobs": 21}).status_code == 400


def test_chat_prompt_logprobs(srv):
    # vLLM's chat extension: the response carries the chat prompt's logprobs once, in the shape of
    # the completions field, equal to what /v1/completions gives for the same prompt ids.
    messages = [{"role": "user", "content": "Name a color."}]
    ids = srv.llm.chat_prompt_ids(messages)
    r = _post(srv, "/v1/chat/completions", {"messages": messages, "max_tokens": 2, "n": 2,
                                             "prompt_logprobs": 2, "temperature": 0})
    assert r.status_code == 200, r.text
    plp = r.json()["prompt_logprobs"]
    assert len(plp) == len(ids) and plp[0] is None
    want = _post(srv, "/v1/completions", {"prompt": ids, "max_tokens": 1, "prompt_logprobs": 2}).json()
    assert plp == want["choices"][0]["prompt_logprobs"]
    assert [int(next(iter(e))) for e in plp[1:]] == ids[1:]  # each entry names its prompt token first
    assert "prompt_logprobs" not in _post(srv, "/v1/chat/completions", {"messages": messages, "max_tokens": 1}).json()
    bad = _post(srv, "/v1/chat/completions", {"messages": messages, "prompt_logprobs": 2, "stream": True})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt_logprobs"
    assert _post(srv, "/v1/chat/completions", {"messages": messages, "prompt_logprobs": 21}).status_code == 400


def test_responses_text_format(srv):
    # text.format json_schema / json_object constrain the reply as chat's response_format does;
    # greedy streaming equals the whole response; the response echoes the format.
    jsonschema = pytest.importorskip("jsonschema")
    import json

    # bounded values: a random model would otherwise fill max_output_tokens with digits
    schema = {"type": "object", "properties": {"name": {"type": "string", "enum": ["ab", "cd"]},
                                               "n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["name", "n"], "additionalProperties": False}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    c = _client(srv)
    r = c.responses.create(model=NAME, input="Describe a thing.", text={"format": fmt}, max_output_tokens=48,
                           temperature=0)
    assert r.status == "completed", r.output_text
    jsonschema.validate(json.loads(r.output_text), schema)
    assert r.text.format.type == "json_schema"
    with c.responses.stream(model=NAME, input="Describe a thing.", text={"format": fmt}, max_output_tokens=48,
                            temperature=0) as st:
        assert st.get_final_response().output_text == r.output_text
    obj = c.responses.create(model=NAME, input="Any JSON.", text={"format": {"type": "json_object"}},
                             max_output_tokens=48, temperature=0)
    if obj.status == "completed":
        assert isinstance(json.loads(obj.output_text), dict)
