# eli/server/completions.py: POST /v1/completions (OpenAI's legacy completions), registered by
# app.py: plain prompts (strings or token ids, several per request), n, logprobs, streaming, and
#   echo     the prompt text before each choice's text; with logprobs, the prompt tokens' entries
#            first (the first prompt token has none: null, as OpenAI returns), from the engine's
#            prompt logprobs (SamplingParams.prompt_logprobs).
#   suffix   fill-in-the-middle (fim.py): a 400 for models without FIM tokens.
#   best_of  best_of >= n candidates per prompt, the n with the highest cumulative logprob returned
#            (ties: the earlier candidate); usage counts every candidate's tokens; not with stream.
#   stream_options.continuous_usage_stats (with include_usage): usage in every chunk, counting the
#            tokens sent so far, as vLLM does.
#   prompt_logprobs (vLLM's extension) k: each choice gets "prompt_logprobs", a list with one entry
#            per prompt token: null for the first, then {"<token id>": {"logprob", "rank",
#            "decoded_token"}} for the prompt token and the top k (rank: 1-based in the top k, null
#            for a prompt token outside it); streamed in the choice's first chunk.
# app.py's header lists the invariants every handler keeps (errors, admission, aborts).
from __future__ import annotations

import asyncio
import math
import time
import uuid

from fastapi import Request
from fastapi.responses import StreamingResponse

from . import validation as V
from .core import Seq, usage
from .fim import fim_prompt_ids
from .protocol import ApiError, CompletionRequest, kMaxN

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def check_completion(req: CompletionRequest) -> int:
    """The cross-field rules of echo / suffix / best_of; returns the candidates per prompt."""
    best_of = req.n if req.best_of is None else req.best_of
    if req.best_of is not None:
        if not 1 <= req.best_of <= kMaxN:
            raise ApiError(400, f"best_of must be in [1, {kMaxN}], got {req.best_of}", param="best_of")
        if req.best_of < req.n:
            raise ApiError(400, f"best_of ({req.best_of}) must be greater than or equal to n ({req.n})",
                           param="best_of")
        if req.stream and req.best_of > req.n:
            raise ApiError(400, "best_of > n cannot be streamed: set stream to false, or best_of to n",
                           param="best_of")
    if req.suffix:
        if req.echo:
            raise ApiError(400, "echo cannot be combined with suffix", param="echo")
        if not isinstance(req.prompt, str) and not (isinstance(req.prompt, list) and req.prompt
                                                    and all(isinstance(p, str) for p in req.prompt)):
            raise ApiError(400, "suffix needs text prompts (not token ids)", param="suffix")
    return best_of


def _cumulative(seq) -> float:
    total = 0.0
    for tid, entry in zip(seq.token_ids or [], seq.logprobs or []):
        total += entry.get(tid, -math.inf)
    return total


def register(v1, srv) -> None:
    """Adds POST /completions to the /v1 router `v1` of the app serving `srv` (core.Server)."""

    @v1.post("/completions")
    async def completions(request: Request):
        start = time.perf_counter()
        req: CompletionRequest = await srv.read_body(request, CompletionRequest)
        best_of = check_completion(req)
        inputs = V.completion_inputs(req, srv.vocab_size, srv.max_prompt_chars)
        slots = srv.reserve(best_of * len(inputs), param="n" if len(inputs) == 1 else "prompt")
        seqs: list[Seq] = []
        try:
            if req.suffix:
                prompts = [await asyncio.to_thread(fim_prompt_ids, srv.tokenizer, p, req.suffix) for p in inputs]
            else:
                prompts = await srv.encode_prompts(inputs)
            budgets = [V.check_context(len(ids), req.max_tokens, srv.max_model_len, param="max_tokens",
                                       default_max_tokens=srv.max_tokens_default) for ids in prompts]
            # best_of ranks candidates by cumulative logprob: the sampled tokens' logprobs are needed.
            lp_engine = req.logprobs if best_of == req.n or req.logprobs is not None else 0
            V.check_logprob_budget([m for m in budgets for _ in range(best_of)], lp_engine, n=best_of,
                                   param="logprobs")
            echo_lp = req.echo and req.logprobs is not None
            want_plp = max(req.logprobs if echo_lp else -1, -1 if req.prompt_logprobs is None else req.prompt_logprobs)
            if want_plp >= 0:
                V.check_logprob_budget([len(ids) for ids in prompts], want_plp, n=1,
                                       param="prompt_logprobs" if req.prompt_logprobs is not None else "logprobs")
            salt = srv.cache_salt(request, req)
            cand = req.model_copy(update={"n": best_of})
            for p, (ids, max_tokens) in enumerate(zip(prompts, budgets)):
                for i, params in enumerate(V.make_params(cand, max_tokens, lp_engine, salt)):
                    if want_plp >= 0:
                        params.prompt_logprobs = want_plp
                    seqs.append(Seq(index=p * best_of + i, prompt_ids=ids, params=params, start=start,
                                    holds_slot=slots.take()))
        except BaseException:
            for s in seqs:
                srv.release(s)
            raise
        finally:
            slots.close()
        echo = [_prompt_text(srv, p, ids) for p, ids in zip(inputs, prompts)] if req.echo else None
        return await _respond(srv, request, req, seqs, prompts, best_of, echo)


