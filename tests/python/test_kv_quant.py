# tests/python/test_kv_quant.py: the compressed KV cache (kv_cache_dtype int8 / fp8 e4m3, one f32
# scale per token and KV head) through eli.LLM on the CPU:
# - the memory plan: the same kv_cache_bytes gives exactly bytes // bytes_per_block blocks, with
#   bytes_per_block = block_size x n_kv_heads x (head_dim + 4) x 2 x n_layers (vs x 4 x head_dim
#   for float32);
# - accuracy on SmolLM2-135M (the default model): logits of a fixed text within a bound of the
#   float32-KV run, and the greedy tokens of the float32-KV run reproduced teacher-forced (top-1
#   agreement over 64 tokens x 5 prompts) above a bound;
# - prefix caching and preemption with a quantized cache give the tokens of a run without them;
# - bad names are refused.
# The bounds are set from measurements (scripts/kv_quant_accuracy.py records the full figures):
# see the constants below.
import os

import numpy as np
import pytest

import eli

PROMPTS = [
    "The capital of France is",
    "Write a short poem about the sea.",
    "def fibonacci(n):",
    "Photosynthesis is the process by which",
    "List three primary colors:",
]  # the text whose logits are compared (test_logits_close_to_f32_kv)
N_TOKENS = 64


def greedy(n, **kw):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kw)


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("kv", ["int8", "fp8"])
def test_memory_plan_counts_the_smaller_blocks(data_dir, kv):
    path = str(data_dir / "models" / "llama_base")
    budget = 1 << 20
    ref = eli.LLM(path, device="cpu", dtype="float32", block_size=8, kv_cache_bytes=budget)
    q = eli.LLM(path, device="cpu", dtype="float32", block_size=8, kv_cache_bytes=budget, kv_cache_dtype=kv)
    spec = ref.info["spec"]
    n_layers, nkv, hd = spec["num_layers"], spec["num_kv_heads"], spec["head_dim"]
    f32_block = 8 * nkv * hd * 4 * 2 * n_layers
    q_block = 8 * nkv * (hd + 4) * 2 * n_layers
    assert ref.info["num_kv_blocks"] == budget // f32_block
    assert q.info["num_kv_blocks"] == budget // q_block
    assert q.info["memory"]["kv_bytes"] == q.info["num_kv_blocks"] * q_block
    assert q.info["kv_cache_dtype"] == {"int8": "i8", "fp8": "f8_e4m3"}[kv]


def test_bad_kv_cache_dtype_is_refused(data_dir):
    path = str(data_dir / "models" / "llama_base")
    with pytest.raises(eli.InvalidRequestError, match="kv_cache_dtype"):
        eli.LLM(path, dtype="float32", kv_cache_dtype="int4")
    with pytest.raises(eli.InvalidRequestError, match="kv_cache_dtype"):
        eli.LLM(path, dtype="float32", kv_cache_dtype="e5m2")


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    # The KV cache's error alone: the GGUF weights dequantized at load (ELI_GGUF_NATIVE=0, read
    # while the model loads). The native block kernels quantize activations to 8 bits, and a KV
    # perturbation that flips one of those roundings would be charged to the cache (int8's max
    # logprob error measures 0.39 with them, 0.12 without).
    kw = dict(device="cpu", dtype="float32", n_threads=2, max_num_seqs=8)
    saved = os.environ.get("ELI_GGUF_NATIVE")
    os.environ["ELI_GGUF_NATIVE"] = "0"
    try:
        return {kv: eli.LLM(str(smollm2_gguf), kv_cache_dtype=kv, **kw) for kv in ("float32", "int8", "fp8")}
    finally:
        if saved is None:
            del os.environ["ELI_GGUF_NATIVE"]
        else:
            os.environ["ELI_GGUF_NATIVE"] = saved


# Bounds from measurements on SmolLM2-135M (float32 weights, CPU; scripts/kv_quant_accuracy.py,
# bench/results/2026-12-07_cpu_smollm2_kv_quant_accuracy.json), with ~2x margin:
# - max |log p_quant - log p_f32| of the float32 run's top-1 tokens over the 93-token text below:
#   int8 0.118, fp8 0.316;
# - teacher-forced top-1 agreement over 64 tokens x 5 prompts: int8 0.988, fp8 0.984 (4 and 5
#   misses of 320; the bound allows 16);
# - perplexity of the reference paragraph relative to float32 KV: int8 +0.33%, fp8 +1.15% (fp8's
#   3 mantissa bits give ~3x int8's per-value error on rows without outliers; issue 14's 0.5%
#   gate holds for int8 only, see docs/quantization.md).
MAX_LOGPROB_ERR = {"int8": 0.25, "fp8": 0.6}
MIN_TOP1_AGREEMENT = {"int8": 0.95, "fp8": 0.95}
MAX_PPL_REL = {"int8": 0.01, "fp8": 0.025}


@pytest.mark.parametrize("kv", ["int8", "fp8"])
def test_logits_close_to_f32_kv(smollm2, kv):
    ids = smollm2["float32"].tokenizer.encode(" ".join(PROMPTS) * 3)
    ref = log_softmax(smollm2["float32"].score(ids).astype(np.float64))
    got = log_softmax(smollm2[kv].score(ids).astype(np.float64))
    top = ref.argmax(axis=-1)
    err = np.abs(got[np.arange(len(ids)), top] - ref[np.arange(len(ids)), top]).max()
    assert err <= MAX_LOGPROB_ERR[kv], f"{kv}: max logprob error {err:.4f}"
    assert err > 0.0  # the cache really is quantized


