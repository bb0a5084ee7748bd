# eli/chat_limits.py: the budgets of chat-template rendering and the checks that enforce them
# before an operation runs.
#
# A chat template is untrusted code, and Python's tracer cannot interrupt a C-level operation
# (a bigint power, a '%' format with a 10^9 width, a join of a million references to a long string).
# So the rule is: every operation whose result size is not bounded by a small multiple of its
# operands is checked *before* it runs, from its operands:
#   - every value a template builds is at most `max_value` characters (or items), the output budget,
#     and all the values it builds together at most kMaxAllocFactor x max_value (so keeping many
#     large values alive cannot exhaust memory either);
#   - an operation runs only if its result is provably at most kMaxGrowth x max_value (bounded
#     growth: upper/escape/urlencode ...) and the result is checked again afterwards, or its exact
#     size is computed from the operands first (repetition, join, replace, padding, formatting);
#   - integers stay under kMaxIntBits bits (checked before '*' and '**');
#   - widths, precisions and padding sizes are at most kMaxPaddingArg;
#   - sorting-like filters take at most kMaxSortItems items; text helpers (urlize, title, ...) at
#     most kMaxTextFilterChars characters, wordwrap kMaxWrapChars, striptags length x tags at most
#     kMaxQuadraticWork (pure-Python loops that no tracer or hook can interrupt);
#   - the wall-clock deadline is checked on every hook call (and every traced template line).
# RenderState carries the limits of the render running on this thread; the sandbox hooks
# (chat_sandbox.py) call the check_* functions here. A breach raises Budget, which the renderer turns
# into ChatTemplateError (an eli InvalidRequestError, so a ValueError).
from __future__ import annotations

import re
import string
import threading
import time
from typing import Any

import jinja2
import jinja2.utils

from .errors import InvalidRequestError

kDefaultTimeBudgetS = 2.0
kCompileBudgetS = 10.0  # compiling a template (once per template; failures are cached too)
kDefaultMaxOutputChars = 1 << 20  # 1 Mi characters of rendered text
kMaxTemplateChars = 256 * 1024  # real templates are 1-20 KiB (Llama 3.1 ~4.5 KiB, Qwen ~2.5 KiB)
kMaxTemplateTokens = 32768  # Jinja lexer tokens; bounds parse + compile time (Llama 3.1: ~1.3 K)
kMaxPaddingArg = 1 << 16  # widths, precisions, counts
kMaxIntBits = 1 << 14  # ~4900 decimal digits; Python refuses to print more than 4300 anyway
kMaxSortItems = 100_000
kMaxTextFilterChars = 256 * 1024  # urlize, striptags, title, pprint: pure-Python or regex heavy
kMaxWrapChars = 16 * 1024  # wordwrap: textwrap copies the rest of a long word per line (quadratic)
kMaxQuadraticWork = 1 << 28  # striptags removes one tag per copy of the text: length x tags
kMaxGrowth = 16  # largest result/operand size ratio of the operations checked only afterwards
kMaxValueDepth = 64
kMaxMacroDepth = 64
kMaxLipsumWords = 10_000
kMaxStrftimeFormat = 256
kMaxAllocFactor = 128  # cumulative size of the values one render builds, in units of max_value


class ChatTemplateError(InvalidRequestError):
    """A chat template could not be rendered: a syntax error, an unsafe operation, a budget breach
    (time, size, nesting) or an error the template raised itself (raise_exception)."""


class Budget(Exception):
    """A budget breach inside a render (internal; the renderer raises ChatTemplateError)."""


class RenderState:
    """The limits of the render running on this thread (see the module comment)."""

    def __init__(self, time_budget_s: float, max_value: int, max_output: int, marks=None):
        self.time_budget_s = time_budget_s
        self.deadline = time.monotonic() + time_budget_s
        self.max_value = max_value
        self.max_output = max_output
        self.marks = marks  # chat_taint.Marks while user strings are tracked, else None
        self.macro_depth = 0
        self.allocated = 0
        self.max_alloc = kMaxAllocFactor * max_value

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise Budget(f"rendering exceeded the {self.time_budget_s:g} s time budget")

    def account(self, value: Any) -> None:
        """Adds a value the template built to the render's cumulative allocation."""
        if isinstance(value, (str, list, tuple, dict)):
            self.allocated += len(value)
            if self.allocated > self.max_alloc:
                raise Budget(f"the template built more than {self.max_alloc} characters (or items) of values")

    def check_len(self, n: int, what: str = "a value") -> None:
        if n > self.max_value:
            raise Budget(f"{what} would be {n} characters (or items) long, over the size budget of {self.max_value}")


_local = threading.local()


