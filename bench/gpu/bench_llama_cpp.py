#!/usr/bin/env python3
# bench/gpu/bench_llama_cpp.py: llama.cpp (built on the device from peers/llama.cpp, CUDA, flash
# attention on, all layers on the GPU) on the GGUF of the same random weights, through its own
# benchmark tools, parsed from their JSON lines:
#   prefill: llama-bench -p 512,2048 -n 0 -r R            -> prefill_tok_s at T (pp T from an empty cache)
#   decode:  llama-bench -p 0 -n 128 -d 0,128,4096 -r R   -> decode_tok_s at depth d: 128 tokens after a
#            context of d tokens (d = 128 and 4096 match bench_eli's contexts; d = 0 is llama-bench's
#            default tg128, for comparison with published figures)
#   batched: llama-batched-bench -npp 512 -ntg 256 -npl 1,16,64 (bench_throughput.py uses it)
# Every figure is the median over llama-bench's samples (its samples_ns), not its mean.
#   usage: bench_llama_cpp.py --bin DIR --gguf FILE --shape 8b --out FILE [--what prefill,decode]
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402


def run_jsonl(cmd: list[str], timeout: float, log_path: pathlib.Path | None) -> tuple[int, list[dict], str]:
    common.log("  $ " + " ".join(cmd))
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc = 124
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    if log_path is not None:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n# rc {rc}, {time.perf_counter() - t0:.1f} s\n--- stdout\n{out}\n--- stderr\n{err}\n")
    rows = []
    for line in (out + "\n" + err).splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rc, rows, err[-3000:]


def bench_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "n_prompt" in r and "samples_ns" in r]


def rates(row: dict) -> list[float]:
    n = row["n_prompt"] + row["n_gen"]
    return [n / (ns / 1e9) for ns in row.get("samples_ns", []) if ns > 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="folder with llama-bench and llama-batched-bench")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--shape", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--what", default="prefill,decode")
    ap.add_argument("--prefill-lens", default="512,2048")
    ap.add_argument("--depths", default="0,128,4096")
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ngl", default="99")
    ap.add_argument("--fa", default="1")
    ap.add_argument("--timeout-s", type=float, default=240.0)
    ap.add_argument("--log", default=None, help="append the tools' full output here")
    args = ap.parse_args()
    short = common.SHORT[common.shape_name(args.shape)]
    res = common.Results(args.out, f"llama.cpp_{short}", engine="llama.cpp", gguf=args.gguf)
    binp = pathlib.Path(args.bin)
    bench = binp / "llama-bench"
    log_path = pathlib.Path(args.log) if args.log else None
    if not bench.is_file():
        res.error("setup", f"{bench} not found (llama.cpp not built?)")
        res.done()
        return 1
    what = {w.strip() for w in args.what.split(",") if w.strip()}
    base = [str(bench), "-m", args.gguf, "-ngl", args.ngl, "-fa", args.fa, "-o", "jsonl", "-r", str(args.reps)]
    n_fail = 0
    meta_done = False
    jobs = []
    if "prefill" in what:
        jobs.append(("prefill", base + ["-p", args.prefill_lens, "-n", "0"]))
    if "decode" in what:
        jobs.append(("decode", base + ["-p", "0", "-n", str(args.decode_tokens), "-d", args.depths]))
    for kind, cmd in jobs:
        rc, rows, err = run_jsonl(cmd, args.timeout_s, log_path)
        rows = bench_rows(rows)
        if rc != 0 or not rows:
            n_fail += 1
            res.error(kind, f"llama-bench rc {rc}, {len(rows)} rows; stderr tail: {err[-1500:]}")
        for r in rows:
            if not meta_done:
                res.info(llama_cpp={k: r.get(k) for k in ("build_commit", "build_number", "cpu_info", "gpu_info",
                                                          "backends", "model_type", "model_size", "model_n_params",
                                                          "n_batch", "n_ubatch", "type_k", "type_v", "flash_attn",
                                                          "n_gpu_layers")})
                meta_done = True
            samples = rates(r)
            extra = {"llama_bench_avg_ts": r.get("avg_ts"), "llama_bench_stddev_ts": r.get("stddev_ts"),
                     "n_depth": r.get("n_depth", 0)}
            if r["n_gen"] == 0:
                res.add(common.record("llama.cpp", args.shape, "prefill_tok_s", samples, "tok/s", batch=1,
                                      prompt_len=r["n_prompt"], gen_len=1, **extra))
            else:
                d = r.get("n_depth", 0)
                res.add(common.record("llama.cpp", args.shape, "decode_tok_s", samples, "tok/s", batch=1,
                                      prompt_len=d, gen_len=r["n_gen"],
                                      mean_context=common.mean_decode_context(d, r["n_gen"]), **extra))
    res.done()
    return 0 if n_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
