# tests/python/test_server_surface.py: the rest of the OpenAI surface of `eli serve`, driven by the
# `openai` client and raw HTTP: GET /v1/models/{id}, stream_options.continuous_usage_stats, echo,
# best_of, suffix (fill-in-the-middle) and the stateless /v1/responses (plain and streamed events).
# The fake AsyncLLM (server_helpers.py) makes every assertion exact and fast; echo with logprobs
# (prompt logprobs from the engine) runs on the real engine in test_server_surface_engine.py.
from __future__ import annotations

import json
import pathlib

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from eli.server import create_app  # noqa: E402
from eli.server.fim import fim_prompt_ids, fim_tokens  # noqa: E402

from server_helpers import FakeAsyncLLM, FakeOutput, ThreadedServer  # noqa: E402

MODEL_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "models" / "llama_base"
KEY = "sk-surface"
NAME = "org/llama-tiny"  # a slash, as Hub ids have
FIM = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]


class RankedFakeLLM(FakeAsyncLLM):
    """FakeAsyncLLM whose sampled-token logprob depends on the seed (-(seed % 5) - 0.5), so best_of
    has a known winner."""

    async def generate(self, prompt, params, request_id=None):
        async for out in super().generate(prompt, params, request_id):
            if out.delta_logprobs:
                lp = -float((params.seed or 0) % 5) - 0.5
                out.delta_logprobs = [{t: (lp if t == tid else v) for t, v in e.items()}
                                      for e, tid in zip(out.delta_logprobs, out.delta_token_ids)]
            yield out


@pytest.fixture(scope="module")
def srv():
    llm = RankedFakeLLM(str(MODEL_DIR), token_delay_s=0.001)
    app = create_app(llm, model_name=NAME, api_key=KEY)
    with ThreadedServer(app) as s:
        s.llm = llm
        yield s


@pytest.fixture(scope="module")
def fim_srv():
    llm = FakeAsyncLLM(str(MODEL_DIR))
    llm.tokenizer.backend.add_special_tokens(FIM)
    app = create_app(llm, model_name=NAME, api_key=KEY)
    with ThreadedServer(app) as s:
        s.llm = llm
        yield s


def _client(s):
    return openai.OpenAI(base_url=s.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


def _post(s, path, body):
    return httpx.post(s.url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def _error(r, status, param=None, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


# ---- models ------------------------------------------------------------------------------------

def test_model_retrieve(srv):
    m = _client(srv).models.retrieve(NAME)
    assert m.id == NAME and m.object == "model" and m.owned_by == "eli"
    r = httpx.get(srv.url + "/v1/models/nope/other", headers={"Authorization": f"Bearer {KEY}"})
    err = _error(r, 404, "model", "model_not_found")
    assert err["type"] == "invalid_request_error" and "nope/other" in err["message"]
    with pytest.raises(openai.NotFoundError):
        _client(srv).models.retrieve("gpt-4")
    assert httpx.get(srv.url + f"/v1/models/{NAME}").status_code == 401  # the key still applies


# ---- continuous usage --------------------------------------------------------------------------

def test_continuous_usage_stats(srv):
    chunks = list(_client(srv).completions.create(
        model=NAME, prompt="abc", max_tokens=6, stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True}))
    body = [c for c in chunks if c.choices]
    assert body and all(c.usage is not None for c in body)
    done = [c.usage.completion_tokens for c in body]
    assert done == sorted(done) and done[-1] == 6
    assert all(c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens for c in body)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    # include_usage alone: usage only in the last chunk
    plain = list(_client(srv).completions.create(model=NAME, prompt="abc", max_tokens=3, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.usage is None for c in plain if c.choices) and plain[-1].usage.completion_tokens == 3


def test_chat_continuous_usage_stats(srv):
    chunks = list(_client(srv).chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "abc"}], max_tokens=6, n=2, stream=True,
        stream_options={"include_usage": True, "continuous_usage_stats": True}))
    body = [c for c in chunks if c.choices]
    assert body and all(c.usage is not None for c in body)
    done = [c.usage.completion_tokens for c in body]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 12  # both choices counted
    assert all(c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens for c in body)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    plain = list(_client(srv).chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "abc"}], max_tokens=3, stream=True,
        stream_options={"include_usage": True}))
    assert all(c.usage is None for c in plain if c.choices) and plain[-1].usage.completion_tokens == 3


