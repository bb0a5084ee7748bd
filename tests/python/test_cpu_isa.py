# tests/python/test_cpu_isa.py: the ELI_CPU_ISA switch (kernels/cpu/cpu_features.h) seen from
# Python, in fresh processes (the CPU features are probed once per process): the kernel registry
# marks the variants above the cap unusable, so it picks the capped one; a cap never adds what the
# CPU lacks; a bad value is a clear error; a capped engine generates the same greedy tokens.
import json
import os
import pathlib
import subprocess
import sys

import pytest

from testdata import DATA_DIR

PROBE = r"""
import json, eli._eli as m
best = {}
for op, dev, dtype, variant, prio, usable in m.list_kernels():
    if dev == "cpu" and dtype == "f32" and usable and prio > best.get(op, ("", -1))[1]:
        best[op] = (variant, prio)
print(json.dumps({op: v for op, (v, _) in best.items()}))
"""


def cpu_flags():
    text = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def hardware_best():
    f = cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma", "f16c"} <= f:
        return "avx512"
    if {"avx2", "fma", "f16c"} <= f:
        return "avx2"
    return "generic"


def run(code, isa):
    env = dict(os.environ)
    env.pop("ELI_CPU_NO_SIMD", None)
    if isa is None:
        env.pop("ELI_CPU_ISA", None)
    else:
        env["ELI_CPU_ISA"] = isa
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def best_variants(isa):
    r = run(PROBE, isa)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


ORDER = ["generic", "avx2", "avx512"]


@pytest.mark.skipif(not cpu_flags(), reason="needs /proc/cpuinfo (Linux)")
@pytest.mark.parametrize("isa", [None, "native", "avx512", "avx2", "generic"])
def test_registry_picks_the_capped_variant(isa):
    hw = hardware_best()
    cap = "avx512" if isa in (None, "native") else isa
    want = ORDER[min(ORDER.index(cap), ORDER.index(hw))]
    best = best_variants(isa)
    for op in ("gemm", "attention", "norm_cast"):
        assert best.get(op) == want, (op, best, isa, hw)


def test_bad_value_is_a_clear_error():
    r = run(PROBE, "sse9")
    assert r.returncode != 0
    assert "ELI_CPU_ISA=sse9" in r.stderr and "generic, avx2 or avx512" in r.stderr, r.stderr


def test_capped_engine_generates_the_same_tokens():
    code = (
        "import eli; llm = eli.LLM(%r, device='cpu', dtype='float32', n_threads=2);"
        "p = eli.SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True);"
        "print(llm.generate([[5, 6, 7, 8, 9]], p)[0].token_ids)" % str(DATA_DIR / "models" / "llama_base")
    )
    outs = {}
    for isa in ("generic", None):
        r = run(code, isa)
        assert r.returncode == 0, r.stderr
        outs[isa] = r.stdout.strip().splitlines()[-1]
    assert outs["generic"] == outs[None], outs
