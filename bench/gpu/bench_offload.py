#!/usr/bin/env python3
# bench/gpu/bench_offload.py: weight offloading on one GPU against the bound its copies set, in one
# run (issue "Offloading", docs/offloading.md):
#   1. bandwidths: pinned and pageable host-to-device copies (cupy; 256 MiB x 8), and the disk's
#      sequential read of the model file with its pages dropped from the cache first (64 MiB preads);
#   2. decode: eli.LLM on a model directory (random bf16 weights from bench/gpu/make_weights.py) in
#      configurations, each in its own process: resident (the baseline), offload="auto" under
#      gpu_memory_bytes (the rest in pinned host memory), and the same with cpu_memory_bytes small
#      enough that layers are read from the file (ELI_OFFLOAD_DROP_CACHE=1: really from the disk),
#      the same budget with offload_compute="cpu" (the host CPU computes the offloaded layers) and
#      with "auto" (the planner's pick);
#      per batch size, the decode step time is (time of 4 + N tokens - time of 4 tokens) / N.
#   bound of a step = (host + file bytes streamed) / pinned H2D bandwidth, and for file-tier runs at
#   least file bytes / disk bandwidth; fraction = bound / measured step time.
# Prints a table; writes JSON records (metric offload_decode_fraction_of_bound, with tok/s,
# gpu_memory_bytes, the tier bytes, dtype, card) to --out.
#   usage: bench_offload.py MODEL_DIR [--gpu-gib 8] [--host-gib 4] [--batches 1,32,128] [--tokens 16]
#          [--out offload.json] [--skip resident,disk]
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CHILD = r"""
import json, os, random, sys, time
import eli
cfg = json.loads(sys.argv[1])
opts = cfg["options"]
llm = eli.LLM(cfg["model"], device="cuda", skip_tokenizer_init=True, max_model_len=512, **opts)
rng = random.Random(0)
out = {"info": {"memory": llm.info["memory"], "weight_placement": llm.info["weight_placement"]}, "steps": {}}
for b in cfg["batches"]:
    prompts = [{"prompt_token_ids": [rng.randrange(10, 1000) for _ in range(32)]} for _ in range(b)]
    def timed(n):
        p = eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)
        t0 = time.perf_counter()
        llm.generate(prompts, p)
        return time.perf_counter() - t0
    timed(2)  # warm-up: graphs, cuBLASLt plans
    short, long_ = timed(4), timed(4 + cfg["tokens"])
    out["steps"][str(b)] = (long_ - short) / cfg["tokens"]
llm.shutdown()
print("RESULT " + json.dumps(out))
"""


