# eli/bench_serve.py: `eli bench serve`, a load generator for OpenAI-compatible servers (eli serve,
# vLLM, llama-server): streams /v1/completions requests, measures TTFT, TPOT and end-to-end latency
# per request, reports throughput and percentiles as a table and JSON.
#
# Invariants: the workload is a pure function of --seed (lengths, token ids, arrival gaps), so two
# runs against two servers send the same requests. Prompts are token-id lists (exact input lengths,
# no tokenizer needed) when the server's /v1/models reports vocab_size, else text; output lengths
# are exact through max_tokens + ignore_eos. TTFT = first streamed token; TPOT = (e2e - TTFT) /
# (output tokens - 1), over requests with more than one output token. Failed requests are counted,
# never timed. An authentication failure (401/403, from /v1/models or any request) ends the run at
# once with one BenchAuthError naming the fix; it is not a data point. Progress (requests done,
# failed) goes to a callback: Progress prints it on stderr (one updating line on a terminal, a
# line per 10% otherwise).
from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import time
from typing import Callable, Optional, TextIO


class BenchAuthError(RuntimeError):
    """The server refused the API key: the whole run would fail the same way."""


def _auth_error(status: int, text: str) -> BenchAuthError:
    return BenchAuthError(f"the server refused the request with HTTP {status} ({text.strip()[:200]}); pass "
                          f"the server's key with --api-key or $ELI_API_KEY")


class Progress:
    """Prints "bench: done/total requests (failed)" to `out`: rewritten in place on a terminal,
    else one line per 10% of the run."""

    def __init__(self, out: TextIO, total: int):
        self.out, self.total = out, total
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._step = -1

        self._open = False  # a terminal line without its newline yet

    def __call__(self, done: int, failed: int) -> None:
        text = f"bench: {done}/{self.total} requests" + (f" ({failed} failed)" if failed else "")
        if self.tty:
            self._open = done != self.total
            self.out.write("\r" + text + ("" if self._open else "\n"))
        else:
            step = done * 10 // max(self.total, 1)
            if step == self._step:
                return
            self._step = step
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        """Ends a half-written terminal line (before an error message)."""
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False


@dataclasses.dataclass
class Result:
    ok: bool
    input_len: int
    output_len: int = 0
    ttft: Optional[float] = None
    e2e: Optional[float] = None
    error: Optional[str] = None

    @property
    def tpot(self) -> Optional[float]:
        if not self.ok or self.ttft is None or self.output_len < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_len - 1)


def _lengths(rng: random.Random, n: int, mean: int, dist: str, sigma: float, cap: int) -> list[int]:
    if dist == "fixed":
        return [max(1, min(mean, cap))] * n
    # lognormal with the requested mean: mu = ln(mean) - sigma^2/2 (ShareGPT-like long tail)
    mu = math.log(max(mean, 1)) - sigma * sigma / 2
    return [max(1, min(int(round(rng.lognormvariate(mu, sigma))), cap)) for _ in range(n)]


