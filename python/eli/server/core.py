# eli/server/core.py: Server, the state behind one app (engine, tokenizer, settings, metrics, the
# render pool) and the request machinery the handlers in app.py share: reading a body, admission
# (the waiting-sequence reservation), prompt building, running choices (plain or SSE), logprobs.
# app.py's header lists the invariants this implements.
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from fastapi import Request
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from ..errors import EliError, EngineDeadError, InvalidRequestError, OutOfMemoryError
from ..tool_parsers import resolve_parser
from . import validation as V
from .chat_prompt import PromptError, build_prompt_ids
from .metrics import ProgressWatchdog, ServerMetrics, StatsLogger
from .protocol import ApiError, kDefaultMaxTokens, kMaxBodyBytes
from .render_pool import RenderCrashed, RenderPool, RenderTimeout

log = logging.getLogger("eli.server")

kDefaultRenderWorkers = 2
kDefaultRenderTimeoutS = 10.0
kDefaultBodyTimeoutS = 30.0


@dataclass
class _Seq:
    """One choice being generated. Streamed choices keep only n_tokens (their deltas go out)."""
    index: int
    prompt_ids: list[int]
    params: Any
    start: float
    holds_slot: bool = False  # counted in Server.unstarted until its first output
    text: str = ""
    token_ids: Optional[list] = None
    logprobs: Optional[list] = None
    n_tokens: int = 0
    finish_reason: Optional[str] = None
    first: Optional[float] = None
    prompt_logprobs: Optional[list] = None  # the engine's, when the params asked (echo with logprobs)


@dataclass
class _Delta:
    """What a stream event needs of one engine snapshot (its deltas), without the cumulative lists."""
    __slots__ = ("delta_text", "delta_token_ids", "delta_logprobs", "finish_reason")
    delta_text: str
    delta_token_ids: list
    delta_logprobs: Optional[list]
    finish_reason: Optional[str]


class Slots:
    """Waiting-sequence slots reserved for one request (Server.reserve); each _Seq takes one;
    close() gives back those never taken."""

    def __init__(self, srv: "Server", k: int):
        self.srv, self.free = srv, k

    def take(self) -> bool:
        if self.free <= 0:
            return False
        self.free -= 1
        return True

    def close(self) -> None:
        self.srv.unstarted -= self.free
        self.free = 0


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -9999.0


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def max_token_chars(tokenizer) -> int:
    """Characters in the longest token string of the vocabulary (at least 1). No token covers more
    text than that, so a prompt of more than max_model_len x this many characters cannot fit."""
    try:
        vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
        return max([len(t) for t in vocab] or [1])
    except Exception:  # noqa: BLE001 -- a tokenizer without a vocabulary view: no bound from it
        return 1 << 30