# ---- echo --------------------------------------------------------------------------------------

def test_echo(srv):
    c = _client(srv)
    plain = c.completions.create(model=NAME, prompt="Hello world", max_tokens=4)
    echoed = c.completions.create(model=NAME, prompt="Hello world", max_tokens=4, echo=True)
    assert echoed.choices[0].text == "Hello world" + plain.choices[0].text
    ids = srv.llm.tokenizer.encode("Hi there", add_special_tokens=False)
    r = c.completions.create(model=NAME, prompt=ids, max_tokens=2, echo=True)
    assert r.choices[0].text.startswith(srv.llm.tokenizer.decode(ids, skip_special_tokens=False))
    chunks = list(c.completions.create(model=NAME, prompt="Hello world", max_tokens=4, echo=True, stream=True))
    assert chunks[0].choices[0].text.startswith("Hello world")
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == echoed.choices[0].text


# ---- best_of -----------------------------------------------------------------------------------

def test_best_of_returns_highest_cumulative_logprob(srv):
    # candidates use seeds 10..14: per-token logprob -(seed % 5) - 0.5, so seed 10 (-0.5) then 11 win
    r = _client(srv).completions.create(model=NAME, prompt="abc", max_tokens=3, n=2, best_of=5, seed=10,
                                        logprobs=0)
    assert [ch.index for ch in r.choices] == [0, 1]
    sums = [sum(ch.logprobs.token_logprobs) for ch in r.choices]
    assert sums == pytest.approx([-1.5, -4.5])
    assert r.usage.completion_tokens == 5 * 3  # every candidate's tokens count
    seeds = sorted(p.seed for _, p in srv.llm.requests[-5:])
    assert seeds == [10, 11, 12, 13, 14]
    # without logprobs the winner is the same and no logprobs are returned
    r2 = _client(srv).completions.create(model=NAME, prompt="abc", max_tokens=3, best_of=5, seed=13)
    assert r2.choices[0].logprobs is None and len(r2.choices) == 1
    assert r2.choices[0].text == _client(srv).completions.create(model=NAME, prompt="abc", max_tokens=3,
                                                                 seed=15).choices[0].text  # 15 % 5 == 0


def test_best_of_errors(srv):
    _error(_post(srv, "/v1/completions", {"prompt": "x", "best_of": 3, "stream": True}), 400, "best_of")
    _error(_post(srv, "/v1/completions", {"prompt": "x", "best_of": 1, "n": 2}), 400, "best_of")
    _error(_post(srv, "/v1/completions", {"prompt": "x", "best_of": 99}), 400, "best_of")
    r = _post(srv, "/v1/completions", {"prompt": "x", "best_of": 2, "n": 2, "stream": True, "max_tokens": 2})
    assert r.status_code == 200  # best_of == n streams


# ---- suffix (fill-in-the-middle) ---------------------------------------------------------------

def test_suffix_without_fim_tokens(srv):
    err = _error(_post(srv, "/v1/completions", {"prompt": "def f(", "suffix": "):"}), 400, "suffix",
                 "fim_not_supported")
    assert "fill-in-the-middle" in err["message"]


