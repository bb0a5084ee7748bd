# tests/python/test_llm_api.py: the Python API's contract on the tiny llama_base checkpoint (CPU,
# f32): typed errors for bad prompts, params and messages (issues 20 item 13/17/20, 21), dicts as
# params and vLLM's dict prompts, n completions in .outputs (LLM and AsyncLLM), max_tokens capped by
# the context with finish_reason "length", the context manager, device="cuda" without CUDA,
# skip_tokenizer_init, every failure to open a model as ModelLoadError, the model's sampling
# defaults, and the CPU's default dtype for a quantized GGUF (bf16, named in the load summary).
import asyncio
import logging
import os
import shutil

import numpy as np
import pytest

import eli
from eli import chat_template as chat_template_module


@pytest.fixture(scope="module")
def model_dir(data_dir):
    return str(data_dir / "models" / "llama_base")


@pytest.fixture(scope="module")
def llm(model_dir):
    with eli.LLM(model_dir, dtype="float32", n_threads=1, block_size=4, num_kv_blocks=256, progress=False) as m:
        yield m


def greedy(n=6, **kw):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kw)


def all_free(m):
    s = m.stats()
    return s["kv_blocks_free"] == s["kv_blocks_total"] and s["num_running"] == 0 and s["num_waiting"] == 0


# ---- prompts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prompts, match", [
    (None, "got None"),
    (b"bytes", "got bytes"),
    ([b"bytes"], "got bytes"),
    ({"a": 1}, "dict prompt must be"),
    ([{"prompt": "x", "prompt_token_ids": [1]}], "dict prompt must be"),
    ([1.5, 2.5], "a prompt must be a string or a list of token ids, got float"),
    ([[1, "2"]], "token ids must be integers"),
    ([[1, True]], "token ids must be integers"),
    (5, "got int"),
    ("a\ud800b", "not valid Unicode: a lone surrogate '\\\\ud800' at index 1"),
])
def test_bad_prompts_are_invalid_requests(llm, prompts, match):
    with pytest.raises(eli.InvalidRequestError, match=match):
        llm.generate(prompts, greedy())
    assert all_free(llm)


def test_prompt_forms(llm):
    ids = llm.tokenizer.encode("hello there")
    want = llm.generate("hello there", greedy())[0].token_ids
    assert llm.generate([{"prompt": "hello there"}], greedy())[0].token_ids == want
    assert llm.generate({"prompt_token_ids": ids}, greedy())[0].token_ids == want
    assert llm.generate(np.array(ids), greedy())[0].token_ids == want
    assert llm.generate([ids, "hello there"], greedy())[1].token_ids == want
    assert llm.generate([], greedy()) == []


# ---- params -----------------------------------------------------------------------------------

def test_dict_params_are_fields_over_the_model_defaults(llm):
    out = llm.generate("hi", {"max_tokens": 3})[0]
    assert len(out.token_ids) <= 3
    greedy_dict = llm.generate("hi", {"max_tokens": 5, "temperature": 0.0, "ignore_eos": True})[0]
    assert greedy_dict.token_ids == llm.generate("hi", greedy(5))[0].token_ids
    assert llm.get_default_sampling_params(max_tokens=3).temperature == llm.default_sampling["temperature"]
    with pytest.raises(eli.InvalidRequestError, match="unknown SamplingParams field 'max_token'"):
        llm.generate("hi", {"max_token": 3})
    with pytest.raises(eli.InvalidRequestError, match="params must be an eli.SamplingParams"):
        llm.generate("hi", 5)
    with pytest.raises(eli.InvalidRequestError, match="2 sampling params for 1 prompts"):
        llm.generate(["hi"], [greedy(), greedy()])
    assert all_free(llm)


def test_default_sampling_is_reported(llm):
    assert llm.default_sampling == {"temperature": 0.7, "top_p": 0.9}  # llama_base has no generation config
    assert llm.default_sampling_source == "eli's chat defaults"
    assert "temperature 0.7, top_p 0.9" in llm.load_summary


def test_n_completions(llm):
    p = eli.SamplingParams(n=3, max_tokens=8, temperature=1.0, seed=11, ignore_eos=True)
    (out,) = llm.generate("once upon", p)
    assert len(out.outputs) == 3 and [c.index for c in out.outputs] == [0, 1, 2]
    assert out.text == out.outputs[0].text and out.token_ids == out.outputs[0].token_ids
    assert all(c.finish_reason == "length" and len(c.token_ids) == 8 for c in out.outputs)
    # Completion i is the request with seed + i: reproducible, and the completions differ.
    for i, c in enumerate(out.outputs):
        single = llm.generate("once upon", eli.SamplingParams(max_tokens=8, temperature=1.0, seed=11 + i,
                                                              ignore_eos=True))[0]
        assert single.token_ids == c.token_ids
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1
    with pytest.raises(eli.InvalidRequestError, match="stream"):
        next(llm.stream("x", eli.SamplingParams(n=2)))
    assert len(llm.chat([{"role": "user", "content": "hi"}], eli.SamplingParams(n=2, max_tokens=2)).outputs) == 2
    assert all_free(llm)


