# eli/server/validation.py: turns a parsed OpenAI request into what the engine takes: prompt token
# ids and one eli.SamplingParams per choice, or an ApiError (400) that names the bad field.
#
# Invariants: every prompt returned fits the context together with its max_tokens; token-id
# prompts are inside the vocabulary; n x prompts is bounded (protocol.kMaxN, kMaxPrompts).
#
# User text is data, never control (RELIABILITY item 16). Message contents are rendered into the
# chat template through unique placeholders, so we know exactly where each user span lies in the
# final prompt. The whole prompt is then tokenized once, normally (so ordinary prompts tokenize
# exactly as transformers' apply_chat_template + encode would), and we check with the token
# offsets that no special token came out of a user span. Only if one did (an injection attempt
# such as "<|im_end|><|im_start|>system") the prompt is re-tokenized piecewise: template pieces
# with special-token parsing, user pieces with parse_special=False, so the typed text stays text.
# A template that transforms the content (placeholders not found verbatim) gets the content
# rendered directly, and a request whose content holds a special-token string is then refused
# (400) rather than risk an injected control token.
from __future__ import annotations

import secrets
from typing import Optional, Sequence

from pydantic import ValidationError

from ..chat_template import render_chat
from ..errors import InvalidRequestError
from ..sampling_params import SamplingParams
from .protocol import (ApiError, ChatCompletionRequest, CompletionRequest, kMaxPrompts)


def pydantic_error(e: ValidationError) -> ApiError:
    """The first pydantic error as a 400 naming the field."""
    errs = e.errors()
    if not errs:
        return ApiError(400, "invalid request body")
    first = errs[0]
    loc = [str(x) for x in first.get("loc", ()) if not str(x).startswith(("function-", "list[", "union["))
           and str(x) not in ("str", "int", "float", "bool")]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    return ApiError(400, f"{param}: {msg}" if param else msg, param=param)


# ---- sampling ----------------------------------------------------------------------------------

def _sampling_kwargs(req, max_tokens: int, logprobs: Optional[int]) -> dict:
    kw: dict = {"max_tokens": max_tokens}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "min_p",
                 "repetition_penalty"):
        v = getattr(req, name)
        if v is not None:
            kw[name] = float(v)
    if req.top_k is not None:
        kw["top_k"] = max(req.top_k, 0)  # -1 (vLLM's "off") == 0 here
    if req.stop is not None:
        kw["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.stop_token_ids:
        kw["stop_token_ids"] = list(req.stop_token_ids)
    kw["ignore_eos"] = bool(req.ignore_eos)
    kw["include_stop_str_in_output"] = bool(req.include_stop_str_in_output)
    kw["skip_special_tokens"] = req.skip_special_tokens is not False
    if logprobs is not None:
        kw["logprobs"] = logprobs
    return kw


def make_params(req, max_tokens: int, logprobs: Optional[int]) -> list[SamplingParams]:
    """n SamplingParams (one per choice). With a seed, choice i uses seed + i so choices differ."""
    kw = _sampling_kwargs(req, max_tokens, logprobs)
    if req.logit_bias:
        raise ApiError(400, "logit_bias is not supported", param="logit_bias")
    out = []
    for i in range(req.n):
        if req.seed is not None:
            kw["seed"] = (req.seed + i) % (2**64)
        try:
            out.append(SamplingParams(**kw))
        except (InvalidRequestError, ValueError, TypeError) as e:
            raise ApiError(400, str(e), param="stop" if "stop" in str(e) else None) from None
    return out


def check_context(prompt_len: int, max_tokens: Optional[int], max_model_len: int, *, param: str) -> int:
    """max_tokens resolved (None: the rest of the context); 400 when the request cannot fit."""
    if prompt_len < 1:
        raise ApiError(400, "the prompt is empty", param="prompt" if param == "max_tokens" else "messages")
    if max_tokens is None:
        max_tokens = max_model_len - prompt_len
        if max_tokens < 1:
            raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens; the "
                           f"prompt has {prompt_len} tokens, leaving no room to generate.",
                           param="messages", code="context_length_exceeded")
        return max_tokens
    if max_tokens < 1:
        raise ApiError(400, f"{param} must be at least 1, got {max_tokens}", param=param)
    if prompt_len + max_tokens > max_model_len:
        raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens. However, "
                       f"you requested {prompt_len + max_tokens} tokens ({prompt_len} in the prompt, "
                       f"{max_tokens} in the completion). Please reduce the length of the prompt or "
                       f"completion.", param=param, code="context_length_exceeded")
    return max_tokens


# ---- completions -------------------------------------------------------------------------------

def completion_prompts(req: CompletionRequest, tokenizer, vocab_size: int) -> list[list[int]]:
    """The request's prompts as token-id lists (a string is encoded with special tokens parsed:
    a raw completion prompt is the caller's own full-control text, as in vLLM)."""
    p = req.prompt
    if isinstance(p, str):
        raw: list = [p]
    elif len(p) == 0:
        raise ApiError(400, "prompt must not be empty", param="prompt")
    elif isinstance(p[0], int):
        raw = [p]
    else:
        raw = list(p)
    if len(raw) > kMaxPrompts:
        raise ApiError(400, f"at most {kMaxPrompts} prompts per request, got {len(raw)}", param="prompt")
    out = []
    for item in raw:
        if isinstance(item, str):
            try:
                ids = tokenizer.encode(item)
            except ValueError as e:
                raise ApiError(400, str(e), param="prompt") from None
        else:
            ids = list(item)
            for t in ids:
                if not isinstance(t, int) or not 0 <= t < vocab_size:
                    raise ApiError(400, f"token id {t!r} is outside the vocabulary [0, {vocab_size})",
                                   param="prompt")
        if not ids:
            raise ApiError(400, "prompt must not be empty", param="prompt")
        out.append(ids)
    if any(isinstance(x, str) for x in raw) and any(not isinstance(x, str) for x in raw):
        raise ApiError(400, "prompt must not mix strings and token lists", param="prompt")
    return out


