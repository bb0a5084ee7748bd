#!/usr/bin/env python3
# bench/gpu/parallel_bench.py: prefill and decode throughput of tensor / pipeline parallel layouts
# through the public API (eli.LLM), one layout per subprocess, records with `tp` and `pp` keys.
#
# What is measured (per layout, median over --reps after one warm-up):
#   prefill tok/s = batch * prompt_len / time of `batch` concurrent requests generating 1 token;
#   decode tok/s  = batch * (gen_len - 1) / (time of the same with gen_len tokens - that time).
# Layouts: --layouts "1x1,2x1,4x1,8x1,1x2,1x4" (tp x pp); a layout needing more GPUs than are
# visible is recorded as skipped, not run. On one GPU only 1x1 runs (the dry run that shows the
# script works), unless --share-gpu puts every rank on cuda:0 (ranks sharing one GPU through eli's
# peer communicator: it shows the sharded path runs, and is slower than 1x1 by design); on the CPU (--device cpu) every layout runs with ranks as threads (a correctness
# smoke, not a speed claim). Model: --model (a local path or hub id); for the 8B / 70B shapes, a
# checkpoint with random weights written once per host (--model pointing at it).
#
# Output: a table and JSON in bench/results/<date>_parallel_<device>.json, one record per layout:
# {"tp", "pp", "device", "devices", "model", "dtype", "batch", "prompt_len", "gen_len", "prefill_tok_s",
#  "decode_tok_s"}.
# Usage: PYTHONPATH=python python bench/gpu/parallel_bench.py --model PATH [--device cuda]
#        [--layouts 1x1,2x1] [--batch 8] [--prompt-len 512] [--gen-len 64] [--reps 3] [--share-gpu]
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def devices_for(args: argparse.Namespace, world: int) -> str:
    """The devices option: every rank on cuda:0 with --share-gpu, else the default (one GPU per rank)."""
    if args.share_gpu and args.device.startswith("cuda") and world > 1:
        return ",".join(["cuda:0"] * world)
    return ""


def run_layout(args: argparse.Namespace, tp: int, pp: int) -> dict:
    import numpy as np

    import eli

    devices = devices_for(args, tp * pp)
    llm = eli.LLM(args.model, device=args.device, dtype=args.dtype, tensor_parallel_size=tp,
                  pipeline_parallel_size=pp, devices=devices, max_num_seqs=max(args.batch, 1), progress=False)
    vocab = llm.info["spec"]["vocab_size"]
    one = eli.SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
    full = eli.SamplingParams(max_tokens=args.gen_len, temperature=0.0, ignore_eos=True)
    prefill, decode = [], []
    for rep in range(args.reps + 1):
        rng = np.random.default_rng(rep)
        prompts = [[int(t) for t in rng.integers(0, vocab, size=args.prompt_len)] for _ in range(args.batch)]
        fresh = [[(t + 1) % vocab for t in p] for p in prompts]  # no prefix-cache hits on the second run
        t0 = time.perf_counter()
        llm.generate(prompts, one)
        t1 = time.perf_counter()
        llm.generate(fresh, full)
        t2 = time.perf_counter()
        if rep == 0:
            continue  # warm-up
        prefill.append(args.batch * args.prompt_len / (t1 - t0))
        decode.append(args.batch * (args.gen_len - 1) / max((t2 - t1) - (t1 - t0), 1e-9))
    llm.shutdown()
    return {"tp": tp, "pp": pp, "device": args.device, "devices": devices, "model": args.model,
            "dtype": args.dtype, "batch": args.batch,
            "prompt_len": args.prompt_len, "gen_len": args.gen_len,
            "prefill_tok_s": statistics.median(prefill), "decode_tok_s": statistics.median(decode)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--layouts", default="1x1,2x1,4x1,8x1,1x2,1x4")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--share-gpu", action="store_true", help="every rank on cuda:0 (a functional dry run)")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: run one layout, print JSON
    args = ap.parse_args()
    if args.one:
        tp, pp = (int(x) for x in args.one.split("x"))
        print(json.dumps(run_layout(args, tp, pp)))
        return
    import eli

    gpus = eli.cuda_device_count() if args.device.startswith("cuda") and not args.share_gpu else 1 << 30
    records = []
    for layout in args.layouts.split(","):
        tp, pp = (int(x) for x in layout.split("x"))
        if tp * pp > gpus:
            records.append({"tp": tp, "pp": pp, "device": args.device, "skipped": f"needs {tp * pp} GPUs, {gpus} visible"})
            continue
        cmd = [sys.executable, __file__] + sys.argv[1:] + ["--one", layout]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            records.append({"tp": tp, "pp": pp, "device": args.device, "error": p.stderr.strip().splitlines()[-1:]})
            continue
        records.append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(f"{'tp':>3} {'pp':>3} {'prefill tok/s':>14} {'decode tok/s':>13}")
    for r in records:
        if "prefill_tok_s" in r:
            print(f"{r['tp']:>3} {r['pp']:>3} {r['prefill_tok_s']:>14.1f} {r['decode_tok_s']:>13.1f}")
        else:
            print(f"{r['tp']:>3} {r['pp']:>3} {r.get('skipped') or r.get('error')}")
    out = ROOT / "bench" / "results" / f"{datetime.date.today()}_parallel_{args.device.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
