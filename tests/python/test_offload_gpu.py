# tests/python/test_offload_gpu.py (GPU): weight offloading on CUDA. Layers held in pinned host
# memory (cpu_offload_gb) stream through the device ring on the copy stream, inside captured CUDA
# graphs too; layers read from the model file (cpu_memory_bytes too small) run eagerly; both give
# exactly the tokens and logprobs of the fully resident CUDA run (the same kernels read the same
# bytes), with graphs on and off, on dense and GGUF-quantized models, also with an explicit
# offload_map (any layers, any tiers) and the file tier read with and without O_DIRECT; a failed
# disk read ends the requests and the engine goes on (offload="auto"'s planning is
# device-independent: test_offload.py). The CPU twins: tests/python/test_offload.py and
# test_offload_map.py.
# The streaming cases pin offload_compute="stream"; the CPU stage (offload_compute="cpu": the first
# layers computed on the host, the rest on the GPU, the residual handed over through pinned memory)
# agrees with the resident run in greedy tokens and in logprobs up to the two backends' rounding,
# and "auto" measures, decides, says what it chose and runs.
import pytest

import eli
from eli import _eli

from testdata import DATA_DIR

pytestmark = pytest.mark.gpu

MODELS = DATA_DIR / "models"


def prompts():
    return [{"prompt_token_ids": [(5 + 7 * i + j) % 29 + 2 for j in range(3 + 2 * i)]} for i in range(6)]


def greedy(n=16):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, logprobs=3)


def run(path, **kw):
    kw.setdefault("offload_compute", "stream")
    llm = eli.LLM(str(path), device="cuda", skip_tokenizer_init=True, max_num_seqs=8, **kw)
    try:
        outs = llm.generate(prompts(), greedy())
        return ([list(o.token_ids) for o in outs], [[sorted(d.items()) for d in o.logprobs] for o in outs],
                llm.info, llm.stats())
    finally:
        llm.shutdown()


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("path", [MODELS / "llama_base", MODELS / "qwen2", DATA_DIR / "gguf" / "tiny_llama_mixed.gguf"],
                         ids=["llama_base", "qwen2", "gguf_mixed"])
def test_tiers_match_resident_on_cuda(path, graphs):
    want = run(path, enable_cuda_graphs=graphs)
    host = run(path, enable_cuda_graphs=graphs, cpu_offload_gb=1024.0)
    assert host[0] == want[0] and host[1] == want[1]
    assert host[2]["memory"]["weights_host_bytes"] > 0
    last = run(path, enable_cuda_graphs=graphs, cpu_offload_gb=1e-9)  # the last layer only
    assert last[0] == want[0] and last[1] == want[1]
    total = host[2]["memory"]["weights_host_bytes"]
    disk = run(path, enable_cuda_graphs=graphs, cpu_offload_gb=1024.0, cpu_memory_bytes=total - 1)  # the last layer (at least) from the file
    assert disk[0] == want[0] and disk[1] == want[1]
    assert disk[2]["memory"]["weights_disk_bytes"] > 0


def test_disk_read_failure_on_cuda_engine_goes_on():
    path = MODELS / "llama_base"
    want = run(path)
    llm = eli.LLM(str(path), device="cuda", skip_tokenizer_init=True, max_num_seqs=8, cpu_offload_gb=1024.0,
                  cpu_memory_bytes=65536, offload_compute="stream")
    try:
        _eli.arm_fault("disk_read", "after=2:times=1")
        outs = llm.generate(prompts(), greedy())
        assert all(o.finish_reason == "error" and "I/O error" in o.error for o in outs)
        assert llm.healthy()
        again = llm.generate(prompts(), greedy())
        assert [list(o.token_ids) for o in again] == want[0]
    finally:
        _eli.disarm_fault("disk_read")
        llm.shutdown()


def close_logprobs(a, b, tol=2e-3):
    for ra, rb in zip(a, b):
        for da, db in zip(ra, rb):
            top_a, top_b = dict(da), dict(db)
            for t in set(top_a) & set(top_b):
                if abs(top_a[t] - top_b[t]) > tol:
                    return False
    return True


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("path", [MODELS / "llama_base", MODELS / "gemma3", MODELS / "qwen2"],
                         ids=["llama_base", "gemma3", "qwen2"])
def test_cpu_stage_beside_the_gpu(path, graphs):
    # f32 checkpoints: both backends compute in f32 (CPU vs GPU f32 agree to 1e-4 of the logits'
    # scale: test_cuda_parity.py), so the tokens agree and the logprobs to rounding.
    want = run(path, enable_cuda_graphs=graphs)
    for extra in (dict(cpu_offload_gb=1e-9), dict(cpu_offload_gb=1024.0)):
        got = run(path, enable_cuda_graphs=graphs, offload_compute="cpu", **extra)
        assert "computed on the CPU" in got[2]["weight_placement"]
        assert got[2]["memory"]["weights_host_bytes"] > 0
        assert got[0] == want[0], extra
        assert close_logprobs(got[1], want[1]), extra


def test_auto_decides_and_runs():
    path = MODELS / "llama_base"
    want = run(path)
    got = run(path, cpu_offload_gb=1024.0, offload_compute="auto")
    placement = got[2]["weight_placement"]
    assert "offload_compute=auto: streaming" in placement and ("streamed" in placement or "computed on the CPU" in placement)
    assert got[0] == want[0]


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("direct_io", ["auto", "off"])
@pytest.mark.parametrize("path,omap", [(MODELS / "llama_base", "0:host,1:disk,2:host"),   # alternating tiers
                                       (MODELS / "llama_base", "0:host"),                 # the first layer only
                                       (MODELS / "qwen3", "0:disk,2:host"),               # a resident layer between
                                       (DATA_DIR / "gguf" / "tiny_llama_mixed.gguf", "0:disk")],
                         ids=["llama_alternating", "llama_first", "qwen3_gap", "gguf_first_disk"])
def test_offload_map_matches_resident_on_cuda(path, omap, direct_io, graphs, monkeypatch):
    # offload_map puts any layer in any tier: the ring's slot j % K follows the offloaded layers in
    # order whatever resident layers run between them; host-only maps are captured in graphs; the
    # file tier is read with O_DIRECT into the pinned staging (auto) or buffered (off).
    monkeypatch.setenv("ELI_OFFLOAD_DIRECT_IO", direct_io)
    want = run(path, enable_cuda_graphs=graphs)
    got = run(path, enable_cuda_graphs=graphs, offload_map=omap)
    assert got[0] == want[0] and got[1] == want[1]
    placement = got[2]["weight_placement"]
    if ":disk" in omap:
        assert ("direct I/O" if direct_io == "auto" else "buffered reads") in placement or \
            "buffered reads (" in placement, placement


def test_cpu_stage_runs_a_gguf_file_beside_the_gpu():
    # Quantized blocks: the CPU stage runs eli's native CPU kernels (activations rounded to 8-bit
    # blocks), the GPU stage its own; they agree to the quantized kernels' tolerance, not to the
    # bit, so only the first tokens are compared.
    path = DATA_DIR / "gguf" / "tiny_llama_mixed.gguf"
    want = run(path)
    got = run(path, offload_compute="cpu", cpu_offload_gb=1024.0)
    assert "computed on the CPU" in got[2]["weight_placement"]
    assert [t[:2] for t in got[0]] == [t[:2] for t in want[0]]
