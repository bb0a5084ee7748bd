#!/usr/bin/env python3
# tests/soak/soak_server.py: the server half of the reliability soak (RELIABILITY.md item 26; the
# engine half is soak.py). Starts `python -m eli serve` as a subprocess on a free loopback port with
# a KV pool small enough to force preemption, drives POST /v1/completions from many concurrent httpx
# clients (token-id prompts of random lengths, random sampling settings, n, logprobs, stream on/off)
# and disconnects ~20% of them (streams closed mid-way or before the first chunk, non-streaming
# requests cancelled mid-request).
#
# Invariants checked at the end (each violation is listed; exit code 1 if any):
#   after the run settles, /metrics says eli:kv_blocks_used == 0 (no leaked blocks; cached-free
#   prefix blocks count as free), eli:num_requests_running == eli:num_requests_waiting == 0 (nothing
#   stuck), eli:num_preemptions > 0, /health is 200; every request ended within a timeout; every
#   non-disconnected request got HTTP 200 with n choices ending "stop"/"length", token counts within
#   max_tokens and one logprob entry per token; the server process's VmRSS is flat after warm-up
#   (last <= warm * (1 + frac) + abs MiB, warm = the sample at 20%; in a long enough run, the
#   least-squares slope of the second half's samples <= rss_slope_max bytes per request); with
#   --trace (the server under traced_serve.py), its per-request tables (AsyncLLM routes, early
#   outputs, ids, stream_queued_outputs; the server's sse_queued) are empty once idle; a sample of
#   greedy requests (temperature 0, ignore_eos, not disconnected) has every choice's text equal to
#   the same prompt run alone on a fresh in-process eli.LLM with a large pool (run after the server
#   has stopped); the server log holds no traceback other than BENIGN_SERVER_EXCEPTIONS; SIGTERM
#   stops it cleanly.
# Usage: python tests/soak/soak_server.py [--requests N | --seconds S] [--trace DIR] [--json OUT]
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Optional

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_MODEL = str(ROOT / "tests" / "data" / "models" / "llama_base")
MIB = 1024 * 1024
STOP_CHARS = "aeiouxyz .,0123"


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(text: str, name: str, labels: str = "") -> Optional[float]:
    """The value of `name` or `name`_total (first sample whose label set contains `labels`) in a /metrics page."""
    for m in re.finditer(rf"^{re.escape(name)}(?:_total)?(?:{{([^}}]*)}})? ([-+0-9.eE]+|NaN)$", text, re.M):
        if labels in (m.group(1) or ""):
            return float(m.group(2))
    return None


# Exceptions the server may log without failing the soak: a client that disconnects while its
# request body is still being read surfaces in the handler as Starlette's ClientDisconnect (logged as
# an "unhandled error", answered 500 to nobody; nothing is leaked). Any other traceback is a violation.
BENIGN_SERVER_EXCEPTIONS = {"starlette.requests.ClientDisconnect"}


def log_exceptions(text: str) -> dict[str, int]:
    """Exception type -> count for every traceback in a server log (each chained one counted)."""
    counts: dict[str, int] = {}
    in_tb = False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
        elif in_tb and line and not line[0].isspace():
            name = line.split(":", 1)[0].strip()
            counts[name] = counts.get(name, 0) + 1
            in_tb = False
    return counts


