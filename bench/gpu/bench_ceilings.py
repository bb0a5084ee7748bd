#!/usr/bin/env python3
# bench/gpu/bench_ceilings.py: the hardware ceilings that every other figure is a fraction of,
# measured through torch in the same run as the benchmarks:
#   copy_gb_s   device-to-device copy (y.copy_(x), 4 GiB each), counting bytes read + written;
#   read_gb_s   read-only bandwidth: the best of several full reductions over 4 GiB (sum of bf16
#               into fp32, sum of fp32, amax of fp32): bytes read / time;
#   gemm_tflops dense bf16 matmul 8192^3 on random data: 2*8192^3 / time.
# Each: 3 warm-ups, then `--iters` timed runs with CUDA events, median (and min/max). Inputs are
# random (never zeros). Two input sets alternate for the GEMM, though 3 x 128 MiB already exceed L2.
#   usage: bench_ceilings.py --out FILE [--iters 20] [--gib 4]
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402


def timed(fn, iters: int, warmup: int = 3) -> list[float]:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) / 1e3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--gib", type=float, default=4.0)
    ap.add_argument("--gemm-n", type=int, default=8192)
    args = ap.parse_args()
    res = common.Results(args.out, "ceilings")
    import torch

    if not torch.cuda.is_available():
        res.error("ceilings", "no CUDA device visible to torch")
        res.done()
        return 1
    p = torch.cuda.get_device_properties(0)
    res.info(torch=torch.__version__, cuda=torch.version.cuda, device=p.name, sm_count=p.multi_processor_count,
             total_memory_gib=round(p.total_memory / 2**30, 1), l2_mib=round(getattr(p, "L2_cache_size", 0) / 2**20, 1),
             gpu=common.gpu_info())
    n_bytes = int(args.gib * 2**30)
    ceil = {}

    def copy_bw() -> list[float]:
        x = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device="cuda").normal_()
        y = torch.empty_like(x)
        return [2 * n_bytes / s / 1e9 for s in timed(lambda: y.copy_(x), args.iters)]

    def read_bw() -> dict[str, list[float]]:
        out = {}
        xb = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device="cuda").normal_()
        out["sum_bf16"] = [n_bytes / s / 1e9 for s in timed(lambda: torch.sum(xb, dtype=torch.float32), args.iters)]
        xb = None
        xf = torch.empty(n_bytes // 4, dtype=torch.float32, device="cuda").normal_()
        out["sum_f32"] = [n_bytes / s / 1e9 for s in timed(lambda: torch.sum(xf), args.iters)]
        out["amax_f32"] = [n_bytes / s / 1e9 for s in timed(lambda: torch.amax(xf), args.iters)]
        return out

    try:
        bw = copy_bw()
        res.add(common.record("torch", None, "copy_gb_s", bw, "GB/s", bytes=2 * n_bytes, note="read + written"))
        ceil["copy_gb_s"] = statistics.median(bw)
        torch.cuda.empty_cache()
        reads = read_bw()
        for k, v in reads.items():
            res.add(common.record("torch", None, f"read_{k}_gb_s", v, "GB/s", bytes=n_bytes))
        best = max(reads, key=lambda k: statistics.median(reads[k]))
        ceil["read_gb_s"] = statistics.median(reads[best])
        ceil["read_method"] = best
        torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001
        res.error("bandwidth", e)
    try:
        n = args.gemm_n
        sets = [(torch.randn(n, n, dtype=torch.bfloat16, device="cuda"),
                 torch.randn(n, n, dtype=torch.bfloat16, device="cuda")) for _ in range(2)]
        c = torch.empty(n, n, dtype=torch.bfloat16, device="cuda")
        k = [0]

        def mm():
            a, b = sets[k[0] % 2]
            k[0] += 1
            torch.matmul(a, b, out=c)

        t = timed(mm, args.iters)
        tf = [2 * n**3 / s / 1e12 for s in t]
        res.add(common.record("torch", None, "gemm_bf16_tflops", tf, "TFLOP/s", n=n))
        ceil["gemm_tflops"] = statistics.median(tf)
    except Exception as e:  # noqa: BLE001
        res.error("gemm", e)
    res.info(ceilings=ceil)
    res.done()
    common.log(f"ceilings: {ceil}")
    return 0 if "read_gb_s" in ceil and "gemm_tflops" in ceil else 1


if __name__ == "__main__":
    sys.exit(main())
