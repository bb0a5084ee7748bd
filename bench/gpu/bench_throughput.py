#!/usr/bin/env python3
# bench/gpu/bench_throughput.py: offline throughput (many requests at once) of eli, HF transformers
# and llama.cpp on the same request sets, and the hardware limit of such a run.
#
# Request sets (JSON, written once by `gen`, read by every engine, so all see the same requests):
#   sharegpt: --n 1000 requests, ShareGPT-like lengths: lognormal (prompt: sigma 1.0, mean 225 before
#             clipping; output: sigma 0.8, mean 180), clipped to [4, 1024]: means ~200 and ~180 after
#             clipping (seed 0: 200.4 and 179.2); seeded random token ids.
#   fixed:    --n 256 requests of exactly 512 prompt and 256 output tokens.
# Engines (one process each):
#   eli:   LLM.generate(all prompts, per-request SamplingParams(max_tokens=o, ignore_eos=True,
#          temperature=0)), timed with perf_counter around the call after a warm-up generate
#          (min(n, max_num_seqs) short requests of varied output lengths); every output must have o tokens.
#   hf:    model.generate on left-padded batches of --batch (64), in dataset order, max_new_tokens =
#          min_new_tokens = the batch's longest output; useful tokens = the requested ones; on the
#          first --max-requests requests only when given (the JSON says so: subsample).
#   llama: llama-batched-bench -npp 512 -ntg 256 -npl 1,16,64 (-c enough for 64 x 768, -b 2048
#          -ub 512 -fa 1 -ngl 99): its own random prompts of the fixed shape, not the JSON set.
# Figures: output tok/s = output tokens / wall time; total tok/s = (prompt + output tokens) / wall.
#
# The limit (`limit`, also computed by run_all.py from the ceilings of the same run), for N requests
# of p prompt and o output tokens, all matrices read once per forward step:
#   B = min(N, KV capacity / (p + o)) requests at a time (all of them if the capacity is unknown),
#   in ceil(N / B) waves; per wave of b requests:
#     prefill:  t_p = (2 * P_layers * b * p + b * A(p)) / GEMM          (A(p) = causal attention FLOPs)
#     decode:   o - 1 steps (the first output token comes from the prefill); step j reads
#               bytes_j = 2 * (P_layers + P_head) + b * (p + j + 1) * KV_token
#               and computes flops_j = 2 * (P_layers + P_head) * b + b * 4 * L * nh * hd * (p + j + 1);
#               t_j = max(bytes_j / READ_BW, flops_j / GEMM)
#   t_min = sum over waves of (t_p + sum_j t_j);  limit output tok/s = N * o / t_min.
# READ_BW and GEMM are the read-only bandwidth and the 8192^3 bf16 GEMM rate measured by
# bench_ceilings.py; P_layers, P_head, KV_token as in common.py. Prefill and decode never overlap
# and decode steps are taken as perfectly overlapped compute + memory: a bound, not a prediction.
#   usage: bench_throughput.py gen --kind fixed --out FILE
#          bench_throughput.py eli --model DIR --shape 8b --dataset FILE --out FILE [--tp 4 --pp 1 --devices cuda:0,1,2,3]
#          bench_throughput.py hf --model DIR --shape 8b --dataset FILE --out FILE [--max-requests 128]
#          bench_throughput.py llama --bin DIR --gguf FILE --shape 8b --out FILE
#          bench_throughput.py limit --shape 8b --ceilings FILE [--n 256 --prompt 512 --output 256]
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402


