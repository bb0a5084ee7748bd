# tests/python/test_kv_swap.py: swap preemption (swap_space_gb, docs/offloading.md "KV beyond the
# device") on the CPU engine: under a tiny KV pool with many concurrent requests, swapping the
# victims' KV to the host tier gives exactly the greedy tokens of a run with ample blocks and of
# the recompute-preemption run (f32, int8 KV, sliding-window models with one and two KV groups,
# prefix caching on and off, asynchronous scheduling), the swap counters move, everything is
# returned at the end; a host tier too small for a victim falls back to recompute; bad values are
# ValueErrors. The host-tier prefix cache (kv_offload_gb): blocks evicted from a small device pool
# come back from host memory with the tokens of device hits and of no caching (f32, int8, with
# swapping too); off without prefix caching; refused for sliding-window models; bad values are
# ValueErrors. ELI_KV_SWAP_POLICY=always makes the engine swap whenever the tier has room (the
# cost rule would pick recompute for these tiny models).
import json
import math
import random

import pytest

import eli

N_TOKENS = 12


def greedy():
    return eli.SamplingParams(max_tokens=N_TOKENS, temperature=0.0, ignore_eos=True)


def prompts(n=12, seed=3):
    rng = random.Random(seed)
    shared = [rng.randrange(3, 263) for _ in range(9)]  # a common prefix: prefix-cache hits
    out = []
    for i in range(n):
        head = shared if i % 2 == 0 else []
        out.append({"prompt_token_ids": head + [rng.randrange(3, 263) for _ in range(rng.randrange(3, 12))]})
    return out


def run(path, ps, **kw):
    llm = eli.LLM(path, device="cpu", dtype="float32", block_size=4, max_num_seqs=64, **kw)
    toks = [list(o.token_ids) for o in llm.generate(ps, greedy())]
    return toks, llm


def assert_all_returned(llm):
    s = llm.stats()
    assert s["kv_blocks_free"] == s["kv_blocks_total"]
    assert s["kv_window_blocks_free"] == s["kv_window_blocks_total"]
    assert s["num_running"] == 0 and s["num_waiting"] == 0
    assert s["swaps_in"] == s["swaps_out"]  # every swapped-out request came back


CASES = [
    ("llama_base", {}),
    ("llama_base", {"kv_cache_dtype": "int8"}),
    ("llama_base", {"async_scheduling": True}),
    ("mistral_sw_small", {}),  # every layer windowed: one windowed group
    ("gemma3", {}),            # local layers beside global ones: two KV groups
]


@pytest.mark.parametrize("caching", [False, True])
@pytest.mark.parametrize("model,extra", CASES)
def test_swap_gives_the_tokens_of_ample_blocks_and_of_recompute(data_dir, monkeypatch, model, extra, caching):
    monkeypatch.setenv("ELI_KV_SWAP_POLICY", "always")
    path = str(data_dir / "models" / model)
    ps = prompts()
    kw = dict(enable_prefix_caching=caching, **extra)
    want, _ = run(path, ps, num_kv_blocks=256, **kw)
    recompute, rec = run(path, ps, num_kv_blocks=10, **kw)
    swapped, llm = run(path, ps, num_kv_blocks=10, swap_space_gb=0.01, **kw)
    assert recompute == want
    assert swapped == want
    assert rec.stats()["swaps_out"] == 0 and rec.stats()["preemptions"] > 0
    s = llm.stats()
    assert s["swaps_out"] > 0 and s["swaps_in"] > 0
    assert s["kv_bytes_to_host"] > 0 and s["kv_bytes_from_host"] == s["kv_bytes_to_host"]
    assert_all_returned(llm)
    # The same engine again (cached prefixes now, when caching): still the same tokens.
    assert [list(o.token_ids) for o in llm.generate(ps, greedy())] == want
    assert_all_returned(llm)


def _slot_bytes(path, block_size=4):
    cfg = json.loads((path / "config.json").read_text())
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return 2 * block_size * cfg["num_key_value_heads"] * hd * 4 * cfg["num_hidden_layers"]  # f32 K and V


def test_a_tier_too_small_for_a_victim_falls_back_to_recompute(data_dir, monkeypatch):
    monkeypatch.setenv("ELI_KV_SWAP_POLICY", "always")
    path = data_dir / "models" / "llama_base"
    ps = prompts()
    want, _ = run(str(path), ps, num_kv_blocks=256)
    # Room for one block: victims holding more than one are recomputed.
    gib = 1.5 * _slot_bytes(path) / 2**30
    got, llm = run(str(path), ps, num_kv_blocks=10, swap_space_gb=gib)
    assert got == want
    s = llm.stats()
    assert s["preemptions"] > s["swaps_out"]
    assert_all_returned(llm)


