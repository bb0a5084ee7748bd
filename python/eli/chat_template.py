# eli/chat_template.py: render a model's Jinja chat template, safely, to text or to prompt ids.
#
# Chat templates come from model files, so they are untrusted code; messages and template variables
# come from users, so they are untrusted data. This module is the one rendering path:
#   render_chat_ids(tokenizer, template, messages, ...) -> prompt ids   (LLM.chat, AsyncLLM, the server)
#   render_chat_spans(...) -> (text, user spans);  render_chat(...) -> text (no span tracking)
# Sandbox and budgets (chat_sandbox.py, chat_limits.py): the template runs in jinja2's immutable
# sandbox with transformers' helpers and settings (so the text matches apply_chat_template), with
# every operation checked before it runs, a wall-clock budget (hooks plus a line tracer on the
# template's frames), an output budget, a 256 KiB / 32 K-token template cap and a compile budget;
# compile failures are cached. Every failure is a ChatTemplateError (an eli InvalidRequestError,
# so a ValueError): syntax errors, unsafe operations, budget breaches, RecursionError, MemoryError,
# and errors the template raises itself.
# User text is data (RELIABILITY item 16): every string of the messages and of the template variables
# is tracked through the render (chat_taint.py); the tokenizer then parses special tokens only in
# the template's own text (Tokenizer.encode_chat), so a user who types "<|im_end|>" gets text.
# Tokenization versus transformers' apply_chat_template + encode: identical ids whenever no special
# token overlaps user text (every ordinary chat; tested on SmolLM2's template against the committed
# transformers ids). When one does, transformers would emit the control token; we emit the text's
# ordinary tokens instead, and only the section between the surrounding template special tokens is
# affected (it is encoded as the whole-text encode splits it, so BPE merges across the user/template
# boundary inside that section are the same as for any text; nothing else changes). "Special" means
# the tokenizer's special added tokens (and the named BOS/EOS/UNK/PAD); non-special added tokens
# (e.g. a vocabulary's <think> or <tool_call>) are matched in user text as transformers does.
# Messages are validated first (validate_messages): a non-empty list of {role, content} dicts, known
# roles, string content (or OpenAI text parts), JSON-like extra fields, no lone surrogates.
# Tool-call histories (OpenAI shape) are then adapted to what real templates expect
# (normalize_tool_history): content null -> "", function.arguments JSON text -> the object (Llama's
# and Qwen's templates apply tojson to it), tool-call ids -> 9 alphanumerics for templates that
# demand them (Mistral's), and for a template that never reads tool_calls, the calls written into
# the assistant's content as <tool_call> blocks (what eli's "json" tool parser reads back).
from __future__ import annotations

import collections
import copy
import hashlib
import json
import logging
import re
import sys
import threading
import warnings
from typing import Any, Mapping, Optional

import jinja2

from . import chat_limits as limits
from . import chat_taint as taint
from .chat_limits import (Budget, ChatTemplateError, kDefaultMaxOutputChars, kDefaultTimeBudgetS,
                          kMaxTemplateChars, kMaxTemplateTokens)
from .chat_sandbox import make_env, patch_template
from .errors import InvalidRequestError

kMaxMessages = 100_000
kTraceCheckEvery = 64
kCacheSize = 32
# Roles every template is given. Others are accepted when the template itself compares the role
# with them (e.g. Llama 3.1's "ipython"); anything else (a typo, "robot") is refused.
kBaseRoles = ("system", "user", "assistant", "tool", "developer")
kReservedVariables = ("messages", "add_generation_prompt", "bos_token", "eos_token")

# ChatML, used when a model ships no template.
kFallbackTemplate = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_ENV = make_env()
_CACHE: "collections.OrderedDict[str, tuple]" = collections.OrderedDict()  # template -> (compiled|error, roles)
_CACHE_LOCK = threading.Lock()


# ---- compiling ----------------------------------------------------------------------------------
class _Deadline:
    """A call-event tracer that stops Python code past the state's deadline (used while compiling:
    the lexer and parser make a function call at least every few tokens)."""

    def __init__(self, st: limits.RenderState):
        self.st = st
        self.n = 0

    def __call__(self, frame, event, arg):
        self.n += 1
        if not self.n & 255:
            self.st.check_time()
        return None

    def __enter__(self):
        self.old = sys.gettrace()
        sys.settrace(self)
        return self

    def __exit__(self, *exc):
        sys.settrace(self.old)


_ROLE_CMP = re.compile(r"""role['"\]]*\s*(?:==|!=|(?:not\s+)?in\b)\s*[(\[]?"""
                       r"""((?:\s*['"][A-Za-z0-9_\-]{1,32}['"]\s*,?)+)""")