def current() -> RenderState:
    """The active render's state; outside a render (e.g. Jinja's compile-time constant folding) a
    default one, so every hook always has limits to apply."""
    st = getattr(_local, "state", None)
    if st is None:
        st = RenderState(kCompileBudgetS, kDefaultMaxOutputChars, kDefaultMaxOutputChars)
    return st


class active:
    """Context manager making `state` the current render state of this thread."""

    def __init__(self, state: RenderState):
        self.state = state

    def __enter__(self) -> RenderState:
        self.prev = getattr(_local, "state", None)
        _local.state = self.state
        return self.state

    def __exit__(self, *exc) -> None:
        _local.state = self.prev


# ---- size estimates -------------------------------------------------------------------------------
_DICT_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))


def int_digits(v: int) -> int:
    return int(v.bit_length() * 0.30103) + 2


def _str_repr_bound(s: str, room: int) -> int:
    if s.isprintable():
        return len(s) + 2 + s.count("\\") + s.count("'")
    bound = 10 * len(s) + 2  # \U0010ffff escapes
    return bound if bound <= room else len(repr(s))  # exact when the bound alone would not fit


def repr_len_bound(value: Any, st: RenderState, limit: int | None = None) -> int:
    """An upper bound of len(repr(value)) for the values a template can hold; Budget as soon as the
    bound passes `limit` (default: the value budget), so the walk itself is bounded too."""
    limit = st.max_value if limit is None else limit
    total, nodes = 0, 0
    stack = [(value, 0)]
    while stack:
        x, depth = stack.pop()
        nodes += 1
        if not nodes & 4095:
            st.check_time()
        if depth > kMaxValueDepth:
            raise Budget(f"a value nests deeper than {kMaxValueDepth} levels")
        if isinstance(x, str):
            total += _str_repr_bound(x, limit - total)
        elif x is None or isinstance(x, bool):
            total += 5
        elif isinstance(x, int):
            total += int_digits(x)
        elif isinstance(x, float):
            total += 32
        elif isinstance(x, (list, tuple, set, frozenset)):
            total += 3 + 2 * len(x)
            if total <= limit:
                stack.extend((i, depth + 1) for i in x)
        elif isinstance(x, dict):
            total += 2 + 4 * len(x)
            if total <= limit:
                for k, v in x.items():
                    stack.append((k, depth + 1))
                    stack.append((v, depth + 1))
        elif isinstance(x, _DICT_VIEWS):
            total += 16 + 4 * len(x)
            if total <= limit:
                stack.append((list(x), depth + 1))
        elif isinstance(x, jinja2.utils.Namespace):
            total += 14
            stack.append((x._Namespace__attrs, depth + 1))
        else:
            total += 160  # other objects (loop, macro, cycler, generators...): class name and address
        if total > limit:
            raise Budget(f"printing a value would exceed the size budget of {limit} characters")
    return total


