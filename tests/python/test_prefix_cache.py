# tests/python/test_prefix_cache.py: automatic prefix caching through eli.LLM on a tiny HF llama
# and SmolLM2 (CPU, f32): greedy tokens identical with caching on and off for prompts sharing long
# prefixes (same prompt twice, a shared system-prompt-like prefix with different suffixes, in one
# batch and one after another), hit counters, logprobs equal between a cache hit and a miss, and
# every block free (cached free blocks count as free) at the end.
import math
import random

import pytest

import eli

N_TOKENS = 8


def greedy(n=N_TOKENS, **kw):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kw)


def assert_all_blocks_free(model):
    s = model.stats()
    assert s["kv_blocks_free"] == s["kv_blocks_total"]
    assert s["num_running"] == 0 and s["num_waiting"] == 0


def hits(model):
    return model.stats()["prefix_cache_hits"]


def f32_ulp(x):
    """The spacing of float32 numbers at magnitude x (x > 0)."""
    return 2.0 ** (math.frexp(x)[1] - 24)


def logprobs_agree(a, b):
    """A cache hit computes the logits of a miss with differently blocked f32 reductions (its
    prefill covers only the uncached suffix, so the CPU kernels tile the rows differently, and the
    SIMD width changes the tiling again), so the two agree to f32 rounding, not bitwise. A logprob
    z_t - logsumexp(z) carries the rounding of logits of magnitude up to ~32 (it is a difference
    of two such numbers): allow 16 f32 units in the last place of max(32, |logprob|), i.e. 6.1e-5
    for the logprobs here (an AVX2 CPU differed by 1.0e-5, 2.6 units, on a logprob of -4.9)."""
    return abs(a - b) <= 16 * f32_ulp(max(32.0, abs(a), abs(b)))


class Case:
    """A model, its engines with caching on and off, and token-id prompts sharing a prefix."""

    def __init__(self, path, block_size, prefix_len, vocab_lo, vocab_hi, **kw):
        self.path, self.kw = path, dict(dtype="float32", block_size=block_size, **kw)
        self.on = eli.LLM(path, enable_prefix_caching=True, **self.kw)
        self.off = eli.LLM(path, enable_prefix_caching=False, **self.kw)
        rng = random.Random(1234)
        self.prefix = [rng.randrange(vocab_lo, vocab_hi) for _ in range(prefix_len)]
        self.suffixes = [[rng.randrange(vocab_lo, vocab_hi) for _ in range(n)] for n in (3, 7, 1 + block_size)]
        self.prompts = [self.prefix + s for s in self.suffixes]


@pytest.fixture(scope="module", params=["llama_base", "smollm2"])
def case(request, data_dir, smollm2_gguf):
    if request.param == "llama_base":
        # 263-token vocab, 256 positions: a 61-token prefix spans several blocks of 8.
        return Case(str(data_dir / "models" / "llama_base"), 8, 61, 3, 263)
    # SmolLM2: a ~100-token prefix over ordinary ids, default block size.
    return Case(str(smollm2_gguf), 16, 100, 100, 20000)


def test_same_prompt_twice_sequential(case):
    p = case.prompts[0]
    off1 = case.off.generate([p], greedy())[0].token_ids
    off2 = case.off.generate([p], greedy())[0].token_ids
    h0 = hits(case.on)
    on1 = case.on.generate([p], greedy())[0].token_ids
    h1 = hits(case.on)
    on2 = case.on.generate([p], greedy())[0].token_ids
    h2 = hits(case.on)
    assert off1 == off2 == on1 == on2
    assert len(on1) == N_TOKENS
    assert h2 > h1  # the second run found the first one's blocks
    # Everything but the last prompt token's block can hit.
    assert h2 - h1 == (len(p) - 1) // case.kw["block_size"] * case.kw["block_size"]
    assert h1 == h0  # nothing of this prompt was cached before (tests run in file order)
    s = case.off.stats()
    assert s["prefix_cache_hits"] == 0 and s["prefix_cache_queries"] == 0
    assert case.on.stats()["prefix_cache_queries"] > 0
    assert_all_blocks_free(case.on)
    assert_all_blocks_free(case.off)


def test_shared_prefix_different_suffixes(case):
    want = [o.token_ids for o in case.off.generate(case.prompts, greedy())]
    # One batch: all three admitted in the same step, so nothing is cached yet for each other.
    assert [o.token_ids for o in case.on.generate(case.prompts, greedy())] == want
    # One after another: each later prompt reuses the shared prefix.
    before = hits(case.on)
    seq = [case.on.generate([p], greedy())[0].token_ids for p in case.prompts]
    assert seq == want
    assert hits(case.on) - before >= 3 * (len(case.prefix) // case.kw["block_size"]) * case.kw["block_size"]
    assert case.off.stats()["prefix_cache_hits"] == 0
    assert_all_blocks_free(case.on)
    assert_all_blocks_free(case.off)


def test_one_batch_with_staggered_admission_hits(case):
    # max_num_seqs=1 admits the prompts of one generate() call one at a time: later ones hit.
    on = eli.LLM(case.path, enable_prefix_caching=True, max_num_seqs=1, **case.kw)
    prompts = [list(reversed(case.prefix)) + s for s in case.suffixes]  # a prefix no test cached
    want = [o.token_ids for o in case.off.generate(prompts, greedy())]
    assert [o.token_ids for o in on.generate(prompts, greedy())] == want
    assert hits(on) >= 2 * (len(case.prefix) // case.kw["block_size"]) * case.kw["block_size"]
    assert_all_blocks_free(on)


def test_logprobs_equal_between_hit_and_miss(case):
    p = case.prefix[:-5] + case.suffixes[1]
    miss = case.off.generate([p], greedy(6, logprobs=5))[0]
    case.on.generate([p], greedy(1))  # fills the cache
    before = hits(case.on)
    hit = case.on.generate([p], greedy(6, logprobs=5))[0]
    assert hits(case.on) > before
    assert hit.token_ids == miss.token_ids
    for a, b in zip(hit.logprobs, miss.logprobs):
        assert a.keys() == b.keys()
        for tok in a:
            assert logprobs_agree(a[tok], b[tok]), (tok, a[tok], b[tok], a[tok] - b[tok])
    assert_all_blocks_free(case.on)


def test_small_pool_with_preemption_and_eviction(case):
    # A pool barely larger than one request: caching, eviction and preemption all interact.
    bs = case.kw["block_size"]
    need = (len(case.prompts[2]) + 12 + bs - 1) // bs
    small = eli.LLM(case.path, enable_prefix_caching=True, num_kv_blocks=need + 2, **case.kw)
    prompts = case.prompts + case.prompts[:1]
    want = [o.token_ids for o in case.off.generate(prompts, greedy(12))]
    assert [o.token_ids for o in small.generate(prompts, greedy(12))] == want
    s = small.stats()
    assert s["preemptions"] > 0
    assert s["prefix_cache_hits"] > 0  # later prompts, and preempted ones coming back, hit
    assert_all_blocks_free(small)
