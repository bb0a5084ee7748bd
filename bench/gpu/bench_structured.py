#!/usr/bin/env python3
# bench/gpu/bench_structured.py: throughput with every request under a JSON schema vs unconstrained,
# same engine, same run (issue 18: >= 95% at batch 1, >= 90% at batch 64 on the 8B shape, H100).
#
# One offline set of prompts per batch size, generated twice per repetition: first with json_schema
# on every request (a schema whose documents run to about max_tokens: long bounded strings and
# arrays), then plain (ignore_eos) with each request's max_tokens set to the token count its
# constrained run generated, so both modes decode the same number of tokens at the same positions
# and the ratio is the cost of the masks alone (not of requests that finish earlier). Reported:
# generated tokens / wall time of LLM.generate for the whole set, each mode's median over --reps
# repetitions (interleaved), the ratio schema / plain, and how many constrained outputs that ended
# ("stop") parse and validate against the schema (jsonschema, when installed). Greedy decoding, the
# same prompts in both modes. The engine computes masks on the host while the GPU runs each step's
# forward pass; the ratio shows what is left of the mask cost.
#
# On the benchmark's random weights (bench/gpu/make_weights.py: HF dir with a byte-level 128,256-id
# tokenizer) the model's choices are arbitrary but every output still follows the schema.
#
# llama.cpp's GBNF on the GPU: not measured here, for three reasons. (1) The benchmark's GGUF files
# carry no vocabulary (make_weights.py writes tokenizer model "no_vocab"), and llama.cpp's grammar
# sampler matches token text, so no grammar can run on them; a real 8B GGUF (16 GB bf16, 4.9 GB
# Q4_K_M) cannot reach the device machine (no network, 64 MiB carry). (2) llama-batched-bench, the
# batch-64 tool the throughput step uses, has no grammar option; batch 64 with a grammar needs
# llama-server (--parallel 64) fed by 64 concurrent /completion requests, a harness the benchmark
# does not have. (3) llama.cpp's grammar runs on the host in every build (CUDA too): its per-token
# cost is the CPU comparison in bench/cpu_structured_bench.py (eli vs llama.cpp on the same schemas).
# Doing it would mean: a GGUF with the same byte-level vocabulary (tokenizer model "gpt2"), a
# llama-server step, and a concurrent client; left for later.
#
# Usage (on the GPU machine, after bench/gpu/device_bench.sh prepare has made the 8B weights and
# installed eli): PYTHONPATH=python python bench/gpu/bench_structured.py \
#          /tmp/eli-bench/weights/llama-3.1-8b [--batches 1,64] [--max-tokens 256] [--reps 3]
#          [--device cuda] [--dtype bfloat16] [--max-model-len 1024]
# CPU dry run (tiny model): PYTHONPATH=python python bench/gpu/bench_structured.py \
#          tests/data/models/llama_base --device cpu --dtype float32 --batches 1,4 --max-tokens 24 --reps 1
# Output: a table and JSON in bench/results/<date>_<card>_gpu_structured.json.
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 40, "maxLength": 200},
        "summary": {"type": "string", "minLength": 200, "maxLength": 800},
        "keywords": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 5, "maxItems": 20},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
        "category": {"enum": ["science", "history", "sports", "technology", "art"]},
    },
    "required": ["title", "summary", "keywords", "year", "category"],
    "additionalProperties": False,
}


def prompts(n: int) -> list[str]:
    topics = ["the history of the printing press", "how transistors work", "the rules of cricket",
              "the life of Marie Curie", "impressionist painting", "the internet's early days",
              "volcanoes of Iceland", "the Apollo program"]
    return [f"Write a JSON record describing an article about {topics[i % len(topics)]} (variant {i})."
            for i in range(n)]


def valid_count(outs) -> int:
    """Constrained outputs that ended and validate against SCHEMA (-1: jsonschema not installed)."""
    try:
        import jsonschema
    except ImportError:
        return -1
    n = 0
    for o in outs:
        if o.finish_reason != "stop":
            continue
        try:
            jsonschema.validate(json.loads(o.text), SCHEMA)
            n += 1
        except (ValueError, jsonschema.ValidationError):
            pass
    return n


