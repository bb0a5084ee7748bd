# tests/python/test_kv_disk.py: the prefix cache's disk tier (kv_offload_disk_gb,
# docs/offloading.md "KV beyond the device") on the CPU engine. A tiny device pool and a host tier
# of a few blocks push the blocks of prompts sharing long prefixes on through device -> host ->
# disk; re-requested, they come back from disk with the greedy tokens and logprobs of a run with no
# prefix cache at all (f32 and int8 KV, asynchronous scheduling, with swap preemption too). The fault points: a failed write (no disk hits, still
# correct) and a failed read (recompute, still correct, the engine serves on). Bad option values
# are ValueErrors; a given directory is left empty. /metrics exports the disk counters.
import math
import os
import random

import pytest

import eli
from eli import _eli

N_TOKENS = 10
BLOCK = 4


def greedy():
    return eli.SamplingParams(max_tokens=N_TOKENS, temperature=0.0, ignore_eos=True, logprobs=0)


def shared_prompts(n=6, seed=7):
    rng = random.Random(seed)
    shared = [rng.randrange(3, 263) for _ in range(26)]  # 6 full blocks and a half
    return [{"prompt_token_ids": shared + [rng.randrange(3, 263) for _ in range(rng.randrange(2, 9))]} for _ in range(n)]


def flood(n=5, seed=11):
    rng = random.Random(seed)
    return [{"prompt_token_ids": [rng.randrange(3, 263) for _ in range(30)]} for _ in range(n)]


def slot_gib(n_slots, kv_dtype):
    # llama_base: 3 layers, 6 KV heads of 12; one slot holds K and V of one block of every layer
    # (+ an f32 scale per token and head for int8). Half a slot more: no rounding down.
    per = 3 * 2 * BLOCK * 6 * (12 * (1 if kv_dtype == "int8" else 4) + (4 if kv_dtype == "int8" else 0))
    return (n_slots + 0.5) * per / 2**30


def results(outs):
    return [(list(o.token_ids), [dict(d) for d in o.logprobs]) for o in outs]


def make(path, **kw):
    return eli.LLM(path, device="cpu", dtype="float32", block_size=BLOCK, max_num_seqs=64, **kw)


@pytest.fixture
def model(data_dir):
    return str(data_dir / "models" / "llama_base")


def disk_llm(model, kv_dtype="auto", **kw):
    return make(model, num_kv_blocks=14, kv_cache_dtype=kv_dtype, kv_offload_gb=slot_gib(3, kv_dtype),
                kv_offload_disk_gb=0.01, **kw)


@pytest.mark.parametrize("kv_dtype, extra", [("auto", {}), ("int8", {}), ("auto", {"async_scheduling": True}),
                                             ("auto", {"swap_space_gb": 0.01})])
def test_disk_hits_give_the_tokens_and_logprobs_of_no_cache(model, monkeypatch, kv_dtype, extra):
    monkeypatch.setenv("ELI_KV_SWAP_POLICY", "always")  # with swap_space_gb: swap whenever there is room
    ps = shared_prompts()
    want = results(make(model, num_kv_blocks=256, kv_cache_dtype=kv_dtype,
                        enable_prefix_caching=False).generate(ps, greedy()))
    llm = disk_llm(model, kv_dtype, **extra)
    assert results(llm.generate(ps, greedy())) == want
    llm.generate(flood(), greedy())  # pushes the shared blocks out of the device and the host tier
    before = llm.stats()
    assert before["kv_bytes_to_disk"] > 0
    assert results(llm.generate(ps, greedy())) == want
    after = llm.stats()
    assert after["disk_prefix_hits"] > before["disk_prefix_hits"]
    assert after["kv_bytes_from_disk"] > before["kv_bytes_from_disk"]
    assert after["prefix_cache_hits"] >= after["host_prefix_hits"] + after["disk_prefix_hits"]
    assert after["kv_blocks_free"] == after["kv_blocks_total"]


