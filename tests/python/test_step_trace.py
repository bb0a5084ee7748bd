# tests/python/test_step_trace.py: ELI_STEP_TRACE=1 (runtime/engine/step_trace.h) prints one summary
# per burst of work on stderr, decode and prefill steps apart, with step counts that match what the
# engine ran; without the variable the engine prints nothing. Runs in a subprocess (the variable is
# read when an engine is built, and the summary is printed from C++ to the process's stderr).
import os
import re
import subprocess
import sys

from testdata import DATA_DIR

MODEL = str(DATA_DIR / "models" / "llama_base")

SCRIPT = f"""
import eli
llm = eli.LLM({MODEL!r}, device="cpu", dtype="float32", num_kv_blocks=64, progress=False)
p = eli.SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
llm.generate([[3, 4, 5, 6], [7, 8]], p)          # burst 0: one prefill step, then 4 decode steps
llm.generate([[9, 10, 11]], p)                    # burst 1
llm.shutdown()
"""


def _run(trace):
    env = dict(os.environ)
    env.pop("ELI_STEP_TRACE", None)
    if trace is not None:
        env["ELI_STEP_TRACE"] = trace
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_step_trace_prints_one_summary_per_burst():
    err = _run("1")
    lines = [l for l in err.splitlines() if "eli step trace" in l]
    kinds = [(int(m.group(1)), m.group(2), int(m.group(3)))
             for m in (re.search(r"trace #(\d+) (\w+)\s*:\s+(\d+) steps", l) for l in lines) if m]
    # Each burst: its prompts in one prefill step, then max_tokens - 1 decode steps.
    assert (0, "decode", 4) in kinds and (0, "prefill", 1) in kinds, err
    assert (1, "decode", 4) in kinds and (1, "prefill", 1) in kinds, err
    assert all("schedule" in l and "wait" in l and "gap" in l for l in lines)


def test_step_trace_is_silent_when_off():
    for value in (None, "0", ""):
        assert "step trace" not in _run(value)
