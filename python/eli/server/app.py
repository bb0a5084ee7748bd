# eli/server/app.py: the OpenAI-compatible HTTP server (FastAPI app over an eli.AsyncLLM).
#
# Endpoints: POST /v1/completions, POST /v1/chat/completions (JSON or SSE with `data: [DONE]`),
# GET /v1/models, GET /health, GET /metrics (Prometheus).
#
# Invariants:
# - Every error is OpenAI-style JSON {"error": {message, type, param, code}} with its status: 400 bad
#   request, 401 API key, 404 unknown model/route, 413 body over kMaxBodyBytes, 429 too many waiting
#   requests (when max_waiting is set), 503 engine dead/wedged or shutting down, 500 engine error.
#   Nothing a client sends can crash the server; a handler bug is a 500, logged.
# - Every engine request a handler starts is finished or aborted before the handler is done: a
#   client disconnect (streaming: Starlette cancels the body iterator; non-streaming: a watcher on
#   the ASGI receive channel) cancels the per-choice tasks, and closing AsyncLLM.generate aborts
#   the request in the engine, so its KV blocks are freed.
# - Errors after SSE headers went out are sent as a `data: {"error": ...}` event before [DONE].
# - A slow SSE reader never slows the engine or other requests: its choices keep consuming engine
#   outputs into the stream's queue, which holds only deltas (O(tokens) memory, not a cumulative
#   snapshot per token); Server.sse_queued / sse_queued_peak count the events waiting there.
# - A dead engine (eli.EngineDeadError) is a 503, like a failed /health.
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import EliError, EngineDeadError, InvalidRequestError, OutOfMemoryError
from . import validation as V
from .metrics import CONTENT_TYPE, ProgressWatchdog, ServerMetrics
from .protocol import ApiError, ChatCompletionRequest, CompletionRequest, kMaxBodyBytes

log = logging.getLogger("eli.server")


@dataclass
class _Seq:
    """One choice being generated."""
    index: int
    prompt_ids: list[int]
    params: Any
    start: float
    text: str = ""
    token_ids: list = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    finish_reason: Optional[str] = None
    first: Optional[float] = None


@dataclass
class _Delta:
    """What a stream event needs of one engine snapshot (its deltas), without the cumulative lists."""
    __slots__ = ("delta_text", "delta_token_ids", "delta_logprobs", "finish_reason")
    delta_text: str
    delta_token_ids: list
    delta_logprobs: Optional[list]
    finish_reason: Optional[str]


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -9999.0


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


