#!/usr/bin/env python3
# bench/structured_mask_bench.py: the host cost of structured output per generated token (issue 18):
# llguidance's token mask (fill) and token acceptance (accept) at a 128K-token vocabulary, for a
# JSON schema, measured as the engine calls them (eli.structured.LLGuidanceConstraint: fill_mask
# into a uint32 bitmask, accept of the sampled token), p50 / p99 over every step of many
# generations.
#
# The vocabulary: a synthetic 128,256-token byte-level vocabulary (Llama 3's size): the 256 single
# bytes, then, when the default model (SmolLM2) is cached, its 49K real BPE tokens, then
# concatenations of two earlier tokens (as BPE merges build them) up to 128,256, deduplicated.
# Generation: at each step a random allowed token (seeded), weighted to finish documents (the
# schema bounds every string and array), until the matcher accepts EOS.
# The mask is what the engine computes on the host while the device runs the forward pass; on a GPU
# it overlaps the step, so a step slows down only when the masks of its constrained rows take longer
# than the forward pass (bench/gpu/bench_structured.py measures that end to end).
#
# Output: a table and JSON in bench/results/<date>_structured_mask.json.
# Usage: PYTHONPATH=python python bench/structured_mask_bench.py [--docs 20] [--vocab 128256] [--seed 0]
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import time

import numpy as np

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 100000},
        "name": {"type": "string", "maxLength": 24},
        "email": {"type": "string", "format": "email", "maxLength": 40},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 4},
        "address": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 16},
            "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"], "additionalProperties": False},
        "status": {"enum": ["active", "inactive", "pending"]},
        "score": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 100}, {"type": "null"}]},
    },
    "required": ["id", "name", "email", "tags", "address", "status", "score"],
    "additionalProperties": False,
}


class SyntheticTokenizer:
    """What eli.structured.tokenizer needs of a tokenizer: token_bytes, len, special ids, encode."""

    def __init__(self, vocab: int, seed: int):
        rng = random.Random(seed)
        toks = [bytes([b]) for b in range(256)]
        seen = set(toks)
        for t in _cached_model_tokens():
            if t and t not in seen and len(toks) < vocab - 1:
                seen.add(t)
                toks.append(t)
        while len(toks) < vocab - 1:
            t = toks[rng.randrange(len(toks))] + toks[rng.randrange(len(toks))]
            if len(t) <= 16 and t not in seen:
                seen.add(t)
                toks.append(t)
        toks.append(b"</s>")
        self._toks = toks
        self.eos_token_id = len(toks) - 1
        self.special_token_ids = frozenset([self.eos_token_id])
        self.bos_token_id = None

    def __len__(self):
        return len(self._toks)

    def token_bytes(self, i: int) -> bytes:
        return self._toks[i]

    def encode(self, s: str, add_special_tokens: bool = False, parse_special: bool = False) -> list[int]:
        return list(s.encode("utf-8"))  # byte tokens: enough for the strings llguidance tokenizes


def _cached_model_tokens() -> list[bytes]:
    """The default model's real BPE tokens when it is cached (nothing is downloaded), else []."""
    try:
        import eli
        from eli import hub
        from eli.tokenizer import Tokenizer

        if not hub.is_cached("smollm2"):
            return []
        meta = eli.inspect_model(str(hub.model_path("smollm2")))["gguf_metadata"]
        tok = Tokenizer.from_gguf_metadata(meta)
        return [tok.token_bytes(i) for i in range(len(tok))]
    except Exception as e:  # the bench still runs on the synthetic part alone
        print(f"(no real tokens: {e})")
        return []


def run(docs: int, vocab: int, seed: int) -> dict:
    from eli.structured.constraint import make_constraint
    from eli.structured.grammar import grammar_for

    t0 = time.perf_counter()
    tok = SyntheticTokenizer(vocab, seed)
    grammar = grammar_for("json_schema", SCHEMA)
    make_constraint(grammar, tok, vocab, [tok.eos_token_id])  # builds and caches the LLTokenizer
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    words = (vocab + 31) // 32
    mask = np.zeros(words, dtype=np.uint32)
    fill_us, accept_us, allowed_counts, lengths, first_us = [], [], [], [], []
    t_build = []
    for _ in range(docs):
        t = time.perf_counter()
        con = make_constraint(grammar, tok, vocab, [tok.eos_token_id])
        t_build.append((time.perf_counter() - t) * 1e6)
        n = 0
        while n < 2000:
            mask[:] = 0
            t = time.perf_counter_ns()
            con.fill_mask(mask.ctypes.data, vocab)
            fill_us.append((time.perf_counter_ns() - t) / 1e3)
            if n == 0:
                first_us.append(fill_us[-1])
            bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[:vocab]
            allowed = np.flatnonzero(bits)
            allowed_counts.append(len(allowed))
            if tok.eos_token_id in allowed:
                break
            # Prefer short tokens a little less than long ones: documents finish in tens of steps.
            token = int(allowed[rng.integers(len(allowed))])
            t = time.perf_counter_ns()
            ok = con.accept(token)
            accept_us.append((time.perf_counter_ns() - t) / 1e3)
            assert ok, "the matcher rejected a token its own mask allowed"
            n += 1
        lengths.append(n)
    pct = lambda xs, q: float(np.percentile(np.asarray(xs), q))
    return {
        "vocab": vocab, "docs": docs, "tokens": int(sum(lengths)), "setup_s": setup_s,
        "mask_us_p50": pct(fill_us, 50), "mask_us_p90": pct(fill_us, 90), "mask_us_p99": pct(fill_us, 99),
        "mask_us_max": max(fill_us), "first_mask_us_p50": pct(first_us, 50),
        "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count(),
        "accept_us_p50": pct(accept_us, 50), "accept_us_p99": pct(accept_us, 99),
        "matcher_build_us_p50": pct(t_build, 50),
        "allowed_tokens_p50": pct(allowed_counts, 50), "doc_tokens_p50": pct(lengths, 50),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="structured output: mask cost per token")
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import llguidance

    r = run(args.docs, args.vocab, args.seed)
    r.update({"llguidance": llguidance.get_version() if hasattr(llguidance, "get_version") else "?",
              "cpu": platform.processor() or platform.machine(), "date": datetime.datetime.now().isoformat()})
    print(f"structured output mask cost, JSON schema, vocab {r['vocab']}, {r['tokens']} tokens in {r['docs']} documents")
    print(f"{'what':<28}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}")
    print(f"{'fill mask (per token)':<28}{r['mask_us_p50']:>10.1f}{r['mask_us_p90']:>10.1f}{r['mask_us_p99']:>10.1f}")
    print(f"{'first mask of a request':<28}{r['first_mask_us_p50']:>10.1f}")
    print(f"{'accept token (per token)':<28}{r['accept_us_p50']:>10.1f}{r['accept_us_p99']:>10.1f}")
    print(f"{'new matcher (per request)':<28}{r['matcher_build_us_p50']:>10.1f}")
    print(f"tokenizer setup (once per model): {r['setup_s']:.2f} s; allowed tokens per step p50 {r['allowed_tokens_p50']:.0f}")
    print(f"machine: {r['cpus']} CPUs, load average {r['load_avg_1min']:.1f} (timings inflate with load)")
    out = pathlib.Path(args.out) if args.out else (pathlib.Path(__file__).parent / "results" /
                                                   f"{datetime.date.today().isoformat()}_structured_mask.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
