# tests/python/test_embeddings.py: eli.LLM.embed / AsyncLLM.embed against transformers: the final
# hidden states (after the final norm) of the tiny reference checkpoints (reference.npz `hidden`,
# made by scripts/make_references.py --add-hidden), last-token and mean pooling, within 1e-4
# relative in f32, in small prefill chunks (several steps aggregated on the host) and batched with
# generation; L2 normalization; input forms; errors; blocks freed.
from __future__ import annotations

import asyncio
import pathlib

import numpy as np
import pytest

import eli
from eli.errors import InvalidRequestError

MODELS = pathlib.Path(__file__).resolve().parent.parent / "data" / "models"
# phi3's LongRoPE picks its factors from the sequence length per forward (as HF does per call), so
# only an unchunked prompt matches the one-call reference there.
CASES = [("llama_base", 8), ("qwen2", 8), ("gemma3", 8), ("phi3", 2048)]


def _ref(name):
    ref = np.load(MODELS / name / "reference.npz")
    if "hidden" not in ref.files:
        pytest.fail(f"{name}/reference.npz has no `hidden`: run scripts/make_references.py --add-hidden {name}")
    return [int(t) for t in ref["input_ids"]], ref["hidden"].astype(np.float64)


def _close(got, want, rtol=1e-4):
    got = np.asarray(got, dtype=np.float64)
    assert np.abs(got - want).max() <= rtol * np.abs(want).max(), (np.abs(got - want).max(), np.abs(want).max())


@pytest.mark.parametrize("name,chunk", CASES)
def test_embed_matches_transformers(name, chunk):
    ids, hidden = _ref(name)
    with eli.LLM(str(MODELS / name), device="cpu", num_kv_blocks=64, max_num_batched_tokens=chunk) as llm:
        last = llm.embed(ids, pooling="last", normalize=False)
        mean = llm.embed(ids, pooling="mean", normalize=False)
        assert last.dtype == np.float32 and last.shape == (hidden.shape[1],)
        _close(last, hidden[-1])
        _close(mean, hidden.mean(axis=0))
        # normalized (the default), a batch of prompts of different lengths, mixed with generation
        both = llm.embed([ids, ids[:7]])
        assert both.shape == (2, hidden.shape[1])
        np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, rtol=1e-5)
        _close(both[0], hidden[-1] / np.linalg.norm(hidden[-1]))
        stats = llm.stats()
        assert stats["kv_blocks_free"] == stats["kv_blocks_total"]


def test_embed_inputs_and_errors():
    with eli.LLM(str(MODELS / "llama_base"), device="cpu", num_kv_blocks=64) as llm:
        text = llm.embed("hello world", pooling="mean")
        ids = llm.tokenizer.encode("hello world")
        np.testing.assert_array_equal(text, llm.embed(ids, pooling="mean"))
        np.testing.assert_array_equal(llm.embed([ids])[0], llm.embed(ids))
        with pytest.raises(InvalidRequestError, match="pooling"):
            llm.embed("x", pooling="cls")
        with pytest.raises(InvalidRequestError, match="at least one"):
            llm.embed([])
        with pytest.raises(InvalidRequestError, match="embedded"):
            llm.embed([5] * llm.info["max_model_len"])
        with pytest.raises(InvalidRequestError):
            llm.embed([[5, 6], [10**6]])  # outside the vocabulary: nothing admitted
        stats = llm.stats()
        assert stats["kv_blocks_free"] == stats["kv_blocks_total"] and stats["generated_tokens"] == 0


def test_async_embed_while_generating():
    ids, hidden = _ref("llama_base")

    async def main():
        async with eli.AsyncLLM(str(MODELS / "llama_base"), device="cpu", num_kv_blocks=64,
                                max_num_batched_tokens=8) as llm:
            async def gen():
                out = None
                async for out in llm.generate(ids[:9], {"max_tokens": 12, "temperature": 0}):
                    pass
                return out

            g, e = await asyncio.gather(gen(), llm.embed([ids, ids], pooling="mean", normalize=False))
            assert len(g.token_ids) == 12
            _close(e[0], hidden.mean(axis=0))
            np.testing.assert_array_equal(e[0], e[1])

    asyncio.run(main())