def str_len_bound(value: Any, st: RenderState) -> int:
    """An upper bound of len(str(value)) (what '{{ }}', '~' and the string filter produce)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, jinja2.Undefined):
        return 0
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return int_digits(value)
    if isinstance(value, float):
        return 32
    return repr_len_bound(value, st)


def sized(x: Any) -> int | None:
    """len(x) for the sequences whose size an operation multiplies, else None."""
    return len(x) if isinstance(x, (str, bytes, list, tuple)) else None


# ---- operators -----------------------------------------------------------------------------------
def check_binop(op: str, left: Any, right: Any, st: RenderState) -> None:
    st.check_time()
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            size = sized(seq)
            if size is not None and isinstance(n, int):
                st.check_len(size * max(n, 0), "a repetition")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > kMaxIntBits:
            raise Budget(f"an integer product would exceed {kMaxIntBits} bits")
    elif op == "+":
        a, b = sized(left), sized(right)
        if a is not None and b is not None:
            st.check_len(a + b, "a concatenation")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right > kMaxIntBits or right * left.bit_length() > kMaxIntBits:
                raise Budget(f"an integer power would exceed {kMaxIntBits} bits")


def _width(digits: str, what: str) -> int:
    if len(digits) > 6 or int(digits) > kMaxPaddingArg:
        raise Budget(f"format {what} {digits[:12]} is over the limit of {kMaxPaddingArg}")
    return int(digits)


_PCT_SPEC = re.compile(r"%(?:\(([^()]*)\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.S)


def _values_bound(values, st: RenderState) -> int:
    return max((str_len_bound(v, st) for v in values), default=0)


def check_percent_format(fmt: str, args: Any, st: RenderState) -> None:
    """Refuse `fmt % args` unless its result provably fits the value budget ('*' widths refused)."""
    n, widest, conv_repr = 0, 0, False
    for m in _PCT_SPEC.finditer(fmt):
        if m.group(4) == "%":
            continue
        n += 1
        w, p = m.group(2), m.group(3)
        if w == "*" or p == "*":
            raise Budget("'*' widths in a % format are not allowed")
        widest = max(widest, (_width(w, "width") if w else 0) + (_width(p, "precision") if p else 0))
        conv_repr = conv_repr or m.group(4) in ("r", "a")
    if n == 0:
        return
    if isinstance(args, tuple):
        values = list(args)
    elif isinstance(args, dict):
        values = [args, *args.values()]
    else:
        values = [args]
    value = _values_bound(values, st) * (10 if conv_repr else 1)
    st.check_len(len(fmt) + n * (widest + value + 330), "a % format result")


def check_brace_format(fmt: str, args: tuple, kwargs: dict, st: RenderState) -> None:
    """Refuse fmt.format(*args, **kwargs) unless its result provably fits the value budget."""
    n, widest, conv_repr = 0, 0, False
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _, field, spec, conv in fields:
        if field is None:
            continue
        n += 1
        if spec and "{" in spec:
            raise Budget("nested replacement fields in a format spec are not allowed")
        widest = max(widest, sum(_width(d, "width") for d in re.findall(r"\d+", spec or "")))
        conv_repr = conv_repr or conv in ("r", "a")
    if n == 0:
        return
    values = list(args) + list(kwargs.values())
    value = _values_bound(values, st) * (10 if conv_repr else 1)
    st.check_len(len(fmt) + n * (widest + value + 330), "a format() result")


# ---- calls: methods and helpers ------------------------------------------------------------------
def _int_arg(v: Any, name: str) -> None:
    if isinstance(v, int) and not isinstance(v, bool) and v > kMaxPaddingArg:
        raise Budget(f"{name}() size argument {v} is over the limit of {kMaxPaddingArg}")


def check_str_method(s: str, name: str, args: tuple, kwargs: dict, st: RenderState) -> None:
    """Pre-checks of a str method call `s.name(*args, **kwargs)` from a template."""
    st.check_time()
    if name in ("encode", "translate", "maketrans"):
        raise Budget(f"str.{name}() is not available in chat templates")
    if name in ("center", "ljust", "rjust", "zfill"):
        for a in args:
            _int_arg(a, name)
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if not isinstance(tab, int) or tab > 64:
            raise Budget("expandtabs() tab size over 64")
        st.check_len(len(s) * max(tab, 1), "an expandtabs() result")
    elif name == "join":
        return  # checked by the caller on the materialized items (check_join)
    elif name == "striptags":  # Markup.striptags: one copy of the text per tag removed
        if len(s) * (s.count("<") + 1) > kMaxQuadraticWork:
            raise Budget("striptags() of a text with this many tags would take too long")
    elif name == "replace":
        old, new = (list(args) + [None, None])[:2]
        if isinstance(old, str) and isinstance(new, str):
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            check_replace(s, old, new, count, st)
    elif name in ("format", "format_map"):
        if name == "format_map":  # any field may name any entry: bound each by the whole mapping
            check_brace_format(s, tuple(args[:1]), {}, st)
        else:
            check_brace_format(s, args, kwargs, st)


def check_replace(s: str, old: str, new: str, count: Any, st: RenderState) -> None:
    occurrences = len(s) + 1 if not old else s.count(old)
    if isinstance(count, int) and 0 <= count < occurrences:
        occurrences = count
    st.check_len(len(s) + occurrences * (len(new) - len(old)), "a replace() result")


def check_join(sep: str, items: list, st: RenderState) -> None:
    st.check_len(len(items), "a join")
    total = len(sep) * max(len(items) - 1, 0)
    st.check_len(total, "a join")
    for it in items:
        total += str_len_bound(it, st)
        st.check_len(total, "a join")


def check_int_method(name: str, args: tuple, kwargs: dict) -> None:
    if name == "to_bytes":
        raise Budget("int.to_bytes() is not available in chat templates")


def check_lipsum(args: tuple, kwargs: dict) -> None:
    names = ("n", "html", "min", "max")
    values = dict(zip(names, args), **kwargs)
    n, hi = values.get("n", 5), values.get("max", 100)
    if not isinstance(n, int) or not isinstance(hi, int) or n < 0 or hi < 0 or n * hi > kMaxLipsumWords:
        raise Budget(f"lipsum() may produce at most {kMaxLipsumWords} words")


def check_strftime(fmt: Any) -> None:
    if isinstance(fmt, str) and len(fmt) > kMaxStrftimeFormat:
        raise Budget(f"strftime_now() format longer than {kMaxStrftimeFormat} characters")


__all__ = ["ChatTemplateError", "Budget", "RenderState", "current", "active", "check_binop",
           "check_percent_format", "check_brace_format", "check_str_method", "check_join",
           "check_replace", "str_len_bound", "repr_len_bound"]