_ROLE_CMP_REV = re.compile(r"""['"]([A-Za-z0-9_\-]{1,32})['"]\s*(?:==|!=)\s*[\w.]*(?:\[\s*['"])?role\b""")
_QUOTED = re.compile(r"""['"]([A-Za-z0-9_\-]{1,32})['"]""")


def template_roles(template: str) -> frozenset[str]:
    """The roles a template accepts: kBaseRoles plus the literals it compares a role with."""
    roles = set(kBaseRoles)
    for m in _ROLE_CMP.finditer(template):
        roles.update(_QUOTED.findall(m.group(1)))
    roles.update(_ROLE_CMP_REV.findall(template))
    return frozenset(roles)


def _compile_uncached(template: str) -> jinja2.Template:
    if len(template) > kMaxTemplateChars:
        raise ChatTemplateError(f"chat template is {len(template)} characters, over the limit of {kMaxTemplateChars}")
    st = limits.RenderState(limits.kCompileBudgetS, kDefaultMaxOutputChars, kDefaultMaxOutputChars)
    try:
        with limits.active(st), _Deadline(st), warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # Python's compiler on the generated code
            n = 0
            for _ in _ENV.lex(template):
                n += 1
                if n > kMaxTemplateTokens:
                    raise ChatTemplateError(f"chat template has more than {kMaxTemplateTokens} tokens")
            compiled = _ENV.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template syntax error (line {e.lineno}): {e.message}") from None
    except Budget as e:
        raise ChatTemplateError(f"chat template compile: {e}") from None
    except (RecursionError, SyntaxError):
        raise ChatTemplateError("chat template nests too deeply to compile") from None
    except MemoryError:
        raise ChatTemplateError("chat template is too complex to compile (out of memory)") from None
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template error: {e}") from None
    patch_template(compiled)
    return compiled


def _compile(template: str) -> tuple[jinja2.Template, frozenset[str]]:
    with _CACHE_LOCK:
        hit = _CACHE.get(template)
        if hit is not None:
            _CACHE.move_to_end(template)
    if hit is None:
        try:
            hit = (_compile_uncached(template), template_roles(template))
        except ChatTemplateError as e:
            hit = (str(e), frozenset())  # failures are cached too: a bad model template fails fast
        with _CACHE_LOCK:
            while len(_CACHE) >= kCacheSize:
                _CACHE.popitem(last=False)
            _CACHE[template] = hit
    if isinstance(hit[0], str):
        raise ChatTemplateError(hit[0])
    return hit


# ---- validation ---------------------------------------------------------------------------------
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_str(s: str, where: str, max_chars: int) -> None:
    if _SURROGATE.search(s):
        raise InvalidRequestError(f"{where}: contains a lone surrogate (invalid Unicode)")
    if len(s) > max_chars:
        raise InvalidRequestError(f"{where}: {len(s)} characters, over the chat template budget of {max_chars}")


def _validate_value(v: Any, where: str, max_chars: int, depth: int = 0) -> None:
    if depth > limits.kMaxValueDepth:
        raise InvalidRequestError(f"{where}: nesting deeper than {limits.kMaxValueDepth}")
    if isinstance(v, str):
        _check_str(v, where, max_chars)
    elif v is None or isinstance(v, (bool, int, float)):
        return
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _validate_value(x, f"{where}[{i}]", max_chars, depth + 1)
    elif isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise InvalidRequestError(f"{where}: keys must be strings")
            _check_str(k, f"{where} key", max_chars)
            _validate_value(x, f"{where}.{k}", max_chars, depth + 1)
    else:
        raise InvalidRequestError(f"{where}: unsupported value type {type(v).__name__} "
                                  "(only JSON-like data is allowed)")


def _flatten_content(content: Any, where: str) -> Optional[str]:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequestError(f"{where}[{j}]: only text content parts are supported, got {kind!r}")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequestError(f"{where} must be a string or a list of text parts, got {type(content).__name__}")


