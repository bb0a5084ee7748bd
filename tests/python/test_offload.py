# tests/python/test_offload.py: weight offloading (docs/offloading.md) on the CPU engine, where a
# host-memory "device" runs the same placement, ring and streamer code as a GPU (copies are plain
# memcpy): layers held in pinned host memory (cpu_offload_gb), read from the model file at each step
# (cpu_memory_bytes too small for them), both mixed, and offload="auto" under a device budget
# (gpu_memory_bytes stands in for it on the CPU) give exactly the tokens and logprobs of the fully
# resident run, on several architectures and weight formats; the placement is reported; a failed
# disk read ends the step's requests with an error and the engine goes on; bad combinations are
# clear errors.
import json
import pathlib

import pytest

import eli
from eli import _eli

from testdata import DATA_DIR

MODELS = DATA_DIR / "models"
TINY = 1e-9  # GiB: one byte, i.e. the last layer only


def layers_of(name):
    return json.loads((MODELS / name / "config.json").read_text())["num_hidden_layers"]


def prompts():
    return [{"prompt_token_ids": [(5 + 7 * i + j) % 29 + 2 for j in range(3 + i)]} for i in range(5)]  # fits a 32-token vocabulary


def greedy(n=10):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, logprobs=3)


def run(path, **kw):
    llm = eli.LLM(str(path), device="cpu", block_size=4, max_num_seqs=8, skip_tokenizer_init=True, **kw)
    try:
        outs = llm.generate(prompts(), greedy())
        toks = [list(o.token_ids) for o in outs]
        lps = [[sorted(d.items()) for d in o.logprobs] for o in outs]
        return toks, lps, llm.info
    finally:
        llm.shutdown()


def image_bytes(path, **kw):
    """Bytes of the whole model offloaded to host memory (every layer's image)."""
    _, _, info = run(path, cpu_offload_gb=1024.0, **kw)
    return info["memory"]["weights_host_bytes"]


CASES = [
    ("llama_base", {"dtype": "float32"}),
    ("qwen2", {"dtype": "float32"}),       # q/k/v biases in the images
    ("gemma3", {"dtype": "float32"}),      # sandwich norms, two KV groups
    ("phi3", {"dtype": "float32"}),        # fused qkv / gate_up in the checkpoint
    ("llama_bf16", {"dtype": "bfloat16"}), # bf16 matrices as stored
]


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_every_tier_matches_resident(name, kw):
    path = MODELS / name
    want_toks, want_lps, base = run(path, **kw)
    assert base["memory"]["weights_host_bytes"] == 0 and "every layer" in base["weight_placement"]
    n = layers_of(name)
    total = image_bytes(path, **kw)
    per_layer = total // n
    configs = {
        "host, last layer": dict(cpu_offload_gb=TINY),
        "host, every layer": dict(cpu_offload_gb=1024.0),
        # Room for the biases (qwen2) but for no whole layer: every layer is read from the file.
        "file, every layer": dict(cpu_offload_gb=1024.0, cpu_memory_bytes=4096),
        "mixed host and file": dict(cpu_offload_gb=1024.0, cpu_memory_bytes=per_layer + 4096),
    }
    for what, extra in configs.items():
        toks, lps, info = run(path, **kw, **extra)
        assert toks == want_toks, what
        assert lps == want_lps, what  # the same kernels on the same bytes: bit-identical
        mem = info["memory"]
        placed = mem["weights_host_bytes"] + mem["weights_disk_bytes"]
        assert placed > 0, what
        if what.startswith("file"):
            assert mem["weights_host_bytes"] == 0 and mem["weights_disk_bytes"] == total
            assert "read from the model file" in info["weight_placement"]
        if what.startswith("mixed"):
            assert mem["weights_host_bytes"] > 0 and mem["weights_disk_bytes"] > 0
        if what == "host, last layer":
            assert mem["weights_disk_bytes"] == 0
            assert f"layers {n - 1} in pinned host memory" in info["weight_placement"] or \
                f"layers {n - 1}-" not in info["weight_placement"]