class Server:
    """The state behind one app: the engine, its tokenizer, settings, metrics."""

    def __init__(self, llm, *, model_name: str, api_key: Optional[str] = None,
                 chat_template: Optional[str] = None, max_waiting: int = 0,
                 wedge_timeout_s: float = 60.0, owns_llm: bool = False):
        self.llm = llm
        self.tokenizer = llm.tokenizer
        self.model_name = model_name
        self.api_key = api_key or None
        self.chat_template = chat_template if chat_template is not None else self.tokenizer.chat_template
        self.max_waiting = max_waiting
        self.owns_llm = owns_llm
        info = llm.info
        self.max_model_len = int(info["max_model_len"])
        self.vocab_size = int(info["spec"]["vocab_size"])
        self.created = int(time.time())
        self.metrics = ServerMetrics(llm.stats, model_name)
        self.watchdog = ProgressWatchdog(llm.stats, wedge_timeout_s)
        self.shutting_down = False
        self._token_str: dict[int, str] = {}
        self.sse_queued = 0       # stream events produced and not yet sent (slow readers)
        self.sse_queued_peak = 0

    # ---- request plumbing ---------------------------------------------------------------------
    async def read_body(self, request: Request, model):
        cl = request.headers.get("content-length")
        if cl is not None and (not cl.strip().isdigit() or int(cl) > kMaxBodyBytes):
            raise ApiError(413, f"request body over the {kMaxBodyBytes}-byte limit", code="body_too_large")
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
        try:
            data = json.loads(b"".join(chunks), parse_constant=_no_constants)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        try:
            req = model.model_validate(data)
        except ValidationError as e:
            raise V.pydantic_error(e) from None
        if req.model and req.model != self.model_name:
            raise ApiError(404, f"The model `{req.model}` does not exist.", param="model",
                           code="model_not_found")
        self.check_engine()
        return req

    def check_engine(self) -> None:
        if self.shutting_down:
            raise ApiError(503, "the server is shutting down", type="service_unavailable")
        if not self.llm.healthy():
            raise ApiError(503, "the engine is not running", type="service_unavailable")
        if self.max_waiting > 0:
            waiting = (self.llm.stats() or {}).get("num_waiting") or 0
            if waiting >= self.max_waiting:
                raise ApiError(429, f"{waiting} requests are already waiting; retry later",
                               type="rate_limit_exceeded")

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
        """Runs one choice to its end, recording it; forwards each output to `queue` if given.
        Engine errors are raised (ApiError) / queued; cancellation closes the engine stream."""
        agen = self.llm.generate(seq.prompt_ids, seq.params)
        try:
            async for out in agen:
                if out.delta_token_ids:
                    if seq.first is None:
                        seq.first = time.perf_counter()
                    seq.token_ids.extend(out.delta_token_ids)
                    if out.delta_logprobs:
                        seq.logprobs.extend(out.delta_logprobs)
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
            await agen.aclose()
            end = time.perf_counter()
            if seq.finish_reason is not None:
                self.metrics.observe(seq.start, seq.first, end, len(seq.token_ids))
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

    async def open_stream(self, seqs: list[_Seq], first_events: list[dict], chunk, usage_chunk):
        """Starts every choice and waits for the first engine output, so a request the engine
        refuses (bad params, too long) is still answered with an HTTP error status; then returns
        the SSE body: first_events, chunk(seq, out) per output, the usage chunk, [DONE]."""
        queue: asyncio.Queue = asyncio.Queue()

        async def run(seq):
            try:
                await self._pump(seq, queue)
            except ApiError as e:
                self._queue_event(queue, (seq, None, e))
            except Exception as e:  # noqa: BLE001
                log.exception("stream choice failed")
                self._queue_event(queue, (seq, None, ApiError(500, f"internal error: {e}", type="server_error")))
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
            raise
        return self._sse_body(queue, tasks, head, len(seqs), first_events, chunk, usage_chunk)

    async def _sse_body(self, queue, tasks, head, remaining, first_events, chunk, usage_chunk):
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
                if ev is not None:
                    yield _sse(ev)
            else:
                ev = usage_chunk()
                if ev is not None:
                    yield _sse(ev)
            yield "data: [DONE]\n\n"
        finally:
            await _cancel_all(tasks)
            self._drop_events(queue)

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
            # bytes: the token's raw bytes (a token may end mid-character), not its text re-encoded.
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


