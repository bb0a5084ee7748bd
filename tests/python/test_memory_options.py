# tests/python/test_memory_options.py: the memory keywords of eli.LLM / eli.AsyncLLM
# (gpu_memory_utilization, gpu_memory_bytes, kv_cache_dtype) and their CLI flags: bad values fail
# before any model is resolved, with the keyword in the message; the engine reports its plan in
# info["kv_cache_dtype"] and info["memory"]; bfloat16 KV on the CPU is a typed error. CPU only
# (the GPU side is tests/cpp/test_cuda_engine_memory.cc).
import math

import pytest

import eli
from eli import cli

MISSING = "/nonexistent/eli-model-dir"  # never reached: validation comes first


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gpu_memory_utilization=0.0), "gpu_memory_utilization"),
        (dict(gpu_memory_utilization=-0.2), "gpu_memory_utilization"),
        (dict(gpu_memory_utilization=1.01), "gpu_memory_utilization"),
        (dict(gpu_memory_utilization=math.nan), "gpu_memory_utilization"),
        (dict(gpu_memory_utilization=math.inf), "gpu_memory_utilization"),
        (dict(gpu_memory_utilization="0.5"), "gpu_memory_utilization"),
        (dict(gpu_memory_utilization=True), "gpu_memory_utilization"),
        (dict(gpu_memory_bytes=(1 << 50) + 1), "gpu_memory_bytes"),
        (dict(gpu_memory_bytes=-1), "gpu_memory_bytes"),
        (dict(gpu_memory_bytes=1.5e9), "gpu_memory_bytes"),
        (dict(gpu_memory_bytes=2**64), "gpu_memory_bytes"),
        (dict(kv_cache_dtype="int4"), "kv_cache_dtype"),  # int8 / fp8 are valid: test_kv_quant.py
        (dict(kv_cache_dtype=None), "kv_cache_dtype"),
    ],
)
def test_bad_memory_kwargs_rejected_before_loading(kwargs, match):
    with pytest.raises(eli.InvalidRequestError, match=match):
        eli.LLM(MISSING, device="cpu", download=False, **kwargs)


def test_memory_kwargs_reach_the_engine_and_info(data_dir):
    llm = eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu", dtype="float32", num_kv_blocks=32,
                  block_size=4, gpu_memory_utilization=0.5, gpu_memory_bytes=1 << 30, kv_cache_dtype="float32",
                  progress=False)
    try:
        info = llm.info
        assert info["kv_cache_dtype"] == "f32"
        mem = info["memory"]
        assert set(mem) == {"budget_bytes", "total_bytes", "weights_bytes", "workspace_bytes", "kv_bytes",
                            "headroom_bytes", "weights_host_bytes", "weights_disk_bytes"}
        assert mem["weights_host_bytes"] == mem["weights_disk_bytes"] == 0  # nothing offloaded
        spec = info["spec"]
        per_block = 4 * spec["num_kv_heads"] * spec["head_dim"] * 4 * 2 * spec["num_layers"]
        assert mem["kv_bytes"] == 32 * per_block
        assert mem["budget_bytes"] == 0  # the CPU has no budget
        assert mem["total_bytes"] > 0
        out = llm.generate([[1, 2, 3]], eli.SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True))
        assert len(out[0].token_ids) == 2
    finally:
        llm.shutdown()


def test_bfloat16_kv_on_cpu_is_unsupported(data_dir):
    with pytest.raises(eli.UnsupportedError, match="kv_cache_dtype bfloat16"):
        eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu", kv_cache_dtype="bfloat16", progress=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--gpu-memory-utilization", "0", "hi"],
        ["generate", "--gpu-memory-utilization", "1.5", "hi"],
        ["generate", "--gpu-memory-utilization", "most", "hi"],
        ["chat", "--kv-cache-dtype", "int4"],
        ["serve", "--gpu-memory-utilization", "-1"],
    ],
)
def test_cli_memory_flags_usage_errors(argv, capsys):
    assert cli.main(argv) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("sub", ["generate", "chat", "serve"])
def test_cli_memory_flags_in_help(sub, capsys):
    assert cli.main([sub, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--gpu-memory-utilization" in out and "--kv-cache-dtype" in out


def test_cli_passes_memory_flags_only_when_given():
    args = cli.build_parser().parse_args(["generate", "--gpu-memory-utilization", "0.7", "--kv-cache-dtype",
                                          "bfloat16", "hi"])
    assert cli._memory_kwargs(args) == {"gpu_memory_utilization": 0.7, "kv_cache_dtype": "bfloat16"}
    args = cli.build_parser().parse_args(["generate", "hi"])
    assert cli._memory_kwargs(args) == {}