def test_auto_fits_the_device_budget():
    path = MODELS / "llama_base"
    want_toks, want_lps, base = run(path, dtype="float32")
    resident = base["memory"]["weights_bytes"]
    # A budget that holds about half of the weights: some layers must go.
    toks, lps, info = run(path, dtype="float32", offload="auto", gpu_memory_bytes=resident // 2 + resident // 4)
    assert toks == want_toks and lps == want_lps
    mem = info["memory"]
    assert mem["weights_host_bytes"] > 0
    assert mem["weights_bytes"] <= resident // 2 + resident // 4  # resident + ring fit the budget
    # offload="auto" without a device budget on the CPU: nothing to do.
    _, _, info = run(path, dtype="float32", offload="auto")
    assert info["memory"]["weights_host_bytes"] == 0


def test_auto_too_small_a_budget_is_out_of_memory():
    with pytest.raises(eli.OutOfMemoryError, match="even with every layer offloaded"):
        run(MODELS / "llama_base", dtype="float32", offload="auto", gpu_memory_bytes=1024)


def test_converted_layers_cannot_stay_in_the_file():
    # bf16 checkpoint held as float32: the matrices are converted at load, so the file cannot serve them.
    with pytest.raises(eli.OutOfMemoryError, match="cannot be read from the model file"):
        run(MODELS / "llama_bf16", dtype="float32", cpu_offload_gb=1024.0, cpu_memory_bytes=1)


@pytest.mark.parametrize("gguf", ["tiny_llama_mixed.gguf", "tiny_llama.gguf"])
def test_gguf_offloaded(gguf):
    # The mixed file's merged projections of two block types, and a Llama GGUF's q / k rows (stored
    # permuted, undone at load), are assembled at load: those parts of a disk-tier layer stay in host
    # memory, the rest is read from the file.
    path = DATA_DIR / "gguf" / gguf
    want = run(path)
    host = run(path, cpu_offload_gb=1024.0)
    assert host[0] == want[0] and host[1] == want[1]
    total = host[2]["memory"]["weights_host_bytes"]
    got = run(path, cpu_offload_gb=1024.0, cpu_memory_bytes=total - 1)  # the last layer cannot be all in host memory
    assert got[0] == want[0] and got[1] == want[1]
    assert got[2]["memory"]["weights_disk_bytes"] > 0
    with pytest.raises(eli.OutOfMemoryError, match="cannot be read from the model file"):
        run(path, cpu_offload_gb=1024.0, cpu_memory_bytes=1)


def check_disk_read_failure(**offload):
    """A failed file-tier read (fault point disk_read, once) ends the step's requests with an I/O
    error; the engine stays healthy and the next generate gives the resident run's tokens."""
    path = MODELS / "llama_base"
    want_toks, _, _ = run(path, dtype="float32")
    llm = eli.LLM(str(path), device="cpu", dtype="float32", block_size=4, max_num_seqs=8, skip_tokenizer_init=True,
                  cpu_memory_bytes=4096, **offload)
    try:
        _eli.arm_fault("disk_read", "after=3:times=1")
        outs = llm.generate(prompts(), greedy())
        assert _eli.fault_counts("disk_read")[1] == 1
        assert all(o.finish_reason == "error" for o in outs)
        assert all("I/O error" in o.error and "disk_read" in o.error for o in outs)
        assert llm.healthy()
        again = llm.generate(prompts(), greedy())
        assert [list(o.token_ids) for o in again] == want_toks
    finally:
        _eli.disarm_fault("disk_read")
        llm.shutdown()


def test_disk_read_failure_ends_requests_engine_goes_on():
    check_disk_read_failure(cpu_offload_gb=1024.0)


def test_bad_options_are_clear_errors():
    path = MODELS / "llama_base"
    with pytest.raises(ValueError, match="offload"):
        run(path, offload="everything")
    with pytest.raises(ValueError, match="cpu_offload_gb"):
        run(path, cpu_offload_gb=-1.0)
    with pytest.raises(NotImplementedError, match="offloading"):
        run(path, cpu_offload_gb=1.0, tensor_parallel_size=2)


def test_info_plan_prints_the_placement(capsys):
    from eli import cli

    path = str(MODELS / "gemma3")
    assert cli.main(["info", path, "--offline", "--plan", "--cpu-offload-gb", "0.0001", "--cpu-memory-bytes",
                     "200000"]) == 0
    out = capsys.readouterr().out
    assert "in pinned host memory" in out and "layers offloaded" in out
    assert cli.main(["info", path, "--offline", "--plan", "--json", "--cpu-offload-gb", "1024",
                     "--cpu-memory-bytes", "4096"]) == 0
    plan = json.loads(capsys.readouterr().out)["placement"]
    assert plan["offloaded_layers"] == plan["n_layers"] == layers_of("gemma3")
    assert plan["disk_bytes"] > 0 and plan["host_bytes"] == 0
    # The plan is the engine's: a run with the same options reports the same bytes.
    _, _, info = run(path, cpu_offload_gb=1024.0, cpu_memory_bytes=4096)
    assert info["memory"]["weights_disk_bytes"] == plan["disk_bytes"]
