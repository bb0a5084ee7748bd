# eli/chat_template.py: render a model's Jinja chat template, safely.
#
# Chat templates come from model files, so they are untrusted code. They run in jinja2's
# ImmutableSandboxedEnvironment (no attribute access to dunders/internals, no mutation of
# lists/dicts) with the same helpers and settings transformers uses (trim_blocks, lstrip_blocks,
# loopcontrols, raise_exception, strftime_now, a non-HTML-escaping tojson, namespace, dict), so the
# output matches transformers' apply_chat_template. On top of the sandbox, budgets:
#   time:   a per-line tracer on the template's own frames stops a render running past `time_budget_s`;
#   memory: '+', '*', '**' and '~' results are size checked before they are built, padding-style
#           calls (center, ljust, format widths...) with huge sizes are refused;
#   output: the rendered text may not exceed `max_output_chars`.
# Every breach, template error or malformed message list is a ValueError with a clear message.
from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import time
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

kDefaultTimeBudgetS = 2.0
kDefaultMaxOutputChars = 1 << 20  # 1 MiB of text
kMaxMessages = 100_000
kMaxValueDepth = 32
kMaxIntermediateLen = 4 << 20  # longest string/list an expression may build
kMaxPaddingArg = 1 << 16  # largest width accepted by center/ljust/rjust/zfill/indent...
kTraceCheckEvery = 64

# ChatML, used when a model ships no template.
kFallbackTemplate = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class _Budget(Exception):
    pass


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    if indent is not None and (not isinstance(indent, int) or not 0 <= indent <= 64):
        raise _Budget("tojson indent out of range")
    out = json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    _check_len(out)
    return out


def _strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


class _TemplateDict:
    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """namespace() that refuses underscore names (no way to reach internals through it)."""

    def __init__(*args, **kwargs):  # noqa: N805 (same signature trick as jinja2's Namespace)
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        _check_len(value)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if not isinstance(name, str) or name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")


def _check_len(value) -> None:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > kMaxIntermediateLen:
        raise _Budget(f"an expression built a value of length {len(value)} (limit {kMaxIntermediateLen})")


def _sized(x) -> int | None:
    return len(x) if isinstance(x, (str, list, tuple)) else None


_FORMAT_WIDTH = re.compile(r"\d{6,}|\*")


