# tests/python/test_structured_output_gpu.py: token masks and logit biases on the GPU (marked `gpu`:
# run on the GPU machine). The tiny float32 model on the CPU and on CUDA: greedy requests with
# logit_bias / allowed_token_ids / min_tokens give the same tokens on both (the masks ride in the
# DeviceSampler's upload and the CUDA kSample kernel applies them; the exact check on identical
# logits is CudaKernelSample.MatchesReference's "masks" batch); structured output (JSON schema,
# regex, choice) on CUDA is valid, with synchronous and asynchronous scheduling (the default on a
# GPU), and equals the CPU's greedy output.
import json
import re

import jsonschema
import pytest

import eli

from testdata import DATA_DIR

MODEL = str(DATA_DIR / "models" / "llama_base")
pytestmark = pytest.mark.gpu

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 999},
                                           "s": {"type": "string", "maxLength": 6},
                                           "b": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
          "required": ["n", "s", "b"], "additionalProperties": False}


def _params():
    out = []
    for i in range(12):
        kw = dict(max_tokens=40, temperature=0.0)
        if i % 4 == 0:
            kw.update(logit_bias={(7 * i) % 250 + 3: 8.0, 100: -50.0}, ignore_eos=True)
        elif i % 4 == 1:
            kw.update(allowed_token_ids=[10, 20, 30, 40 + i], ignore_eos=True)
        elif i % 4 == 2:
            kw.update(min_tokens=5, logit_bias={2: 30.0})
        else:
            kw.update(json_schema=SCHEMA, max_tokens=120)
        out.append(eli.SamplingParams(**kw))
    return out


def _generate(device, **kwargs):
    with eli.LLM(MODEL, device=device, dtype="float32", num_kv_blocks=512, progress=False, **kwargs) as llm:
        return llm.generate([f"prompt {i} " * (1 + i % 4) for i in range(12)], _params())


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_cuda_masks_and_biases_match_the_cpu(async_scheduling):
    cpu = _generate("cpu")
    gpu = _generate("cuda", async_scheduling=async_scheduling)
    diverged = 0
    for i, (c, g) in enumerate(zip(cpu, gpu)):
        assert g.error is None, g.error
        if c.token_ids != g.token_ids:
            diverged += 1  # greedy ties within the logits' rounding: rare
        if i % 4 == 1:
            assert set(g.token_ids) <= {10, 20, 30, 40 + i}
        if i % 4 == 2:
            assert len(g.token_ids) >= 5
        if i % 4 == 3:
            assert g.finish_reason == "stop"
            jsonschema.validate(json.loads(g.text), SCHEMA)
    assert diverged <= 1


def test_cuda_regex_and_choice_are_valid():
    with eli.LLM(MODEL, device="cuda", dtype="float32", num_kv_blocks=512, progress=False) as llm:
        outs = llm.generate(["a", "b", "c", "d"], [
            eli.SamplingParams(max_tokens=30, temperature=1.0, seed=1, regex=r"[a-f]{2,5}-[0-9]{3}", n=8),
            eli.SamplingParams(max_tokens=30, temperature=1.0, seed=2, choice=["alpha", "beta", "gamma delta"], n=8),
            eli.SamplingParams(max_tokens=200, temperature=1.0, seed=3, json_schema=SCHEMA, n=8),
            eli.SamplingParams(max_tokens=10, temperature=1.0, seed=4, n=8)])
        for c in outs[0].outputs:
            assert re.fullmatch(r"[a-f]{2,5}-[0-9]{3}", c.text), c.text
        for c in outs[1].outputs:
            assert c.text in ("alpha", "beta", "gamma delta")
        for c in outs[2].outputs:
            assert c.finish_reason == "stop", c.error
            jsonschema.validate(json.loads(c.text), SCHEMA)
        assert all(c.error is None for c in outs[3].outputs)
