# eli/chat_sandbox.py: the Jinja environment chat templates run in.
#
# jinja2's ImmutableSandboxedEnvironment (no attribute access to internals, no mutation of lists and
# dicts) with the helpers transformers gives templates (raise_exception, strftime_now, tojson, dict,
# namespace, loop controls), plus hooks on every operation a template can perform:
#   - all binary and unary operators are intercepted (which also stops Jinja from folding constant
#     expressions at compile time); '*', '**', '%' and '+' are size-checked first (chat_limits);
#   - every call (methods, macros, helpers) goes through call(): str methods, format/format_map,
#     join, lipsum, strftime_now, int.to_bytes are checked before they run; macro nesting is capped;
#   - every filter is wrapped: pre-checks from its arguments, a post-check of the result size, and
#     `pass_context`, so Jinja never evaluates a filter at compile time;
#   - output goes through `finalize` (also pass_context: no compile-time output folding), which
#     bounds str() of containers before building it;
#   - captured output (macros, {% set %} blocks, filter/call blocks) is joined by a checked concat,
#     and '~' by a checked str_join;
#   - getattr/getitem/call check the render deadline, so loops inside helpers stop too.
# While user strings are tracked (chat_taint), the same hooks keep their spans: precise operations
# keep them, other string-producing operations on user text mark their whole result as user text,
# and finalize writes user text between the render's markers.
from __future__ import annotations

import datetime
import random
import string
import types
from typing import Any

import jinja2
import jinja2.ext
import jinja2.filters
import jinja2.runtime
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, pass_context

from . import chat_limits as limits
from . import chat_taint as taint
from .chat_limits import Budget


def _norm(x: Any, st: limits.RenderState) -> Any:
    """Captured text with user markers (a block's output) back to a UserStr before it is used."""
    marks = st.marks
    if marks is not None and isinstance(x, str) and marks.present(x):
        return marks.unwrap(x)
    return x


def _tainted(values, st: limits.RenderState) -> bool:
    return st.marks is not None and any(taint.carries_taint(v, st.marks) for v in values)


def _to_str(value: Any, st: limits.RenderState) -> str:
    """str(value) for output and '~', bounded before it is built; user text stays user text."""
    if isinstance(value, str):
        return _norm(value, st)
    st.check_len(limits.str_len_bound(value, st), "printing a value")
    s = str(value)
    if _tainted((value,), st):
        s = taint.full(s)
    return s


# ---- helpers given to templates -------------------------------------------------------------------
def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(str(message)[:1000])


@pass_context
def _random_fixed(context, seq):
    """jinja2's `random` filter made deterministic: a chat prompt must render the same every time
    (prefix caching, reproducible requests), so the choice comes from a fixed seed."""
    try:
        return random.Random(0).choice(seq)
    except IndexError:
        return context.environment.undefined("No random item, sequence was empty.")


def _strftime_now(fmt):
    limits.check_strftime(fmt)
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
        size = limits.sized(value)
        if size is not None:
            limits.current().check_len(size)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if not isinstance(name, str) or name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")


# ---- filters ----------------------------------------------------------------------------------------
def _materialize(value: Any, st: limits.RenderState, cap: int, what: str) -> Any:
    if isinstance(value, (str, list, tuple, dict)):
        _check_items(len(value), cap, what)
        return value
    if isinstance(value, jinja2.Undefined):
        return value
    items = []
    for x in value:
        items.append(x)
        if len(items) > cap:
            raise Budget(f"{what} of more than {cap} items")
    return items


def _check_items(n: int, cap: int, what: str) -> None:
    if n > cap:
        raise Budget(f"{what} of {n} items (limit {cap})")


def _pre_indent(value, args, kwargs, st):
    width = args[0] if args else kwargs.get("width", 4)
    s = value if isinstance(value, str) else ""
    prefix = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(width, int) and width > limits.kMaxPaddingArg:
        raise Budget(f"indent width {width} is over the limit of {limits.kMaxPaddingArg}")
    lines = len(s.splitlines()) + 2  # every line boundary str.splitlines knows (\r, \x1c, \u2028, ...)
    st.check_len(len(s) + lines * prefix, "an indent() result")


