# tests/python/test_parallel_gpu.py: tensor parallel ranks sharing one GPU through the public API
# (marked `gpu`: run on the GPU machine). Each case runs in a child process, because CUDA reads
# CUDA_MODULE_LOADING once, when it starts: with lazy loading asked for, eli.LLM refuses ranks
# sharing a GPU with an UnsupportedError naming the variable (a lazy kernel load would deadlock
# against a peer rank's waiting kernel: runtime/comm/peer_communicator.h); with eager loading, or
# the variable unset (eli.LLM then sets it before CUDA starts), TP 2 on cuda:0,cuda:0 gives TP 1's
# greedy tokens and logits within 2e-4 of each row's scale on the same GPU.
import json
import os
import subprocess
import sys

import pytest

from testdata import DATA_DIR

pytestmark = pytest.mark.gpu

MODEL = str(DATA_DIR / "models" / "qwen3")

CHILD = r"""
import json, sys
import numpy as np
import eli
model = sys.argv[1]
prompts = [[3, 14, 15, 92, 65, 35, 89, 79] + [(7 * i + j) % 200 + 1 for j in range(i + 1)] for i in range(4)]
greedy = eli.SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
def run(**kw):
    with eli.LLM(model, device="cuda", dtype="float32", seed=1, progress=False, **kw) as m:
        toks = [o.outputs[0].token_ids for o in m.generate(prompts, greedy)]
        return toks, np.asarray(m.score(prompts[3] + toks[3]), dtype=np.float32)
try:
    # TP 2 first: a fresh process's first steps (code loading) are the ranks' own.
    got = run(tensor_parallel_size=2, devices="cuda:0,cuda:0")
    ref = run()
    scale = np.abs(ref[1]).max(axis=1, keepdims=True)
    worst = float((np.abs(got[1] - ref[1]) / (scale + 1e-6)).max())
    print(json.dumps({"ok": True, "ref": ref[0], "got": got[0], "worst": worst}))
except eli.UnsupportedError as e:
    print(json.dumps({"ok": False, "type": "UnsupportedError", "message": str(e)}))
"""


def _child(loading):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_MODULE_LOADING"}
    if loading is not None:
        env["CUDA_MODULE_LOADING"] = loading
    r = subprocess.run([sys.executable, "-c", CHILD, MODEL], env=env, capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_lazy_loading_refuses_ranks_sharing_a_gpu():
    out = _child("LAZY")
    assert not out["ok"], out
    assert out["type"] == "UnsupportedError"
    assert "CUDA_MODULE_LOADING=EAGER" in out["message"] and "cuda:0" in out["message"]


@pytest.mark.parametrize("loading", ["EAGER", None])
def test_eager_loading_runs_tp2_on_one_gpu_like_tp1(loading):
    # None: the variable unset, so eli.LLM sets it itself before CUDA starts in the child.
    out = _child(loading)
    assert out["ok"], out
    assert out["got"] == out["ref"]
    assert out["worst"] < 2e-4, out["worst"]
