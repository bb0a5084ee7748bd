#!/usr/bin/env python3
# bench/gpu/bench_eli.py: batch-1 decode and prefill speed of eli through its Python API, one model
# per process (so GPU memory is freed between engines).
#
# Protocol (the same for every engine of bench/gpu):
#   decode_tok_s  at context c: a fresh random prompt of c tokens, then max_tokens = N + 1 with
#                 ignore_eos and greedy sampling; the first token comes from the prefill; the rate is
#                 N / (time from the first token to the last), i.e. only the decode part is timed.
#   prefill_tok_s at length T: a fresh random prompt of T tokens (a new seed every repetition, so the
#                 prefix cache never hits: the hit counters are recorded), max_tokens = 1; the rate is
#                 T / time to first token (from LLM.stream's call to the first token it sees).
# Timing: LLM.stream's own perf_counter stamps (llm.last_stats). One warm-up run per configuration
# first; then up to --reps repetitions, fewer (not under --min-reps) when the warm-up shows they would
# not fit --budget-s; the median is the value, all samples are kept.
# --api engine instead steps the synchronous compiled engine (_eli.Engine) from this process and
# times each step (no engine thread, no Python request tracking), as bench/cpu_bench.py's "eli" row.
# Imports eli and numpy only (no torch).
#   usage: bench_eli.py --model DIR --shape 8b --out FILE [--what decode,prefill] [--device cuda]
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402


class Runner:
    """Runs one request to completion; returns (generated tokens, ttft_s, decode_s)."""

    def __init__(self, args):
        import eli
        from eli.sampling_params import SamplingParams

        self.SamplingParams = SamplingParams
        self.api = args.api
        kw = dict(device=args.device, dtype=args.dtype, max_model_len=args.max_model_len,
                  max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs)
        mode = {"auto": None, "on": True, "off": False}[args.async_scheduling]
        t0 = time.perf_counter()
        if args.api == "engine":
            from eli import _eli

            from eli.engine_options import engine_config

            self.engine = _eli.Engine(engine_config(args.model, async_scheduling=mode, **kw))
            self.info = self.engine.info()
        else:
            self.llm = eli.LLM(args.model, download=False, progress=False, async_scheduling=mode, **kw)
            self.info = self.llm.info
        self.load_s = time.perf_counter() - t0

    def run(self, prompt: list[int], max_tokens: int) -> tuple[int, float, float]:
        sp = self.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        if self.api == "engine":
            rid = self.engine.add_request(prompt, sp.engine_params([]))
            t0 = time.perf_counter()
            first = None
            n = 0
            while self.engine.has_unfinished():
                outs = self.engine.step()
                got = sum(1 for o in outs if o[0] == rid and o[1] >= 0)
                if got and first is None:
                    first = time.perf_counter()
                n += got
            end = time.perf_counter()
            first = first or end
            return n, first - t0, end - first
        for _ in self.llm.stream(prompt, sp):
            pass
        st = self.llm.last_stats
        return st["generated_tokens"], st["prefill_seconds"], st["decode_seconds"]

    def stats(self) -> dict:
        try:
            return dict(self.engine.stats() if self.api == "engine" else self.llm.stats())
        except Exception:  # noqa: BLE001
            return {}