def test_disk_write_failure_loses_blocks_not_tokens(model):
    ps = shared_prompts()
    want = results(make(model, num_kv_blocks=256, enable_prefix_caching=False).generate(ps, greedy()))
    llm = disk_llm(model)
    _eli.arm_fault("kv_disk_write", "")
    try:
        assert results(llm.generate(ps, greedy())) == want
        llm.generate(flood(), greedy())
        assert _eli.fault_counts("kv_disk_write")[1] > 0
        assert results(llm.generate(ps, greedy())) == want
    finally:
        _eli.disarm_fault("kv_disk_write")
    s = llm.stats()
    assert s["disk_prefix_hits"] == 0 and s["kv_bytes_to_disk"] == 0 and s["kv_bytes_from_disk"] == 0
    assert llm.health()["healthy"]


def test_disk_read_failure_recomputes_and_the_engine_serves_on(model):
    ps = shared_prompts()
    want = results(make(model, num_kv_blocks=256, enable_prefix_caching=False).generate(ps, greedy()))
    llm = disk_llm(model)
    assert results(llm.generate(ps, greedy())) == want
    llm.generate(flood(), greedy())
    before = llm.stats()
    _eli.arm_fault("kv_disk_read", "")
    try:
        outs = llm.generate(ps, greedy())
        assert _eli.fault_counts("kv_disk_read")[1] > 0
    finally:
        _eli.disarm_fault("kv_disk_read")
    assert all(o.finish_reason == "length" and o.error is None for o in outs)
    assert results(outs) == want  # recomputed: nothing lost
    s = llm.stats()
    assert s["disk_prefix_hits"] == before["disk_prefix_hits"]  # every read failed: no hit
    assert s["kv_bytes_from_disk"] == before["kv_bytes_from_disk"]
    assert llm.health()["healthy"]
    # Serving goes on, the disk tier included.
    llm.generate(flood(seed=12), greedy())
    assert results(llm.generate(ps, greedy())) == want
    s = llm.stats()
    assert s["disk_prefix_hits"] > before["disk_prefix_hits"]
    assert s["kv_blocks_free"] == s["kv_blocks_total"]


def test_given_directory_is_used_and_left_empty(model, tmp_path):
    llm = disk_llm(model, kv_offload_disk_path=str(tmp_path))
    assert os.listdir(tmp_path) == []  # the file is unlinked at once
    llm.generate(shared_prompts() + flood(), greedy())
    assert llm.stats()["kv_bytes_to_disk"] > 0
    del llm
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kw, match", [
    (dict(kv_offload_disk_gb=0.01), "needs kv_offload_gb"),
    (dict(kv_offload_gb=0.01, kv_offload_disk_gb=0.01, enable_prefix_caching=False), "enable_prefix_caching"),
    (dict(kv_offload_gb=0.01, kv_offload_disk_gb=-1.0), "kv_offload_disk_gb"),
    (dict(kv_offload_gb=0.01, kv_offload_disk_gb=math.nan), "kv_offload_disk_gb"),
    (dict(kv_offload_gb=0.01, kv_offload_disk_gb=1e-12), "holds no KV block"),
    (dict(kv_offload_gb=0.01, kv_offload_disk_path="/tmp"), "kv_offload_disk_gb is 0"),
    (dict(kv_offload_gb=0.01, kv_offload_disk_gb=0.01, kv_offload_disk_path="/nonexistent/eli-kv"),
     "kv_offload_disk_path"),
])
def test_bad_disk_options_are_value_errors(model, kw, match):
    with pytest.raises(ValueError, match=match):
        make(model, **kw)


def test_disk_path_that_is_a_file_is_a_value_error(model, tmp_path):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    with pytest.raises(ValueError, match="not an existing directory"):
        make(model, kv_offload_gb=0.01, kv_offload_disk_gb=0.01, kv_offload_disk_path=str(f))


def test_metrics_export_the_disk_counters(model):
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from eli.server.metrics import ServerMetrics

    llm = disk_llm(model)
    ps = shared_prompts()
    llm.generate(ps, greedy())
    llm.generate(flood(), greedy())
    llm.generate(ps, greedy())
    s = llm.stats()
    text = generate_latest(ServerMetrics(llm.stats, "m").registry).decode()
    for name, key in [("eli:disk_prefix_cache_hits_total", "disk_prefix_hits"),
                      ("eli:kv_bytes_to_disk_total", "kv_bytes_to_disk"),
                      ("eli:kv_bytes_from_disk_total", "kv_bytes_from_disk")]:
        line = next(ln for ln in text.splitlines() if ln.startswith(name))
        assert float(line.split()[-1]) == s[key] > 0, line
