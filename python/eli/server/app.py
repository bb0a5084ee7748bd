# eli/server/app.py: the OpenAI-compatible HTTP server (FastAPI app over an eli.AsyncLLM).
#
# Endpoints: POST /v1/completions (completions.py), POST /v1/chat/completions (JSON or SSE with
# `data: [DONE]`), GET /v1/models[/{id}] (models.py), POST /v1/responses (responses.py), POST
# /v1/embeddings (embeddings.py), GET /health, GET /metrics (Prometheus).
#
# Invariants:
# - Every error is OpenAI-style JSON {"error": {message, type, param, code}} with its status: 400 bad
#   request (or Host not allowed), 401 API key, 404 unknown model/route, 408 body too slow, 413 body
#   over kMaxBodyBytes, 415 not JSON, 429 too many waiting sequences (when max_waiting is set), 503
#   engine dead/wedged or shutting down, 500 engine error. Nothing a client sends can crash the
#   server; a handler bug is a 500, logged once (guards.HttpGuard). Messages never carry C++ source
#   locations (protocol.public_message). Every status is counted in eli:http_requests_total.
# - Chat templates render in worker processes (render_pool.py) with a hard deadline, so a runaway
#   template cannot stall the event loop; completion prompts are encoded in a thread with the GIL
#   released, after a character bound derived from the context (Server.max_prompt_chars).
# - max_waiting counts sequences (n x prompts), reserved atomically on the event loop before any
#   await, released when the sequence's first output arrives (it left the queue) or it ends.
# - Every engine request a handler starts is finished or aborted before the handler is done: a
#   client disconnect (streaming: Starlette cancels the body iterator; non-streaming: a watcher on
#   the ASGI receive channel) cancels the per-choice tasks, and closing AsyncLLM.generate aborts
#   the request in the engine, so its KV blocks are freed.
# - Errors after SSE headers went out are sent as a `data: {"error": ...}` event before [DONE].
# - A slow SSE reader never slows the engine or other requests: its choices keep consuming engine
#   outputs into the stream's queue, which holds only deltas (O(tokens) memory, not a cumulative
#   snapshot per token); Server.sse_queued / sse_queued_peak count the events waiting there. A
#   streamed choice keeps no text, token ids or logprobs of its own (only a token count).
# - Prefix-cache isolation: a request's cache_salt (and, with prefix_cache_per_key, its API key)
#   salts the engine's block hashes, so requests with different salts never share KV blocks.
# - A dead engine (eli.EngineDeadError) is a 503, like a failed /health.
# - Chat tools / tool_choice / response_format (chat_tools.py, shared with /v1/responses): forced
#   calls and JSON replies are enforced by the sampler's grammar; replies are parsed by the model
#   family's tool parser (Server.tool_parser), streamed as tool_calls deltas (Responses:
#   function_call items) that never carry partial markup.
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Optional, Sequence, Union

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import completions, embeddings, models, responses
from . import chat_tools
from . import validation as V
from .core import Seq, Server, usage
from .guards import HttpGuard, default_allowed_hosts
from .metrics import CONTENT_TYPE
from .protocol import ApiError, ChatCompletionRequest

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ENDPOINTS = ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/responses",
              "/health", "/metrics")


