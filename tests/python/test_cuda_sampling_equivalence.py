# tests/python/test_cuda_sampling_equivalence.py: one sampling semantics on the CPU and the GPU
# (marked `gpu`: run on the GPU machine). The tiny float32 model runs on both engines; its logits
# agree to ~1e-5, and both sample with the same counter-based Gumbel draws (seed, output index,
# token id), so seeded requests give the same tokens. A token can only differ where two Gumbel keys
# are within the logits' rounding of each other (measure-zero, but possible): the end-to-end checks
# allow one diverging request of 16 and require the common prefixes to cover almost everything.
# The exact check on identical logits is the C++ test CudaKernelSample.DeviceSamplerMatchesHostSampler.
import random

import numpy as np
import pytest

import eli

from testdata import DATA_DIR

MODEL = str(DATA_DIR / "models" / "llama_base")
pytestmark = pytest.mark.gpu


def _prompts(n=16, seed=11):
    rng = random.Random(seed)
    return [[rng.randrange(3, 263) for _ in range(rng.randrange(2, 30))] for _ in range(n)]


def _params(n=16):
    out = []
    for i in range(n):
        kw = dict(max_tokens=20, seed=500 + i, ignore_eos=True, logprobs=1,
                  temperature=(0.7, 1.0, 0.9, 1.3)[i % 4])
        if i % 4 == 1:
            kw["top_k"] = 20
        if i % 4 == 2:
            kw["top_p"] = 0.85
        if i % 5 == 3:
            kw["min_p"] = 0.05
        if i % 6 == 5:
            kw["presence_penalty"] = 0.4
            kw["repetition_penalty"] = 1.1
        out.append(eli.SamplingParams(**kw))
    return out


def _generate(device, **kwargs):
    llm = eli.LLM(MODEL, device=device, dtype="float32", num_kv_blocks=256, progress=False, **kwargs)
    try:
        return llm.generate(_prompts(), _params())
    finally:
        llm.shutdown()


def _common_prefix(a, b):
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


@pytest.fixture(scope="module")
def cpu_outputs():
    return _generate("cpu")


@pytest.mark.parametrize("kwargs", [dict(), dict(async_scheduling=False)], ids=["async", "sync"])
def test_cuda_seeded_sampling_matches_cpu(cpu_outputs, kwargs):
    gpu = _generate("cuda", **kwargs)
    diverged = 0
    same = total = 0
    for c, g in zip(cpu_outputs, gpu):
        a, b = list(c.token_ids), list(g.token_ids)
        k = _common_prefix(a, b)
        same += k
        total += max(len(a), len(b))
        diverged += k < max(len(a), len(b))
        lc = [lp[t] for lp, t in zip(c.logprobs[:k], a[:k])]
        lg = [lp[t] for lp, t in zip(g.logprobs[:k], b[:k])]
        assert np.allclose(lc, lg, atol=1e-4)
    assert diverged <= 1, f"{diverged} of {len(gpu)} seeded requests differ between the CPU and the GPU"
    assert same / total >= 0.95


def test_cuda_seeded_request_ignores_the_batch():
    prompt, p = _prompts()[3], _params()[3]
    llm = eli.LLM(MODEL, device="cuda", dtype="float32", num_kv_blocks=256, progress=False)
    try:
        alone = list(llm.generate([prompt], p)[0].token_ids)
        batch = llm.generate(_prompts()[:3] + [prompt] + _prompts()[4:], _params()[:3] + [p] + _params()[4:])
        assert list(batch[3].token_ids) == alone
    finally:
        llm.shutdown()