class Server:
    """The state behind one app: the engine, its tokenizer, settings, metrics."""

    def __init__(self, llm, *, model_name: str, api_key: Union[str, Sequence[str], None] = None,
                 chat_template: Optional[str] = None, max_waiting: int = 0, wedge_timeout_s: float = 60.0,
                 owns_llm: bool = False, max_tokens_default: int = kDefaultMaxTokens,
                 render_workers: int = kDefaultRenderWorkers, render_timeout_s: float = kDefaultRenderTimeoutS,
                 body_timeout_s: float = kDefaultBodyTimeoutS, public_metrics: bool = False,
                 prefix_cache_per_key: bool = False, stats_interval_s: float = 10.0,
                 tool_parser: Optional[str] = None):
        self.llm = llm
        self.tokenizer = llm.tokenizer
        self.model_name = model_name
        keys = [api_key] if isinstance(api_key, str) else list(api_key or [])
        self.api_keys = [k for k in keys if k]
        self.chat_template = chat_template if chat_template is not None else self.tokenizer.chat_template
        if not self.chat_template:
            log.warning("the model has no chat template: chat requests are rendered as ChatML, which may "
                        "not be the format it was trained on (eli serve --chat-template FILE sets one)")
        try:
            self.tool_parser = resolve_parser(tool_parser, self.chat_template)
        except ValueError as e:
            raise InvalidRequestError(str(e)) from None
        log.info("tool calls: the %r parser%s", self.tool_parser.name,
                 "" if tool_parser not in (None, "", "auto") else " (from the chat template)")
        self.max_waiting = max_waiting
        self.owns_llm = owns_llm
        self.max_tokens_default = max_tokens_default
        self.body_timeout_s = body_timeout_s
        self.public_metrics = public_metrics
        self.prefix_cache_per_key = prefix_cache_per_key
        info = llm.info
        self.max_model_len = int(info["max_model_len"])
        self.vocab_size = int(info["spec"]["vocab_size"])
        self.max_prompt_chars = min(self.tokenizer.max_input_chars,
                                    self.max_model_len * max_token_chars(self.tokenizer))
        self.created = int(time.time())
        self.metrics = ServerMetrics(llm.stats, model_name)
        self.watchdog = ProgressWatchdog(llm.stats, wedge_timeout_s)
        self.stats_logger = StatsLogger(llm.stats, stats_interval_s, log)
        self.render_pool = (RenderPool(self.tokenizer, workers=render_workers, timeout_s=render_timeout_s)
                            if render_workers > 0 else None)
        self.shutting_down = False
        self._token_str: dict[int, str] = {}
        self.unstarted = 0        # sequences admitted here that have not produced an output yet
        self.sse_queued = 0       # stream events produced and not yet sent (slow readers)
        self.sse_queued_peak = 0

    # ---- auth ---------------------------------------------------------------------------------
    def check_key(self, request: Request) -> None:
        """401 unless the request carries one of the API keys (when any is set); remembers which."""
        if not self.api_keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token_b = token.strip().encode("utf-8", "replace")
        match = None
        for k in self.api_keys:  # every key compared, in constant time each
            if secrets.compare_digest(token_b, k.encode("utf-8")):
                match = k
        if scheme.lower() != "bearer" or match is None:
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                           type="authentication_error", code="invalid_api_key")
        request.state.eli_key_id = key_id(match)

    def cache_salt(self, request: Request, req) -> Optional[str]:
        """The prefix-cache salt of a request: its cache_salt field and, with prefix_cache_per_key,
        its API key (requests with different salts never share KV blocks)."""
        parts = []
        if self.prefix_cache_per_key:
            kid = getattr(request.state, "eli_key_id", None)
            if kid is not None:
                parts.append(f"key:{kid}")
        if req.cache_salt:
            parts.append(f"req:{req.cache_salt}")
        return "\n".join(parts) or None

    # ---- request plumbing ---------------------------------------------------------------------
    async def read_body(self, request: Request, model):
        cl = request.headers.get("content-length")
        if cl is not None and (not cl.strip().isdigit() or int(cl) > kMaxBodyBytes):
            raise ApiError(413, f"request body over the {kMaxBodyBytes}-byte limit", code="body_too_large")
        try:
            body = await asyncio.wait_for(self._read_chunks(request), self.body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.body_timeout_s:g} s",
                           code="body_timeout") from None
        try:
            data = json.loads(body, parse_constant=_no_constants)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        if _SURROGATE_ESCAPE.search(body):  # only a \uD800-\uDFFF escape can make one
            V.check_no_surrogates(data)
        try:
            req = model.model_validate(data)
        except ValidationError as e:
            raise V.pydantic_error(e) from None
        if req.model and req.model != self.model_name:
            raise ApiError(404, f"The model `{req.model[:200]}` does not exist.", param="model",
                           code="model_not_found")
        self.check_engine()
        return req

    async def _read_chunks(self, request: Request) -> bytes:
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > kMaxBodyBytes:
                    raise ApiError(413, f"request body over the {kMaxBodyBytes}-byte limit", code="body_too_large")
                chunks.append(chunk)
        except ClientDisconnect:
            # The client left while its body was being read: nothing was admitted, nobody to answer.
            raise ApiError(499, "client disconnected while sending the request", code="client_disconnected") from None
        return b"".join(chunks)

    def check_engine(self) -> None:
        if self.shutting_down:
            raise ApiError(503, "the server is shutting down", type="service_unavailable")
        if not self.llm.healthy():
            raise ApiError(503, "the engine is not running", type="service_unavailable")

    def reserve(self, k: int, param: str) -> Slots:
        """Reserves k waiting-sequence slots (no await: atomic on the event loop) or raises 400 /
        429 when max_waiting is set and they do not fit."""
        if self.max_waiting > 0:
            if k > self.max_waiting:
                raise ApiError(400, f"this request queues {k} sequences (n x prompts), more than the server's "
                               f"limit of {self.max_waiting} waiting sequences", param=param)
            try:
                engine_waiting = int((self.llm.stats() or {}).get("num_waiting") or 0)
            except Exception:  # noqa: BLE001 -- stats of a dying engine: count ours only
                engine_waiting = 0
            waiting = max(engine_waiting, self.unstarted)
            if waiting + k > self.max_waiting:
                raise ApiError(429, f"{waiting} sequences are already waiting and this request adds {k}; the "
                               f"limit is {self.max_waiting}. Retry later", type="rate_limit_exceeded")
        self.unstarted += k
        return Slots(self, k)

    def release(self, seq: _Seq) -> None:
        if seq.holds_slot:
            seq.holds_slot = False
            self.unstarted -= 1

    async def chat_prompt_ids(self, job: dict) -> list[int]:
        """Token ids of a chat job (validation.chat_job): in a render worker with a hard deadline,
        or (render_workers=0) in a thread."""
        try:
            if self.render_pool is None:
                return await asyncio.to_thread(build_prompt_ids, job, self.tokenizer)
            return await self.render_pool.run(job)
        except PromptError as e:
            raise V.prompt_error(e) from None
        except RenderTimeout as e:
            raise ApiError(400, f"{e}; the chat template or the messages are too expensive to render",
                           param="messages", code="render_timeout") from None
        except RenderCrashed as e:
            raise ApiError(500, str(e), type="server_error") from None

    async def encode_prompts(self, prompts: list) -> list[list[int]]:
        """Completion prompts (strings or id lists, from validation.completion_inputs) as ids."""
        texts = [p for p in prompts if isinstance(p, str)]
        if not texts:
            return prompts
        encoded = iter(await asyncio.to_thread(V.encode_prompts, self.tokenizer, texts))
        return [next(encoded) if isinstance(p, str) else p for p in prompts]

    def token_str(self, tid: int) -> str:
        s = self._token_str.get(tid)
        if s is None:
            try:
                s = self.tokenizer.decode([tid], skip_special_tokens=False)
            except ValueError:
                s = ""
            if len(self._token_str) < 1 << 20:
                self._token_str[tid] = s
        return s

    # ---- running choices -----------------------------------------------------------------------
    async def _pump(self, seq: _Seq, queue: Optional[asyncio.Queue]) -> None:
        """Runs one choice to its end; forwards each output to `queue` (streaming) or records it in
        seq (plain). Engine errors are raised (ApiError) / queued; cancellation closes the engine
        stream."""
        keep = queue is None
        if keep:
            seq.token_ids = []
            seq.logprobs = []
        agen = self.llm.generate(seq.prompt_ids, seq.params)
        try:
            async for out in agen:
                self.release(seq)  # it produced an output: no longer waiting
                if seq.prompt_logprobs is None:
                    seq.prompt_logprobs = getattr(out, "prompt_logprobs", None)
                if out.delta_token_ids:
                    if seq.first is None:
                        seq.first = time.perf_counter()
                    seq.n_tokens += len(out.delta_token_ids)
                    if keep:
                        seq.token_ids.extend(out.delta_token_ids)
                        if out.delta_logprobs:
                            seq.logprobs.extend(out.delta_logprobs)
                if keep:
                    full = getattr(out, "text", None)  # cumulative text: authoritative at the end
                    seq.text = full if isinstance(full, str) else seq.text + (out.delta_text or "")
                if out.finish_reason is not None:
                    if out.finish_reason in ("error", "abort"):
                        raise ApiError(500, f"generation failed: {out.error or out.finish_reason}",
                                       type="server_error")
                    seq.finish_reason = out.finish_reason
                if queue is not None:
                    self._queue_event(queue, (seq, _Delta(out.delta_text, out.delta_token_ids, out.delta_logprobs,
                                                          out.finish_reason), None))
                if seq.finish_reason is not None:
                    break
        except ApiError:
            raise
        except EngineDeadError as e:
            raise ApiError(503, str(e), type="service_unavailable") from None
        except (InvalidRequestError, ValueError) as e:
            raise ApiError(400, str(e)) from None
        except (OutOfMemoryError, MemoryError) as e:
            raise ApiError(503, str(e) or "out of memory", type="service_unavailable") from None
        except (EliError, RuntimeError) as e:
            raise ApiError(500, f"engine error: {e}", type="server_error") from None
        finally:
            self.release(seq)
            await agen.aclose()
            end = time.perf_counter()
            if seq.finish_reason is not None:
                self.metrics.observe(seq.start, seq.first, end, seq.n_tokens)
            self.metrics.finished(seq.finish_reason or "abort")

    def _queue_event(self, queue: asyncio.Queue, item) -> None:
        queue.put_nowait(item)
        self.sse_queued += 1
        self.sse_queued_peak = max(self.sse_queued_peak, self.sse_queued)

    async def _next_event(self, queue: asyncio.Queue):
        item = await queue.get()
        self.sse_queued -= 1
        return item

    async def run_all(self, request: Request, seqs: list[_Seq]) -> None:
        """Non-streaming: all choices to the end; a client disconnect cancels them (aborts)."""
        work = asyncio.ensure_future(asyncio.gather(*(self._pump(s, None) for s in seqs)))
        watcher = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():  # the client went away
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                raise ApiError(499, "client disconnected", code="client_closed")
            work.result()
        finally:
            watcher.cancel()
            if not work.done():
                work.cancel()
            with contextlib.suppress(BaseException):
                await work
            for s in seqs:
                self.release(s)

    async def open_stream(self, seqs: list[_Seq], first_events: list[dict], chunk, usage_chunk):
        """Starts every choice and waits for the first engine output, so a request the engine
        refuses (bad params, too long) is still answered with an HTTP error status; then returns
        the SSE body: first_events, chunk(seq, out) per output (an event, a list of events or
        None), the usage chunk, [DONE]."""
        queue: asyncio.Queue = asyncio.Queue()

        async def run(seq):
            try:
                await self._pump(seq, queue)
            except ApiError as e:
                self._queue_event(queue, (seq, None, e))
            except Exception as e:  # noqa: BLE001
                log.exception("stream choice failed")
                self._queue_event(queue, (seq, None, ApiError(500, f"internal error: {type(e).__name__}",
                                                              type="server_error")))
            finally:
                self._queue_event(queue, (seq, None, None))

        tasks = [asyncio.ensure_future(run(s)) for s in seqs]
        try:
            head = await self._next_event(queue)
            if head[2] is not None:
                raise head[2]
        except BaseException:
            await _cancel_all(tasks)
            self._drop_events(queue)
            for s in seqs:
                self.release(s)
            raise
        return self._sse_body(queue, tasks, seqs, head, first_events, chunk, usage_chunk)

    async def _sse_body(self, queue, tasks, seqs, head, first_events, chunk, usage_chunk):
        remaining = len(seqs)
        try:
            for ev in first_events:
                yield _sse(ev)
            while remaining:
                seq, out, err = head if head is not None else await self._next_event(queue)
                head = None
                if err is not None:
                    yield _sse(err.body())
                    break
                if out is None:
                    remaining -= 1
                    continue
                ev = chunk(seq, out)
                for e in (ev if isinstance(ev, list) else [ev] if ev is not None else []):
                    yield _sse(e)
            else:
                ev = usage_chunk()
                if ev is not None:
                    yield _sse(ev)
            yield "data: [DONE]\n\n"
        finally:
            await _cancel_all(tasks)
            self._drop_events(queue)
            for s in seqs:
                self.release(s)

    def _drop_events(self, queue: asyncio.Queue) -> None:
        while not queue.empty():
            queue.get_nowait()
            self.sse_queued -= 1

    # ---- logprobs formatting -------------------------------------------------------------------
    def _top(self, entry: dict, n: int) -> list:
        return sorted(entry.items(), key=lambda kv: -kv[1])[:n]

    def chat_logprobs(self, token_ids, logprobs, n: int) -> list:
        out = []
        for tid, entry in zip(token_ids, logprobs):
            s = self.token_str(tid)
            out.append({"token": s, "logprob": _finite(entry.get(tid, -math.inf)),
                        "bytes": list(self.tokenizer.token_bytes(tid)),
                        "top_logprobs": [{"token": self.token_str(t), "logprob": _finite(lp),
                                          "bytes": list(self.tokenizer.token_bytes(t))}
                                         for t, lp in self._top(entry, n)]})
        return out

    def completion_logprobs(self, token_ids, logprobs, n: int, offset: int) -> dict:
        tokens, lps, tops, offsets = [], [], [], []
        for tid, entry in zip(token_ids, logprobs):
            s = self.token_str(tid)
            tokens.append(s)
            lps.append(_finite(entry.get(tid, -math.inf)))
            tops.append({self.token_str(t): _finite(lp) for t, lp in self._top(entry, n)})
            offsets.append(offset)
            offset += len(s)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


async def _cancel_all(tasks) -> None:
    for t in tasks:
        t.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks, return_exceptions=True)


# Characters that some line readers treat as line breaks (httpx's aiter_lines, str.splitlines):
# escaped inside SSE JSON so that one event stays one line for every client.
_SSE_ESCAPES = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _sse(obj: dict) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(',', ':')).translate(_SSE_ESCAPES)
    return f"data: {text}\n\n"


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


def usage(seqs: list[_Seq], prompt_tokens: int) -> dict:
    completion = sum(s.n_tokens for s in seqs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


Seq = _Seq
__all__ = ["Seq", "Server", "Slots", "usage"]