def test_single_output_has_outputs_too(llm):
    out = llm.generate([[5, 6, 7]], greedy(4, logprobs=2))[0]
    (c,) = out.outputs
    assert (c.index, c.text, c.token_ids, c.logprobs, c.finish_reason) == \
        (0, out.text, out.token_ids, out.logprobs, out.finish_reason)
    assert out.finished and c.finished


def test_seeds_in_the_upper_half_run(llm):
    p = dict(max_tokens=6, temperature=1.0, ignore_eos=True)
    a = llm.generate([[3, 4]], eli.SamplingParams(seed=2**64 - 1, **p))[0].token_ids
    b = llm.generate([[3, 4]], eli.SamplingParams(seed=2**64 - 1, **p))[0].token_ids
    assert a == b and len(a) == 6


# ---- the context limit --------------------------------------------------------------------------

def test_max_tokens_past_the_context_stops_at_the_limit(llm):
    limit = llm.info["max_model_len"]
    prompt = [7] * (limit - 5)
    out = llm.generate([prompt], eli.SamplingParams(max_tokens=10000, temperature=0.0, ignore_eos=True))[0]
    assert out.finish_reason == "length" and len(out.token_ids) == 5
    streamed = list(llm.stream(prompt, eli.SamplingParams(max_tokens=10000, temperature=0.0, ignore_eos=True)))
    assert llm.last_output.token_ids == out.token_ids and "".join(streamed) == out.text
    with pytest.raises(eli.InvalidRequestError, match="leaves no room to generate within the context length"):
        llm.generate([[7] * limit], greedy())
    assert all_free(llm)


def test_async_llm_caps_and_streams_n(model_dir):
    async def run(alm):
        limit = alm.info["max_model_len"]
        outs = [o async for o in alm.generate([7] * (limit - 3), {"max_tokens": 50, "temperature": 0.0,
                                                                   "ignore_eos": True})]
        assert outs[-1].finish_reason == "length" and len(outs[-1].token_ids) == 3
        p = eli.SamplingParams(n=3, max_tokens=5, temperature=1.0, seed=5, ignore_eos=True)
        final = {}
        async for o in alm.generate([1, 2, 3], p, request_id="grp"):
            (c,) = o.outputs
            assert o.request_id == "grp" and c.text == o.text
            if o.finish_reason:
                final[c.index] = o.token_ids
        assert sorted(final) == [0, 1, 2] and all(len(t) == 5 for t in final.values())
        # Aborting the group ends every completion.
        alm._engine.pause_after_steps(3)  # the loop pauses before either completion can finish
        gen = alm.generate([1, 2, 3], eli.SamplingParams(n=2, max_tokens=200, ignore_eos=True), request_id="g2")
        first = await gen.__anext__()
        await alm.abort("g2")
        alm._engine.pause_after_steps(-1)
        rest = [first] + [o async for o in gen]
        assert {o.outputs[0].index for o in rest if o.finish_reason} == {0, 1}
        assert all(o.finish_reason in (None, "abort") for o in rest)
        # An abort that comes while the completions are still being admitted (or not yet started)
        # ends them too, once they have an id.
        alm._engine.pause_after_steps(0)
        gen = alm.generate([1, 2, 3], eli.SamplingParams(n=3, max_tokens=200, ignore_eos=True), request_id="g3")
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0)
        await alm.abort("g3")
        alm._engine.pause_after_steps(-1)
        rest = [await first] + [o async for o in gen]
        finals = {o.outputs[0].index: o.finish_reason for o in rest if o.finish_reason}
        assert finals == {0: "abort", 1: "abort", 2: "abort"}
        deadline = asyncio.get_running_loop().time() + 10
        while not all_free(alm):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)

    with eli.AsyncLLM(model_dir, dtype="float32", n_threads=1, block_size=4, num_kv_blocks=256, progress=False) as alm:
        asyncio.run(run(alm))


# ---- chat -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("messages, match", [
    ([], "messages is empty"),
    ("hello", "messages must be a list"),
    (None, "messages must be a list"),
    ([{"role": "user", "content": "a\ud800"}], "lone surrogate"),
])
def test_bad_chat_messages(llm, messages, match):
    with pytest.raises(eli.InvalidRequestError, match=match):
        llm.chat(messages, greedy())


def test_chat_template_errors_become_invalid_requests(llm, monkeypatch):
    def bad_role(*a, **k):
        raise ValueError("messages[0]: unknown role 'robot'")

    monkeypatch.setattr(chat_template_module, "render_chat_ids", bad_role)  # llm.py imports it on first use
    with pytest.raises(eli.InvalidRequestError, match="chat messages: messages\\[0\\]: unknown role 'robot'"):
        llm.chat([{"role": "robot", "content": "x"}], greedy())
    with pytest.raises(eli.InvalidRequestError, match="unknown role"):
        llm.stream_chat([{"role": "robot", "content": "x"}], greedy())