# ---- request sets ----------------------------------------------------------------------------
def make_dataset(kind: str, n: int, seed: int, vocab: int, prompt_len: int = 512, output_len: int = 256,
                 in_mean: float = 225, out_mean: float = 180, lo: int = 4, hi: int = 1024) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "fixed":
        ins = [prompt_len] * n
        outs = [output_len] * n
        params = {"prompt_len": prompt_len, "output_len": output_len}
    elif kind == "sharegpt":
        s_in, s_out = 1.0, 0.8
        ins = np.clip(np.round(rng.lognormal(math.log(in_mean) - s_in**2 / 2, s_in, n)), lo, hi).astype(int).tolist()
        outs = np.clip(np.round(rng.lognormal(math.log(out_mean) - s_out**2 / 2, s_out, n)), lo, hi).astype(int).tolist()
        params = {"in_mean_target": in_mean, "out_mean_target": out_mean, "sigma_in": s_in, "sigma_out": s_out,
                  "clip": [lo, hi]}
    else:
        raise ValueError(f"unknown kind {kind}")
    hi_id = vocab - 256 if vocab > 4096 else max(2, vocab - 8)
    reqs = [{"prompt": rng.integers(0, hi_id, size=i).tolist(), "output_len": int(o)} for i, o in zip(ins, outs)]
    return {"kind": kind, "seed": seed, "n": n, "vocab": vocab, "params": params,
            "stats": {"prompt_tokens": int(sum(ins)), "output_tokens": int(sum(outs)),
                      "prompt_mean": sum(ins) / n, "output_mean": sum(outs) / n,
                      "prompt_max": int(max(ins)), "output_max": int(max(outs))},
            "requests": reqs}


