#!/usr/bin/env python3
# bench/gpu/bench_hf.py: batch-1 decode and prefill speed of Hugging Face transformers (torch, bf16)
# on the same random checkpoint, one attention implementation per process.
#
# Protocol: as bench_eli.py. model.generate (greedy, min_new_tokens = max_new_tokens so EOS never
# stops it) with a streamer that stamps the time (after torch.cuda.synchronize) of every put():
# generate puts the prompt first, then each new token. So
#   TTFT   = stamp of the first generated token - the call's start (prefill + the first sampling);
#   decode = (N - 1) / (stamp of the last token - stamp of the first token).
# prefill_tok_s at T = T / TTFT with max_new_tokens = 1. Fresh random prompts every repetition.
# --cache static passes cache_implementation="static" (no torch.compile: the compiled path crashed
# here before, see docs/PERFORMANCE.md); the default is transformers' dynamic cache.
#   usage: bench_hf.py --model DIR --shape 8b --attn sdpa --out FILE [--what decode,prefill]
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402


class StampStreamer:
    """A transformers streamer that records when each put() arrives (device synchronized)."""

    def __init__(self, sync):
        self.sync = sync
        self.stamps: list[float] = []

    def put(self, value) -> None:
        self.sync()
        self.stamps.append(time.perf_counter())

    def end(self) -> None:
        self.sync()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--shape", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--what", default="decode,prefill")
    ap.add_argument("--attn", default="sdpa", choices=["eager", "sdpa"])
    ap.add_argument("--cache", default="dynamic", choices=["dynamic", "static"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--contexts", default="128,4096")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--prefill-lens", default="512,2048")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-reps", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=90.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    engine = f"hf-{args.attn}" + ("-static" if args.cache == "static" else "")
    s = common.shape(args.shape)
    what = {w.strip() for w in args.what.split(",") if w.strip()}
    contexts = common.csv_ints(args.contexts) if "decode" in what else []
    lens = common.csv_ints(args.prefill_lens) if "prefill" in what else []
    res = common.Results(args.out, f"{engine}_{common.SHORT[common.shape_name(args.shape)]}", engine=engine,
                         model_path=args.model, attn=args.attn, cache=args.cache)
    try:
        import torch
        import transformers

        res.info(torch=torch.__version__, transformers=transformers.__version__)
        dev = torch.device(args.device)
        sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        kw = dict(dtype=torch.bfloat16, attn_implementation=args.attn)
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(args.model, device_map=args.device, **kw)
        except Exception as e:  # noqa: BLE001 -- device_map needs accelerate on some versions
            common.log(f"{engine}: device_map load failed ({e}); loading on the CPU, then .to({args.device})")
            model = transformers.AutoModelForCausalLM.from_pretrained(args.model, **kw).to(dev)
        model.eval()
        sync()
        load_s = time.perf_counter() - t0
        res.info(load_s=round(load_s, 3), n_params=sum(p.numel() for p in model.parameters()),
                 gpu_mem_used_mib_after_load=common.gpu_memory_used_mib())
        common.log(f"{engine}: loaded in {load_s:.1f} s")
    except Exception as e:  # noqa: BLE001
        res.error("load", e)
        res.done()
        return 1

    def gen(prompt: list[int], n_new: int) -> tuple[float, list[float]]:
        ids = torch.tensor([prompt], device=dev)
        st = StampStreamer(sync)
        gc = transformers.GenerationConfig(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                           pad_token_id=0, eos_token_id=None, bos_token_id=None)
        if args.cache == "static":
            gc.cache_implementation = "static"
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gc,
                                 streamer=st)
        sync()
        if out.shape[1] - len(prompt) != n_new:
            raise RuntimeError(f"generated {out.shape[1] - len(prompt)} tokens, expected {n_new}")
        if len(st.stamps) != n_new + 1:
            raise RuntimeError(f"streamer saw {len(st.stamps)} puts, expected {n_new + 1}")
        return t0, st.stamps

    n_configs = max(1, len(contexts) + len(lens))
    seed = args.seed * 100000 + 50000
    n_fail = 0
    N = args.decode_tokens
    for ctx in contexts:
        try:
            seed += 1
            w0 = time.perf_counter()
            gen(common.rand_prompt(seed, ctx, s["vocab"]), N + 1)
            warm = time.perf_counter() - w0
            reps = max(args.min_reps, min(args.reps, int(args.budget_s / n_configs / max(warm, 1e-6))))
            samples, ttfts = [], []
            for _ in range(reps):
                seed += 1
                t0, stamps = gen(common.rand_prompt(seed, ctx, s["vocab"]), N + 1)
                samples.append(N / (stamps[-1] - stamps[1]))
                ttfts.append(stamps[1] - t0)
            res.add(common.record(engine, args.shape, "decode_tok_s", samples, "tok/s", batch=1, prompt_len=ctx,
                                  gen_len=N, mean_context=common.mean_decode_context(ctx, N),
                                  ttft_s_samples=[round(x, 4) for x in ttfts], warmup_s=round(warm, 3)))
        except Exception as e:  # noqa: BLE001
            n_fail += 1
            res.error(f"decode ctx {ctx}", e)
    for T in lens:
        try:
            w0 = time.perf_counter()
            for _ in range(2):
                seed += 1
                gen(common.rand_prompt(seed, T, s["vocab"]), 1)
            warm = (time.perf_counter() - w0) / 2
            reps = max(args.min_reps, min(args.reps, int(args.budget_s / n_configs / max(warm, 1e-6))))
            samples = []
            for _ in range(reps):
                seed += 1
                t0, stamps = gen(common.rand_prompt(seed, T, s["vocab"]), 1)
                samples.append(T / (stamps[1] - t0))
            res.add(common.record(engine, args.shape, "prefill_tok_s", samples, "tok/s", batch=1, prompt_len=T,
                                  gen_len=1))
        except Exception as e:  # noqa: BLE001
            n_fail += 1
            res.error(f"prefill {T}", e)
    try:
        res.info(max_mem_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else None)
    except Exception:  # noqa: BLE001
        pass
    res.done()
    return 0 if n_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