class Server:
    """`python -m eli serve` in a subprocess on 127.0.0.1:<free port>; stderr goes to a log file."""

    def __init__(self, model: str, dtype: str, n_threads: int, block_size: int, num_kv_blocks: int,
                 max_num_seqs: int, log_path: str, trace_dir: Optional[str] = None, tracemalloc: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # trace_dir: the same server under tests/soak/traced_serve.py (memory probes on SIGUSR1/2).
        launcher = [str(pathlib.Path(__file__).with_name("traced_serve.py"))] if trace_dir else ["-m", "eli"]
        cmd = [sys.executable, *launcher, "serve", "-m", model, "--offline", "--device", "cpu",
               "--dtype", dtype, "--host", "127.0.0.1", "--port", str(self.port),
               "--served-model-name", "soak", "--log-level", "warning", "--block-size", str(block_size),
               "--num-kv-blocks", str(num_kv_blocks), "--max-num-seqs", str(max_num_seqs)]
        if n_threads:
            cmd += ["--threads", str(n_threads)]
        env = dict(os.environ)
        self.trace_dir = trace_dir
        if trace_dir:
            env["ELI_SOAK_TRACE_DIR"] = trace_dir
            env["ELI_SOAK_TRACEMALLOC"] = "1" if tracemalloc else "0"
        # The server imports the same eli as this process (the installed wheel in CI, where the
        # source tree's python/eli has no compiled module; the source tree with ELI_NATIVE_DIR).
        import eli as _eli_pkg
        pkg_parent = str(pathlib.Path(_eli_pkg.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH")]))
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"eli serve exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"eli serve did not become ready in {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        self.log.flush()
        return pathlib.Path(self.log_path).read_bytes()[-n:].decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: graceful shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Plan:
    """One HTTP request: its JSON body and how (if at all) the client disconnects."""

    __slots__ = ("idx", "prompt", "body", "greedy", "abort", "abort_after", "abort_delay")

    def __init__(self, idx, prompt, body, greedy, abort, abort_after, abort_delay):
        self.idx = idx
        self.prompt = prompt
        self.body = body
        self.greedy = greedy
        self.abort = abort              # None, "stream_close_mid", "stream_cancel_early", "request_cancel"
        self.abort_after = abort_after  # SSE chunks read before a mid-stream close
        self.abort_delay = abort_delay  # 0..1: when to cancel, as a fraction of a typical latency


def make_plan(rng: random.Random, idx: int, vocab: int, max_prompt: int, max_new: int,
              prefixes: list[list[int]], abort_frac: float) -> Plan:
    n_prompt = rng.randint(1, max_prompt)
    if prefixes and rng.random() < 0.3:  # shared prefixes exercise the prefix cache
        pre = rng.choice(prefixes)
        prompt = (pre + [rng.randrange(3, vocab) for _ in range(n_prompt)])[: max(n_prompt, len(pre) + 1)]
        prompt = prompt[:max_prompt]
    else:
        prompt = [rng.randrange(3, vocab) for _ in range(n_prompt)]
    max_tokens = rng.randint(1, max_new)
    stream = rng.random() < 0.5
    body = {"model": "soak", "prompt": prompt, "max_tokens": max_tokens, "stream": stream}
    if stream and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    greedy = rng.random() < 0.35
    if greedy:
        body.update(temperature=0.0, ignore_eos=True, n=rng.choice([1, 1, 1, 2]))
        lp = rng.choice([None, None, 0, 3])
        if lp is not None:
            body["logprobs"] = lp
    else:
        body["temperature"] = rng.choice([0.0, 0.5, 0.8, 1.0, 1.3])
        body["ignore_eos"] = rng.random() < 0.5
        body["n"] = rng.choice([1, 1, 1, 2, 3])
        if rng.random() < 0.4:
            body["top_k"] = rng.choice([1, 5, 20, 50])
        if rng.random() < 0.4:
            body["top_p"] = rng.choice([0.5, 0.9, 0.99])
        if rng.random() < 0.3:
            body["min_p"] = rng.choice([0.01, 0.05, 0.2])
        if rng.random() < 0.3:
            body["repetition_penalty"] = rng.choice([0.9, 1.1, 1.5])
        if rng.random() < 0.2:
            body["presence_penalty"] = rng.choice([-0.5, 0.5, 1.0])
        if rng.random() < 0.2:
            body["frequency_penalty"] = rng.choice([-0.5, 0.5, 1.0])
        if rng.random() < 0.5:
            body["seed"] = rng.randrange(2**32)
        if rng.random() < 0.25:
            body["stop"] = [rng.choice(STOP_CHARS) for _ in range(rng.randint(1, 3))]
            body["include_stop_str_in_output"] = rng.random() < 0.5
        if rng.random() < 0.15:
            body["stop_token_ids"] = [rng.randrange(3, vocab)]
        if rng.random() < 0.3:
            body["logprobs"] = rng.choice([0, 1, 5])
    abort = None
    if rng.random() < abort_frac:
        abort = rng.choice(["stream_close_mid", "stream_cancel_early", "request_cancel"])
        body["stream"] = abort != "request_cancel"
        if not body["stream"]:
            body.pop("stream_options", None)
    return Plan(idx, prompt, body, greedy and abort is None, abort,
                rng.randint(0, max(0, max_tokens - 1)), rng.random())


async def sse_lines(r: httpx.Response):
    """The lines of an SSE body split on \n only (SSE's own rule; \r is not sent by the server).
    httpx's aiter_lines() uses str.splitlines(), which also splits inside JSON strings at U+0085,
    U+2028 and U+2029 -- characters json.dumps leaves unescaped and the tiny model does emit."""
    buf = ""
    async for text in r.aiter_text():
        buf += text
        *lines, buf = buf.split("\n")
        for line in lines:
            yield line.rstrip("\r")
    if buf:
        yield buf


class Result:
    """What one request returned: per-choice text, token count (-1 when unknown), logprob tokens,
    finish reason; the usage block if any."""

    def __init__(self, n: int):
        self.text = [""] * n
        self.tokens: list[Optional[list]] = [None] * n
        self.finish: list[Optional[str]] = [None] * n
        self.usage: Optional[dict] = None
        self.done = False  # stream: [DONE] seen; non-stream: body parsed


class Soak:
    def __init__(self, client: httpx.AsyncClient, server: Server, rng: random.Random, args: dict):
        self.client = client
        self.server = server
        self.rng = rng
        self.a = args
        self.violations: list[str] = []
        self.counts = {"requests": 0, "completed": 0, "aborted_planned": 0, "disconnected": 0,
                       "stuck": 0, "errors": 0, "streamed": 0, "choices": 0, "finish": {}}
        self.greedy_done: list[tuple[list[int], int, list[str]]] = []  # (prompt, max_tokens, texts)
        self.greedy_seen = 0
        self.sample_rng = random.Random(args["seed"] + 1)
        self.rss: list[tuple[int, int]] = []  # (requests finished, server VmRSS bytes)
        self.lat_mean, self.lat_n = 0.1, 0  # latency of undisturbed requests (s): mean of the last ~100

    def violate(self, msg: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(msg)

    async def post(self, p: Plan, seen: asyncio.Event) -> Optional[Result]:
        """Sends one request; returns its Result, or None when the client closed it on purpose."""
        url = self.server.url + "/v1/completions"
        res = Result(p.body.get("n", 1))
        if not p.body["stream"]:
            r = await self.client.post(url, json=p.body)
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
            j = r.json()
            for c in j["choices"]:
                i = c["index"]
                res.text[i] = c["text"]
                res.finish[i] = c["finish_reason"]
                if c.get("logprobs") is not None:
                    res.tokens[i] = list(c["logprobs"]["tokens"])
            res.usage = j.get("usage")
            res.done = True
            return res
        chunks = 0
        async with self.client.stream("POST", url, json=p.body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:300]!r}")
            async for line in sse_lines(r):
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    res.done = True
                    break
                ev = json.loads(data)
                if "error" in ev:
                    raise RuntimeError(f"stream error event: {ev['error']}")
                if ev.get("usage"):
                    res.usage = ev["usage"]
                for c in ev.get("choices", []):
                    i = c["index"]
                    res.text[i] += c["text"]
                    if c.get("logprobs") is not None:
                        res.tokens[i] = (res.tokens[i] or []) + list(c["logprobs"]["tokens"])
                    if c.get("finish_reason") is not None:
                        res.finish[i] = c["finish_reason"]
                chunks += 1
                if chunks > p.abort_after:
                    seen.set()
                if p.abort == "stream_close_mid" and chunks > p.abort_after:
                    return None  # leaving the context closes the connection mid-stream
        return res

    async def one(self, p: Plan) -> None:
        seen = asyncio.Event()
        t0 = time.monotonic()
        task = asyncio.create_task(self.post(p, seen))
        if p.abort in ("stream_cancel_early", "request_cancel"):
            # Early cancels land in the first 10 ms (usually before the first token); request
            # cancels anywhere in a typical request (the running mean latency, self-calibrating).
            scale = 0.01 if p.abort == "stream_cancel_early" else self.lat_mean
            done, _ = await asyncio.wait([task], timeout=p.abort_delay * scale)
            if not done:
                task.cancel()
        try:
            res = await asyncio.wait_for(asyncio.shield(task), self.a["request_timeout"])
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            res = None
        except asyncio.TimeoutError:
            self.counts["stuck"] += 1
            self.violate(f"request {p.idx} ({p.abort or 'normal'}) did not finish in {self.a['request_timeout']} s")
            task.cancel()
            return
        except Exception as e:  # an HTTP error, a bad stream, a dropped connection
            self.counts["errors"] += 1
            self.violate(f"request {p.idx} ({p.abort or 'normal'}) raised {type(e).__name__}: {e}")
            return
        if p.abort is None:
            self.lat_n += 1
            self.lat_mean += (time.monotonic() - t0 - self.lat_mean) / min(self.lat_n, 100)
        self.check(p, res)

    def check(self, p: Plan, res: Optional[Result]) -> None:
        b = p.body
        n, mt = b.get("n", 1), b["max_tokens"]
        self.counts["streamed"] += int(b["stream"])
        if p.abort:
            self.counts["aborted_planned"] += 1
        if res is None:
            if p.abort is None:
                self.violate(f"request {p.idx} ended without a response")
            else:
                self.counts["disconnected"] += 1
            return
        if not res.done:
            self.violate(f"request {p.idx}: stream ended without [DONE]")
            return
        self.counts["choices"] += n
        for i in range(n):
            fr = res.finish[i]
            self.counts["finish"][fr] = self.counts["finish"].get(fr, 0) + 1
            if fr not in ("stop", "length"):
                self.counts["errors"] += int(fr in ("error", "abort"))
                self.violate(f"request {p.idx} choice {i} finished {fr!r}")
                return
            toks = res.tokens[i]
            if "logprobs" in b:
                if toks is None or len(toks) > mt or (fr == "length" and len(toks) != mt):
                    self.violate(f"request {p.idx} choice {i}: {None if toks is None else len(toks)} "
                                 f"logprob tokens for max_tokens {mt} ({fr})")
        if res.usage is not None:
            ct = res.usage.get("completion_tokens", -1)
            if not 0 <= ct <= n * mt or (all(f == "length" for f in res.finish) and ct != n * mt):
                self.violate(f"request {p.idx}: usage {res.usage} for n {n} max_tokens {mt} ({res.finish})")
        elif b["stream"] and b.get("stream_options"):
            self.violate(f"request {p.idx}: include_usage stream without a usage chunk")
        if p.greedy:
            if any(f != "length" for f in res.finish):
                self.violate(f"greedy request {p.idx} finished {res.finish}")
                return
            if len(set(res.text)) != 1:
                self.violate(f"greedy request {p.idx}: its {n} choices differ: {res.text}")
            # Reservoir sample: the harness keeps O(greedy_checks) memory however long it runs.
            self.greedy_seen += 1
            item = (p.prompt, mt, list(res.text))
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

    def sample_rss(self, final: bool = False) -> None:
        done = self.counts["completed"]
        self.rss.append((done, rss_bytes(self.server.proc.pid)))
        if self.server.trace_dir:  # traced_serve.py writes a memory probe
            self.server.proc.send_signal(signal.SIGUSR2 if final else signal.SIGUSR1)

    def maybe_sample_rss(self) -> None:
        done = self.counts["completed"]
        total, k = self.a["requests"], self.a["rss_samples"]
        if total:
            if done % max(1, total // k) == 0:
                self.sample_rss()
        elif time.monotonic() >= self._next_rss:
            self.sample_rss()
            self._next_rss += self.a["seconds"] / k

    async def run(self) -> None:
        a = self.a
        counter = iter(range(a["requests"] if a["requests"] else 1 << 62))
        deadline = time.monotonic() + a["seconds"] if a["seconds"] else None
        self._next_rss = time.monotonic() + (a["seconds"] or 0) / a["rss_samples"]
        self.sample_rss()
        await asyncio.gather(*(self.worker(lambda: next(counter, None), deadline) for _ in range(a["concurrency"])))


def rss_slope(samples: list[tuple[int, int]]) -> Optional[float]:
    """Least-squares slope (bytes per request) of (requests finished, VmRSS bytes) samples; None
    with fewer than 3 distinct request counts. A fit, not last - first: one transient sample (a
    burst of threads, a pymalloc arena in use for a moment) moves it little."""
    xs = [float(d) for d, _ in samples]
    if len(set(xs)) < 3:
        return None
    ys = [float(b) for _, b in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def final_probe(server: "Server", trace_dir: str, timeout: float = 120.0) -> dict:
    """The traced server's final probe (sent by sample_rss(final=True)), read from probes.jsonl."""
    path = pathlib.Path(trace_dir) / "probes.jsonl"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            lines = path.read_text().splitlines()
            if lines:
                last = json.loads(lines[-1])
                if last.get("final"):
                    return last
        time.sleep(0.05)
    return {"tables": {"final_probe_missing": 1}}


async def settle(client: httpx.AsyncClient, url: str, timeout: float) -> str:
    """Waits until /metrics shows an idle engine with every block free; returns the last page."""
    end = time.monotonic() + timeout
    while True:
        text = (await client.get(url + "/metrics")).text
        if (metric(text, "eli:kv_blocks_used") == 0 and metric(text, "eli:num_requests_running") == 0
                and metric(text, "eli:num_requests_waiting") == 0) or time.monotonic() > end:
            return text
        await asyncio.sleep(0.05)


def reference_texts(model: str, dtype: str, n_threads: int, block_size: int, cases) -> list[str]:
    """Greedy text of each (prompt, max_tokens) run alone on one fresh engine with a large pool."""
    import eli

    out: dict[tuple, str] = {}
    llm = eli.LLM(model, device="cpu", dtype=dtype, n_threads=n_threads or None, block_size=block_size,
                  num_kv_blocks=4096, enable_prefix_caching=False)
    try:
        for p, mt in cases:
            k = (tuple(p), mt)
            if k not in out:
                params = eli.SamplingParams(max_tokens=mt, temperature=0.0, ignore_eos=True)
                out[k] = llm.generate([list(p)], params)[0].text
    finally:
        llm.shutdown()
    return [out[(tuple(p), mt)] for p, mt in cases]


def run_soak(model: str = DEFAULT_MODEL, requests: int = 2000, seconds: float = 0.0, concurrency: int = 32,
             block_size: int = 4, num_kv_blocks: int = 40, max_num_seqs: int = 16, max_prompt: int = 48,
             max_new: int = 32, abort_frac: float = 0.2, greedy_checks: int = 50, seed: int = 0,
             dtype: str = "float32", n_threads: int = 1, request_timeout: float = 120.0,
             rss_growth_frac: float = 0.10, rss_growth_mib: float = 16.0, rss_samples: int = 40,
             rss_slope_max: float = 512.0, rss_slope_min_requests: int = 3000, log_path: Optional[str] = None,
             trace_dir: Optional[str] = None, tracemalloc: bool = False, verbose: bool = True) -> dict:
    """Runs the server soak; returns the figures, with "violations" (empty when every invariant held).

    Server memory: VmRSS is sampled rss_samples times (plus at the start and, idle, after the run);
    the last sample must be <= warm * (1 + rss_growth_frac) + rss_growth_mib MiB (warm: the first
    sample at >= 20% of the requests), and where the second half of the run spans at least
    rss_slope_min_requests requests, the least-squares slope of its samples must be <= rss_slope_max
    bytes per request. trace_dir runs the server under traced_serve.py; then its per-request tables
    must be empty once idle (tracemalloc adds Python-heap tracing, see traced_serve.py)."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    per_seq = -(-(max_prompt + max_new) // block_size)
    if num_kv_blocks < per_seq + 1:
        raise ValueError(f"{num_kv_blocks} KV blocks cannot hold one longest request ({per_seq} blocks + 1)")
    log_path = log_path or f"/tmp/eli_soak_server_{os.getpid()}.log"
    server = Server(model, dtype, n_threads, block_size, num_kv_blocks, max_num_seqs, log_path, trace_dir,
                    tracemalloc)
    v: list[str] = []
    try:
        server.wait_ready()
        info = httpx.get(server.url + "/v1/models", timeout=10).json()["data"][0]
        vocab, max_len = int(info["vocab_size"]), int(info["max_model_len"])
        max_prompt = min(max_prompt, max_len // 2)
        max_new = min(max_new, max_len - max_prompt)
        prefixes = [[rng.randrange(3, vocab) for _ in range(rng.randint(block_size, 3 * block_size))]
                    for _ in range(4)]
        args = dict(vocab=vocab, max_prompt=max_prompt, max_new=max_new, prefixes=prefixes,
                    abort_frac=abort_frac, requests=0 if seconds else requests, seconds=seconds,
                    concurrency=concurrency, request_timeout=request_timeout, greedy_checks=greedy_checks,
                    seed=seed, rss_samples=rss_samples)

        async def main():
            limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
            async with httpx.AsyncClient(timeout=httpx.Timeout(request_timeout), limits=limits) as client:
                soak = Soak(client, server, rng, args)
                await soak.run()
                page = await settle(client, server.url, 30.0)
                if trace_dir:
                    await asyncio.sleep(0.5)  # handlers of the last disconnects finish their cleanup
                soak.sample_rss(final=True)  # the idle server after the run
                probe = final_probe(server, trace_dir) if trace_dir else None
                health = (await client.get(server.url + "/health")).status_code
                return soak, page, health, probe

        soak, page, health, probe = asyncio.run(main())
        soak_s = time.monotonic() - t0
    finally:
        rc = server.stop()
    v += soak.violations
    g = lambda name, labels="": metric(page, name, labels)  # noqa: E731
    used, total = g("eli:kv_blocks_used"), g("eli:kv_blocks_total")
    running, waiting, preempt = g("eli:num_requests_running"), g("eli:num_requests_waiting"), g("eli:num_preemptions")
    if used != 0:
        v.append(f"leaked KV blocks: {used} of {total} in use after the run")
    if running or waiting:
        v.append(f"stuck in the engine: {running} running, {waiting} waiting")
    if not preempt:
        v.append("no preemption happened: the KV pool is too large for this size")
    if health != 200:
        v.append(f"/health returned {health} after the run")
    if rc not in (0, -15):
        v.append(f"eli serve exited {rc} on SIGTERM: {server.log_tail(1000)}")
    exc = log_exceptions(pathlib.Path(log_path).read_text(errors="replace"))
    bad = {k: n for k, n in exc.items() if k not in BENIGN_SERVER_EXCEPTIONS}
    if bad:
        v.append(f"server logged unexpected exceptions {bad} (see {log_path})")
    rss = [b for _, b in soak.rss]
    done_at = [d for d, _ in soak.rss]
    # warm = the first sample at or after 20% of the requests (time-boxed runs: of the samples)
    n_done = soak.counts["completed"]
    warm_i = next((i for i, d in enumerate(done_at) if d >= 0.2 * n_done), len(rss) - 1)
    warm = rss[warm_i]
    limit = warm * (1 + rss_growth_frac) + rss_growth_mib * MIB
    if rss[-1] > limit:
        v.append(f"server VmRSS grew after warm-up: {warm / MIB:.1f} -> {rss[-1] / MIB:.1f} MiB "
                 f"(limit {limit / MIB:.1f})")
    half = [(d, b) for d, b in soak.rss if d >= n_done / 2]
    slope = rss_slope(half)
    if slope is not None and n_done - half[0][0] >= rss_slope_min_requests and slope > rss_slope_max:
        v.append(f"server VmRSS still grows in the second half of the run: {slope:.0f} bytes per request "
                 f"(limit {rss_slope_max:.0f}) over requests {half[0][0]}..{n_done}")
    if probe is not None:
        busy = {k: n for k, n in probe.get("tables", {}).items() if n}
        if busy:
            v.append(f"idle server still holds per-request state: {busy}")
    sample = soak.greedy_done
    refs = reference_texts(model, dtype, n_threads, block_size, [(p, mt) for p, mt, _ in sample])
    mismatches = 0
    for (p, mt, got), want in zip(sample, refs):
        if any(t != want for t in got):
            mismatches += 1
            if mismatches <= 5:
                v.append(f"greedy mismatch: prompt {p} max_tokens {mt}: server {got!r} vs alone {want!r}")
    if greedy_checks and not sample:
        v.append("no greedy request completed to check")
    c = soak.counts
    fig = {
        "model": model, "requests": c["requests"], "completed": c["completed"], "streamed": c["streamed"],
        "choices": c["choices"], "aborts_planned": c["aborted_planned"], "disconnected": c["disconnected"],
        "finish_reasons": c["finish"], "errors": c["errors"], "stuck": c["stuck"],
        "server_finished_abort": g("eli:request_success", 'finished_reason="abort"') or 0.0,
        "preemptions": preempt, "kv_blocks_used": used, "kv_blocks_total": total, "num_running": running,
        "num_waiting": waiting, "prefix_cache_hits": g("eli:prefix_cache_hits"),
        "prompt_tokens": g("eli:prompt_tokens"), "generated_tokens": g("eli:generation_tokens"),
        "health_status": health, "server_exit": rc, "server_log_exceptions": exc,
        "rss_mib_first": rss[0] / MIB, "rss_mib_warm": warm / MIB, "rss_mib_last": rss[-1] / MIB,
        "rss_mib_max": max(rss) / MIB, "rss_samples_mib": [round(b / MIB, 1) for b in rss],
        "rss_samples_at": done_at,
        "rss_slope_2nd_half_bytes_per_request": None if slope is None else round(slope, 1),
        "rss_mib_2nd_half_growth": round((half[-1][1] - half[0][1]) / MIB, 2) if half else None,
        "server_tables_idle": None if probe is None else probe.get("tables"),
        "server_threads_idle": None if probe is None else probe.get("threads"),
        "greedy_completed": soak.greedy_seen, "greedy_checked": len(sample), "greedy_mismatches": mismatches,
        "block_size": block_size, "num_kv_blocks": num_kv_blocks, "max_num_seqs": max_num_seqs,
        "concurrency": concurrency, "seed": seed, "soak_s": round(soak_s, 2),
        "duration_s": round(time.monotonic() - t0, 2), "violations": v,
    }
    if verbose:
        for k, val in fig.items():
            if k != "violations":
                print(f"{k:>22}: {val}")
        print("violations:" if v else "all invariants held")
        for msg in v:
            print("  -", msg)
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=0.0, help="run for this long instead of --requests")
    ap.add_argument("--concurrency", type=int, default=32, help="client requests in flight")
    ap.add_argument("--block-size", type=int, default=4)
    ap.add_argument("--num-kv-blocks", type=int, default=40)
    ap.add_argument("--max-num-seqs", type=int, default=16)
    ap.add_argument("--max-prompt", type=int, default=48)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--abort-frac", type=float, default=0.2)
    ap.add_argument("--greedy-checks", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--n-threads", type=int, default=1, help="engine threads (0: the engine's default)")
    ap.add_argument("--request-timeout", type=float, default=120.0)
    ap.add_argument("--log", default=None, help="server log file (default /tmp/eli_soak_server_<pid>.log)")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--rss-samples", type=int, default=40, help="server VmRSS samples over the run")
    ap.add_argument("--rss-slope-max", type=float, default=512.0,
                    help="bytes per request: the most the second half's VmRSS fit may grow")
    ap.add_argument("--rss-slope-min-requests", type=int, default=3000,
                    help="check the slope only when the second half spans this many requests")
    ap.add_argument("--trace", default=None, metavar="DIR",
                    help="run the server under traced_serve.py: a memory probe at each RSS sample in "
                         "DIR/probes.jsonl (RSS by mapping, malloc stats, threads, live objects, "
                         "per-request tables, which must be empty at the end)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="with --trace: also trace the Python heap (slow); growth sites in DIR/top_diff.txt")
    a = ap.parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds through run_soak's finally, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fig = run_soak(model=a.model, requests=a.requests, seconds=a.seconds, concurrency=a.concurrency,
                   block_size=a.block_size, num_kv_blocks=a.num_kv_blocks, max_num_seqs=a.max_num_seqs,
                   max_prompt=a.max_prompt, max_new=a.max_new, abort_frac=a.abort_frac,
                   greedy_checks=a.greedy_checks, seed=a.seed, dtype=a.dtype, n_threads=a.n_threads,
                   request_timeout=a.request_timeout, rss_samples=a.rss_samples,
                   rss_slope_max=a.rss_slope_max, rss_slope_min_requests=a.rss_slope_min_requests,
                   log_path=a.log, trace_dir=a.trace, tracemalloc=a.tracemalloc)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(fig, indent=2) + "\n")
    return 1 if fig["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
