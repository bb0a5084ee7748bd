# tests/python/test_kv_disk_gpu.py (GPU): the prefix cache's disk tier (kv_offload_disk_gb) on a
# CUDA engine, where the host tier's copies are asynchronous on the default stream (a write to disk
# waits for the copy that filled its slot; disk hits go through a pinned staging buffer), with
# asynchronous scheduling and CUDA graphs on by default: blocks pushed device -> host -> disk come
# back with the greedy tokens of a CUDA run with no prefix cache and its logprobs to 1e-4 (on the
# GPU a prefill over cached blocks runs another attention kernel than a full prefill: the same
# values up to f32 summation order, measured ~1e-6 on the H100); a failed read recomputes and the
# engine serves on. The CPU twin (bit-identical there): tests/python/test_kv_disk.py.
import pytest

import eli
from eli import _eli

from test_kv_disk import flood, greedy, results, shared_prompts, slot_gib
from testdata import DATA_DIR

pytestmark = pytest.mark.gpu

MODEL = str(DATA_DIR / "models" / "llama_base")


def same(got, want, tol=1e-4):
    """Equal tokens; logprobs of the same candidates within tol."""
    assert [t for t, _ in got] == [t for t, _ in want]
    for (_, la), (_, lb) in zip(got, want):
        for da, db in zip(la, lb):
            assert da.keys() == db.keys()
            assert all(abs(da[k] - db[k]) <= tol for k in da)
    return True


def make(**kw):
    return eli.LLM(MODEL, device="cuda", skip_tokenizer_init=True, block_size=4, max_num_seqs=64, **kw)


@pytest.mark.parametrize("extra", [{}, {"kv_cache_dtype": "int8"}, {"enable_cuda_graphs": False}])
def test_disk_hits_on_cuda_match_no_cache(extra):
    ps = shared_prompts()
    want = results(make(num_kv_blocks=256, enable_prefix_caching=False, **extra).generate(ps, greedy()))
    # slot_gib(3, "auto") is 3 f32 slots: a few blocks for any KV dtype.
    llm = make(num_kv_blocks=14, kv_offload_gb=slot_gib(3, "auto"), kv_offload_disk_gb=0.01, **extra)
    try:
        assert same(results(llm.generate(ps, greedy())), want)
        llm.generate(flood(), greedy())
        before = llm.stats()
        assert before["kv_bytes_to_disk"] > 0
        assert same(results(llm.generate(ps, greedy())), want)
        after = llm.stats()
        assert after["disk_prefix_hits"] > before["disk_prefix_hits"]
        assert after["kv_blocks_free"] == after["kv_blocks_total"]
        # A failed read: recomputed, same tokens, the engine goes on.
        llm.generate(flood(seed=12), greedy())
        _eli.arm_fault("kv_disk_read", "")
        try:
            assert same(results(llm.generate(ps, greedy())), want)
            assert _eli.fault_counts("kv_disk_read")[1] > 0
        finally:
            _eli.disarm_fault("kv_disk_read")
        assert llm.health()["healthy"]
        assert same(results(llm.generate(ps, greedy())), want)
    finally:
        llm.shutdown()
