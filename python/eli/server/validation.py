# eli/server/validation.py: turns a parsed OpenAI request into what the engine takes: prompts and
# one eli.SamplingParams per choice, or an ApiError (400) that names the bad field.
#
# Invariants: every prompt returned fits the context together with its max_tokens; token-id
# prompts are inside the vocabulary; n x prompts is bounded (protocol.kMaxN, kMaxPrompts); a text
# prompt longer than the context could hold in characters (context x longest token) is refused
# before it is tokenized; the logprob entries a request can produce are bounded
# (protocol.kMaxLogprobEntries); no string in a request holds a lone surrogate.
#
# Client text is data, never control (RELIABILITY item 16): chat prompts are built by
# chat_prompt.build_prompt_ids from the job chat_job() makes (see there); chat_template_kwargs
# become template variables only, never render_chat's own parameters (budgets, the template).
from __future__ import annotations

import re
from typing import Any, Optional, Union

from pydantic import ValidationError

from ..errors import InvalidRequestError
from ..sampling_params import SamplingParams
from ..tool_parsers.prompt import template_takes_system, with_tool_prompt
from .chat_prompt import PromptError, build_prompt_ids, kReservedTemplateNames
from .protocol import ApiError, ChatCompletionRequest, CompletionRequest, kMaxLogprobEntries, kMaxPrompts


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


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_no_surrogates(data: Any) -> None:
    """400 when any string (value or key) in parsed JSON holds a lone surrogate (JSON allows
    "\\ud800"; it is not text and cannot be encoded, tokenized or echoed)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise ApiError(400, f"{path or 'the body'}: the string holds a lone surrogate (invalid Unicode)",
                               param=path or None)
        elif isinstance(v, dict):
            for k, x in v.items():
                sub = f"{path}.{k}" if path else str(k)
                if _SURROGATE.search(k):
                    raise ApiError(400, f"{path or 'the body'}: a key holds a lone surrogate (invalid Unicode)",
                                   param=path or None)
                stack.append((x, sub))
        elif isinstance(v, list):
            stack.extend((x, f"{path}.{i}") for i, x in enumerate(v))


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


def make_params(req, max_tokens: int, logprobs: Optional[int],
                cache_salt: Optional[str] = None, extra: Optional[dict] = None,
                extra_param: Optional[str] = None) -> list[SamplingParams]:
    """n SamplingParams (one per choice). With a seed, choice i uses seed + i so choices differ.
    cache_salt: the prefix-cache salt (request field and/or API key, see app.Server.cache_salt).
    extra: more SamplingParams fields (a chat's structured-output constraint, chat_tools.ToolPlan);
    an error they cause is a 400 naming extra_param."""
    kw = _sampling_kwargs(req, max_tokens, logprobs)
    kw.update(extra or {})
    if req.logit_bias:
        raise ApiError(400, "logit_bias is not supported", param="logit_bias")
    if cache_salt is not None:
        kw["cache_salt"] = cache_salt
    out = []
    for i in range(req.n):
        if req.seed is not None:
            kw["seed"] = (req.seed + i) % (2**64)
        try:
            out.append(SamplingParams(**kw))
        except (InvalidRequestError, ValueError, TypeError) as e:
            msg = str(e)
            param = "stop" if "stop" in msg else None
            if extra and any(f in msg for f in extra):
                param = extra_param
            raise ApiError(400, msg, param=param) from None
    return out


def check_context(prompt_len: int, max_tokens: Optional[int], max_model_len: int, *, param: str,
                  default_max_tokens: Optional[int] = None) -> int:
    """max_tokens resolved (None: the rest of the context, at most default_max_tokens); 400 when
    the request cannot fit."""
    if prompt_len < 1:
        raise ApiError(400, "the prompt is empty", param="prompt" if param == "max_tokens" else "messages")
    if max_tokens is None:
        max_tokens = max_model_len - prompt_len
        if max_tokens < 1:
            raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens; the "
                           f"prompt has {prompt_len} tokens, leaving no room to generate.",
                           param="messages", code="context_length_exceeded")
        if default_max_tokens is not None:
            max_tokens = min(max_tokens, default_max_tokens)
        return max_tokens
    if max_tokens < 1:
        raise ApiError(400, f"{param} must be at least 1, got {max_tokens}", param=param)
    if prompt_len + max_tokens > max_model_len:
        raise ApiError(400, f"This model's maximum context length is {max_model_len} tokens. However, "
                       f"you requested {prompt_len + max_tokens} tokens ({prompt_len} in the prompt, "
                       f"{max_tokens} in the completion). Please reduce the length of the prompt or "
                       f"completion.", param=param, code="context_length_exceeded")
    return max_tokens


def check_logprob_budget(max_tokens: list[int], logprobs: Optional[int], *, n: int, param: str) -> None:
    """400 when the choices could produce more than kMaxLogprobEntries logprob entries in all
    (each output token carries its own logprob plus `logprobs` alternatives)."""
    if logprobs is None:
        return
    total = sum(max_tokens) * (logprobs + 1)
    if total > kMaxLogprobEntries:
        prompts = len(max_tokens) // max(n, 1)
        raise ApiError(400, f"this request could return {total} logprob entries ({prompts} prompt(s) x n={n} "
                       f"choices, up to {max(max_tokens)} tokens each, {logprobs + 1} entries per token); the "
                       f"limit is {kMaxLogprobEntries}: lower n, max_tokens or {param}", param=param)


# ---- completions -------------------------------------------------------------------------------

def completion_inputs(req: CompletionRequest, vocab_size: int, max_chars: int) -> list[Union[str, list[int]]]:
    """The request's prompts, each a string (not yet encoded) or a token-id list, checked: count,
    ids inside the vocabulary, strings no longer than `max_chars` (what the context can hold)."""
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
    if any(isinstance(x, str) for x in raw) and any(not isinstance(x, str) for x in raw):
        raise ApiError(400, "prompt must not mix strings and token lists", param="prompt")
    out = []
    for item in raw:
        if isinstance(item, str):
            if not item:
                raise ApiError(400, "prompt must not be empty", param="prompt")
            if len(item) > max_chars:
                raise ApiError(400, f"the prompt has {len(item)} characters; a prompt of more than {max_chars} "
                               f"characters cannot fit the context", param="prompt", code="context_length_exceeded")
            out.append(item)
        else:
            ids = list(item)
            for t in ids:
                if not isinstance(t, int) or not 0 <= t < vocab_size:
                    raise ApiError(400, f"token id {t!r} is outside the vocabulary [0, {vocab_size})",
                                   param="prompt")
            if not ids:
                raise ApiError(400, "prompt must not be empty", param="prompt")
            out.append(ids)
    return out


def encode_prompts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of completion prompts (special tokens parsed, BOS added as the model says: a raw
    completion prompt is the caller's own full-control text, as in vLLM). encode_batch releases
    the GIL (Tokenizer.encode does not), so this runs in a thread without stalling the event loop.
    TODO(lead, text helper): a GIL-free Tokenizer.encode_batch in eli/tokenizer.py replaces this."""
    try:
        return [list(e.ids) for e in tokenizer.backend.encode_batch(texts, add_special_tokens=True)]
    except Exception as e:  # tokenizers raises bare Exceptions
        raise ApiError(400, f"the prompt could not be tokenized: {e}", param="prompt") from None


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
    """Cross-field checks of a chat request; tools / tool_choice / response_format are checked by
    chat_tools.make_plan."""
    if req.top_logprobs is not None and not req.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
    for k in req.chat_template_kwargs or {}:
        if k == "tools":
            raise ApiError(400, "chat_template_kwargs may not set 'tools': pass them as the request's tools field",
                           param="chat_template_kwargs.tools")
        if k in kReservedTemplateNames:
            raise ApiError(400, f"chat_template_kwargs may not set {k!r} (reserved by the server)",
                           param=f"chat_template_kwargs.{k}")


def _text_chars(v: Any) -> int:
    """Characters in all the strings of a JSON-like value (keys excluded)."""
    total, stack = 0, [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            total += len(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return total


def chat_job(req: ChatCompletionRequest, tokenizer, template: Optional[str], max_chars: int,
             tools: Optional[list] = None, describe_tools: Optional[list] = None) -> dict:
    """What chat_prompt.build_prompt_ids needs (plain data: it crosses to the render worker).
    tools: given to the template as its `tools` variable; describe_tools: tools eli describes
    itself in the system message instead (for a template that never reads `tools`)."""
    check_chat(req)
    messages = []
    for i, m in enumerate(req.messages):
        d = m.model_dump(exclude_none=True)
        text = _flatten_content(m.content, i)
        d["content"] = text if text is not None else ("" if not d.get("tool_calls") else None)
        messages.append(d)
    if describe_tools:
        messages = with_tool_prompt(messages, describe_tools,
                                    template_takes_system(template if template is not None else tokenizer.chat_template))
    variables = dict(req.chat_template_kwargs or {})
    total = _text_chars(messages) + _text_chars(variables) + _text_chars(tools)
    if total > max_chars:  # before the render worker sees it (it checks again, and the rendering)
        raise ApiError(400, f"the messages hold {total} characters; a prompt of more than {max_chars} "
                       f"characters cannot fit the context", param="messages", code="context_length_exceeded")
    return {"template": template, "messages": messages, "variables": variables, "tools": tools,
            "add_generation_prompt": req.add_generation_prompt, "bos_token": tokenizer.bos_token,
            "eos_token": tokenizer.eos_token, "max_chars": max_chars}


def prompt_error(e: PromptError) -> ApiError:
    return ApiError(e.status, e.message, param=e.param, code=e.code,
                    type="invalid_request_error" if e.status < 500 else "server_error")


def chat_prompt(req: ChatCompletionRequest, tokenizer, template: Optional[str],
                max_chars: Optional[int] = None) -> list[int]:
    """Token ids of the rendered chat prompt, in this process (see chat_prompt.py)."""
    job = chat_job(req, tokenizer, template, tokenizer.max_input_chars if max_chars is None else max_chars)
    try:
        return build_prompt_ids(job, tokenizer)
    except PromptError as e:
        raise prompt_error(e) from None