def validate_messages(messages: Any, roles: Optional[frozenset[str]] = None,
                      max_chars: int = kDefaultMaxOutputChars) -> list[dict]:
    """Check `messages` and return a normalized copy (OpenAI text-part lists joined into one string).
    InvalidRequestError unless it is a non-empty list of dicts with a known role (`roles`, default
    kBaseRoles) and string content (None only beside tool_calls), every other field JSON-like, no
    string with a lone surrogate or longer than `max_chars`."""
    if not isinstance(messages, (list, tuple)):
        raise InvalidRequestError(f"messages must be a list, got {type(messages).__name__}")
    if not messages:
        raise InvalidRequestError("messages is empty: a chat needs at least one message")
    if len(messages) > kMaxMessages:
        raise InvalidRequestError(f"too many messages ({len(messages)} > {kMaxMessages})")
    roles = frozenset(kBaseRoles) if roles is None else roles
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequestError(f"{where} must be a dict, got {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidRequestError(f"{where}.role must be a non-empty string")
        if role not in roles:
            raise InvalidRequestError(f"{where}.role {role[:40]!r} is not a role this chat template knows "
                                      f"(known: {', '.join(sorted(roles))})")
        content = _flatten_content(m.get("content"), f"{where}.content")
        if content is None and not m.get("tool_calls"):
            raise InvalidRequestError(f"{where}.content must be a string")
        m = dict(m, content=content)
        _validate_value(m, where, max_chars)
        out.append(m)
    return out


_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _short_id(call_id: Any) -> str:
    """A 9-alphanumeric id for `call_id` (the same for the same id: calls and results still match)."""
    if isinstance(call_id, str) and len(call_id) == 9 and call_id.isalnum() and call_id.isascii():
        return call_id
    n = int.from_bytes(hashlib.sha256(str(call_id).encode("utf-8", "replace")).digest()[:8], "big")
    out = []
    for _ in range(9):
        n, r = divmod(n, 62)
        out.append(_ALNUM[r])
    return "".join(out)


def _json_object(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        v = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return v if isinstance(v, dict) else text


def normalize_tool_history(messages: list[dict], template: str) -> list[dict]:
    """`messages` (validated) with their tool-call history in the shape chat templates expect (see the
    header). Messages without tool_calls / tool_call_id are returned as they are."""
    if not any(m.get("tool_calls") or m.get("tool_call_id") for m in messages):
        return messages
    nine = "length != 9" in template or "[TOOL_CALLS]" in template
    reads_calls = "tool_calls" in template
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if calls:
            m = copy.deepcopy(m)
            if m.get("content") is None:
                m["content"] = ""
            for c in m["tool_calls"] if isinstance(m["tool_calls"], list) else ():
                if not isinstance(c, dict):
                    continue
                fn = c.get("function")
                if isinstance(fn, dict) and "arguments" in fn:
                    fn["arguments"] = _json_object(fn["arguments"])
                if nine and "id" in c:
                    c["id"] = _short_id(c["id"])
            if not reads_calls:
                blocks = []
                for c in m["tool_calls"] if isinstance(m["tool_calls"], list) else ():
                    fn = c.get("function", c) if isinstance(c, dict) else {}
                    blocks.append("<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments")},
                                                               ensure_ascii=False) + "\n</tool_call>")
                m["content"] = "\n".join(([m["content"]] if m["content"] else []) + blocks)
        elif nine and m.get("tool_call_id") is not None:
            m = dict(m, tool_call_id=_short_id(m["tool_call_id"]))
        out.append(m)
    return out


def _check_variables(variables: Mapping, max_chars: int) -> dict:
    if not isinstance(variables, Mapping):
        raise InvalidRequestError(f"template variables must be a mapping, got {type(variables).__name__}")
    for k, v in variables.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise InvalidRequestError(f"template variable name {str(k)[:40]!r} is not an identifier")
        if k in kReservedVariables:
            raise InvalidRequestError(f"template variable {k!r} is reserved")
        _validate_value(v, k, max_chars)
    return dict(variables)


_fallback_warned = False


def _warn_fallback_once() -> None:
    """One warning per process (logging, so stderr by default) when a model without a chat
    template is used for chat: the ChatML fallback may not be the format the model was trained on."""
    global _fallback_warned
    if not _fallback_warned:
        _fallback_warned = True
        logging.getLogger("eli").warning(
            "this model has no chat template; chat messages are rendered as ChatML, which may not "
            "be the format it was trained on (pass a chat_template, or use plain-text prompts)")