def test_the_cost_rule_picks_recompute_for_a_tiny_model(data_dir, monkeypatch):
    # The cost rule with the rate overrides, both ways: a slow copy means recompute, a fast copy
    # against a slow forward pass means swap.
    path = str(data_dir / "models" / "llama_base")
    ps = prompts()
    monkeypatch.setenv("ELI_KV_SWAP_COPY_GBPS", "0.000001")  # 1 KB/s: never worth copying
    _, slow = run(path, ps, num_kv_blocks=10, swap_space_gb=0.01)
    assert slow.stats()["preemptions"] > 0 and slow.stats()["swaps_out"] == 0
    monkeypatch.setenv("ELI_KV_SWAP_COPY_GBPS", "1000000")   # 1 PB/s: always worth it
    monkeypatch.setenv("ELI_KV_SWAP_TFLOPS", "0.000001")
    _, fast = run(path, ps, num_kv_blocks=10, swap_space_gb=0.01)
    assert fast.stats()["swaps_out"] > 0


def test_swapping_off_by_default(data_dir):
    _, llm = run(str(data_dir / "models" / "llama_base"), prompts(), num_kv_blocks=10)
    s = llm.stats()
    assert s["preemptions"] > 0
    assert (s["swaps_out"], s["swaps_in"], s["kv_bytes_to_host"], s["kv_bytes_from_host"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, 1e6])
def test_bad_swap_space_is_a_value_error(data_dir, value):
    with pytest.raises(ValueError, match="swap_space_gb"):
        eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu", swap_space_gb=value)


def test_a_swap_space_holding_no_block_is_a_value_error(data_dir):
    with pytest.raises(ValueError, match="holds no KV block"):
        eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu", block_size=4, swap_space_gb=1e-9)


def test_bad_swap_policy_is_a_value_error(data_dir, monkeypatch):
    monkeypatch.setenv("ELI_KV_SWAP_POLICY", "sometimes")
    with pytest.raises(ValueError, match="ELI_KV_SWAP_POLICY"):
        eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu", swap_space_gb=0.01)


# ---- the host-tier prefix cache (kv_offload_gb) ----

def flood(n=4, seed=11):
    rng = random.Random(seed)
    return [{"prompt_token_ids": [rng.randrange(3, 263) for _ in range(30)]} for _ in range(n)]


@pytest.mark.parametrize("extra", [{}, {"kv_cache_dtype": "int8"}, {"swap_space_gb": 0.01}])
def test_host_prefix_hits_give_the_tokens_of_device_hits(data_dir, monkeypatch, extra):
    monkeypatch.setenv("ELI_KV_SWAP_POLICY", "always")
    path = str(data_dir / "models" / "llama_base")
    ps = prompts(6, seed=5)
    kw = dict(extra)
    want, _ = run(path, ps, num_kv_blocks=256, enable_prefix_caching=False, **kw)
    # Device hits: an ample pool keeps every block.
    dev_first, dev = run(path, ps, num_kv_blocks=256, **kw)
    assert dev_first == want
    assert [list(o.token_ids) for o in dev.generate(ps, greedy())] == want
    assert dev.stats()["prefix_cache_hits"] > 0 and dev.stats()["host_prefix_hits"] == 0
    # Host hits: a small pool, flooded with other prompts in between, keeps the blocks in the host tier.
    first, llm = run(path, ps, num_kv_blocks=14, kv_offload_gb=0.01, **kw)
    assert first == want
    llm.generate(flood(), greedy())
    before = llm.stats()
    again = [list(o.token_ids) for o in llm.generate(ps, greedy())]
    after = llm.stats()
    assert again == want
    assert after["host_prefix_hits"] > before["host_prefix_hits"]
    assert after["kv_bytes_from_host"] > before["kv_bytes_from_host"]
    assert after["kv_blocks_free"] == after["kv_blocks_total"]


def test_kv_offload_is_off_without_prefix_caching(data_dir):
    path = str(data_dir / "models" / "llama_base")
    ps = prompts(6, seed=5)
    _, llm = run(path, ps, num_kv_blocks=14, kv_offload_gb=0.01, enable_prefix_caching=False)
    llm.generate(ps, greedy())
    s = llm.stats()
    assert s["host_prefix_hits"] == 0 and s["kv_bytes_to_host"] == 0


def test_kv_offload_refuses_sliding_window_models(data_dir):
    with pytest.raises(eli.errors.UnsupportedError, match="kv_offload_gb"):
        eli.LLM(str(data_dir / "models" / "mistral_sw_small"), device="cpu", kv_offload_gb=0.01)


@pytest.mark.parametrize("value", [-0.5, math.nan, 1e6])
def test_bad_kv_offload_is_a_value_error(data_dir, value):
    with pytest.raises(ValueError, match="kv_offload_gb"):
        eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu", kv_offload_gb=value)