def load_dataset(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---- the limit -------------------------------------------------------------------------------
def throughput_limit(s: dict, n: int, p: int, o: int, read_bw: float, gemm: float,
                     kv_capacity_tokens: int | None = None) -> dict:
    """See the header. read_bw in bytes/s, gemm in FLOP/s."""
    b_max = n if not kv_capacity_tokens else max(1, min(n, kv_capacity_tokens // (p + o)))
    w_bytes = common.weight_bytes_per_token(s)
    kv_tok = common.kv_bytes_per_token(s)
    mat = common.layer_params(s) + common.head_params(s)
    attn_unit = 4.0 * s["layers"] * s["heads"] * s["head_dim"]
    t_pre = t_dec = 0.0
    left = n
    waves = 0
    while left > 0:
        b = min(b_max, left)
        left -= b
        waves += 1
        t_pre += (common.prefill_flops(s, b * p) + b * common.attn_flops(s, p)) / gemm
        for j in range(o - 1):
            ctx = p + j + 1
            t_dec += max((w_bytes + b * ctx * kv_tok) / read_bw, (2.0 * mat * b + b * attn_unit * ctx) / gemm)
    t = t_pre + t_dec
    return {"n": n, "prompt_len": p, "output_len": o, "batch": b_max, "waves": waves,
            "read_gb_s": read_bw / 1e9, "gemm_tflops": gemm / 1e12,
            "t_prefill_s": round(t_pre, 4), "t_decode_s": round(t_dec, 4), "t_min_s": round(t, 4),
            "output_tok_s": round(n * o / t, 1), "total_tok_s": round(n * (p + o) / t, 1)}


# ---- engines ---------------------------------------------------------------------------------
def run_eli(args, res: common.Results) -> None:
    import eli
    from eli.sampling_params import SamplingParams

    ds = load_dataset(args.dataset)
    reqs = ds["requests"]
    max_len = max(len(r["prompt"]) + r["output_len"] for r in reqs)
    t0 = time.perf_counter()
    llm = eli.LLM(args.model, device=args.device, dtype=args.dtype, max_num_seqs=args.max_num_seqs,
                  max_num_batched_tokens=args.max_num_batched_tokens, max_model_len=max(args.max_model_len, max_len),
                  tensor_parallel_size=args.tp, pipeline_parallel_size=args.pp, devices=args.devices,
                  download=False, progress=False)
    load_s = time.perf_counter() - t0
    info = {k: v for k, v in llm.info.items() if k != "spec"}
    res.info(load_s=round(load_s, 2), engine_info=info, dataset=ds["kind"], dataset_stats=ds["stats"],
             engine_options={"max_num_seqs": args.max_num_seqs, "max_num_batched_tokens": args.max_num_batched_tokens})
    common.log(f"eli: loaded in {load_s:.1f} s: {info}")
    # Warm-up: up to max_num_seqs short requests whose outputs end at different steps.
    nw = min(len(reqs), args.max_num_seqs)
    wp = [common.rand_prompt(7000 + i, 16 + (i * 7) % 48, ds["vocab"]) for i in range(nw)]
    wsp = [SamplingParams(max_tokens=2 + i % 64, temperature=0.0, ignore_eos=True) for i in range(nw)]
    t0 = time.perf_counter()
    llm.generate(wp, wsp)
    res.info(warmup_s=round(time.perf_counter() - t0, 2), warmup_requests=nw)
    prompts = [r["prompt"] for r in reqs]
    sps = [SamplingParams(max_tokens=r["output_len"], temperature=0.0, ignore_eos=True) for r in reqs]
    before = dict(llm.stats())
    t0 = time.perf_counter()
    outs = llm.generate(prompts, sps)
    dt = time.perf_counter() - t0
    after = dict(llm.stats())
    got = [len(o.token_ids) for o in outs]
    bad = [i for i, (g, r) in enumerate(zip(got, reqs)) if g != r["output_len"]]
    if bad:
        res.error("lengths", f"{len(bad)} requests got other output lengths, e.g. #{bad[0]}: "
                             f"{got[bad[0]]} vs {reqs[bad[0]]['output_len']} ({outs[bad[0]].finish_reason})")
    n_out = sum(got)
    n_in = sum(len(p) for p in prompts)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if isinstance(after.get(k), (int, float))}
    extra = {"n_requests": len(reqs), "dataset": ds["kind"], "seconds": round(dt, 3), "prompt_tokens": n_in,
             "output_tokens": n_out, "engine_stats_delta": delta}
    par = {"tp": args.tp, "pp": args.pp, "dtype": args.dtype}
    res.add(common.record("eli", args.shape, f"offline_{ds['kind']}_output_tok_s", [n_out / dt], "tok/s", **extra, **par))
    res.add(common.record("eli", args.shape, f"offline_{ds['kind']}_total_tok_s", [(n_in + n_out) / dt], "tok/s",
                          n_requests=len(reqs), dataset=ds["kind"], seconds=round(dt, 3), **par))
    llm.shutdown()


def run_hf(args, res: common.Results) -> None:
    import torch
    import transformers

    ds = load_dataset(args.dataset)
    reqs = ds["requests"]
    n_all = len(reqs)
    if args.max_requests and args.max_requests < n_all:
        reqs = reqs[:args.max_requests]
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    kw = dict(dtype=torch.bfloat16, attn_implementation=args.attn)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, device_map=args.device, **kw)
    except Exception:  # noqa: BLE001
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, **kw).to(dev)
    model.eval()
    res.info(load_s=round(time.perf_counter() - t0, 2), torch=torch.__version__,
             transformers=transformers.__version__, attn=args.attn, batch=args.batch, dataset=ds["kind"],
             subsample=len(reqs) < n_all, n_requests_used=len(reqs), n_requests_in_set=n_all)

    def run_batch(batch: list[dict]) -> tuple[float, int]:
        L = max(len(r["prompt"]) for r in batch)
        ids = torch.zeros((len(batch), L), dtype=torch.long)
        mask = torch.zeros((len(batch), L), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding
            ids[i, L - len(r["prompt"]):] = torch.tensor(r["prompt"])
            mask[i, L - len(r["prompt"]):] = 1
        n_new = max(r["output_len"] for r in batch)
        gc = transformers.GenerationConfig(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                           pad_token_id=0, eos_token_id=None, bos_token_id=None)
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), generation_config=gc)
        sync()
        dt = time.perf_counter() - t0
        if out.shape[1] - L != n_new:
            raise RuntimeError(f"generated {out.shape[1] - L} tokens, expected {n_new}")
        return dt, n_new

    run_batch([dict(r, output_len=min(r["output_len"], 8)) for r in reqs[:4]])  # warm-up
    total_t = 0.0
    useful = computed = n_in = n_done = 0
    per_batch = []
    for i in range(0, len(reqs), args.batch):
        b = reqs[i:i + args.batch]
        dt, n_new = run_batch(b)
        total_t += dt
        useful += sum(r["output_len"] for r in b)
        computed += n_new * len(b)
        n_in += sum(len(r["prompt"]) for r in b)
        n_done += len(b)
        per_batch.append(round(dt, 3))
        common.log(f"  hf batch {i // args.batch + 1}: {len(b)} requests, {n_new} new tokens, {dt:.1f} s")
        if args.time_limit_s and total_t > args.time_limit_s and i + args.batch < len(reqs):
            res.info(stopped_early_after_s=round(total_t, 1), n_requests_done=n_done)
            break
    eng = f"hf-{args.attn}"
    extra = {"dataset": ds["kind"], "seconds": round(total_t, 3), "output_tokens_useful": useful,
             "output_tokens_computed": computed, "prompt_tokens": n_in, "batch": args.batch,
             "batch_seconds": per_batch, "subsample": n_done < n_all, "n_requests": n_done}
    res.add(common.record(eng, args.shape, f"offline_{ds['kind']}_output_tok_s", [useful / total_t], "tok/s", **extra))
    res.add(common.record(eng, args.shape, f"offline_{ds['kind']}_total_tok_s", [(n_in + useful) / total_t], "tok/s",
                          dataset=ds["kind"], seconds=round(total_t, 3), subsample=n_done < n_all, n_requests=n_done))