@pytest.mark.parametrize("kv", ["int8", "fp8"])
def test_paragraph_perplexity_close_to_f32_kv(smollm2, kv):
    import json

    from testdata import DATA_DIR

    ids = json.loads((DATA_DIR / "smollm2_reference.json").read_text())["paragraph"]["ids"]

    def ppl(llm):
        lp = log_softmax(np.asarray(llm.score(ids)).astype(np.float64))
        return float(np.exp(-lp[np.arange(len(ids) - 1), ids[1:]].mean()))

    rel = ppl(smollm2[kv]) / ppl(smollm2["float32"]) - 1.0
    assert abs(rel) <= MAX_PPL_REL[kv], f"{kv}: perplexity {rel:+.4%} vs float32 KV"


@pytest.mark.parametrize("kv", ["int8", "fp8"])
def test_greedy_top1_agreement(smollm2, kv):
    """The float32-KV run's greedy tokens (64 per prompt, the 5 prompts of
    smollm2_reference.json), scored teacher-forced with the quantized cache: the share whose
    argmax is that token. Teacher forcing keeps one early divergence from counting 60 times."""
    prompts = [{"prompt_token_ids": p} for p in _reference_prompts()]
    outs = smollm2["float32"].generate(prompts, greedy(N_TOKENS))
    agree = total = 0
    for p, o in zip(prompts, outs):
        prompt_ids = list(p["prompt_token_ids"])
        seq = prompt_ids + list(o.token_ids)
        pred = np.asarray(smollm2[kv].score(seq))[len(prompt_ids) - 1:len(seq) - 1].argmax(axis=-1)
        agree += int((pred == np.array(o.token_ids)).sum())
        total += len(o.token_ids)
    assert total == N_TOKENS * len(prompts)
    assert agree / total >= MIN_TOP1_AGREEMENT[kv], f"{kv}: top-1 agreement {agree}/{total}"


@pytest.mark.parametrize("kv", ["int8", "fp8"])
def test_prefix_cache_and_preemption_give_the_same_tokens(data_dir, kv):
    import random

    path = str(data_dir / "models" / "llama_base")
    kw = dict(device="cpu", dtype="float32", block_size=8, kv_cache_dtype=kv)
    rng = random.Random(7)
    prefix = [rng.randrange(3, 263) for _ in range(45)]
    prompts = [prefix + [rng.randrange(3, 263) for _ in range(n)] for n in (3, 9, 1)]
    off = eli.LLM(path, enable_prefix_caching=False, **kw)
    want = [o.token_ids for o in off.generate(prompts, greedy(12))]
    on = eli.LLM(path, enable_prefix_caching=True, **kw)
    first = [o.token_ids for o in on.generate(prompts, greedy(12))]
    again = [o.token_ids for o in on.generate(prompts, greedy(12))]  # hits the cached blocks
    assert first == want and again == want
    assert on.stats()["prefix_cache_hits"] > 0
    need = (len(prompts[1]) + 12 + 7) // 8
    small = eli.LLM(path, enable_prefix_caching=True, num_kv_blocks=need + 2, **kw)
    assert [o.token_ids for o in small.generate(prompts + prompts[:1], greedy(12))] == want + want[:1]
    assert small.stats()["preemptions"] > 0


# ---- GPU (marked `gpu`: run on the GPU machine) ------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("kv", ["int8", "fp8"])
def test_cuda_quantized_kv_against_bf16_kv(smollm2_gguf, kv):
    """bf16 weights on CUDA: an int8 / fp8 cache holds ~2x the blocks of a bf16 one in the same
    kv_cache_bytes, reproduces the bf16-KV greedy tokens teacher-forced (top-1 >= 90%: bf16 weights
    and activations add their own rounding), and prefix-cache hits give the tokens of misses (>= 90%: 16-bit batches are not batch-invariant)."""
    kw = dict(device="cuda", dtype="bfloat16", kv_cache_bytes=64 << 20, max_num_seqs=8)
    ref = eli.LLM(str(smollm2_gguf), kv_cache_dtype="bfloat16", **kw)
    q = eli.LLM(str(smollm2_gguf), kv_cache_dtype=kv, enable_prefix_caching=True, **kw)
    spec = q.info["spec"]
    hd = spec["head_dim"]
    assert q.info["num_kv_blocks"] >= int(ref.info["num_kv_blocks"] * 2 * hd / (hd + 4)) - 1
    prompts = [{"prompt_token_ids": p} for p in _reference_prompts()]
    outs = ref.generate(prompts, greedy(N_TOKENS))
    agree = total = 0
    for p, o in zip(prompts, outs):
        seq = list(p["prompt_token_ids"]) + list(o.token_ids)
        pred = np.asarray(q.score(seq))[len(p["prompt_token_ids"]) - 1:len(seq) - 1].argmax(axis=-1)
        agree += int((pred == np.array(o.token_ids)).sum())
        total += len(o.token_ids)
    assert agree / total >= 0.9, f"{kv}: top-1 agreement {agree}/{total} against bf16 KV"
    first = [o.token_ids for o in q.generate(prompts, greedy(16))]
    again = [o.token_ids for o in q.generate(prompts, greedy(16))]
    same = sum(a == b for x, y in zip(first, again) for a, b in zip(x, y))
    assert same >= 0.9 * sum(len(x) for x in first)
    assert q.stats()["prefix_cache_hits"] > 0


def _reference_prompts():
    import json

    from testdata import DATA_DIR

    return [p["prompt_ids"] for p in json.loads((DATA_DIR / "smollm2_reference.json").read_text())["prompts"]]
