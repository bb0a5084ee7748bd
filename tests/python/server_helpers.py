# tests/python/server_helpers.py: helpers for the server tests: a fake eli.AsyncLLM (same interface,
# pure Python, deterministic, with the real llama_base tokenizer), ScriptedLLM (writes a chosen
# text), and a uvicorn server run in a background thread on a free loopback port.
#
# Invariants: FakeAsyncLLM counts a request as running (one KV "block") from its first yield until
# its generator finishes or is closed/cancelled (= aborted), so tests can check that a disconnect
# frees blocks. Its output is a pure function of the prompt and params. With `gate` set, a request
# waits (counted in num_waiting) until the gate opens; `fail_with` is raised at admission.
# ThreadedServer runs the app under eli.server.serve.uvicorn_config (eli's connection limits).
from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from eli.errors import InvalidRequestError
from eli.tokenizer import Tokenizer


@dataclass
class FakeOutput:
    request_id: int
    prompt_token_ids: list
    delta_text: str = ""
    delta_token_ids: list = field(default_factory=list)
    delta_logprobs: Optional[list] = None
    text: str = ""
    token_ids: list = field(default_factory=list)
    finish_reason: Optional[str] = None
    error: Optional[str] = None


class FakeAsyncLLM:
    kv_blocks_total = 64

    def __init__(self, model_dir: str, *, token_delay_s: float = 0.0, max_model_len: int = 256):
        self.tokenizer = Tokenizer.from_hf_dir(model_dir)
        self.info = {"spec": {"vocab_size": 263}, "max_model_len": max_model_len}
        self.token_delay_s = token_delay_s
        self.alive = True
        self.running: set[int] = set()
        self.aborted = 0
        self.generated = 0
        self.prompt_tokens = 0
        self.requests: list = []  # (prompt ids, params) as received
        self._next = 0
        self.shut_down = False
        self.fail_after: Optional[int] = None  # emit finish_reason "error" after this many tokens
        self.fail_with: Optional[BaseException] = None  # raised by generate() before any output
        self.gate: Optional[threading.Event] = None  # requests wait (num_waiting) until it is set
        self.waiting = 0

    def healthy(self) -> bool:
        return self.alive

    def shutdown(self) -> None:
        self.shut_down = True

    def stats(self) -> dict:
        return {"kv_blocks_total": self.kv_blocks_total, "kv_blocks_free": self.kv_blocks_total - len(self.running),
                "num_running": len(self.running), "num_waiting": self.waiting, "preemptions": 0,
                "prefix_cache_hits": 1, "prefix_cache_queries": 4, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated}

    async def abort(self, request_id) -> None:
        self.running.discard(request_id)

    def _token(self, prompt: list, params, i: int) -> int:
        seed = params.seed or 0
        return 3 + (sum(prompt) * 31 + i * 7 + seed * 13) % 250  # ids 3..252: plain text pieces

    async def generate(self, prompt, params, request_id=None):
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if params.top_k > 10**6:  # stands in for the engine's own parameter checks
            raise InvalidRequestError(f"top_k {params.top_k} is too large")
        if self.fail_with is not None:
            raise self.fail_with
        if self.gate is not None:
            self.waiting += 1
            try:
                while not self.gate.is_set():
                    await asyncio.sleep(0.005)
            finally:
                self.waiting -= 1
        rid = self._next if request_id is None else request_id
        self._next += 1
        self.requests.append((ids, params))
        self.running.add(rid)
        self.prompt_tokens += len(ids)
        text, toks, finished = "", [], False
        try:
            for i in range(params.max_tokens):
                await asyncio.sleep(self.token_delay_s)
                if self.fail_after is not None and i == self.fail_after:
                    finished = True
                    yield FakeOutput(rid, ids, "", [], None, text, list(toks), "error", "injected fault")
                    return
                t = self._token(ids, params, i)
                toks.append(t)
                self.generated += 1
                piece = self.tokenizer.decode(toks)[len(text):]
                text += piece
                finish = "length" if i + 1 == params.max_tokens else None
                lps = None
                if params.logprobs is not None:
                    lps = [{t: -0.25, **{(t + k) % 250 + 3: -1.0 - k for k in range(1, params.logprobs + 1)}}]
                stop = next((s for s in params.stop if s in text), None)
                if stop is not None:
                    text, piece, finish = text[:text.index(stop)], "", "stop"
                if finish:
                    finished = True
                    self.running.discard(rid)
                yield FakeOutput(rid, ids, piece, [t], lps, text, list(toks), finish)
                if finish:
                    return
        finally:
            if not finished:
                self.aborted += 1
            self.running.discard(rid)


class ScriptedLLM(FakeAsyncLLM):
    """Writes `script` token by token (byte-level vocabulary), then stops ("length" when
    max_tokens cuts it); a context of 4096 (tool prompts are long in bytes)."""

    script = "Hello."

    def __init__(self, *a, **kw):
        super().__init__(*a, max_model_len=4096, **kw)

    async def generate(self, prompt, params, request_id=None):
        ids = list(prompt)
        self.requests.append((ids, params))
        toks = self.tokenizer.encode(self.script, add_special_tokens=False)
        text = ""
        for i, t in enumerate(toks[:params.max_tokens]):
            full = self.tokenizer.decode(toks[:i + 1])
            piece, text = full[len(text):], full
            last = i + 1 == min(len(toks), params.max_tokens)
            finish = None if not last else ("stop" if len(toks) <= params.max_tokens else "length")
            yield FakeOutput(0, ids, piece, [t], None, text, toks[:i + 1], finish)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app, **limits):
        import uvicorn

        from eli.server.serve import uvicorn_config

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn_config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                graceful_timeout_s=5, configure_logging=False, **limits)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)