def run_llama(args, res: common.Results) -> None:
    import bench_llama_cpp

    tool = pathlib.Path(args.bin) / "llama-batched-bench"
    if not tool.is_file():
        raise FileNotFoundError(f"{tool} not found (llama.cpp not built?)")
    npl = common.csv_ints(args.npl)
    ctx = max(npl) * (args.npp + args.ntg) + 2048
    cmd = [str(tool), "-m", args.gguf, "-c", str(ctx), "-b", "2048", "-ub", "512", "-npp", str(args.npp),
           "-ntg", str(args.ntg), "-npl", args.npl, "-fa", "1", "-ngl", "99", "--output-format", "jsonl"]
    rc, rows, err = bench_llama_cpp.run_jsonl(cmd, args.timeout_s, pathlib.Path(args.log) if args.log else None)
    rows = [r for r in rows if "pl" in r and "speed_tg" in r]
    if rc != 0 or not rows:
        raise RuntimeError(f"llama-batched-bench rc {rc}, {len(rows)} rows; stderr tail: {err[-1500:]}")
    res.info(command=" ".join(cmd))
    for r in rows:
        pl, pp, tg = r["pl"], r["pp"], r["tg"]
        common_extra = {"batch": pl, "prompt_len": pp, "gen_len": tg, "t_pp_s": r["t_pp"], "t_tg_s": r["t_tg"],
                        "t_s": r["t"], "n_kv": r.get("n_kv")}
        res.add(common.record("llama.cpp", args.shape, "batched_decode_tok_s", [r["speed_tg"]], "tok/s", **common_extra))
        res.add(common.record("llama.cpp", args.shape, "batched_output_tok_s", [pl * tg / r["t"]], "tok/s",
                              note="output tokens / (prefill + decode time)", **common_extra))
        res.add(common.record("llama.cpp", args.shape, "batched_total_tok_s", [r["speed"]], "tok/s", **common_extra))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--kind", choices=["sharegpt", "fixed"], required=True)
    g.add_argument("--n", type=int, default=None, help="default: 1000 (sharegpt), 256 (fixed)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--vocab", type=int, default=128256)
    g.add_argument("--prompt-len", type=int, default=512)
    g.add_argument("--output-len", type=int, default=256)
    g.add_argument("--clip-max", type=int, default=1024, help="sharegpt: longest prompt / output")
    g.add_argument("--out", required=True)
    for name in ("eli", "hf", "llama"):
        p = sub.add_parser(name)
        p.add_argument("--shape", required=True)
        p.add_argument("--out", default=None)
        p.add_argument("--device", default="cuda")
        if name != "llama":
            p.add_argument("--model", required=True)
            p.add_argument("--dataset", required=True)
        if name == "eli":
            p.add_argument("--dtype", default="bfloat16")
            p.add_argument("--max-num-seqs", type=int, default=256)
            p.add_argument("--max-num-batched-tokens", type=int, default=8192)
            p.add_argument("--max-model-len", type=int, default=2048)
            p.add_argument("--tp", type=int, default=1, help="tensor_parallel_size")
            p.add_argument("--pp", type=int, default=1, help="pipeline_parallel_size")
            p.add_argument("--devices", default="", help="one device per rank, e.g. cuda:0,1,2,3")
        if name == "hf":
            p.add_argument("--attn", default="sdpa", choices=["eager", "sdpa"])
            p.add_argument("--batch", type=int, default=64)
            p.add_argument("--max-requests", type=int, default=None)
            p.add_argument("--time-limit-s", type=float, default=None, help="stop after the batch that passes it")
        if name == "llama":
            p.add_argument("--bin", required=True)
            p.add_argument("--gguf", required=True)
            p.add_argument("--npp", type=int, default=512)
            p.add_argument("--ntg", type=int, default=256)
            p.add_argument("--npl", default="1,16,64")
            p.add_argument("--timeout-s", type=float, default=300.0)
            p.add_argument("--log", default=None)
    lim = sub.add_parser("limit")
    lim.add_argument("--shape", default="8b")
    lim.add_argument("--ceilings", default=None, help="bench_ceilings.py's JSON (else 3000 GB/s, 790 TFLOP/s)")
    lim.add_argument("--n", type=int, default=256)
    lim.add_argument("--prompt", type=int, default=512)
    lim.add_argument("--output", type=int, default=256)
    lim.add_argument("--kv-capacity-tokens", type=int, default=None)
    args = ap.parse_args()

    if args.cmd == "gen":
        n = args.n or (1000 if args.kind == "sharegpt" else 256)
        ds = make_dataset(args.kind, n, args.seed, args.vocab, args.prompt_len, args.output_len, hi=args.clip_max)
        common.write_json(args.out, ds)
        common.log(f"{args.kind}: {n} requests, {ds['stats']} -> {args.out}")
        return 0
    if args.cmd == "limit":
        c = (common.read_json(args.ceilings, {}) or {}).get("info", {}).get("ceilings", {}) if args.ceilings else {}
        bw = c.get("read_gb_s", 3000.0) * 1e9
        gemm = c.get("gemm_tflops", 790.0) * 1e12
        out = throughput_limit(common.shape(args.shape), args.n, args.prompt, args.output, bw, gemm,
                               args.kv_capacity_tokens)
        out["ceilings_measured"] = bool(c)
        print(json.dumps(out, indent=1))
        return 0
    short = common.SHORT[common.shape_name(args.shape)]
    engine = {"eli": "eli", "hf": f"hf-{getattr(args, 'attn', '')}", "llama": "llama.cpp"}[args.cmd]
    res = common.Results(args.out, f"throughput_{engine}_{short}", engine=engine)
    try:
        {"eli": run_eli, "hf": run_hf, "llama": run_llama}[args.cmd](args, res)
    except Exception as e:  # noqa: BLE001
        res.error(args.cmd, e)
        res.done()
        return 1
    res.done()
    return 0 if not res.data["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
