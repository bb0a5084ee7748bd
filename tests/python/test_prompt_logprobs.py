# tests/python/test_prompt_logprobs.py: SamplingParams.prompt_logprobs through eli.LLM / AsyncLLM
# against transformers: the full-forward logits of the tiny reference checkpoints (reference.npz
# `logits`), log-softmaxed: each prompt token's logprob and the top k, in small prefill chunks and
# batched; the vLLM output shape (None first); n > 1; validation.
from __future__ import annotations

import asyncio
import pathlib

import numpy as np
import pytest

import eli
from eli.errors import InvalidRequestError

MODELS = pathlib.Path(__file__).resolve().parent.parent / "data" / "models"


def _reference(name):
    ref = np.load(MODELS / name / "reference.npz")
    logits = ref["logits"].astype(np.float64)
    m = logits.max(axis=1, keepdims=True)
    return [int(t) for t in ref["input_ids"]], logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))


def _check(out_plp, ids, ref_lp, k):
    assert len(out_plp) == len(ids) and out_plp[0] is None
    for p in range(1, len(ids)):
        entry = out_plp[p]
        assert ids[p] in entry
        assert entry[ids[p]] == pytest.approx(ref_lp[p - 1, ids[p]], abs=1e-4)
        top = np.argsort(-ref_lp[p - 1], kind="stable")[:k]
        for t in top:  # the reference's top k are there, with their logprobs
            assert entry[int(t)] == pytest.approx(ref_lp[p - 1, t], abs=1e-4)
        assert len(entry) in (k, k + 1)


@pytest.mark.parametrize("name", ["llama_base", "qwen2", "gemma3"])
def test_prompt_logprobs_match_transformers(name):
    ids, ref_lp = _reference(name)
    with eli.LLM(str(MODELS / name), device="cpu", num_kv_blocks=64, max_num_batched_tokens=6) as llm:
        outs = llm.generate([ids, ids[:5]], [eli.SamplingParams(max_tokens=2, temperature=0, prompt_logprobs=3),
                                              eli.SamplingParams(max_tokens=2, temperature=0)])
        _check(outs[0].prompt_logprobs, ids, ref_lp, 3)
        assert outs[1].prompt_logprobs is None
        # n > 1: one set of prompt logprobs for the request
        many = llm.generate(ids, eli.SamplingParams(max_tokens=2, n=3, seed=1, prompt_logprobs=0))[0]
        _check(many.prompt_logprobs, ids, ref_lp, 0)
        one = llm.generate([ids[0]], eli.SamplingParams(max_tokens=1, prompt_logprobs=2))[0]
        assert one.prompt_logprobs == [None]


def test_prompt_logprobs_async_stream():
    ids, ref_lp = _reference("llama_base")

    async def main():
        async with eli.AsyncLLM(str(MODELS / "llama_base"), device="cpu", num_kv_blocks=64) as llm:
            snaps = [s async for s in llm.generate(ids, {"max_tokens": 3, "prompt_logprobs": 1})]
            assert snaps[-1].prompt_logprobs is not None
            _check(snaps[-1].prompt_logprobs, ids, ref_lp, 1)

    asyncio.run(main())


def test_prompt_logprobs_validation():
    for bad in (-1, 21, 1.5, True):
        with pytest.raises(InvalidRequestError, match="prompt_logprobs"):
            eli.SamplingParams(prompt_logprobs=bad)
    assert eli.SamplingParams(prompt_logprobs=20).engine_params().prompt_logprobs == 20
    assert eli.SamplingParams().engine_params().prompt_logprobs == -1
