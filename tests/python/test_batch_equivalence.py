# tests/python/test_batch_equivalence.py: configuration equivalence on a tiny model (RELIABILITY
# "Practices"): a batch of 64 requests vs one at a time, chunked prefill on/off, prefix caching
# on/off and a pool small enough to force preemption must all give the same greedy tokens.
import random

import pytest

import eli

from testdata import DATA_DIR

MODEL = str(DATA_DIR / "models" / "llama_base")


def _prompts(n=64, seed=0):
    rng = random.Random(seed)
    shared = [rng.randrange(3, 263) for _ in range(20)]
    out = []
    for i in range(n):
        tail = [rng.randrange(3, 263) for _ in range(rng.randrange(1, 40))]
        out.append((shared if i % 3 == 0 else []) + tail)  # a third share a 20-token prefix
    return out


def _greedy(n=12):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def reference():
    llm = eli.LLM(MODEL, device="cpu", dtype="float32", enable_prefix_caching=False)
    return [llm.generate([p], _greedy())[0].token_ids for p in _prompts()]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(enable_prefix_caching=False),
        dict(max_num_batched_tokens=7),
        dict(enable_chunked_prefill=False, max_num_batched_tokens=64),
        dict(block_size=4, num_kv_blocks=40, max_num_seqs=64),
        dict(async_scheduling=True),
        dict(block_size=4, num_kv_blocks=40, max_num_seqs=64, async_scheduling=True),
    ],
    ids=["default", "no-prefix-cache", "chunked-7", "unchunked", "preempting", "async", "preempting-async"],
)
def test_batch_of_64_equals_one_at_a_time(reference, kwargs):
    llm = eli.LLM(MODEL, device="cpu", dtype="float32", **kwargs)
    outs = llm.generate(_prompts(), _greedy())
    assert [o.token_ids for o in outs] == reference
    stats = llm.stats()
    assert stats["kv_blocks_free"] == stats["kv_blocks_total"]
    if "num_kv_blocks" in kwargs:
        assert stats["preemptions"] > 0
