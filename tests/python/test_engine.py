# tests/python/test_engine.py: the engine through eli.LLM on the default model (CPU, f32):
# batching, chunked prefill and preemption equivalence, stop conditions, seeds, logprobs,
# streaming, validation errors and block accounting.
import math

import numpy as np
import pytest

import eli

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "List three colors:",
]


@pytest.fixture(scope="module")
def llm(smollm2_gguf):
    return eli.LLM(str(smollm2_gguf), dtype="float32")


def greedy(n=12, **kw):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kw)


def assert_all_blocks_free(model):
    s = model.stats()
    assert s["kv_blocks_free"] == s["kv_blocks_total"]
    assert s["num_running"] == 0 and s["num_waiting"] == 0


def test_batch_equals_one_at_a_time(llm):
    batched = llm.generate(PROMPTS, greedy())
    for p, b in zip(PROMPTS, batched):
        single = llm.generate([p], greedy())[0]
        assert single.token_ids == b.token_ids
        assert single.text == b.text
        assert b.finish_reason == "length" and len(b.token_ids) == 12
    assert_all_blocks_free(llm)


def test_chunked_prefill_and_preemption_give_identical_tokens(smollm2_gguf, llm):
    want = [o.token_ids for o in llm.generate(PROMPTS, greedy(16))]
    # Tiny token budget: every prompt is split into chunks of 3 tokens.
    chunked = eli.LLM(str(smollm2_gguf), dtype="float32", max_num_batched_tokens=3)
    assert [o.token_ids for o in chunked.generate(PROMPTS, greedy(16))] == want
    # A pool of 6 blocks of 4 tokens cannot hold all four sequences: preemption must happen.
    small = eli.LLM(str(smollm2_gguf), dtype="float32", block_size=4, num_kv_blocks=12)
    assert [o.token_ids for o in small.generate(PROMPTS, greedy(16))] == want
    assert small.stats()["preemptions"] > 0
    assert_all_blocks_free(small)
    unchunked = eli.LLM(str(smollm2_gguf), dtype="float32", enable_chunked_prefill=False, max_num_batched_tokens=8)
    assert [o.token_ids for o in unchunked.generate(PROMPTS, greedy(16))] == want


def test_stop_string_across_tokens(llm):
    base = llm.generate([PROMPTS[2]], greedy(24))[0]
    assert len(base.text) > 12
    stop = base.text[5:11]  # six characters, very likely spanning a token boundary
    out = llm.generate([PROMPTS[2]], greedy(24, stop=[stop]))[0]
    assert out.finish_reason == "stop"
    assert out.text == base.text[: base.text.find(stop)]
    kept = llm.generate([PROMPTS[2]], greedy(24, stop=[stop], include_stop_str_in_output=True))[0]
    assert kept.text == base.text[: base.text.find(stop) + len(stop)]
    assert_all_blocks_free(llm)


def test_stop_token_ids_and_eos(llm):
    base = llm.generate([PROMPTS[0]], greedy(10))[0]
    stop_id = base.token_ids[3]
    out = llm.generate([PROMPTS[0]], greedy(10, stop_token_ids=[stop_id]))[0]
    assert out.finish_reason == "stop"
    assert out.token_ids == base.token_ids[: base.token_ids.index(stop_id) + 1]
    # Without ignore_eos a chat reply ends by itself with the model's EOS.
    reply = llm.chat([{"role": "user", "content": "Say hi."}], eli.SamplingParams(max_tokens=64, temperature=0))
    assert reply.finish_reason in ("stop", "length")
    if reply.finish_reason == "stop":
        assert reply.token_ids[-1] in llm.tokenizer.eos_token_ids + llm.info["spec"]["eos_token_ids"]


def test_seed_reproducible_and_sensitive(llm):
    p = dict(max_tokens=16, temperature=1.0, top_p=0.95, ignore_eos=True)
    a = llm.generate([PROMPTS[1]], eli.SamplingParams(seed=7, **p))[0]
    b = llm.generate([PROMPTS[1]], eli.SamplingParams(seed=7, **p))[0]
    c = llm.generate([PROMPTS[1]], eli.SamplingParams(seed=8, **p))[0]
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids
    # Same seed inside a batch with other requests: same tokens.
    mixed = llm.generate([PROMPTS[0], PROMPTS[1]], [greedy(), eli.SamplingParams(seed=7, **p)])
    assert mixed[1].token_ids == a.token_ids


def test_logprobs_match_score(llm):
    out = llm.generate([PROMPTS[0]], greedy(6, logprobs=3))[0]
    ids = out.prompt_token_ids + out.token_ids
    logits = llm.score(ids).astype(np.float64)
    n = len(out.prompt_token_ids)
    for i, (tok, entry) in enumerate(zip(out.token_ids, out.logprobs)):
        row = logits[n - 1 + i]
        lse = row.max() + math.log(np.exp(row - row.max()).sum())
        assert abs(entry[tok] - (row[tok] - lse)) < 1e-3
        assert len(entry) >= 3
        assert int(np.argmax(row)) == tok  # greedy picked the argmax of the scored logits


def test_stream_matches_generate(llm):
    want = llm.generate([PROMPTS[3]], greedy(20))[0].text
    pieces = list(llm.stream(PROMPTS[3], greedy(20)))
    assert "".join(pieces) == want
    assert llm.last_stats["generated_tokens"] == 20


def test_stream_closed_early_frees_blocks(llm):
    it = llm.stream(PROMPTS[2], greedy(50))
    next(it)
    it.close()
    assert_all_blocks_free(llm)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(min_p=-0.1), "min_p"),
        (dict(top_k=-5), "top_k"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(logprobs=1000), "logprobs"),
        (dict(stop_token_ids=[10**9]), "stop"),
    ],
)
def test_bad_sampling_params_rejected(llm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        llm.generate([PROMPTS[0]], eli.SamplingParams(**kwargs))
    assert_all_blocks_free(llm)


def test_bad_requests_rejected(llm):
    vocab = llm.info["spec"]["vocab_size"]
    with pytest.raises(eli.InvalidRequestError, match="outside the vocabulary"):
        llm.generate([[1, 2, vocab]], greedy())
    with pytest.raises(eli.InvalidRequestError, match="outside the vocabulary"):
        llm.generate([[-1]], greedy())
    with pytest.raises(eli.InvalidRequestError, match="context length"):  # no room left to generate
        llm.generate([[1] * llm.info["max_model_len"]], greedy())
    with pytest.raises(eli.InvalidRequestError, match="empty"):
        llm.generate([[]], greedy())
    with pytest.raises(eli.InvalidRequestError):
        eli.SamplingParams(stop=["x"] * 1000)
    # The engine still works afterwards and holds no blocks.
    assert llm.generate([PROMPTS[0]], greedy(2))[0].finish_reason == "length"
    assert_all_blocks_free(llm)


def test_request_needing_more_blocks_than_pool_rejected(smollm2_gguf):
    small = eli.LLM(str(smollm2_gguf), dtype="float32", block_size=4, num_kv_blocks=4)
    with pytest.raises(eli.InvalidRequestError, match="KV blocks"):
        small.generate([[1] * 10], eli.SamplingParams(max_tokens=10))


def test_stats_keys(llm):
    s = llm.stats()
    for key in ("kv_blocks_total", "kv_blocks_free", "prefix_cache_hits", "prefix_cache_queries", "preemptions",
                "num_running", "num_waiting"):
        assert key in s