def _prompt_text(srv, given, ids: list[int]) -> str:
    if isinstance(given, str):
        return given
    return srv.tokenizer.decode(ids, skip_special_tokens=False)


def _echo_logprobs(srv, prompt_ids: list[int], prompt_lps, n: int) -> dict:
    """The prompt's part of an echoed choice's logprobs (first token: null entries)."""
    tokens, lps, tops, offsets, off = [], [], [], [], 0
    for k, tid in enumerate(prompt_ids):
        s = srv.token_str(tid)
        entry = prompt_lps[k] if prompt_lps is not None and k < len(prompt_lps) else None
        tokens.append(s)
        offsets.append(off)
        off += len(s)
        if entry is None:
            lps.append(None)
            tops.append(None)
        else:
            lps.append(entry.get(tid, -9999.0))
            tops.append({srv.token_str(t): lp for t, lp in sorted(entry.items(), key=lambda kv: -kv[1])[:n]})
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


def vllm_prompt_logprobs(srv, prompt_ids: list[int], prompt_lps, k: int) -> list:
    """vLLM's prompt_logprobs shape: [None, {"id": {logprob, rank, decoded_token}}, ...]."""
    out: list = [None]
    for p in range(1, len(prompt_ids)):
        entry = prompt_lps[p] if prompt_lps is not None and p < len(prompt_lps) else None
        if entry is None:
            out.append(None)
            continue
        tid = prompt_ids[p]
        top = [t for t, _ in sorted(entry.items(), key=lambda kv: -kv[1])][:k]
        d = {}
        for t in [tid] + [t for t in top if t != tid]:
            rank = top.index(t) + 1 if t in top else None
            d[str(t)] = {"logprob": entry.get(t, -9999.0), "rank": rank, "decoded_token": srv.token_str(t)}
        out.append(d)
    return out


def _join_logprobs(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}


async def _respond(srv, request, req: CompletionRequest, seqs: list[Seq], prompts: list[list[int]], best_of: int,
                   echo):
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    lp_n = req.logprobs
    prompt_tokens = sum(len(ids) for ids in prompts)
    base = {"id": rid, "object": "text_completion", "created": created, "model": srv.model_name}

    def prompt_of(seq) -> int:
        return seq.index // best_of

    def choice(seq, index, text, token_ids, logprobs, offset, finish, with_echo, with_prompt=True):
        lp = None
        if lp_n is not None:
            lp = srv.completion_logprobs(token_ids, logprobs, lp_n, offset)
            if with_echo:
                p = prompt_of(seq)
                lp = _join_logprobs(_echo_logprobs(srv, prompts[p], seq.prompt_logprobs, lp_n), lp)
        if with_echo:
            text = echo[prompt_of(seq)] + text
        out = {"index": index, "text": text, "logprobs": lp, "finish_reason": finish}
        if req.prompt_logprobs is not None and with_prompt:
            out["prompt_logprobs"] = vllm_prompt_logprobs(srv, prompts[prompt_of(seq)], seq.prompt_logprobs,
                                                           req.prompt_logprobs)
        return out

    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        continuous = include_usage and bool(req.stream_options.continuous_usage_stats)
        offsets: dict[int, int] = {}
        sent: dict[int, int] = {}

        def chunk(seq, out):
            first = seq.index not in offsets
            if not out.delta_text and not out.delta_token_ids and out.finish_reason is None:
                return None
            with_echo = first and echo is not None
            off = offsets.get(seq.index, len(echo[prompt_of(seq)]) if echo is not None else 0)
            offsets[seq.index] = off + len(out.delta_text or "")
            sent[seq.index] = sent.get(seq.index, 0) + len(out.delta_token_ids or [])
            ev = dict(base, choices=[choice(seq, seq.index, out.delta_text or "", out.delta_token_ids or [],
                                            out.delta_logprobs or [], off, out.finish_reason, with_echo, first)])
            if continuous:
                done = sum(sent.values())
                ev["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": done,
                               "total_tokens": prompt_tokens + done}
            elif include_usage:
                ev["usage"] = None
            return ev

        def usage_chunk():
            return dict(base, choices=[], usage=usage(seqs, prompt_tokens)) if include_usage else None

        body = await srv.open_stream(seqs, [], chunk, usage_chunk)
        return StreamingResponse(body, media_type="text/event-stream", headers=_SSE_HEADERS)

    await srv.run_all(request, seqs)
    chosen: list[tuple[int, Seq]] = []
    for p in range(len(prompts)):
        group = seqs[p * best_of:(p + 1) * best_of]
        if best_of > req.n:  # highest cumulative logprob first; sorted() is stable (ties: earlier)
            group = sorted(group, key=lambda s: -_cumulative(s))[:req.n]
        chosen.extend((p * req.n + j, s) for j, s in enumerate(group))
    choices = []
    for index, s in chosen:
        off = len(echo[prompt_of(s)]) if echo is not None else 0
        choices.append(choice(s, index, s.text, s.token_ids, s.logprobs, off, s.finish_reason, echo is not None))
    return dict(base, choices=choices, usage=usage(seqs, prompt_tokens))