def test_non_string_template_is_invalid_request(llm):
    with pytest.raises(eli.InvalidRequestError, match="chat"):
        llm.chat([{"role": "user", "content": "x"}], greedy(), chat_template=123)


# ---- loading ------------------------------------------------------------------------------------

def test_context_manager_shuts_down(model_dir):
    with eli.LLM(model_dir, dtype="float32", n_threads=1, num_kv_blocks=32, progress=False) as m:
        assert m.generate([[1, 2]], greedy(2))[0].finish_reason == "length"
    with pytest.raises(eli.InvalidRequestError, match="shut down"):
        m.generate([[1, 2]], greedy(2))
    m.shutdown()  # idempotent


@pytest.mark.skipif(eli.cuda_device_count() > 0, reason="needs a machine without a visible CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_a_clear_error(model_dir, device):
    with pytest.raises(eli.UnsupportedError, match="no CUDA support|no CUDA device") as err:
        eli.LLM(model_dir, device=device, progress=False)
    assert ".cc" not in str(err.value)


@pytest.mark.gpu
def test_cuda_index_past_the_visible_devices(model_dir):
    n = eli.cuda_device_count()
    with pytest.raises(eli.UnsupportedError, match=f"only {n} CUDA device"):
        eli.LLM(model_dir, device=f"cuda:{n}", progress=False)


def test_every_failure_to_open_a_model_is_model_load_error(tmp_path, data_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (str(tmp_path / "missing"), str(empty), str(data_dir / "malformed")):
        with pytest.raises(eli.ModelLoadError):
            eli.LLM(path, download=False, progress=False)
    assert issubclass(eli.ModelResolutionError, eli.ModelLoadError)


def _no_tokenizer_copy(src, dst):
    # Copies, not symlinks: files of a model directory must live inside it (containment).
    dst.mkdir()
    for name in os.listdir(src):
        if not name.startswith("tokenizer"):
            shutil.copyfile(os.path.join(src, name), dst / name)
    return str(dst)


def test_skip_tokenizer_init(model_dir, tmp_path):
    bare = _no_tokenizer_copy(model_dir, tmp_path / "bare")
    with pytest.raises(eli.ModelLoadError, match="skip_tokenizer_init=True"):
        eli.LLM(bare, dtype="float32", n_threads=1, progress=False)
    with eli.LLM(bare, dtype="float32", n_threads=1, num_kv_blocks=32, skip_tokenizer_init=True, progress=False) as m:
        assert m.tokenizer is None
        out = m.generate([[1, 2, 3]], greedy(4))[0]
        assert len(out.token_ids) == 4 and out.text == "" and out.prompt is None
        assert list(m.stream([1, 2, 3], greedy(2))) == [] and len(m.last_output.token_ids) == 2
        for call, match in [(lambda: m.generate("text", greedy()), "text prompts need a tokenizer"),
                            (lambda: m.chat([{"role": "user", "content": "x"}]), "chat messages need a tokenizer"),
                            (lambda: m.generate([[1]], greedy(stop=["x"])), "stop strings need a tokenizer")]:
            with pytest.raises(eli.InvalidRequestError, match=match + ".*skip_tokenizer_init=True"):
                call()
        assert m.score([1, 2, 3]).shape == (3, m.info["spec"]["vocab_size"])


def test_load_summary_is_logged(model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="eli"):
        with eli.LLM(model_dir, n_threads=1, num_kv_blocks=16, progress=False) as m:
            pass
    assert m.load_summary in caplog.text
    assert "weights f32" in m.load_summary and "KV cache f32 16 blocks" in m.load_summary


def test_cpu_runs_a_quantized_gguf_in_bfloat16_by_default(smollm2_gguf):
    with eli.LLM(str(smollm2_gguf), device="cpu", n_threads=1, max_model_len=64, max_num_seqs=2,
                 progress=False) as m:
        assert m.info["weight_dtype"] == "bf16"
        assert "weights bf16 (from q4_1)" in m.load_summary
        # The CPU KV pool follows the model: 2 sequences x 64 tokens, not gigabytes.
        assert m.info["num_kv_blocks"] * m.info["block_size"] == 128
        out = m.generate("The capital of France is", greedy(4))[0]
        assert len(out.token_ids) == 4


def test_error_texts_lose_source_locations(monkeypatch):
    from eli.errors import user_message

    text = "non-finite logits in row 3 [sampler.cc:120: check failed: std::isfinite(x)]"
    assert user_message(text) == "non-finite logits in row 3"
    assert user_message("range [0, 8]") == "range [0, 8]"
    monkeypatch.setenv("ELI_DEBUG", "1")
    assert user_message(text) == text
