#!/usr/bin/env python3
# bench/gpu/bench_coldstart.py: cold start = wall time from starting a process to its first
# generated token, with the weight files already in the page cache (read once first; the read rate
# is recorded, so a slow one shows the files were not cached).
#   eli      python3 -c: import eli; eli.LLM(dir, device, bfloat16); generate 1 token from a 4-token
#            id prompt; prints a marker: the time to that line is the figure (the child's own
#            import / load / generate split is recorded too). The process then exits (not timed).
#   eli-cli  `python3 -m eli generate -m DIR --device cuda --dtype bfloat16 -n 1 --raw -q --offline
#            Hello`: start to exit (it includes tokenizing and the shutdown).
#   hf       python3 -c: import torch, transformers; from_pretrained(dir, bf16, device_map=cuda);
#            generate 1 token; marker as for eli.
#   llama.cpp  `llama-bench -p 16 -n 1 -r 1 --no-warmup`: start to exit (load, one 16-token prompt,
#            one token; it has no "first token" marker).
# One untimed run per engine first, then --reps timed runs; median.
#   usage: bench_coldstart.py --shape 8b --hf-dir DIR --gguf FILE --bin DIR --out FILE
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402

ELI_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import eli
from eli.sampling_params import SamplingParams
t1 = time.perf_counter()
llm = eli.LLM(sys.argv[1], device=sys.argv[2], dtype="bfloat16", download=False, progress=False)
t2 = time.perf_counter()
out = llm.generate([[1, 2, 3, 4]], SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True))
t3 = time.perf_counter()
assert len(out[0].token_ids) == 1, out
print("FIRST_TOKEN " + json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2}), flush=True)
llm.shutdown()
"""

HF_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, transformers
t1 = time.perf_counter()
m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16, device_map=sys.argv[2])
t2 = time.perf_counter()
ids = torch.tensor([[1, 2, 3, 4]], device=sys.argv[2])
with torch.inference_mode():
    out = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False, pad_token_id=0)
torch.cuda.synchronize() if sys.argv[2].startswith("cuda") else None
t3 = time.perf_counter()
print("FIRST_TOKEN " + json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2}), flush=True)
"""


def run_marker(cmd: list[str], timeout: float, env: dict, marker: bool) -> tuple[float, dict, float, str]:
    """Starts cmd; returns (seconds to its FIRST_TOKEN line (to its exit when not `marker`), the
    line's payload, seconds to exit, output tail)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    t_mark, payload, lines = None, {}, []
    try:
        deadline = t0 + timeout
        for line in p.stdout:  # type: ignore[union-attr]
            if line.startswith("FIRST_TOKEN ") and t_mark is None:
                t_mark = time.perf_counter() - t0
                payload = json.loads(line[len("FIRST_TOKEN "):])
            else:
                lines.append(line)
                lines = lines[-40:]
            if time.perf_counter() > deadline:
                raise subprocess.TimeoutExpired(cmd, timeout)
        p.wait(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise RuntimeError(f"timed out after {timeout} s: {''.join(lines)[-1500:]}")
    t_exit = time.perf_counter() - t0
    if p.returncode != 0 or (marker and t_mark is None):
        raise RuntimeError(f"rc {p.returncode}: {''.join(lines)[-1500:]}")
    return (t_mark if t_mark is not None else t_exit), payload, t_exit, "".join(lines)[-500:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True)
    ap.add_argument("--hf-dir", required=True)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--bin", default=None)
    ap.add_argument("--engines", default="eli,eli-cli,hf,llama.cpp")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout-s", type=float, default=180.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    short = common.SHORT[common.shape_name(args.shape)]
    res = common.Results(args.out, f"coldstart_{short}")
    files = [args.hf_dir] + ([args.gguf] if args.gguf else [])
    for f in files:
        try:
            first = common.page_cache_read([f])
            second = common.page_cache_read([f])
            res.info(**{f"page_cache_{pathlib.Path(f).name}": {"first_read": first, "second_read": second}})
        except Exception as e:  # noqa: BLE001
            res.error(f"page cache read {f}", e)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    cmds = {
        "eli": ([sys.executable, "-c", ELI_CHILD, args.hf_dir, args.device], True),
        "eli-cli": ([sys.executable, "-m", "eli", "generate", "-m", args.hf_dir, "--device", args.device.split(":")[0],
                     "--dtype", "bfloat16", "-n", "1", "--raw", "-q", "--offline", "--ignore-eos", "Hello"], False),
        "hf": ([sys.executable, "-c", HF_CHILD, args.hf_dir, args.device], True),
    }
    if args.bin and args.gguf:
        cmds["llama.cpp"] = ([str(pathlib.Path(args.bin) / "llama-bench"), "-m", args.gguf, "-ngl", "99", "-fa", "1",
                              "-p", "16", "-n", "1", "-r", "1", "--no-warmup", "-o", "jsonl"], False)
    rc = 0
    for eng in engines:
        if eng not in cmds:
            res.error(eng, "not available (no llama.cpp build or GGUF given)")
            continue
        cmd, marker = cmds[eng]
        try:
            samples, payloads, exits = [], [], []
            run_marker(cmd, args.timeout_s, env, marker)  # untimed: warms the driver, caches, page cache
            for _ in range(args.reps):
                t, payload, t_exit, _ = run_marker(cmd, args.timeout_s, env, marker)
                samples.append(t)
                payloads.append({k: round(v, 3) for k, v in payload.items()})
                exits.append(round(t_exit, 3))
            what = "process start to first token" if marker else "process start to exit"
            res.add(common.record(eng, args.shape, "coldstart_s", samples, "s", measures=what,
                                  child_split=payloads, exit_s=exits, command=" ".join(c if len(c) < 200 else "<script>"
                                                                                         for c in cmd)))
        except Exception as e:  # noqa: BLE001
            rc = 1
            res.error(eng, e)
    res.done()
    return rc


if __name__ == "__main__":
    sys.exit(main())