def run_schema(llm, eli, batch: int, max_tokens: int):
    params = eli.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, json_schema=SCHEMA)
    t = time.perf_counter()
    outs = llm.generate(prompts(batch), params)
    dt = time.perf_counter() - t
    for o in outs:
        if o.finish_reason not in ("stop", "length") or o.error is not None:
            raise RuntimeError(f"structured request failed: {o.finish_reason}: {o.error}")
    lengths = [len(o.token_ids) for o in outs]
    return sum(lengths) / dt, lengths, outs


def run_plain(llm, eli, lengths: list[int]):
    """Plain greedy decoding, request i generating exactly lengths[i] tokens."""
    params = [eli.SamplingParams(max_tokens=max(1, n), temperature=0.0, ignore_eos=True) for n in lengths]
    t = time.perf_counter()
    outs = llm.generate(prompts(len(lengths)), params)
    dt = time.perf_counter() - t
    n = sum(len(o.token_ids) for o in outs)
    return n / dt, n


def main() -> None:
    ap = argparse.ArgumentParser(description="throughput with a JSON schema on every request vs none")
    ap.add_argument("model")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import eli

    batches = common.csv_ints(args.batches)
    rows = []
    t0 = time.perf_counter()
    with eli.LLM(args.model, device=args.device, dtype=args.dtype, max_num_seqs=max(batches),
                 max_model_len=args.max_model_len, download=False, progress=False) as llm:
        load_s = time.perf_counter() - t0
        info = {k: v for k, v in llm.info.items() if k != "spec"}
        t0 = time.perf_counter()
        run_schema(llm, eli, 1, 8)  # the first structured request builds llguidance's tokenizer view
        setup_s = time.perf_counter() - t0
        for b in batches:
            _, lens, _ = run_schema(llm, eli, b, 16)  # warm-up: graphs, allocator
            run_plain(llm, eli, lens)
            plain, constrained, toks, valid = [], [], {}, []
            for _ in range(args.reps):
                r, lens, outs = run_schema(llm, eli, b, args.max_tokens)
                constrained.append(r)
                toks["schema"] = sum(lens)
                valid.append(valid_count(outs))
                r, n = run_plain(llm, eli, lens)
                plain.append(r)
                toks["plain"] = n
            p, c = statistics.median(plain), statistics.median(constrained)
            rows.append({"batch": b, "plain_tok_s": p, "schema_tok_s": c, "ratio": c / p,
                         "plain_samples": plain, "schema_samples": constrained,
                         "plain_tokens": toks["plain"], "schema_tokens": toks["schema"],
                         "valid_per_rep": valid, "requests": b,
                         "target": 0.95 if b == 1 else (0.90 if b >= 64 else None)})
    print(f"eli structured output, {args.model}, {args.device} {args.dtype}; load {load_s:.1f} s, "
          f"first structured request {setup_s:.1f} s")
    print(f"{'batch':>6}{'plain tok/s':>14}{'schema tok/s':>14}{'ratio':>8}{'target':>8}{'tokens p/s':>16}{'valid':>8}")
    for r in rows:
        tgt = f"{r['target']:.2f}" if r["target"] else "-"
        v = r["valid_per_rep"][-1]
        print(f"{r['batch']:>6}{r['plain_tok_s']:>14.1f}{r['schema_tok_s']:>14.1f}{r['ratio']:>8.3f}{tgt:>8}"
              f"{r['plain_tokens']:>8}/{r['schema_tokens']:<7}{(str(v) + '/' + str(r['requests'])) if v >= 0 else '?':>8}")
    gpu = common.gpu_info() if args.device.startswith("cuda") else {}
    card = common.card_short_name(gpu.get("name", "")) if gpu else "cpu"
    out = pathlib.Path(args.out) if args.out else (pathlib.Path(__file__).resolve().parent.parent / "results" /
                                                   f"{datetime.date.today().isoformat()}_{card}_gpu_structured.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "device": args.device, "dtype": args.dtype, "gpu": gpu,
                               "commit": common.git_commit(), "max_tokens": args.max_tokens, "reps": args.reps,
                               "load_s": load_s, "structured_setup_s": setup_s, "engine_info": info,
                               "schema": SCHEMA, "rows": rows, "date": datetime.datetime.now().isoformat()},
                              indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
