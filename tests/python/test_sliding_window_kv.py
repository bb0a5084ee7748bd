# tests/python/test_sliding_window_kv.py: sliding-window layers free their KV blocks as they fall
# out of the window (runtime/kv/kv_groups.h) without changing a token. Every tiny reference model
# with a window (Mistral-style all-sliding, Phi-3 mini style, Gemma 3's interleaved local / global
# layers) runs with blocks of 2 tokens and small prefill chunks, so that blocks leave the window
# during prefill and decode, with prefix caching on (a second identical request hits the cache),
# and must still give transformers' greedy tokens (reference.npz, scripts/make_references.py).
import json
import pathlib

import numpy as np
import pytest

import eli

MODELS_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "models"


def _windowed(d: pathlib.Path) -> bool:
    cfg = json.loads((d / "config.json").read_text())
    return bool(cfg.get("sliding_window")) and cfg.get("use_sliding_window", True) is not False


WINDOWED = sorted(p.parent for p in MODELS_DIR.glob("*/reference.npz") if _windowed(p.parent))


def _ids(arr) -> list[int]:
    return [int(t) for t in arr]


def test_windowed_models_present():
    names = {p.name for p in WINDOWED}
    assert {"gemma3", "mistral_sw_small", "phi3_sw"} <= names, names


@pytest.mark.parametrize("model_dir", WINDOWED, ids=[p.name for p in WINDOWED])
def test_greedy_with_blocks_leaving_the_window(model_dir):
    with np.load(model_dir / "reference.npz") as z:
        ref = {k: z[k] for k in z.files}
    llm = eli.LLM(str(model_dir), device="cpu", dtype="float32", block_size=2, max_num_batched_tokens=5,
                  num_kv_blocks=128, enable_prefix_caching=True)
    params = eli.SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True)
    p1, p2 = _ids(ref["greedy_prompt"]), _ids(ref["prompt2"])
    both = llm.generate([p1, p2], params)
    assert _ids(both[0].token_ids) == _ids(ref["greedy_tokens"])
    assert _ids(both[1].token_ids) == _ids(ref["greedy_tokens2"])
    # Again: the prompts' blocks are prefix-cache hits now (where the window's blocks survived).
    again = llm.generate([p1, p2], params)
    assert [_ids(o.token_ids) for o in again] == [_ids(o.token_ids) for o in both]
    stats = llm.stats()
    assert stats["kv_blocks_free"] == stats["kv_blocks_total"]  # everything returned
    info = llm.info
    if info["num_kv_window_blocks"]:
        assert stats["kv_window_blocks_free"] == stats["kv_window_blocks_total"]


def test_mixed_model_sizes_the_window_pool_by_the_window():
    d = MODELS_DIR / "gemma3"
    llm = eli.LLM(str(d), device="cpu", dtype="float32", block_size=2, max_num_seqs=4, max_num_batched_tokens=8,
                  num_kv_blocks=500)
    info = llm.info
    # Window 6 in blocks of 2: per sequence (6 - 1) / 2 rounded up + 2, for 4 sequences, plus twice
    # a step's 8 tokens: far fewer than the global layers' 500.
    assert info["num_kv_blocks"] == 500
    assert info["num_kv_window_blocks"] == 4 * (3 + 2) + 2 * 4