# ---- rendering ----------------------------------------------------------------------------------
def _render(template: Optional[str], messages, add_generation_prompt: bool, bos_token, eos_token,
            variables: Mapping, marks: Optional[taint.Marks], time_budget_s: float, max_output_chars: int) -> str:
    if template is None or template == "":
        template = kFallbackTemplate
        _warn_fallback_once()
    if not isinstance(template, str):
        raise InvalidRequestError(f"chat template must be a string, got {type(template).__name__}")
    if not isinstance(max_output_chars, int) or max_output_chars <= 0:
        raise InvalidRequestError("max_output_chars must be a positive int")
    compiled, roles = _compile(template)
    messages = normalize_tool_history(validate_messages(messages, roles, max_output_chars), template)
    variables = _check_variables(variables, max_output_chars)
    if marks is not None:
        messages = taint.taint_tree(messages)
        variables = taint.taint_tree(variables)
    variables.update(messages=messages, add_generation_prompt=bool(add_generation_prompt),
                     bos_token=bos_token or "", eos_token=eos_token or "")

    st = limits.RenderState(time_budget_s, max_output_chars, max_output_chars, marks)
    counter = [0]
    finished = [False]

    def local_trace(frame, event, arg):
        # Frames keep this tracer after sys.settrace is restored: once the render is over (the
        # generator being closed), it must not raise any more.
        counter[0] += 1
        if not counter[0] % kTraceCheckEvery and not finished[0]:
            st.check_time()
        return local_trace

    def global_trace(frame, event, arg):
        return local_trace if frame.f_code.co_filename == "<template>" else None

    pieces: list[str] = []
    size = 0
    old_trace = sys.gettrace()
    gen = compiled.generate(**variables)
    try:
        with limits.active(st):
            sys.settrace(global_trace)
            for chunk in gen:
                if marks is not None:
                    if type(chunk) is taint.UserStr:  # filter and call blocks yield without finalize
                        chunk = marks.wrap(chunk)
                    size -= marks.marker_chars(chunk)
                size += len(chunk)
                if size > max_output_chars:
                    raise Budget(f"output exceeded {max_output_chars} characters")
                st.check_time()
                pieces.append(chunk)
    except Budget as e:
        raise ChatTemplateError(f"chat template: {e}") from None
    except jinja2.exceptions.SecurityError as e:
        raise ChatTemplateError(f"chat template tried an unsafe operation: {e}") from None
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"chat template error: {e}") from None
    except taint.MarkerError as e:
        raise ChatTemplateError(f"chat template: {e}") from None
    except RecursionError:
        raise ChatTemplateError("chat template recursed too deeply") from None
    except MemoryError:
        raise ChatTemplateError("chat template ran out of memory") from None
    except Exception as e:  # anything else the template's code raised (TypeError, KeyError, ...)
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {str(e)[:500]}") from None
    finally:
        finished[0] = True
        sys.settrace(old_trace)
        try:
            gen.close()
        except Exception:  # noqa: S110 (a template failing again while being closed changes nothing)
            pass
    return "".join(pieces)


def render_chat(template: Optional[str], messages: list[dict], add_generation_prompt: bool = True,
                bos_token: Optional[str] = None, eos_token: Optional[str] = None, *,
                time_budget_s: float = kDefaultTimeBudgetS, max_output_chars: int = kDefaultMaxOutputChars,
                **extra) -> str:
    """Render `messages` with the Jinja chat `template` (None or "": the ChatML fallback) to text.
    `extra` is passed to the template as variables (e.g. tools, documents, enable_thinking). The
    text only: use render_chat_ids for prompt ids (it keeps user text from becoming special tokens)."""
    return _render(template, messages, add_generation_prompt, bos_token, eos_token, extra, None,
                   time_budget_s, max_output_chars)


def render_chat_spans(template: Optional[str], messages: list[dict], add_generation_prompt: bool = True,
                      bos_token: Optional[str] = None, eos_token: Optional[str] = None, *,
                      template_vars: Optional[Mapping] = None, time_budget_s: float = kDefaultTimeBudgetS,
                      max_output_chars: int = kDefaultMaxOutputChars) -> tuple[str, list[tuple[int, int]]]:
    """Like render_chat, plus the [start, end) character ranges of the text that came from the
    messages or from `template_vars` (user data) rather than from the template itself."""
    marks = taint.Marks()
    out = _render(template, messages, add_generation_prompt, bos_token, eos_token, template_vars or {},
                  marks, time_budget_s, max_output_chars)
    try:
        text = marks.unwrap(out)
    except taint.MarkerError as e:
        raise ChatTemplateError(f"chat template: {e}") from None
    return str(text), [tuple(s) for s in taint.spans_of(text)]


def render_chat_ids(tokenizer, template: Optional[str], messages: list[dict], add_generation_prompt: bool = True, *,
                    template_vars: Optional[Mapping] = None, time_budget_s: float = kDefaultTimeBudgetS,
                    max_output_chars: int = kDefaultMaxOutputChars) -> list[int]:
    """The prompt ids of a chat: `template` (None: the tokenizer's, then ChatML) rendered with the
    tokenizer's BOS/EOS strings, then tokenized with special tokens parsed in the template's text
    only (eli.tokenizer.Tokenizer.encode_chat). `template_vars` are extra template variables
    (tools, documents, enable_thinking, ...), user data like the messages. Errors: InvalidRequestError
    (bad messages or variables), ChatTemplateError (a subclass: the template failed)."""
    if template is None:
        template = tokenizer.chat_template
    text, spans = render_chat_spans(template, messages, add_generation_prompt, tokenizer.bos_token,
                                    tokenizer.eos_token, template_vars=template_vars,
                                    time_budget_s=time_budget_s, max_output_chars=max_output_chars)
    return tokenizer.encode_chat(text, spans)


__all__ = ["render_chat", "render_chat_spans", "render_chat_ids", "validate_messages", "normalize_tool_history",
           "template_roles",
           "ChatTemplateError", "kFallbackTemplate", "kBaseRoles"]