def bandwidths(model_file: str) -> dict:
    out = {}
    try:
        import cupy as cp
        n = 256 << 20
        dev = cp.empty(n, dtype=cp.uint8)
        pinned = cp.cuda.alloc_pinned_memory(n)
        pageable = bytearray(n)
        stream = cp.cuda.Stream(non_blocking=True)
        for name, src in (("h2d_pinned_gbps", pinned.ptr), ("h2d_pageable_gbps", None)):
            ptr = src
            if ptr is None:
                import ctypes
                ptr = ctypes.addressof(ctypes.c_char.from_buffer(pageable))
            for _ in range(2):
                cp.cuda.runtime.memcpyAsync(dev.data.ptr, ptr, n, cp.cuda.runtime.memcpyHostToDevice, stream.ptr)
            stream.synchronize()
            t0 = time.perf_counter()
            for _ in range(8):
                cp.cuda.runtime.memcpyAsync(dev.data.ptr, ptr, n, cp.cuda.runtime.memcpyHostToDevice, stream.ptr)
            stream.synchronize()
            out[name] = 8 * n / (time.perf_counter() - t0) / 1e9
        del dev
        cp.get_default_memory_pool().free_all_blocks()
    except Exception as e:  # no cupy: the bound cannot be computed
        out["h2d_error"] = repr(e)
    fd = os.open(model_file, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        chunk, total, off = 64 << 20, min(size, 4 << 30), 0
        t0 = time.perf_counter()
        while off < total:
            b = os.pread(fd, chunk, off)
            if not b:
                break
            off += len(b)
        out["disk_read_gbps"] = off / (time.perf_counter() - t0) / 1e9
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return out


def run_config(model: str, options: dict, batches: list[int], tokens: int, env: dict) -> dict:
    cfg = {"model": model, "options": options, "batches": batches, "tokens": tokens}
    return common.run_result_child(CHILD, cfg, env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--gpu-gib", type=float, default=8.0)
    ap.add_argument("--host-gib", type=float, default=4.0)
    ap.add_argument("--batches", default="1,32,128")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--out", default="offload.json")
    ap.add_argument("--skip", default="", help="configurations to leave out: resident, host, disk, cpu, auto")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",") if b]
    skip = {s for s in a.skip.split(",") if s}
    files = sorted(f for f in os.listdir(a.model) if f.endswith(".safetensors"))
    bw = bandwidths(os.path.join(a.model, files[0]))
    print("bandwidths: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in bw.items()),
          flush=True)
    gpu = int(a.gpu_gib * 2**30)
    ms = max(batches + [8])
    configs = [
        ("resident", {"max_num_seqs": ms}, {}),
        ("host", {"max_num_seqs": ms, "offload": "auto", "offload_compute": "stream", "gpu_memory_bytes": gpu}, {}),
        ("disk", {"max_num_seqs": ms, "offload": "auto", "offload_compute": "stream", "gpu_memory_bytes": gpu,
                  "cpu_memory_bytes": int(a.host_gib * 2**30)}, {"ELI_OFFLOAD_DROP_CACHE": "1"}),
        # The same budget, the offloaded layers computed on the host CPU (their bound column is the
        # streaming bound: above 100% the CPU beats streaming), and what "auto" picks.
        ("cpu", {"max_num_seqs": ms, "offload": "auto", "offload_compute": "cpu", "gpu_memory_bytes": gpu}, {}),
        ("auto", {"max_num_seqs": ms, "offload": "auto", "offload_compute": "auto", "gpu_memory_bytes": gpu}, {}),
    ]
    card = common.card_name()
    records = []
    print(f"{'config':<9} {'batch':>5} {'tok/s':>9} {'step ms':>9} {'bound ms':>9} {'of bound':>8}  placement")
    for name, opts, env in configs:
        if name in skip:
            continue
        bs = batches if name != "disk" else batches[:1]
        r = run_config(a.model, opts, bs, a.tokens, env)
        if "error" in r:
            print(f"{name:<9} failed: {r['error'][-600:]}", flush=True)
            records.append({"config": name, "error": r["error"][-2000:]})
            continue
        mem = r["info"]["memory"]
        host, disk = mem.get("weights_host_bytes", 0), mem.get("weights_disk_bytes", 0)
        for b, t in r["steps"].items():
            bound = None
            if "h2d_pinned_gbps" in bw and host + disk > 0:  # the CPU stage: the streaming bound
                bound = (host + disk) / (bw["h2d_pinned_gbps"] * 1e9)
                if disk:
                    bound = max(bound, disk / (bw["disk_read_gbps"] * 1e9))
            frac = bound / t if bound else None
            rec = {"metric": "offload_decode_fraction_of_bound", "engine": "eli", "config": name, "batch": int(b),
                   "dtype": "bf16", "card": card, "tok_s": int(b) / t, "step_ms": t * 1e3,
                   "bound_ms": bound * 1e3 if bound else None, "value": frac,
                   "gpu_memory_bytes": opts.get("gpu_memory_bytes"), "weights_device_bytes": mem["weights_bytes"],
                   "weights_host_bytes": host, "weights_disk_bytes": disk,
                   "placement": r["info"]["weight_placement"], **bw}
            records.append(rec)
            print(f"{name:<9} {b:>5} {int(b) / t:>9.2f} {t * 1e3:>9.1f} "
                  f"{(bound * 1e3 if bound else float('nan')):>9.1f} {(frac or float('nan')):>8.1%}  "
                  f"{r['info']['weight_placement']}", flush=True)
    with open(a.out, "w") as f:
        json.dump({"card": card, "bandwidths": bw, "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