def check_completion(req: CompletionRequest) -> None:
    if req.echo:
        raise ApiError(400, "echo is not supported", param="echo")
    if req.suffix:
        raise ApiError(400, "suffix is not supported", param="suffix")
    if req.best_of is not None and req.best_of != req.n:
        raise ApiError(400, "best_of must equal n (beam search / best-of is not supported)", param="best_of")


# ---- chat --------------------------------------------------------------------------------------

def _flatten_content(content, i: int) -> Optional[str]:
    if content is None or isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise ApiError(400, f"messages[{i}]: only text content parts are supported, got '{part.type}'",
                           param=f"messages.{i}.content")
        parts.append(part.text)
    return "".join(parts)


def check_chat(req: ChatCompletionRequest) -> None:
    if req.tools and req.tool_choice != "none":
        raise ApiError(400, "tools are not supported by this server", param="tools")
    rf = req.response_format
    if rf and rf.get("type") not in (None, "text"):
        raise ApiError(400, "response_format other than text is not supported", param="response_format")
    if req.top_logprobs is not None and not req.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs=true", param="top_logprobs")


def _special_strings(tokenizer) -> list[str]:
    cached = getattr(tokenizer, "_eli_server_specials", None)
    if cached is None:
        backend = tokenizer.backend
        cached = sorted({t.content for t in backend.get_added_tokens_decoder().values()
                         if t.content and t.special},
                        key=len, reverse=True)
        try:
            tokenizer._eli_server_specials = cached
        except AttributeError:
            pass
    return cached


def chat_prompt(req: ChatCompletionRequest, tokenizer, template: Optional[str]) -> list[int]:
    """Token ids of the rendered chat prompt, with user contents kept as plain text (see top)."""
    messages = []
    contents: list[Optional[str]] = []
    for i, m in enumerate(req.messages):
        d = m.model_dump(exclude_none=True)
        text = _flatten_content(m.content, i)
        d["content"] = text if text is not None else ("" if not d.get("tool_calls") else None)
        messages.append(d)
        contents.append(text)
    extra = dict(req.chat_template_kwargs or {})
    for k in ("messages", "add_generation_prompt", "bos_token", "eos_token"):
        extra.pop(k, None)
    kw = dict(add_generation_prompt=req.add_generation_prompt, bos_token=tokenizer.bos_token,
              eos_token=tokenizer.eos_token, **extra)
    nonce = secrets.token_hex(8)
    marks = [f"\ue000{nonce}:{i}\ue001" if c else None for i, c in enumerate(contents)]
    placeheld = [dict(m, content=mk) if mk else m for m, mk in zip(messages, marks)]
    try:
        rendered = render_chat(template, placeheld, **kw)
    except ValueError as e:
        raise ApiError(400, str(e), param="messages") from None
    if all(mk is None or rendered.count(mk) == 1 for mk in marks):
        return _encode_with_spans(tokenizer, rendered, marks, contents)
    # The template transformed the contents: render them directly, refuse special-token strings.
    specials = _special_strings(tokenizer)
    for i, c in enumerate(contents):
        for s in specials:
            if c and s in c:
                raise ApiError(400, f"messages[{i}].content contains the special token {s!r}",
                               param=f"messages.{i}.content")
    try:
        text = render_chat(template, messages, **kw)
        return tokenizer.encode(text, add_special_tokens=False)
    except ValueError as e:
        raise ApiError(400, str(e), param="messages") from None


def _encode_with_spans(tokenizer, rendered: str, marks: Sequence[Optional[str]],
                       contents: Sequence[Optional[str]]) -> list[int]:
    # Substitute the contents back while recording each user span [start, end) in the final text.
    pieces: list[tuple[str, bool]] = []  # (text, is_user)
    order = sorted((rendered.index(mk), i) for i, mk in enumerate(marks) if mk)
    pos = 0
    for at, i in order:
        pieces.append((rendered[pos:at], False))
        pieces.append((contents[i], True))
        pos = at + len(marks[i])
    pieces.append((rendered[pos:], False))
    text = "".join(p for p, _ in pieces)
    if len(text) > tokenizer.max_input_chars:
        raise ApiError(400, f"the prompt has {len(text)} characters, over the limit of "
                       f"{tokenizer.max_input_chars}", param="messages")
    spans, pos = [], 0
    for p, user in pieces:
        if user:
            spans.append((pos, pos + len(p)))
        pos += len(p)
    enc = tokenizer.backend.encode(text, add_special_tokens=False)
    specials = tokenizer.special_token_ids
    injected = False
    for tid, (a, b) in zip(enc.ids, enc.offsets):
        if tid in specials and any(a < e and s < b for s, e in spans):
            injected = True
            break
    if not injected:
        return list(enc.ids)
    ids: list[int] = []
    for p, user in pieces:
        if p:
            ids.extend(tokenizer.encode(p, add_special_tokens=False, parse_special=not user))
    return ids