def _pre_wordwrap(value, args, kwargs, st):
    s = value if isinstance(value, str) else ""
    _check_items(len(s), limits.kMaxWrapChars, "wordwrap() of a text")
    names = ("width", "break_long_words", "wrapstring", "break_on_hyphens")
    opts = dict(zip(names, args), **kwargs)
    width = opts.get("width", 79)
    wrap = opts.get("wrapstring") or "\n"
    if not isinstance(width, int) or width < 1:
        raise Budget("wordwrap() width must be a positive integer")
    st.check_len(len(s) + (len(s) // width + 1) * len(str(wrap)), "a wordwrap() result")


def _pre_width(name):
    def check(value, args, kwargs, st):
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, int) and not isinstance(a, bool) and a > limits.kMaxPaddingArg:
                raise Budget(f"{name} size argument {a} is over the limit of {limits.kMaxPaddingArg}")
    return check


def _pre_text(name):
    def check(value, args, kwargs, st):
        if isinstance(value, str):
            _check_items(len(value), limits.kMaxTextFilterChars, f"{name}() of a text")
            if name == "striptags" and len(value) * (value.count("<") + 1) > limits.kMaxQuadraticWork:
                raise Budget("striptags() of a text with this many tags would take too long")
        elif name == "pprint":
            limits.repr_len_bound(value, st, limits.kMaxTextFilterChars)
    return check


_PRE = {
    "center": _pre_width("center"),
    "batch": _pre_width("batch"),
    "slice": _pre_width("slice"),
    "indent": _pre_indent,
    "wordwrap": _pre_wordwrap,
    "urlize": _pre_text("urlize"),
    "striptags": _pre_text("striptags"),
    "title": _pre_text("title"),
    "pprint": _pre_text("pprint"),
}
_SORTING = ("sort", "dictsort", "groupby", "unique", "min", "max", "reverse", "slice", "batch", "random")

# Filters whose string result keeps user spans exactly (UserStr methods or our own implementations),
# and filters that only select or count (their results are the input objects or numbers). Every other
# filter deriving a string from user text marks its whole result as user text.
_PRECISE = frozenset(["trim", "upper", "lower", "capitalize", "center", "reverse", "list", "replace",
                      "join", "format", "string", "tojson", "sum"])
_SELECTING = frozenset(["abs", "attr", "batch", "count", "default", "d", "dictsort", "first", "float",
                        "groupby", "int", "items", "last", "length", "map", "max", "min", "random",
                        "reject", "rejectattr", "round", "select", "selectattr", "slice", "sort",
                        "unique", "wordcount", "filesizeformat"])


def _f_replace(context, s, old, new, count=None):
    st = limits.current()
    s = s if isinstance(s, str) else str(s)
    old, new = str(old) if not isinstance(old, str) else old, str(new) if not isinstance(new, str) else new
    count = -1 if count is None else count
    limits.check_replace(s, old, new, count, st)
    return taint._replace(s, old, new, count)


def _f_join(context, value, d="", attribute=None):
    st = limits.current()
    if attribute is not None:
        value = map(jinja2.filters.make_attrgetter(context.environment, attribute), value)
    items = [_to_str(x, st) for x in _materialize(value, st, st.max_value, "a join")]
    d = d if isinstance(d, str) else str(d)
    limits.check_join(d, items, st)
    return taint.UserStr.join(d, items) if st.marks is not None else d.join(items)


def _f_format(context, value, *args, **kwargs):
    if args and kwargs:
        raise jinja2.exceptions.FilterArgumentError("can't handle positional and keyword arguments at the same time")
    value = value if isinstance(value, str) else str(value)
    return percent_format(value, kwargs or args, limits.current())


def _f_string(context, value):
    return _to_str(value, limits.current())


def _f_tojson(context, value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return taint.to_json(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _f_sum(context, iterable, attribute=None, start=0):
    st = limits.current()
    if attribute is not None:
        iterable = map(jinja2.filters.make_attrgetter(context.environment, attribute), iterable)
    items = _materialize(iterable, st, st.max_value, "a sum")
    total = start
    for x in [start, *items]:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise Budget("sum() only adds numbers in chat templates")
    for x in items:
        total = total + x
    return total


_OWN = {"replace": _f_replace, "join": _f_join, "format": _f_format, "string": _f_string,
        "tojson": _f_tojson, "sum": _f_sum}


def _wrap_filter(name: str, f):
    pass_arg = _PassArg.from_obj(f)
    own = _OWN.get(name)
    pre = _PRE.get(name)

    @pass_context
    def wrapper(context, value, *args, **kwargs):
        st = limits.current()
        st.check_time()
        value = _norm(value, st)
        if st.marks is not None:
            args = tuple(_norm(a, st) for a in args)
            kwargs = {k: _norm(v, st) for k, v in kwargs.items()}
        if name in _SORTING:
            value = _materialize(value, st, limits.kMaxSortItems, f"{name}()")
        if pre is not None:
            pre(value, args, kwargs, st)
        if own is not None:
            rv = own(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.context:
            rv = f(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            rv = f(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            rv = f(context.environment, value, *args, **kwargs)
        else:
            rv = f(value, *args, **kwargs)
        if isinstance(rv, (str, list, tuple)):
            st.check_len(len(rv), f"the result of {name}()")
            st.account(rv)
        if name not in _PRECISE and name not in _SELECTING and _tainted((value, args, kwargs), st):
            rv = taint.over_taint(rv)
        return rv

    wrapper.__name__ = f"eli_filter_{name}"
    return wrapper


# ---- formatting with user text ------------------------------------------------------------------------
def percent_format(fmt: str, args: Any, st: limits.RenderState) -> str:
    """fmt % args, size-checked; user text in args stays user text (exact for plain %s of a user
    string, otherwise the whole result is user text)."""
    limits.check_percent_format(fmt, args, st)
    if st.marks is None or not _tainted((fmt, args), st):
        return fmt % args
    if taint.spans_of(fmt):
        return taint.full(fmt % args)
    values = args if isinstance(args, tuple) else (args,)
    plain_specs = all(m.group(0) in ("%s", "%%") for m in limits._PCT_SPEC.finditer(fmt))
    if plain_specs and all(isinstance(v, str) or not taint.carries_taint(v, st.marks) for v in values):
        wrapped = tuple(st.marks.wrap(v) if isinstance(v, str) else v for v in values)
        return st.marks.unwrap(fmt % (wrapped if isinstance(args, tuple) else wrapped[0]))
    return taint.full(fmt % args)


def _brace_format(call, fmt: str, args: tuple, kwargs: dict, st: limits.RenderState):
    if st.marks is None or not _tainted((fmt, args, kwargs), st):
        return call(*args, **kwargs)
    if taint.spans_of(fmt):
        return taint.full(call(*args, **kwargs))
    try:  # exact only for bare fields ({}, {0}, {name}): the argument's text appears unchanged
        plain = all(not spec and not conv and (field == "" or field.isdigit() or field.isidentifier())
                    for _, field, spec, conv in string.Formatter().parse(fmt) if field is not None)
    except ValueError:
        plain = False
    values = list(args) + list(kwargs.values())
    if plain and all(isinstance(v, str) or not taint.carries_taint(v, st.marks) for v in values):
        w = tuple(st.marks.wrap(v) if isinstance(v, str) else v for v in args)
        kw = {k: st.marks.wrap(v) if isinstance(v, str) else v for k, v in kwargs.items()}
        return st.marks.unwrap(call(*w, **kw))
    return taint.full(call(*args, **kwargs))


# ---- the environment --------------------------------------------------------------------------------
def _checked_concat(parts) -> str:
    """Joins captured output (macro bodies, {% set %} and filter blocks): size-checked first."""
    st = limits.current()
    parts = list(parts)
    total = 0
    for p in parts:
        total += len(p)
    st.check_len(total, "captured template output")
    st.allocated += total
    st.account("")
    if st.marks is None:
        return "".join(parts)
    # Parts are finalized output (user text between markers) or, for filter and call blocks, values
    # Jinja appends without finalize (UserStr): keep both kinds of span.
    return st.marks.unwrap(taint.concat(parts))


def _checked_str_join(seq) -> str:
    """The '~' operator: str() of each operand, bounded, then a span-keeping concatenation."""
    st = limits.current()
    out, total = [], 0
    for x in seq:
        s = _to_str(x, st)
        total += len(s)
        st.check_len(total, "a ~ concatenation")
        out.append(s)
    st.allocated += total
    st.account("")
    return taint.concat(out) if st.marks is not None else "".join(out)


@pass_context
def _finalize(context, value):
    st = limits.current()
    s = _to_str(value, st)
    if st.marks is not None and type(s) is taint.UserStr:
        return st.marks.wrap(s)
    return s


class SafeEnv(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])
    intercepted_unops = frozenset(["+", "-"])
    concat = staticmethod(_checked_concat)

    def call_binop(self, context, operator, left, right):
        st = limits.current()
        left, right = _norm(left, st), _norm(right, st)
        limits.check_binop(operator, left, right, st)
        if operator == "%" and isinstance(left, str):
            rv = percent_format(left, right, st)
        else:
            rv = self.binop_table[operator](left, right)
        st.account(rv)
        return rv

    def call_unop(self, context, operator, arg):
        limits.current().check_time()
        return self.unop_table[operator](arg)

    def getattr(self, obj, attribute):
        st = limits.current()
        st.check_time()
        return super().getattr(_norm(obj, st), attribute)

    def getitem(self, obj, argument):
        st = limits.current()
        st.check_time()
        rv = super().getitem(_norm(obj, st), argument)
        if isinstance(argument, slice):
            st.account(rv)
        return rv

    def unsafe_undefined(self, obj, attribute):
        # jinja2 returns a silent Undefined for unsafe attributes; an escape attempt is an error here.
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja2's signature)
        st = limits.current()
        st.check_time()
        if not __self.is_safe_callable(__obj):
            raise jinja2.exceptions.SecurityError(f"{__obj!r} is not safely callable")
        if st.marks is not None:
            args = tuple(_norm(a, st) for a in args)
            kwargs = {k: _norm(v, st) for k, v in kwargs.items()}
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        wrapped = getattr(__obj, "__wrapped__", None)
        if wrapped is not None and name in ("format", "format_map") and isinstance(
                getattr(wrapped, "__self__", None), str):
            fmt = wrapped.__self__
            limits.check_str_method(fmt, name, args, kwargs, st)
            return _brace_format(lambda *a, **k: __context.call(__obj, *a, **k), fmt, args, kwargs, st)
        if isinstance(owner, str) and isinstance(__obj, (types.BuiltinMethodType, types.MethodType)):
            return __self._call_str_method(__context, __obj, owner, name, args, kwargs, st)
        if isinstance(owner, int) and isinstance(__obj, types.BuiltinMethodType):
            limits.check_int_method(name, args, kwargs)
        elif isinstance(__obj, jinja2.runtime.Macro):
            st.macro_depth += 1
            try:
                if st.macro_depth > limits.kMaxMacroDepth:
                    raise Budget(f"macros nest deeper than {limits.kMaxMacroDepth} calls")
                return __context.call(__obj, *args, **kwargs)
            finally:
                st.macro_depth -= 1
        elif __obj is jinja2.utils.generate_lorem_ipsum:
            limits.check_lipsum(args, kwargs)
        elif __obj is _strftime_now and _tainted((args, kwargs), st):
            return taint.full(__context.call(__obj, *args, **kwargs))
        rv = __context.call(__obj, *args, **kwargs)
        st.account(rv)
        return rv

    def _call_str_method(self, context, fn, owner: str, name: str, args, kwargs, st):
        owner = _norm(owner, st)
        limits.check_str_method(owner, name, args, kwargs, st)
        if name == "join":
            items = _materialize(args[0], st, st.max_value, "a join") if args else []
            items = list(items)
            limits.check_join(owner, items, st)
            rv = taint.UserStr.join(owner, items) if st.marks is not None else owner.join(items)
            st.account(rv)
            return rv
        rv = context.call(getattr(owner, name), *args, **kwargs)
        st.account(rv)
        if st.marks is not None:
            precise = type(owner) is taint.UserStr and name in taint.UserStr.__dict__
            if not precise and _tainted((owner, args, kwargs), st):
                rv = taint.over_taint(rv)
        return rv


def make_env() -> SafeEnv:
    env = SafeEnv(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols],
                  optimized=False, finalize=_finalize)
    env.filters["random"] = _random_fixed
    for name, f in list(env.filters.items()):
        env.filters[name] = _wrap_filter(name, f)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env


def patch_template(t: jinja2.Template) -> None:
    """Route a compiled template's '~' through the checked join (its module imported jinja2's own)."""
    g = t.root_render_func.__globals__
    g["str_join"] = _checked_str_join
    g["markup_join"] = _checked_str_join


__all__ = ["SafeEnv", "make_env", "patch_template", "percent_format"]
