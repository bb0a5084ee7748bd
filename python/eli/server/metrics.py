# eli/server/metrics.py: the server's Prometheus metrics (prometheus_client), and the engine
# progress watchdog behind /health.
#
# Invariants: every app has its own CollectorRegistry (several servers in one process, e.g. tests,
# never clash). Engine-side numbers (running/waiting requests, KV blocks, prefix cache, preemptions,
# token counters) are read from llm.stats() at scrape time by a custom collector, so they can never
# drift from the engine; per-request latencies (TTFT, time per output token, end-to-end) are
# histograms the request handlers observe. Names follow vLLM's, with the "eli:" prefix.
# StatsLogger writes vLLM's periodic throughput / KV line to the log while the engine is busy.
from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                 7.5, 10.0, 20.0, 40.0, 80.0)
_TPOT_BUCKETS = (0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2,
                 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_E2E_BUCKETS = (0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 300.0)


class _EngineCollector:
    def __init__(self, stats: Callable[[], dict], model: str):
        self._stats = stats
        self._model = model

    def describe(self):
        return []

    def collect(self):
        try:
            s = self._stats() or {}
        except Exception:  # noqa: BLE001 -- a dead engine must not break the scrape
            s = {}
        label = ["model_name"]
        val = [self._model]

        def gauge(name, doc, v):
            g = GaugeMetricFamily(name, doc, labels=label)
            g.add_metric(val, float(v))
            return g

        def counter(name, doc, v):
            c = CounterMetricFamily(name, doc, labels=label)
            c.add_metric(val, float(v))
            return c

        g = lambda k: s.get(k) or 0  # noqa: E731
        total, free = g("kv_blocks_total"), g("kv_blocks_free")
        used = max(total - free, 0)
        hits, queries = g("prefix_cache_hits"), g("prefix_cache_queries")
        yield gauge("eli:num_requests_running", "Requests in the running batch.", g("num_running"))
        yield gauge("eli:num_requests_waiting", "Requests waiting to be scheduled.", g("num_waiting"))
        yield gauge("eli:kv_blocks_total", "KV cache blocks in the pool.", total)
        yield gauge("eli:kv_blocks_used", "KV cache blocks in use.", used)
        yield gauge("eli:kv_cache_usage_perc", "Fraction of KV cache blocks in use (0-1).",
                    used / total if total else 0.0)
        yield gauge("eli:prefix_cache_hit_rate", "Prefix cache hits / queries since start (0-1).",
                    hits / queries if queries else 0.0)
        yield counter("eli:prefix_cache_hits", "Prefix cache hits (blocks).", hits)
        yield counter("eli:prefix_cache_queries", "Prefix cache queries (blocks).", queries)
        yield counter("eli:num_preemptions", "Requests preempted (KV cache full).", g("preemptions"))
        yield counter("eli:kv_swaps_out", "Preempted requests whose KV was swapped to host memory.", g("swaps_out"))
        yield counter("eli:kv_swaps_in", "Swapped-out requests whose KV was copied back.", g("swaps_in"))
        yield counter("eli:kv_bytes_to_host", "KV bytes copied to the host tier.", g("kv_bytes_to_host"))
        yield counter("eli:kv_bytes_from_host", "KV bytes copied back from the host tier.", g("kv_bytes_from_host"))
        yield counter("eli:host_prefix_cache_hits", "Prefix cache hits found in host memory (tokens).",
                      g("host_prefix_hits"))
        yield counter("eli:disk_prefix_cache_hits", "Prefix cache hits read from the disk tier (tokens).",
                      g("disk_prefix_hits"))
        yield counter("eli:kv_bytes_to_disk", "KV bytes written to the disk tier.", g("kv_bytes_to_disk"))
        yield counter("eli:kv_bytes_from_disk", "KV bytes read back from the disk tier.", g("kv_bytes_from_disk"))
        yield counter("eli:prompt_tokens", "Prompt tokens processed.", g("prompt_tokens"))
        yield counter("eli:generation_tokens", "Tokens generated.", g("generated_tokens"))


class ServerMetrics:
    """Per-app registry: engine collector + request histograms/counters."""

    def __init__(self, stats: Callable[[], dict], model: str):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_EngineCollector(stats, model))
        labels = ["model_name"]
        self._model = model
        self.ttft = Histogram("eli:time_to_first_token_seconds", "Time to first token.", labels,
                              buckets=_TTFT_BUCKETS, registry=self.registry).labels(model)
        self.tpot = Histogram("eli:time_per_output_token_seconds", "Time per output token after the first.",
                              labels, buckets=_TPOT_BUCKETS, registry=self.registry).labels(model)
        self.e2e = Histogram("eli:e2e_request_latency_seconds", "End-to-end request latency.", labels,
                             buckets=_E2E_BUCKETS, registry=self.registry).labels(model)
        self._success = Counter("eli:request_success", "Finished requests by finish reason.",
                                labels + ["finished_reason"], registry=self.registry)
        self._http = Counter("eli:http_requests", "HTTP API requests by endpoint and status.",
                             ["endpoint", "status"], registry=self.registry)

    def finished(self, reason: Optional[str]) -> None:
        self._success.labels(self._model, reason or "unknown").inc()

    def http(self, endpoint: str, status: int) -> None:
        self._http.labels(endpoint, str(status)).inc()

    def observe(self, start: float, first: Optional[float], end: float, n_tokens: int) -> None:
        """One finished sequence: arrival time, first-token time, end time (perf_counter), tokens."""
        self.e2e.observe(max(end - start, 0.0))
        if first is not None:
            self.ttft.observe(max(first - start, 0.0))
            if n_tokens > 1:
                self.tpot.observe(max(end - first, 0.0) / (n_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ProgressWatchdog:
    """Says whether the engine is wedged: it has work but its token counters stopped moving for
    longer than `timeout_s`. sample() is called periodically (and by /health)."""

    def __init__(self, stats: Callable[[], dict], timeout_s: float):
        self._stats = stats
        self.timeout_s = timeout_s
        self._last_key = None
        self._last_progress = time.monotonic()

    def sample(self) -> Optional[str]:
        """None when fine, else the reason the engine looks wedged."""
        now = time.monotonic()
        try:
            s = self._stats() or {}
        except Exception as e:  # noqa: BLE001
            return f"engine stats failed: {e}"
        busy = (s.get("num_running") or 0) + (s.get("num_waiting") or 0) > 0
        key = (s.get("prompt_tokens"), s.get("generated_tokens"), s.get("preemptions"))
        if not busy or key != self._last_key:
            self._last_progress = now
        self._last_key = key
        stalled = now - self._last_progress
        if busy and stalled > self.timeout_s:
            return f"engine made no progress for {stalled:.0f} s with requests pending"
        return None


class StatsLogger:
    """Every `interval_s`, while the engine has work or has done some since the last line, logs
    "Avg prompt throughput: ... tokens/s, Avg generation throughput: ..., Running: N reqs, Waiting:
    M reqs, KV cache usage: X%, Prefix cache hit rate: Y%" (rates over the interval; hit rate since
    start). Silent while idle. maybe_log() is called about once a second."""

    def __init__(self, stats: Callable[[], dict], interval_s: float, logger: logging.Logger):
        self._stats = stats
        self.interval_s = interval_s
        self._log = logger
        self._last_t: Optional[float] = None
        self._last = (0, 0)

    def maybe_log(self, now: Optional[float] = None) -> Optional[str]:
        """The line logged now, or None (not due, idle, disabled or no stats)."""
        if not self.interval_s or self.interval_s <= 0:
            return None
        now = time.monotonic() if now is None else now
        if self._last_t is not None and now - self._last_t < self.interval_s:
            return None
        try:
            s = self._stats() or {}
        except Exception:  # noqa: BLE001
            return None
        g = lambda k: s.get(k) or 0  # noqa: E731
        counts = (g("prompt_tokens"), g("generated_tokens"))
        first = self._last_t is None
        dt = now - self._last_t if not first else 0.0
        prev, self._last, self._last_t = self._last, counts, now
        busy = g("num_running") + g("num_waiting") > 0
        if first or (counts == prev and not busy):
            return None
        total, free = g("kv_blocks_total"), g("kv_blocks_free")
        hits, queries = g("prefix_cache_hits"), g("prefix_cache_queries")
        line = (f"Avg prompt throughput: {(counts[0] - prev[0]) / dt:.1f} tokens/s, "
                f"Avg generation throughput: {(counts[1] - prev[1]) / dt:.1f} tokens/s, "
                f"Running: {g('num_running')} reqs, Waiting: {g('num_waiting')} reqs, "
                f"KV cache usage: {100.0 * max(total - free, 0) / total if total else 0.0:.1f}%, "
                f"Prefix cache hit rate: {100.0 * hits / queries if queries else 0.0:.1f}%")
        self._log.info(line)
        return line