def _usage(seqs: list[_Seq], prompt_tokens: int) -> dict:
    completion = sum(len(s.token_ids) for s in seqs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


def _error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


# ---- the app ---------------------------------------------------------------------------------------

def create_app(llm, *, model_name: str, api_key: Optional[str] = None, chat_template: Optional[str] = None,
               max_waiting: int = 0, wedge_timeout_s: float = 60.0, owns_llm: bool = False) -> FastAPI:
    """A FastAPI app serving `llm` (an eli.AsyncLLM or anything with its interface)."""
    srv = Server(llm, model_name=model_name, api_key=api_key, chat_template=chat_template,
                 max_waiting=max_waiting, wedge_timeout_s=wedge_timeout_s, owns_llm=owns_llm)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async def sampler():
            while True:
                srv.watchdog.sample()
                await asyncio.sleep(1.0)

        task = asyncio.ensure_future(sampler())
        try:
            yield
        finally:
            srv.shutting_down = True
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if srv.owns_llm:
                await asyncio.to_thread(srv.llm.shutdown)

    app = FastAPI(title="eli", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = srv

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        srv.metrics.http(request.url.path, e.status)
        return _error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return _error_response(ApiError(e.status_code, str(e.detail), type="invalid_request_error"))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return _error_response(ApiError(500, f"internal error: {type(e).__name__}", type="server_error"))

    # async: a plain def dependency would run in FastAPI's thread pool, one thread hop per request
    # (and a pool of idle worker threads with their own stacks and malloc arenas).
    async def auth(request: Request) -> None:
        if srv.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), srv.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                           type="authentication_error", code="invalid_api_key")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(auth)])

    @v1.get("/models")
    async def models():
        return {"object": "list", "data": [{
            "id": srv.model_name, "object": "model", "created": srv.created, "owned_by": "eli",
            "root": srv.model_name, "max_model_len": srv.max_model_len, "vocab_size": srv.vocab_size}]}

    @v1.post("/completions")
    async def completions(request: Request):
        start = time.perf_counter()
        req: CompletionRequest = await srv.read_body(request, CompletionRequest)
        V.check_completion(req)
        prompts = await asyncio.to_thread(V.completion_prompts, req, srv.tokenizer, srv.vocab_size)
        seqs: list[_Seq] = []
        for p, ids in enumerate(prompts):
            max_tokens = V.check_context(len(ids), req.max_tokens, srv.max_model_len, param="max_tokens")
            for i, params in enumerate(V.make_params(req, max_tokens, req.logprobs)):
                seqs.append(_Seq(index=p * req.n + i, prompt_ids=ids, params=params, start=start))
        prompt_tokens = sum(len(ids) for ids in prompts)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        lp_n = req.logprobs

        def choice(seq, text, token_ids, logprobs, offset, finish):
            lp = srv.completion_logprobs(token_ids, logprobs, lp_n, offset) if lp_n is not None else None
            return {"index": seq.index, "text": text, "logprobs": lp, "finish_reason": finish}

        base = {"id": rid, "object": "text_completion", "created": created, "model": srv.model_name}
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            offsets: dict[int, int] = {}

            def chunk(seq, out):
                if not out.delta_text and not out.delta_token_ids and out.finish_reason is None:
                    return None
                off = offsets.get(seq.index, 0)
                offsets[seq.index] = off + len(out.delta_text or "")
                ev = dict(base, choices=[choice(seq, out.delta_text or "", out.delta_token_ids or [],
                                                out.delta_logprobs or [], off, out.finish_reason)])
                if include_usage:
                    ev["usage"] = None
                return ev

            def usage_chunk():
                return dict(base, choices=[], usage=_usage(seqs, prompt_tokens)) if include_usage else None

            body = await srv.open_stream(seqs, [], chunk, usage_chunk)
            return StreamingResponse(body, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await srv.run_all(request, seqs)
        return dict(base, choices=[choice(s, s.text, s.token_ids, s.logprobs, 0, s.finish_reason) for s in seqs],
                    usage=_usage(seqs, prompt_tokens))

    @v1.post("/chat/completions")
    async def chat_completions(request: Request):
        start = time.perf_counter()
        req: ChatCompletionRequest = await srv.read_body(request, ChatCompletionRequest)
        V.check_chat(req)
        ids = await asyncio.to_thread(V.chat_prompt, req, srv.tokenizer, srv.chat_template)
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        max_tokens = V.check_context(len(ids), requested, srv.max_model_len, param=param)
        lp_n = (req.top_logprobs or 0) if req.logprobs else None
        seqs = [_Seq(index=i, prompt_ids=ids, params=p, start=start)
                for i, p in enumerate(V.make_params(req, max_tokens, lp_n))]
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "object": "chat.completion.chunk" if req.stream else "chat.completion",
                "created": created, "model": srv.model_name}
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            extra = {"usage": None} if include_usage else {}
            first = [dict(base, choices=[{"index": s.index, "delta": {"role": "assistant", "content": ""},
                                          "logprobs": None, "finish_reason": None}], **extra) for s in seqs]

            def chunk(seq, out):
                if not out.delta_text and not out.delta_token_ids and out.finish_reason is None:
                    return None
                delta = {"content": out.delta_text} if out.delta_text else {}
                lp = None
                if lp_n is not None and out.delta_token_ids:
                    lp = {"content": srv.chat_logprobs(out.delta_token_ids, out.delta_logprobs or [], lp_n)}
                return dict(base, choices=[{"index": seq.index, "delta": delta, "logprobs": lp,
                                            "finish_reason": out.finish_reason}], **extra)

            def usage_chunk():
                return dict(base, choices=[], usage=_usage(seqs, len(ids))) if include_usage else None

            body = await srv.open_stream(seqs, first, chunk, usage_chunk)
            return StreamingResponse(body, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await srv.run_all(request, seqs)
        choices = []
        for s in seqs:
            lp = {"content": srv.chat_logprobs(s.token_ids, s.logprobs, lp_n)} if lp_n is not None else None
            choices.append({"index": s.index, "message": {"role": "assistant", "content": s.text},
                            "logprobs": lp, "finish_reason": s.finish_reason})
        return dict(base, choices=choices, usage=_usage(seqs, len(ids)))

    app.include_router(v1)

    @app.get("/health")
    async def health():
        try:
            alive = srv.llm.healthy()
        except Exception:  # noqa: BLE001
            alive = False
        reason = None if alive else "the engine is not running"
        if reason is None:
            reason = srv.watchdog.sample()
        if reason is not None:
            return JSONResponse({"status": "error", "message": reason}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        body = await asyncio.to_thread(srv.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    return app