class _SafeEnv(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["+", "*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if _sized(seq) is not None and isinstance(n, int) and _sized(seq) * max(n, 0) > kMaxIntermediateLen:
                    raise _Budget("a repetition would exceed the size budget")
        elif operator == "+":
            a, b = _sized(left), _sized(right)
            if a is not None and b is not None and a + b > kMaxIntermediateLen:
                raise _Budget("a concatenation would exceed the size budget")
        elif operator == "**":
            if isinstance(right, int) and isinstance(left, int) and abs(right) > 256 and abs(left) > 1:
                raise _Budget("exponent too large")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805
        name = getattr(__obj, "__name__", "")
        if name in ("center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "truncate"):
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, int) and not isinstance(a, bool) and a > kMaxPaddingArg:
                    raise _Budget(f"{name}() size argument {a} is over the limit")
        rv = super().call(__context, __obj, *args, **kwargs)
        _check_len(rv)
        return rv

    def unsafe_undefined(self, obj, attribute):
        # jinja2 returns a silent Undefined for unsafe attributes; an escape attempt is an error here.
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def getattr(self, obj, attribute):
        if isinstance(obj, str) and attribute in ("format", "format_map") and _FORMAT_WIDTH.search(obj):
            raise _Budget("format string with huge or dynamic width is not allowed")
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        if isinstance(obj, str) and argument in ("format", "format_map") and _FORMAT_WIDTH.search(obj):
            raise _Budget("format string with huge or dynamic width is not allowed")
        return super().getitem(obj, argument)


def _checked_filter(f, name):
    def wrapper(*args, **kwargs):
        for a in list(args[1:]) + list(kwargs.values()):
            if isinstance(a, int) and not isinstance(a, bool) and a > kMaxPaddingArg:
                raise _Budget(f"filter {name} size argument {a} is over the limit")
        if name == "format" and args and isinstance(args[0], str) and _FORMAT_WIDTH.search(args[0]):
            raise _Budget("format string with huge or dynamic width is not allowed")
        rv = f(*args, **kwargs)
        _check_len(rv)
        return rv

    for attr in ("jinja_pass_arg",):  # keep pass_context/pass_environment markers
        if hasattr(f, attr):
            setattr(wrapper, attr, getattr(f, attr))
    return wrapper


def _checked_join(join):
    def wrapper(seq):
        parts = list(seq)
        total = sum(len(p) for p in parts if isinstance(p, str))
        if total > kMaxIntermediateLen:
            raise _Budget("a string concatenation would exceed the size budget")
        return join(parts)

    return wrapper


def _make_env() -> _SafeEnv:
    env = _SafeEnv(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    for name in ("center", "indent", "wordwrap", "truncate", "format", "replace", "join"):
        if name in env.filters:
            env.filters[name] = _checked_filter(env.filters[name], name)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env


_ENV = _make_env()
_CACHE: dict[str, jinja2.Template] = {}
kCacheSize = 32


def _compile(template: str) -> jinja2.Template:
    t = _CACHE.get(template)
    if t is None:
        try:
            t = _ENV.from_string(template)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"chat template syntax error (line {e.lineno}): {e.message}") from None
        g = t.root_render_func.__globals__
        for fn in ("str_join", "markup_join"):
            if fn in g:
                g[fn] = _checked_join(g[fn])
        if len(_CACHE) >= kCacheSize:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[template] = t
    return t


def _validate_value(v: Any, where: str, depth: int = 0) -> None:
    if depth > kMaxValueDepth:
        raise ValueError(f"{where}: nesting deeper than {kMaxValueDepth}")
    if v is None or isinstance(v, (str, bool, int, float)):
        return
    if isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _validate_value(x, f"{where}[{i}]", depth + 1)
        return
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings")
            _validate_value(x, f"{where}.{k}", depth + 1)
        return
    raise ValueError(f"{where}: unsupported value type {type(v).__name__} (only JSON-like data is allowed)")


def validate_messages(messages) -> None:
    """Raise ValueError unless `messages` is a list of {role: str, content: str, ...} dicts."""
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages must be a list, got {type(messages).__name__}")
    if len(messages) > kMaxMessages:
        raise ValueError(f"too many messages ({len(messages)} > {kMaxMessages})")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] must be a dict, got {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError(f"messages[{i}].role must be a non-empty string")
        content = m.get("content")
        if not isinstance(content, str) and not (content is None and m.get("tool_calls")):
            raise ValueError(f"messages[{i}].content must be a string")
        _validate_value(m, f"messages[{i}]")


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


def render_chat(template: str | None, messages: list[dict], add_generation_prompt: bool = True,
                bos_token: str | None = None, eos_token: str | None = None, *,
                time_budget_s: float = kDefaultTimeBudgetS, max_output_chars: int = kDefaultMaxOutputChars,
                **extra) -> str:
    """Render `messages` with the Jinja chat `template` (None: the ChatML fallback).
    `extra` is passed to the template as variables (e.g. tools, documents, enable_thinking)."""
    if template is None or template == "":
        _warn_fallback_once()
        template = kFallbackTemplate
    if not isinstance(template, str):
        raise ValueError("chat template must be a string")
    validate_messages(messages)
    for k, v in extra.items():
        _validate_value(v, k)
    variables = dict(extra)
    variables.update(messages=[dict(m) for m in messages], add_generation_prompt=bool(add_generation_prompt),
                     bos_token=bos_token or "", eos_token=eos_token or "")
    compiled = _compile(template)

    deadline = time.monotonic() + time_budget_s
    counter = [0]

    def local_trace(frame, event, arg):
        counter[0] += 1
        if counter[0] % kTraceCheckEvery == 0 and time.monotonic() > deadline:
            raise _Budget(f"chat template rendering exceeded the {time_budget_s} s time budget")
        return local_trace

    def global_trace(frame, event, arg):
        if frame.f_code.co_filename == "<template>":
            return local_trace
        return None

    pieces: list[str] = []
    size = 0
    old_trace = sys.gettrace()
    sys.settrace(global_trace)
    try:
        for chunk in compiled.generate(**variables):
            size += len(chunk)
            if size > max_output_chars:
                raise _Budget(f"chat template output exceeded {max_output_chars} characters")
            if time.monotonic() > deadline:
                raise _Budget(f"chat template rendering exceeded the {time_budget_s} s time budget")
            pieces.append(chunk)
    except _Budget as e:
        raise ValueError(f"chat template: {e}") from None
    except jinja2.exceptions.SecurityError as e:
        raise ValueError(f"chat template tried an unsafe operation: {e}") from None
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template error: {e}") from None
    except RecursionError:
        raise ValueError("chat template recursed too deeply") from None
    except (TypeError, KeyError, AttributeError, IndexError, ValueError, ZeroDivisionError, OverflowError,
            MemoryError) as e:
        raise ValueError(f"chat template failed: {type(e).__name__}: {e}") from None
    finally:
        sys.settrace(old_trace)
    return "".join(pieces)


__all__ = ["render_chat", "validate_messages", "kFallbackTemplate"]
