#!/usr/bin/env python3
# bench/gpu/bench_kv_tier.py: time to first token of a long prompt whose prefix-cache blocks were
# evicted from the GPU, restored from the host tier (kv_offload_gb) or the disk tier
# (kv_offload_disk_gb) against recomputing them (issue "Offloading", KV host tier: >= 5x), in one run
# on one card (docs/offloading.md, "KV beyond the device").
#
# Protocol, per tier, in its own process (eli.LLM on MODEL_DIR, e.g. random 8B weights from
# bench/gpu/make_weights.py; prefix caching on; num_kv_blocks sized for one long prompt plus a
# margin, so that the second prompt evicts the first's blocks):
#   1. warm-up: a short prompt;
#   2. cold: prompt A (--tokens random ids), max_tokens=1: the TTFT of computing it;
#   3. evict: prompt B of the same length (A's cached blocks leave the GPU: to the host tier, or
#      through a host tier of a few blocks to the disk tier, or, with no tier, they are lost);
#   4. again: prompt A, max_tokens=1: restored from the tier (or recomputed without one), with the
#      stats' host / disk hit counters checked;
#   speedup = cold TTFT / again TTFT.
# Prints a table; writes JSON records (metric kv_tier_ttft_speedup, with both TTFTs, the hit
# tokens, bytes moved, dtype, kv_dtype, card) to --out.
#   usage: bench_kv_tier.py MODEL_DIR [--tokens 16384] [--out kv_tier.json] [--tiers none,host,disk]
#          [--kv-cache-dtype auto] [--device cuda]
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CHILD = r"""
import json, random, sys, time
import eli
cfg = json.loads(sys.argv[1])
n = cfg["tokens"]
bs = 16
opts = dict(device=cfg["device"], skip_tokenizer_init=True, enable_prefix_caching=True, block_size=bs,
            max_model_len=n + 16, max_num_seqs=4, num_kv_blocks=n // bs + max(2, n // bs // 16),
            kv_cache_dtype=cfg["kv_cache_dtype"], **cfg["options"])
llm = eli.LLM(cfg["model"], **opts)
rng = random.Random(0)
top = min(100000, llm.info["spec"]["vocab_size"])
A = [rng.randrange(2, top) for _ in range(n)]
B = [rng.randrange(2, top) for _ in range(n)]
one = eli.SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
def ttft(ids):
    t0 = time.perf_counter()
    llm.generate([{"prompt_token_ids": ids}], one)
    return time.perf_counter() - t0
ttft([rng.randrange(2, top) for _ in range(64)])
cold = ttft(A)
ttft(B)
before = llm.stats()
again = ttft(A)
after = llm.stats()
diff = {k: after.get(k, 0) - before.get(k, 0) for k in ("prefix_cache_hits", "host_prefix_hits", "disk_prefix_hits",
                                                         "kv_bytes_from_host", "kv_bytes_from_disk")}
print("RESULT " + json.dumps({"cold_s": cold, "again_s": again, "stats": diff,
                              "kv_cache_dtype": llm.info["kv_cache_dtype"]}))
llm.shutdown()
"""


def run_tier(model: str, tokens: int, kv_dtype: str, options: dict, device: str) -> dict:
    cfg = {"model": model, "tokens": tokens, "kv_cache_dtype": kv_dtype, "options": options, "device": device}
    return common.run_result_child(CHILD, cfg)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--tiers", default="none,host,disk")
    ap.add_argument("--kv-cache-dtype", default="auto")
    ap.add_argument("--out", default="kv_tier.json")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a quick check of the script")
    a = ap.parse_args()
    # Host tier: room for the whole prompt's KV (an 8B bf16 cache: 128 KiB per token, 2 GiB for 16K).
    gib = max(1.0, a.tokens * 160 * 1024 / 2**30)
    tiers = {
        "none": {},
        "host": {"kv_offload_gb": gib},
        "disk": {"kv_offload_gb": 0.05, "kv_offload_disk_gb": gib},
    }
    card = common.card_name()
    records = []
    print(f"{'tier':<6} {'tokens':>7} {'cold ms':>9} {'again ms':>9} {'speedup':>8}  hits (prefix / host / disk)")
    for name in [t for t in a.tiers.split(",") if t]:
        r = run_tier(a.model, a.tokens, a.kv_cache_dtype, tiers[name], a.device)
        if "error" in r:
            print(f"{name:<6} failed: {r['error'][-800:]}", flush=True)
            records.append({"tier": name, "error": r["error"]})
            continue
        s = r["stats"]
        speed = r["cold_s"] / r["again_s"]
        rec = {"metric": "kv_tier_ttft_speedup", "engine": "eli", "tier": name, "tokens": a.tokens,
               "dtype": "bf16", "kv_dtype": r["kv_cache_dtype"], "card": card, "value": speed,
               "cold_ttft_ms": r["cold_s"] * 1e3, "restored_ttft_ms": r["again_s"] * 1e3, **s, **tiers[name]}
        records.append(rec)
        print(f"{name:<6} {a.tokens:>7} {r['cold_s'] * 1e3:>9.1f} {r['again_s'] * 1e3:>9.1f} {speed:>7.2f}x  "
              f"{s['prefix_cache_hits']} / {s['host_prefix_hits']} / {s['disk_prefix_hits']}", flush=True)
    with open(a.out, "w") as f:
        json.dump({"card": card, "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