def _error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def create_app(llm, *, model_name: str, api_key: Union[str, Sequence[str], None] = None,
               chat_template: Optional[str] = None, max_waiting: int = 0, wedge_timeout_s: float = 60.0,
               owns_llm: bool = False, bind_host: str = "127.0.0.1",
               allowed_hosts: Optional[Sequence[str]] = None, **options) -> FastAPI:
    """A FastAPI app serving `llm` (an eli.AsyncLLM or anything with its interface). api_key: one
    key or several (any of them is accepted). allowed_hosts: the Host allow-list (default from
    bind_host, see guards.py). options: the other Server settings (core.Server)."""
    srv = Server(llm, model_name=model_name, api_key=api_key, chat_template=chat_template,
                 max_waiting=max_waiting, wedge_timeout_s=wedge_timeout_s, owns_llm=owns_llm, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if srv.render_pool is not None:
            srv.render_pool.start()

        async def sampler():
            while True:
                srv.watchdog.sample()
                srv.stats_logger.maybe_log()
                await asyncio.sleep(1.0)

        task = asyncio.ensure_future(sampler())
        try:
            yield
        finally:
            srv.shutting_down = True
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if srv.render_pool is not None:
                await srv.render_pool.close()
            if srv.owns_llm:
                await asyncio.to_thread(srv.llm.shutdown)

    app = FastAPI(title="eli", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = srv
    app.add_middleware(HttpGuard, allowed_hosts=allowed_hosts or default_allowed_hosts(bind_host),
                       metrics=srv.metrics, endpoints=_ENDPOINTS)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return _error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return _error_response(ApiError(e.status_code, str(e.detail), type="invalid_request_error"))

    # async: a plain def dependency would run in FastAPI's thread pool, one thread hop per request
    # (and a pool of idle worker threads with their own stacks and malloc arenas).
    async def auth(request: Request) -> None:
        srv.check_key(request)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(auth)])

    models.register(v1, srv)
    completions.register(v1, srv)
    responses.register(v1, srv)
    embeddings.register(v1, srv)

    @v1.post("/chat/completions")
    async def chat_completions(request: Request):
        start = time.perf_counter()
        req: ChatCompletionRequest = await srv.read_body(request, ChatCompletionRequest)
        V.check_chat(req)
        plan = chat_tools.make_plan(req, srv.tool_parser, srv.tokenizer)
        job = V.chat_job(req, srv.tokenizer, srv.chat_template, srv.max_prompt_chars,
                         **chat_tools.job_tools(plan, srv.chat_template))
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        lp_n = (req.top_logprobs or 0) if req.logprobs else None
        slots = srv.reserve(req.n, param="n")
        try:
            ids = await srv.chat_prompt_ids(job)
            max_tokens = V.check_context(len(ids), requested, srv.max_model_len, param=param,
                                         default_max_tokens=srv.max_tokens_default)
            V.check_logprob_budget([max_tokens] * req.n, lp_n, n=req.n,
                                   param="top_logprobs" if req.top_logprobs else "logprobs")
            if req.prompt_logprobs is not None:
                if req.stream:
                    raise ApiError(400, "prompt_logprobs comes with stream: false only (the whole response "
                                        "carries it once, as vLLM's chat completions do)", param="prompt_logprobs")
                V.check_logprob_budget([len(ids)], req.prompt_logprobs, n=1, param="prompt_logprobs")
            params = V.make_params(req, max_tokens, lp_n, srv.cache_salt(request, req),
                                   extra=chat_tools.sampling_extra(plan), extra_param=plan.constraint_param)
            if req.prompt_logprobs is not None:
                params[0].prompt_logprobs = req.prompt_logprobs  # one choice carries them for all
            seqs = [Seq(index=i, prompt_ids=ids, params=p, start=start, holds_slot=slots.take())
                    for i, p in enumerate(params)]
        finally:
            slots.close()
        return await _chat_response(request, req, seqs, len(ids), lp_n, plan)

    async def _chat_response(request, req, seqs, prompt_tokens, lp_n, plan):
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": rid, "object": "chat.completion.chunk" if req.stream else "chat.completion",
                "created": created, "model": srv.model_name}
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            continuous = include_usage and bool(req.stream_options.continuous_usage_stats)
            extra = {"usage": None} if include_usage else {}
            if continuous:
                extra = {"usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0,
                                   "total_tokens": prompt_tokens}}
            first = [dict(base, choices=[{"index": s.index, "delta": {"role": "assistant", "content": ""},
                                          "logprobs": None, "finish_reason": None}], **extra) for s in seqs]
            parsers = {s.index: plan.parser.stream() for s in seqs} if plan.parser is not None else {}
            sent: dict[int, int] = {}

            def chunk(seq, out):
                if not out.delta_text and not out.delta_token_ids and out.finish_reason is None:
                    return None
                if continuous:
                    # Usage so far in every chunk (vLLM's continuous_usage_stats): the tokens of
                    # every choice generated up to this chunk.
                    sent[seq.index] = sent.get(seq.index, 0) + len(out.delta_token_ids or [])
                    done = sum(sent.values())
                    extra["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": done,
                                      "total_tokens": prompt_tokens + done}
                lp = None
                if lp_n is not None and out.delta_token_ids:
                    lp = {"content": srv.chat_logprobs(out.delta_token_ids, out.delta_logprobs or [], lp_n)}
                st = parsers.get(seq.index)
                if st is None:
                    delta = {"content": out.delta_text} if out.delta_text else {}
                    return dict(base, choices=[{"index": seq.index, "delta": delta, "logprobs": lp,
                                                "finish_reason": out.finish_reason}], **extra)
                deltas = st.feed(out.delta_text or "")
                if out.finish_reason is not None:
                    deltas += st.finish()
                if not deltas and lp is None and out.finish_reason is None:
                    return None
                deltas = deltas or [{}]
                finish = chat_tools.finish_reason(out.finish_reason, st.has_calls)
                return [dict(base, choices=[{"index": seq.index, "delta": d, "logprobs": lp if k == 0 else None,
                                             "finish_reason": finish if k == len(deltas) - 1 else None}], **extra)
                        for k, d in enumerate(deltas)]

            def usage_chunk():
                return dict(base, choices=[], usage=usage(seqs, prompt_tokens)) if include_usage else None

            body = await srv.open_stream(seqs, first, chunk, usage_chunk)
            return StreamingResponse(body, media_type="text/event-stream", headers=_SSE_HEADERS)
        await srv.run_all(request, seqs)
        choices = []
        for s in seqs:
            lp = {"content": srv.chat_logprobs(s.token_ids, s.logprobs, lp_n)} if lp_n is not None else None
            msg, has_calls = chat_tools.message(plan, s.text)
            choices.append({"index": s.index, "message": msg, "logprobs": lp,
                            "finish_reason": chat_tools.finish_reason(s.finish_reason, has_calls)})
        out = dict(base, choices=choices, usage=usage(seqs, prompt_tokens))
        if req.prompt_logprobs is not None:
            out["prompt_logprobs"] = completions.vllm_prompt_logprobs(srv, seqs[0].prompt_ids, seqs[0].prompt_logprobs,
                                                                      req.prompt_logprobs)
        return out

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
    async def metrics(request: Request):
        if not srv.public_metrics:
            srv.check_key(request)  # prefix-cache counters are a side channel (docs/limits.md)
        body = await asyncio.to_thread(srv.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    return app
