#!/usr/bin/env python3
# tests/soak/soak.py: the reliability soak (RELIABILITY.md item 26). Drives eli.AsyncLLM with many
# requests of random prompt lengths, sampling settings and max_tokens, a bounded number in flight,
# ~20% aborted at random moments (before the first token or mid-generation; by task cancellation,
# by closing the stream, by abort(id)), against a KV pool small enough to force preemption.
#
# Invariants checked at the end (each violation is listed; exit code 1 if any):
#   no leaked KV blocks (kv_blocks_free == kv_blocks_total; cached-free blocks count as free),
#   no stuck requests (num_running == num_waiting == 0, every request task ended within a timeout),
#   preemptions > 0, engine healthy, no "error" finishes, token counts within max_tokens,
#   logprobs one entry per token, VmRSS flat after warm-up (last <= warm * (1 + frac) + abs MiB),
#   a sample of greedy requests (temperature 0, ignore_eos, no stop, not aborted) equal token for
#   token to the same prompt run alone on a fresh engine with a large pool.
# Usage: python tests/soak/soak.py [--requests N | --seconds S] [--model PATH] [--json OUT]
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import sys
import time
from typing import Optional

import eli

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_MODEL = str(ROOT / "tests" / "data" / "models" / "llama_base")
MIB = 1024 * 1024

# (prompt ids tuple, max_tokens, model, dtype) -> greedy token ids of a lone run on a fresh engine.
_reference_cache: dict[tuple, list[int]] = {}


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Plan:
    """One request: its prompt, params and how (if at all) it is aborted."""

    __slots__ = ("idx", "prompt", "params", "greedy", "abort", "abort_after", "abort_delay")

    def __init__(self, idx, prompt, params, greedy, abort, abort_after, abort_delay):
        self.idx = idx
        self.prompt = prompt
        self.params = params
        self.greedy = greedy
        self.abort = abort            # None, "cancel_early", "cancel_mid", "close_mid", "abort_id", "abort_id_early"
        self.abort_after = abort_after  # tokens seen before a mid-generation abort
        self.abort_delay = abort_delay  # seconds before an early abort


def make_plan(rng: random.Random, idx: int, vocab: int, max_prompt: int, max_new: int,
              prefixes: list[list[int]], abort_frac: float) -> Plan:
    n = rng.randint(1, max_prompt)
    if prefixes and rng.random() < 0.3:  # shared prefixes exercise the prefix cache
        pre = rng.choice(prefixes)
        prompt = (pre + [rng.randrange(3, vocab) for _ in range(n)])[: max(n, len(pre) + 1)]
        prompt = prompt[:max_prompt]
    else:
        prompt = [rng.randrange(3, vocab) for _ in range(n)]
    max_tokens = rng.randint(1, max_new)
    greedy = rng.random() < 0.35
    if greedy:
        params = eli.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True,
                                    logprobs=rng.choice([None, None, 0, 3]))
    else:
        kw = dict(max_tokens=max_tokens, temperature=rng.choice([0.0, 0.5, 0.8, 1.0, 1.3]),
                  ignore_eos=rng.random() < 0.5)
        if rng.random() < 0.4:
            kw["top_k"] = rng.choice([1, 5, 20, 50])
        if rng.random() < 0.4:
            kw["top_p"] = rng.choice([0.5, 0.9, 0.99])
        if rng.random() < 0.3:
            kw["min_p"] = rng.choice([0.01, 0.05, 0.2])
        if rng.random() < 0.3:
            kw["repetition_penalty"] = rng.choice([0.9, 1.1, 1.5])
        if rng.random() < 0.2:
            kw["presence_penalty"] = rng.choice([-0.5, 0.5, 1.0])
        if rng.random() < 0.2:
            kw["frequency_penalty"] = rng.choice([-0.5, 0.5, 1.0])
        if rng.random() < 0.5:
            kw["seed"] = rng.randrange(2**32)
        if rng.random() < 0.25:
            kw["stop"] = [rng.choice("aeiouxyz .,0123") for _ in range(rng.randint(1, 3))]
            kw["include_stop_str_in_output"] = rng.random() < 0.5
        if rng.random() < 0.15:
            kw["stop_token_ids"] = [rng.randrange(3, vocab)]
        if rng.random() < 0.3:
            kw["logprobs"] = rng.choice([0, 1, 5])
        params = eli.SamplingParams(**kw)
    abort = None
    if rng.random() < abort_frac:
        abort = rng.choice(["cancel_early", "cancel_mid", "close_mid", "abort_id", "abort_id_early"])
    return Plan(idx, prompt, params, greedy and abort is None, abort,
                rng.randint(0, max(0, max_tokens - 1)), rng.uniform(0.0, 0.01))