def test_suffix_fim_prompt(fim_srv):
    tok = fim_srv.llm.tokenizer
    pre, suf, mid = (tok.token_to_id(t) for t in FIM)
    r = _client(fim_srv).completions.create(model=NAME, prompt="def add(a, b):", suffix="\n    return c",
                                            max_tokens=3)
    assert r.choices[0].text
    ids, _ = fim_srv.llm.requests[-1]
    p = tok.encode("def add(a, b):", add_special_tokens=False)
    s = tok.encode("\n    return c", add_special_tokens=False)
    lead = ids[:ids.index(pre)]
    assert ids[len(lead):] == [pre] + p + [suf] + s + [mid]
    assert lead == ([tok.bos_token_id] if tok.bos_token_id is not None and tok.encode("a")[0] == tok.bos_token_id
                    else [])
    # marker strings in the client's text stay text
    ids2 = fim_prompt_ids(tok, "<|fim_middle|>", "x")
    assert ids2.count(mid) == 1 and ids2[-1] == mid
    _error(_post(fim_srv, "/v1/completions", {"prompt": [1, 2], "suffix": "x"}), 400, "suffix")
    _error(_post(fim_srv, "/v1/completions", {"prompt": "a", "suffix": "x", "echo": True}), 400, "echo")


def test_fim_families():
    class Vocab:
        def __init__(self, names):
            self.ids = {n: i for i, n in enumerate(names)}

        def token_to_id(self, t):
            return self.ids.get(t)

    assert fim_tokens(Vocab(["▁<PRE>", "▁<SUF>", "▁<MID>"]))[1:] == (0, 1, 2)
    assert fim_tokens(Vocab(["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]))[0] == "starcoder"
    assert fim_tokens(Vocab(["<fim_prefix>", "<fim_suffix>"])) is None


# ---- /v1/responses -----------------------------------------------------------------------------

def test_responses_plain(srv):
    c = _client(srv)
    r = c.responses.create(model=NAME, input="Hi there", instructions="Be brief.", max_output_tokens=5)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.output_text and r.usage.output_tokens == 5 and r.usage.input_tokens > 0
    # the prompt is the chat template's rendering of [system, user], as chat completions builds it
    ids, params = srv.llm.requests[-1]
    chat = c.chat.completions.create(model=NAME, max_tokens=5, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}])
    assert srv.llm.requests[-1][0] == ids and chat.choices[0].message.content == r.output_text
    # message items with content parts
    r2 = c.responses.create(model=NAME, max_output_tokens=5, input=[
        {"role": "system", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi "},
                                                        {"type": "input_text", "text": "there"}]}])
    assert srv.llm.requests[-1][0] == ids and r2.output_text == r.output_text


def test_responses_stream(srv):
    r = _post(srv, "/v1/responses", {"input": "Hi", "max_output_tokens": 4, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in r.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        ev = json.loads(lines["data"])
        assert lines["event"] == ev["type"]
        events.append(ev)
    types = [e["type"] for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert events[-1]["response"]["status"] == "incomplete"
    assert set(types[4:-4]) == {"response.output_text.delta"}
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert events[-4]["text"] == text and events[-1]["response"]["output"][0]["content"][0]["text"] == text
    assert events[-1]["response"]["usage"]["output_tokens"] == 4
    plain = _client(srv).responses.create(model=NAME, input="Hi", max_output_tokens=4)
    assert plain.output_text == text
    # the openai client parses the same stream
    with _client(srv).responses.stream(model=NAME, input="Hi", max_output_tokens=4) as st:
        final = st.get_final_response()
    assert final.output_text == text and final.status == "incomplete"


@pytest.mark.parametrize("body,param", [
    ({"input": "x", "store": True}, "store"),
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}, "input.0.call_id"),
    ({"input": [{"type": "input_file", "file_id": "f"}]}, "input.0.type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input.0.content.0"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input.0.role"),
    ({"input": ""}, "input"),
    ({"input": "x", "max_output_tokens": 10**6}, "max_output_tokens"),
    ({"input": "x", "text": {"format": "json"}}, "text.format"),
    ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}, "strict": "yes"}}}, "text.format.strict"),
    ({"input": "x", "text": {"size": 3}}, "text"),
])
def test_responses_errors(srv, body, param):
    err = _error(_post(srv, "/v1/responses", body), 400, param)
    if param == "tools.0.type":
        assert "'web_search'" in err["message"]


def test_fake_output_has_no_prompt_logprobs():
    # echo + logprobs on an engine output without prompt_logprobs: the prompt entries are null
    assert not hasattr(FakeOutput(0, []), "prompt_logprobs")
