# tests/python/test_offload_compute.py: offload_compute="cpu" (docs/offloading.md, "Computing
# offloaded layers on the CPU") on the CPU engine, where the device budget (gpu_memory_bytes /
# cpu_offload_gb) stands in for a GPU's: the offloaded layers become a CPU pipeline stage computing
# the first layers, and the tokens and logprobs equal the resident run's bit for bit (the same CPU
# kernels on the same bytes, the residual handed over in f32), on several architectures, weight
# formats and GGUF files; the placement and bytes are reported by the engine and by `eli info
# --plan`; "auto" on the CPU backend streams; bad values and unsupported combinations are clear
# errors. tests/python/test_offload_gpu.py runs the CPU stage beside a real GPU stage.
import json

import pytest

import eli
from eli import cli

from testdata import DATA_DIR
from test_offload import MODELS, TINY, layers_of, run


CASES = [
    ("llama_base", {"dtype": "float32"}),
    ("qwen2", {"dtype": "float32"}),
    ("gemma3", {"dtype": "float32"}),       # two KV groups, sliding windows
    ("phi3", {"dtype": "float32"}),
    ("llama_bf16", {"dtype": "bfloat16"}),  # bf16 matrices read from the file
]


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_cpu_stage_matches_resident(name, kw):
    path = MODELS / name
    want_toks, want_lps, _ = run(path, **kw)
    n = layers_of(name)
    for what, extra, cpu_layers in [
        ("one layer", dict(cpu_offload_gb=TINY), 1),
        ("every layer but the last", dict(cpu_offload_gb=1024.0), n - 1),
    ]:
        toks, lps, info = run(path, offload_compute="cpu", **kw, **extra)
        assert toks == want_toks, what
        assert lps == want_lps, what
        first = "layers 0" if cpu_layers == 1 else f"layers 0-{cpu_layers - 1}"
        assert info["weight_placement"].startswith(f"{first} computed on the CPU"), info["weight_placement"]
        assert "offload_compute=cpu" in info["weight_placement"]
        assert info["memory"]["weights_host_bytes"] > 0 and info["memory"]["weights_disk_bytes"] == 0


def test_cpu_stage_under_a_device_budget():
    path = MODELS / "llama_base"
    want_toks, want_lps, base = run(path, dtype="float32")
    resident = base["memory"]["weights_bytes"]
    toks, lps, info = run(path, dtype="float32", offload="auto", offload_compute="cpu",
                          gpu_memory_bytes=resident // 2 + resident // 4)
    assert toks == want_toks and lps == want_lps
    assert "computed on the CPU" in info["weight_placement"]


@pytest.mark.parametrize("gguf", ["tiny_llama_mixed.gguf", "tiny_llama.gguf"])
def test_cpu_stage_runs_gguf_files(gguf):
    path = DATA_DIR / "gguf" / gguf
    want = run(path)
    got = run(path, cpu_offload_gb=TINY, offload_compute="cpu")
    assert got[0] == want[0] and got[1] == want[1]
    assert "computed on the CPU" in got[2]["weight_placement"]


def test_cpu_stage_with_prefix_caching_and_preemption():
    # A KV pool of a few blocks: sequences are preempted and recomputed; shared prompts hit the
    # prefix cache; both stages see the same block tables.
    path = MODELS / "llama_base"
    kw = dict(dtype="float32", num_kv_blocks=24, enable_prefix_caching=True)
    want_toks, want_lps, _ = run(path, **kw)
    toks, lps, _ = run(path, offload_compute="cpu", cpu_offload_gb=TINY, **kw)
    assert toks == want_toks and lps == want_lps


def test_auto_streams_on_the_cpu_backend():
    toks, _, info = run(MODELS / "llama_base", dtype="float32", cpu_offload_gb=TINY, offload_compute="auto")
    assert "in pinned host memory" in info["weight_placement"]
    assert "offload_compute=auto on the CPU backend: streamed" in info["weight_placement"]
    # The default is auto.
    _, _, info = run(MODELS / "llama_base", dtype="float32", cpu_offload_gb=TINY)
    assert "streamed" in info["weight_placement"]


def test_stream_mode_streams():
    _, _, info = run(MODELS / "llama_base", dtype="float32", cpu_offload_gb=TINY, offload_compute="stream")
    assert "in pinned host memory" in info["weight_placement"] and "computed on the CPU" not in info["weight_placement"]


def test_without_offloading_the_mode_changes_nothing():
    _, _, info = run(MODELS / "llama_base", dtype="float32", offload_compute="cpu")
    assert "every layer" in info["weight_placement"]


def test_bad_values_and_combinations():
    path = MODELS / "llama_base"
    with pytest.raises(ValueError, match="offload_compute"):
        run(path, offload_compute="gpu")
    with pytest.raises(NotImplementedError, match="swap_space_gb"):
        run(path, dtype="float32", cpu_offload_gb=TINY, offload_compute="cpu", swap_space_gb=0.01)
    llm = eli.LLM(str(path), device="cpu", dtype="float32", skip_tokenizer_init=True, cpu_offload_gb=TINY,
                  offload_compute="cpu")
    try:
        with pytest.raises(NotImplementedError, match="embeddings"):
            llm.embed([[3, 4, 5]])
    finally:
        llm.shutdown()


def test_info_plan_reports_the_cpu_stage(capsys):
    path = str(MODELS / "llama_base")
    n = layers_of("llama_base")
    assert cli.main(["info", path, "--offline", "--plan", "--json", "--cpu-offload-gb", "1024",
                     "--offload-compute", "cpu"]) == 0
    plan = json.loads(capsys.readouterr().out)["placement"]
    assert plan["cpu_layers"] == plan["offloaded_layers"] == n - 1
    assert plan["placement"].startswith(f"layers 0-{n - 2} computed on the CPU")
    assert plan["host_bytes"] > 0 and plan["ring_bytes"] == 0


def test_offload_map_of_the_first_layers_runs_on_the_cpu():
    path = MODELS / "llama_base"
    want_toks, want_lps, _ = run(path, dtype="float32")
    toks, lps, info = run(path, dtype="float32", offload_map="0-1:host", offload_compute="cpu")
    assert toks == want_toks and lps == want_lps
    assert info["weight_placement"].startswith("layers 0-1 computed on the CPU")
    # Layers other than the first ones: the CPU stage cannot take them.
    with pytest.raises(ValueError, match="first layers"):
        run(path, dtype="float32", offload_map="1:host", offload_compute="cpu")
    _, _, info = run(path, dtype="float32", offload_map="1:host", offload_compute="stream")
    assert "layers 1 in pinned host memory" in info["weight_placement"]