def make_workload(num_requests: int, input_mean: int, output_mean: int, *, dist: str = "fixed",
                  seed: int = 0, vocab_size: Optional[int] = None, max_model_len: Optional[int] = None,
                  sigma_in: float = 1.0, sigma_out: float = 0.8) -> list[tuple[object, int, int]]:
    """[(prompt, input_len, output_len)], deterministic in seed."""
    rng = random.Random(seed)
    cap = max_model_len or 1 << 30
    ins = _lengths(rng, num_requests, input_mean, dist, sigma_in, max(cap - 1, 1))
    outs = _lengths(rng, num_requests, output_mean, dist, sigma_out, cap)
    work = []
    for i, o in zip(ins, outs):
        o = max(1, min(o, cap - i))
        if vocab_size:
            lo = min(100, vocab_size // 4)  # skip the low ids (often special/control tokens)
            prompt: object = [rng.randrange(lo, vocab_size) for _ in range(i)]
        else:
            prompt = " ".join(rng.choice(("the", "a", "cat", "sat", "on", "mat", "of", "and")) for _ in range(i))
        work.append((prompt, i, o))
    return work


async def _one(client, url: str, model: Optional[str], prompt, input_len: int, output_len: int,
               headers: dict) -> Result:
    body = {"prompt": prompt, "max_tokens": output_len, "temperature": 0.0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    if model:
        body["model"] = model
    start = time.perf_counter()
    ttft = None
    chunks = 0
    usage = None
    try:
        async with client.stream("POST", url + "/v1/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                text = (await r.aread()).decode("utf-8", "replace")[:200]
                if r.status_code in (401, 403):
                    raise _auth_error(r.status_code, text)
                return Result(False, input_len, error=f"HTTP {r.status_code}: {text}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:].strip()
                if data == "[DONE]":
                    break
                ev = json.loads(data)
                if "error" in ev:
                    return Result(False, input_len, error=str(ev["error"].get("message")))
                if ev.get("usage"):
                    usage = ev["usage"]
                for ch in ev.get("choices") or []:
                    if ch.get("text") or ch.get("finish_reason") is None:
                        if ttft is None:
                            ttft = time.perf_counter() - start
                        chunks += 1
    except BenchAuthError:
        raise
    except Exception as e:  # noqa: BLE001 -- a failed request is a data point, not a crash
        return Result(False, input_len, error=f"{type(e).__name__}: {e}")
    e2e = time.perf_counter() - start
    out = usage.get("completion_tokens", chunks) if usage else chunks
    return Result(True, input_len, out, ttft, e2e)


def _pct(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize(results: list[Result], duration: float) -> dict:
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.output_len for r in ok)
    in_tokens = sum(r.input_len for r in ok)
    summary: dict = {
        "num_requests": len(results), "successful": len(ok), "failed": len(results) - len(ok),
        "duration_s": duration,
        "request_throughput": len(ok) / duration if duration > 0 else 0.0,
        "input_token_throughput": in_tokens / duration if duration > 0 else 0.0,
        "output_token_throughput": out_tokens / duration if duration > 0 else 0.0,
        "total_input_tokens": in_tokens, "total_output_tokens": out_tokens,
    }
    for name, vals in (("ttft", [r.ttft for r in ok if r.ttft is not None]),
                       ("tpot", [r.tpot for r in ok if r.tpot is not None]),
                       ("e2e", [r.e2e for r in ok if r.e2e is not None])):
        ms = [x * 1000 for x in vals]
        summary[f"mean_{name}_ms"] = sum(ms) / len(ms) if ms else None
        for q in (50, 90, 99):
            summary[f"p{q}_{name}_ms"] = _pct(ms, q)
    errors = [r.error for r in results if not r.ok][:5]
    if errors:
        summary["first_errors"] = errors
    return summary


def format_table(s: dict) -> str:
    def f(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    lines = ["============ eli bench serve ============",
             f"{'successful requests:':<34}{s['successful']}",
             f"{'failed requests:':<34}{s['failed']}",
             f"{'duration (s):':<34}{f(s['duration_s'])}",
             f"{'request throughput (req/s):':<34}{f(s['request_throughput'])}",
             f"{'input token throughput (tok/s):':<34}{f(s['input_token_throughput'])}",
             f"{'output token throughput (tok/s):':<34}{f(s['output_token_throughput'])}",
             f"{'':<14}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}"]
    for name, label in (("ttft", "TTFT (ms)"), ("tpot", "TPOT (ms)"), ("e2e", "E2E (ms)")):
        lines.append(f"{label:<14}" + "".join(f"{f(s[f'{k}_{name}_ms']):>10}" for k in ("mean", "p50", "p90", "p99")))
    for e in s.get("first_errors", []):
        lines.append(f"error: {e}")
    return "\n".join(lines)


async def run_bench(url: str, *, model: Optional[str] = None, num_requests: int = 200,
                    request_rate: float = math.inf, concurrency: Optional[int] = None, seed: int = 0,
                    input_len_mean: int = 128, output_len_mean: int = 128, dist: str = "fixed",
                    api_key: Optional[str] = None, timeout_s: float = 600.0,
                    progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Runs the benchmark against `url` (server root) and returns the summary dict. Raises
    BenchAuthError at the first 401/403. progress(done, failed) is called as requests end."""
    import httpx

    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency or 1000, max_keepalive_connections=concurrency or 1000)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        vocab = max_len = None
        try:
            r = await client.get(url + "/v1/models", headers=headers)
        except Exception:  # noqa: BLE001 -- unreachable: every request will say so
            r = None
        if r is not None and r.status_code in (401, 403):
            raise _auth_error(r.status_code, r.text)
        try:
            card = (r.json().get("data") or [{}])[0]
            model = model or card.get("id")
            vocab, max_len = card.get("vocab_size"), card.get("max_model_len")
        except Exception:  # noqa: BLE001 -- servers without the extension fields still work
            pass
        work = make_workload(num_requests, input_len_mean, output_len_mean, dist=dist, seed=seed,
                             vocab_size=vocab, max_model_len=max_len)
        rng = random.Random(seed + 1)
        sem = asyncio.Semaphore(concurrency) if concurrency else None
        counts = {"done": 0, "failed": 0}

        async def limited(item):
            try:
                if sem is None:
                    res = await _one(client, url, model, *item, headers)
                else:
                    async with sem:
                        res = await _one(client, url, model, *item, headers)
            except BenchAuthError:
                counts["auth_failed"] = 1
                raise
            counts["done"] += 1
            counts["failed"] += not res.ok
            if progress is not None:
                progress(counts["done"], counts["failed"])
            return res

        start = time.perf_counter()
        tasks = []
        try:
            for item in work:
                tasks.append(asyncio.ensure_future(limited(item)))
                if math.isfinite(request_rate) and request_rate > 0:
                    await asyncio.sleep(rng.expovariate(request_rate))  # Poisson arrivals
                if counts.get("auth_failed"):
                    break  # gather() below raises it
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        duration = time.perf_counter() - start
    s = summarize(list(results), duration)
    s.update(url=url, model=model, request_rate=request_rate if math.isfinite(request_rate) else "inf",
             concurrency=concurrency, seed=seed, input_len_mean=input_len_mean, output_len_mean=output_len_mean,
             length_dist=dist)
    return s