class Soak:
    def __init__(self, llm: eli.AsyncLLM, plans_rng: random.Random, args: dict):
        self.llm = llm
        self.rng = plans_rng
        self.a = args
        self.violations: list[str] = []
        self.counts = {"requests": 0, "completed": 0, "aborted_planned": 0, "aborted_observed": 0,
                       "stuck": 0, "errors": 0, "finish": {}}
        self.greedy_done: list[tuple[list[int], int, list[int]]] = []  # (prompt, max_tokens, tokens)
        self.greedy_seen = 0
        self.sample_rng = random.Random(args["seed"] + 1)
        self.rss: list[tuple[int, int]] = []  # (requests finished, VmRSS bytes)

    def violate(self, msg: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(msg)

    async def consume(self, p: Plan, rid: str, seen: asyncio.Event):
        """Iterates one request's stream; returns the final snapshot (None if it stopped early)."""
        gen = self.llm.generate(p.prompt, p.params, request_id=rid)
        final = None
        try:
            async for out in gen:
                if out.token_ids and len(out.token_ids) > p.abort_after:
                    seen.set()
                if p.abort == "close_mid" and len(out.token_ids) > p.abort_after and out.finish_reason is None:
                    return None  # the finally below closes the stream mid-generation
                if p.abort == "abort_id" and len(out.token_ids) > p.abort_after and out.finish_reason is None:
                    await self.llm.abort(rid)
                if out.finish_reason is not None:
                    final = out
        finally:
            await gen.aclose()
        return final

    async def one(self, p: Plan) -> None:
        rid = f"soak-{p.idx}"
        seen = asyncio.Event()
        task = asyncio.create_task(self.consume(p, rid, seen))
        if p.abort == "cancel_early":
            await asyncio.sleep(p.abort_delay)
            task.cancel()
        elif p.abort == "abort_id_early":
            await asyncio.sleep(p.abort_delay)
            await self.llm.abort(rid)
        elif p.abort == "cancel_mid":
            waiter = asyncio.create_task(seen.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            task.cancel()
        try:
            final = await asyncio.wait_for(asyncio.shield(task), self.a["request_timeout"])
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            final = None
        except asyncio.TimeoutError:
            self.counts["stuck"] += 1
            self.violate(f"request {rid} ({p.abort or 'normal'}) did not finish in {self.a['request_timeout']} s")
            task.cancel()
            return
        except Exception as e:  # an admission error or a crash in the stream
            self.counts["errors"] += 1
            self.violate(f"request {rid} raised {type(e).__name__}: {e}")
            return
        self.check_final(p, rid, final)

    def check_final(self, p: Plan, rid: str, final) -> None:
        if p.abort:
            self.counts["aborted_planned"] += 1
        if final is None:
            if p.abort is None:
                self.violate(f"request {rid} ended without a final output")
            else:
                self.counts["aborted_observed"] += 1
            return
        fr = final.finish_reason
        self.counts["finish"][fr] = self.counts["finish"].get(fr, 0) + 1
        if fr == "abort":
            self.counts["aborted_observed"] += 1
        allowed = {"stop", "length"} | ({"abort"} if p.abort else set())
        if fr not in allowed:
            self.counts["errors"] += int(fr == "error")
            self.violate(f"request {rid} ({p.abort or 'normal'}) finished {fr!r} {getattr(final, 'error', '')}")
            return
        mt = p.params.max_tokens
        n = len(final.token_ids)
        if n > mt or (fr == "length" and n != mt):
            self.violate(f"request {rid}: {n} tokens for max_tokens {mt} ({fr})")
        if p.params.logprobs is not None and fr != "abort" and (final.logprobs is None or len(final.logprobs) != n):
            self.violate(f"request {rid}: {len(final.logprobs or [])} logprob entries for {n} tokens")
        if p.greedy:
            if fr != "length":
                self.violate(f"greedy request {rid} finished {fr!r}")
            else:
                # Reservoir sample: the harness keeps O(greedy_checks) memory however long it runs.
                self.greedy_seen += 1
                item = (p.prompt, mt, list(final.token_ids))
                if len(self.greedy_done) < self.a["greedy_checks"]:
                    self.greedy_done.append(item)
                else:
                    j = self.sample_rng.randrange(self.greedy_seen)
                    if j < len(self.greedy_done):
                        self.greedy_done[j] = item

    async def worker(self, next_idx, deadline: Optional[float]) -> None:
        a = self.a
        while True:
            i = next_idx()
            if i is None or (deadline is not None and time.monotonic() > deadline):
                return
            p = make_plan(self.rng, i, a["vocab"], a["max_prompt"], a["max_new"], a["prefixes"], a["abort_frac"])
            self.counts["requests"] += 1
            await self.one(p)
            self.counts["completed"] += 1
            self.maybe_sample_rss()

    def maybe_sample_rss(self) -> None:
        done = self.counts["completed"]
        total = self.a["requests"]
        if total:
            step = max(1, total // 10)
            if done % step == 0:
                self.rss.append((done, rss_bytes()))
        elif time.monotonic() >= self._next_rss:
            self.rss.append((done, rss_bytes()))
            self._next_rss += self.a["seconds"] / 10

    async def run(self) -> None:
        a = self.a
        counter = iter(range(a["requests"] if a["requests"] else 1 << 62))
        deadline = time.monotonic() + a["seconds"] if a["seconds"] else None
        self._next_rss = time.monotonic() + (a["seconds"] or 0) / 10
        self.rss.append((0, rss_bytes()))
        await asyncio.gather(*(self.worker(lambda: next(counter, None), deadline) for _ in range(a["concurrency"])))
        self.rss.append((self.counts["completed"], rss_bytes()))


async def settle(llm, timeout: float) -> dict:
    """Waits until the engine is idle with every block free (aborts are applied between steps)."""
    end = time.monotonic() + timeout
    while True:
        s = llm.stats()
        if (s["kv_blocks_free"] == s["kv_blocks_total"] and s["num_running"] == 0 and s["num_waiting"] == 0) \
                or time.monotonic() > end:
            return s
        await asyncio.sleep(0.01)


def reference_tokens(model: str, dtype: str, n_threads: int, block_size: int, cases) -> list[list[int]]:
    """Greedy tokens of each (prompt, max_tokens) run alone on one fresh engine with a large pool."""
    keys = [(tuple(p), mt, model, dtype) for p, mt in cases]
    missing = [k for k in dict.fromkeys(keys) if k not in _reference_cache]
    if missing:
        llm = eli.LLM(model, dtype=dtype, n_threads=n_threads, block_size=block_size, num_kv_blocks=4096,
                      enable_prefix_caching=False)
        try:
            for k in missing:
                params = eli.SamplingParams(max_tokens=k[1], temperature=0.0, ignore_eos=True)
                _reference_cache[k] = list(llm.generate([list(k[0])], params)[0].token_ids)
        finally:
            llm.shutdown()
    return [_reference_cache[k] for k in keys]


def run_soak(model: str = DEFAULT_MODEL, requests: int = 2000, seconds: float = 0.0, concurrency: int = 32,
             block_size: int = 4, num_kv_blocks: int = 0, max_num_seqs: int = 32, max_prompt: int = 96,
             max_new: int = 64, abort_frac: float = 0.2, greedy_checks: int = 50, seed: int = 0,
             dtype: str = "auto", n_threads: int = 0, request_timeout: float = 120.0,
             rss_growth_frac: float = 0.10, rss_growth_mib: float = 16.0, verbose: bool = True) -> dict:
    """Runs the soak; returns the figures, with "violations" (empty when every invariant held)."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    # The pool: one longest request fits (with a spare block), max_num_seqs average ones do not.
    per_seq = -(-(max_prompt + max_new) // block_size) + 1
    if not num_kv_blocks:
        num_kv_blocks = max(per_seq + 2, min(3 * per_seq, max_num_seqs * per_seq // 4))
    llm = eli.AsyncLLM(model, dtype=dtype, n_threads=n_threads or None, block_size=block_size,
                       num_kv_blocks=num_kv_blocks, max_num_seqs=max_num_seqs)
    vocab = llm.info["spec"]["vocab_size"]
    max_len = llm.info["max_model_len"]
    max_prompt = min(max_prompt, max_len // 2)
    max_new = min(max_new, max_len - max_prompt)
    prefixes = [[rng.randrange(3, vocab) for _ in range(rng.randint(block_size, 3 * block_size))] for _ in range(4)]
    args = dict(vocab=vocab, max_prompt=max_prompt, max_new=max_new, prefixes=prefixes, abort_frac=abort_frac,
                requests=0 if seconds else requests, seconds=seconds, concurrency=concurrency,
                request_timeout=request_timeout, greedy_checks=greedy_checks, seed=seed)
    soak = Soak(llm, rng, args)
    try:
        async def main():
            await soak.run()
            return await settle(llm, 30.0)
        stats = asyncio.run(main())
        health = llm.health()
    finally:
        llm.shutdown()
    run_s = time.monotonic() - t0
    v = soak.violations
    if stats["kv_blocks_free"] != stats["kv_blocks_total"]:
        v.append(f"leaked KV blocks: {stats['kv_blocks_free']} free of {stats['kv_blocks_total']}")
    if stats["num_running"] or stats["num_waiting"]:
        v.append(f"stuck in the engine: {stats['num_running']} running, {stats['num_waiting']} waiting")
    if stats["preemptions"] <= 0:
        v.append("no preemption happened: the KV pool is too large for this size")
    if not health.get("healthy", False):
        v.append(f"engine unhealthy: {health}")
    # RSS: the warm-up sample is the one at ~20% of the run (or the first after it).
    rss = [b for _, b in soak.rss]
    warm = rss[min(2, len(rss) - 1)]
    limit = warm * (1 + rss_growth_frac) + rss_growth_mib * MIB
    if rss[-1] > limit:
        v.append(f"VmRSS grew after warm-up: {warm / MIB:.1f} -> {rss[-1] / MIB:.1f} MiB (limit {limit / MIB:.1f})")
    # Greedy equivalence on a sample.
    sample = soak.greedy_done
    refs = reference_tokens(model, dtype, n_threads or None, block_size, [(p, mt) for p, mt, _ in sample])
    mismatches = 0
    for (p, mt, got), want in zip(sample, refs):
        if got != want:
            mismatches += 1
            if mismatches <= 5:
                v.append(f"greedy mismatch: prompt {p} max_tokens {mt}: soak {got} vs alone {want}")
    if greedy_checks and not sample:
        v.append("no greedy request completed to check")
    c = soak.counts
    fig = {
        "model": model, "requests": c["requests"], "completed": c["completed"],
        "aborts_planned": c["aborted_planned"], "aborts_observed": c["aborted_observed"],
        "finish_reasons": c["finish"], "errors": c["errors"], "stuck": c["stuck"],
        "preemptions": stats["preemptions"], "kv_blocks_free": stats["kv_blocks_free"],
        "kv_blocks_total": stats["kv_blocks_total"], "num_running": stats["num_running"],
        "num_waiting": stats["num_waiting"], "prefix_cache_hits": stats["prefix_cache_hits"],
        "prompt_tokens": stats["prompt_tokens"], "generated_tokens": stats["generated_tokens"],
        "steps": stats["steps"], "healthy": bool(health.get("healthy", False)),
        "rss_mib_first": rss[0] / MIB, "rss_mib_warm": warm / MIB, "rss_mib_last": rss[-1] / MIB,
        "rss_mib_max": max(rss) / MIB, "rss_samples_mib": [round(b / MIB, 1) for b in rss],
        "greedy_completed": soak.greedy_seen, "greedy_checked": len(sample), "greedy_mismatches": mismatches,
        "block_size": block_size, "num_kv_blocks": num_kv_blocks, "max_num_seqs": max_num_seqs,
        "concurrency": concurrency, "seed": seed, "duration_s": round(time.monotonic() - t0, 2),
        "soak_s": round(run_s, 2), "violations": v,
    }
    if verbose:
        for k, val in fig.items():
            if k != "violations":
                print(f"{k:>20}: {val}")
        print("violations:" if v else "all invariants held")
        for msg in v:
            print("  -", msg)
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=0.0, help="run for this long instead of --requests")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=4)
    ap.add_argument("--num-kv-blocks", type=int, default=0, help="0: small enough to force preemption")
    ap.add_argument("--max-num-seqs", type=int, default=32)
    ap.add_argument("--max-prompt", type=int, default=96)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--abort-frac", type=float, default=0.2)
    ap.add_argument("--greedy-checks", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--n-threads", type=int, default=0)
    ap.add_argument("--request-timeout", type=float, default=120.0)
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)
    fig = run_soak(model=a.model, requests=a.requests, seconds=a.seconds, concurrency=a.concurrency,
                   block_size=a.block_size, num_kv_blocks=a.num_kv_blocks, max_num_seqs=a.max_num_seqs,
                   max_prompt=a.max_prompt, max_new=a.max_new, abort_frac=a.abort_frac,
                   greedy_checks=a.greedy_checks, seed=a.seed, dtype=a.dtype, n_threads=a.n_threads,
                   request_timeout=a.request_timeout)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(fig, indent=2) + "\n")
    return 1 if fig["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
