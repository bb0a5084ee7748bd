# tests/python/test_parallel.py: tensor / pipeline parallelism through the public Python API on the
# CPU (ranks are threads joined by the in-process communicator): eli.LLM and eli.AsyncLLM take
# tensor_parallel_size / pipeline_parallel_size / devices; TP 2, PP 2 and TP 2 x PP 2 give
# TP 1's greedy tokens and logits within 1e-5 of each row's scale on Llama, Qwen3, Phi-3 and
# Gemma 3 tiny checkpoints with many concurrent requests in a tiny KV pool; bad layouts are
# ValueErrors naming the numbers; the CLI has the flags.
import asyncio
import os

import numpy as np
import pytest

import eli

MODELS = ["llama_base", "qwen3", "phi3", "gemma3"]
LAYOUTS = [(2, 1), (1, 2), (2, 2)]


def make(model_dir, tp=1, pp=1, **kw):
    return eli.LLM(model_dir, device="cpu", dtype="float32", n_threads=2, block_size=4, num_kv_blocks=14,
                   max_num_seqs=4, max_num_batched_tokens=24, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                   seed=1, progress=False, **kw)


PROMPTS = [[3, 14, 15, 92, 65, 35, 89, 79] + [(7 * i + j) % 200 + 1 for j in range(i + 1)] for i in range(6)]
GREEDY = eli.SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)


def run(m):
    outs = m.generate(PROMPTS, GREEDY)
    tokens = [o.outputs[0].token_ids for o in outs]
    scored = m.score(PROMPTS[5] + tokens[5])
    return tokens, scored, m.stats()


@pytest.mark.parametrize("model", MODELS)
def test_layouts_match_one_rank(data_dir, model):
    model_dir = str(data_dir / "models" / model)
    with make(model_dir) as m:
        ref_tokens, ref_scored, ref_stats = run(m)
    assert ref_stats["preemptions"] > 0  # the tiny pool preempts: the parallel runs must too
    for tp, pp in LAYOUTS:
        with make(model_dir, tp, pp) as m:
            tokens, scored, stats = run(m)
        assert tokens == ref_tokens, (model, tp, pp)
        assert stats["preemptions"] == ref_stats["preemptions"]
        scale = np.abs(ref_scored).max(axis=1, keepdims=True)
        assert np.all(np.abs(scored - ref_scored) <= 1e-5 * scale + 1e-6), (model, tp, pp)


def test_async_llm_with_tensor_parallelism(data_dir):
    model_dir = str(data_dir / "models" / "qwen3")
    with make(model_dir) as m:
        want = [o.outputs[0].token_ids for o in m.generate(PROMPTS[:2], GREEDY)]

    async def go():
        engine = eli.AsyncLLM(model_dir, device="cpu", dtype="float32", n_threads=2, tensor_parallel_size=2,
                              num_kv_blocks=64, block_size=4, progress=False)
        try:
            got = []
            for p in PROMPTS[:2]:
                last = None
                async for out in engine.generate(p, GREEDY):
                    last = out
                got.append(last.outputs[0].token_ids)
            return got
        finally:
            engine.shutdown()

    assert asyncio.run(go()) == want


@pytest.mark.parametrize("kw, match", [
    ({"tensor_parallel_size": 7}, "more ranks than the model's 6 attention heads"),
    ({"pipeline_parallel_size": 4}, "more stages than the model's 3 layers"),
    ({"tensor_parallel_size": 2, "devices": "cuda:0,1,2"}, "devices"),
    ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
])
def test_bad_layouts_are_value_errors(data_dir, kw, match):
    with pytest.raises(ValueError, match=match):
        eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu", dtype="float32", n_threads=1,
                num_kv_blocks=16, progress=False, **kw)


def test_cli_has_the_flags():
    import argparse

    from eli import engine_options

    parser = argparse.ArgumentParser()
    engine_options.add_cli_arguments(parser.add_argument_group("model"), parser.add_argument_group("engine"))
    args = parser.parse_args(["--tensor-parallel-size", "2", "--pipeline-parallel-size", "3", "--devices", "cuda:0,1"])
    kw = engine_options.cli_kwargs(args)
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"], kw["devices"]) == (2, 3, "cuda:0,1")


@pytest.mark.parametrize("devices,sets", [("cuda:0,0", True), ("cuda:0,cuda:0", True), ("cuda:0,1,0,1", True),
                                          ("cuda:0,1", False), ("cuda:0,cuda:1,cuda:2", False), ("", False),
                                          ("cpu", False)])
def test_ranks_sharing_a_gpu_ask_for_eager_kernel_loading(monkeypatch, devices, sets):
    # Ranks sharing a GPU need CUDA_MODULE_LOADING=EAGER (docs/parallelism.md); eli.LLM sets it
    # when unset, before CUDA starts, and never overrides the caller's choice.
    from eli.llm import _eager_loading_for_shared_gpus

    monkeypatch.delenv("CUDA_MODULE_LOADING", raising=False)
    _eager_loading_for_shared_gpus(devices)
    assert (os.environ.get("CUDA_MODULE_LOADING") == "EAGER") == sets
    monkeypatch.setenv("CUDA_MODULE_LOADING", "LAZY")
    _eager_loading_for_shared_gpus(devices)
    assert os.environ["CUDA_MODULE_LOADING"] == "LAZY"