def plan_reps(warm_s: float, budget_s: float, reps: int, min_reps: int) -> int:
    if warm_s <= 0:
        return reps
    return max(min_reps, min(reps, int(budget_s / warm_s)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF checkpoint dir (or GGUF) of random weights")
    ap.add_argument("--shape", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--what", default="decode,prefill")
    ap.add_argument("--api", choices=["llm", "engine"], default="llm")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--contexts", default="128,4096")
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--prefill-lens", default="512,2048")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-reps", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=150.0, help="time for all timed repetitions together")
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--max-num-batched-tokens", type=int, default=4096)
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--async-scheduling", choices=["auto", "on", "off"], default="auto",
                    help="the engine's async_scheduling option (auto: the engine's default)")
    args = ap.parse_args()

    engine = "eli" if args.api == "llm" else "eli-engine"
    s = common.shape(args.shape)
    what = {w.strip() for w in args.what.split(",") if w.strip()}
    contexts = common.csv_ints(args.contexts) if "decode" in what else []
    lens = common.csv_ints(args.prefill_lens) if "prefill" in what else []
    res = common.Results(args.out, f"{engine}_{common.SHORT[common.shape_name(args.shape)]}", engine=engine,
                         model_path=args.model, device=args.device, dtype=args.dtype, api=args.api,
                         engine_options={"async_scheduling": args.async_scheduling,
                                         "max_model_len": args.max_model_len,
                                         "max_num_batched_tokens": args.max_num_batched_tokens,
                                         "max_num_seqs": args.max_num_seqs})
    t_start = time.perf_counter()
    try:
        r = Runner(args)
    except Exception as e:  # noqa: BLE001
        res.error("load", e)
        res.done()
        return 1
    info = {k: v for k, v in r.info.items() if k != "spec"}
    res.info(load_s=round(r.load_s, 3), engine_info=info, spec=r.info.get("spec"),
             gpu_mem_used_mib_after_load=common.gpu_memory_used_mib())
    common.log(f"{engine}: loaded {args.model} in {r.load_s:.1f} s ({info})")
    vocab = s["vocab"]
    n_configs = max(1, len(contexts) + len(lens))
    seed = args.seed * 100000
    n_fail = 0

    for ctx in contexts:
        try:
            seed += 1
            t0 = time.perf_counter()
            n, _, dec = r.run(common.rand_prompt(seed, ctx, vocab), args.decode_tokens + 1)
            warm = time.perf_counter() - t0
            if n != args.decode_tokens + 1:
                raise RuntimeError(f"warm-up generated {n} tokens, expected {args.decode_tokens + 1}")
            reps = plan_reps(warm, args.budget_s / n_configs, args.reps, args.min_reps)
            samples, ttfts, totals = [], [], []
            for _ in range(reps):
                seed += 1
                t0 = time.perf_counter()
                n, ttft, dec = r.run(common.rand_prompt(seed, ctx, vocab), args.decode_tokens + 1)
                totals.append(time.perf_counter() - t0)
                if n != args.decode_tokens + 1:
                    raise RuntimeError(f"generated {n} tokens, expected {args.decode_tokens + 1}")
                samples.append((n - 1) / dec)
                ttfts.append(ttft)
            # Cross-check that needs no first-token stamp (which is late when the caller's thread lags
            # the engine): N / (median total time - median time of the same prompt with max_tokens=1).
            ttft1 = []
            for _ in range(2):
                seed += 1
                t0 = time.perf_counter()
                r.run(common.rand_prompt(seed, ctx, vocab), 1)
                ttft1.append(time.perf_counter() - t0)
            alt = args.decode_tokens / max(1e-9, statistics.median(totals) - statistics.median(ttft1))
            med = statistics.median(samples)
            res.add(common.record(engine, args.shape, "decode_tok_s", samples, "tok/s", batch=1, prompt_len=ctx,
                                  gen_len=args.decode_tokens,
                                  mean_context=common.mean_decode_context(ctx, args.decode_tokens),
                                  ttft_s_samples=[round(x, 4) for x in ttfts],
                                  total_s_samples=[round(x, 4) for x in totals],
                                  one_token_s_samples=[round(x, 4) for x in ttft1],
                                  decode_tok_s_from_totals=round(alt, 2),
                                  stream_timing_suspect=bool(abs(alt - med) > 0.1 * med), warmup_s=round(warm, 3)))
        except Exception as e:  # noqa: BLE001
            n_fail += 1
            res.error(f"decode ctx {ctx}", e)
    for T in lens:
        try:
            seed += 1
            t0 = time.perf_counter()
            for _ in range(2):  # two warm-ups: the first may pick GEMM algorithms
                seed += 1
                r.run(common.rand_prompt(seed, T, vocab), 1)
            warm = (time.perf_counter() - t0) / 2
            reps = plan_reps(warm, args.budget_s / n_configs, args.reps, args.min_reps)
            before = r.stats()
            samples = []
            for _ in range(reps):
                seed += 1
                n, ttft, _ = r.run(common.rand_prompt(seed, T, vocab), 1)
                if n != 1:
                    raise RuntimeError(f"generated {n} tokens, expected 1")
                samples.append(T / ttft)
            after = r.stats()
            hits = {k: after.get(k, 0) - before.get(k, 0) for k in ("prefix_cache_hits", "prefix_cache_queries")}
            res.add(common.record(engine, args.shape, "prefill_tok_s", samples, "tok/s", batch=1, prompt_len=T,
                                  gen_len=1, prefix_cache=hits))
        except Exception as e:  # noqa: BLE001
            n_fail += 1
            res.error(f"prefill {T}", e)
    res.info(total_s=round(time.perf_counter() - t_start, 2), final_stats=r.stats())
    res.done()
    try:
        if args.api == "llm":
            r.llm.shutdown()
    except Exception:  # noqa: BLE001
        pass
    return 0 if n_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
