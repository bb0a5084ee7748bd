# eli/chat_taint.py: user strings that remember they are user strings while a chat template runs.
#
# Every string a caller hands to a template (message contents, names, tool calls, tool definitions,
# extra template variables) is wrapped as a UserStr: a str (so the template sees exactly the same
# value: comparisons, length, truthiness, `is string` all unchanged) that carries `_spans`, the
# character ranges that came from the user. The string operations templates use keep the spans
# exact: concatenation (+, ~, join), slicing and indexing, iteration, strip/lstrip/rstrip/trim,
# split/rsplit/splitlines/partition, case changes, replace, ljust/rjust/center, removeprefix/suffix,
# repetition and tojson. Any other operation that derives a string from tainted input marks its
# whole result as user text (the sandbox hooks in chat_sandbox.py apply that rule): a template can
# lose fidelity (its own text inside such a result is treated as data), never turn user text into
# template text.
#
# On output the renderer writes each user span between per-render markers: U+FDD0 + 20 random digits +
# U+FDD1 ... U+FDD2 + the same digits + U+FDD3 (Marks). Markers exist only in the output stream (and in
# captured block text, which is parsed back into UserStr as soon as the template uses it); the final
# text is parsed into (text, user spans). A marker that is cut or unbalanced fails the render.
# Invariant: removing the markers from a render gives exactly the text of the same render without
# tracking (tested).
from __future__ import annotations

import json
import re
import secrets
from typing import Any, Iterable

import jinja2.utils

from . import chat_limits as limits

Spans = tuple  # tuple[tuple[int, int], ...]: sorted, disjoint, non-adjacent, non-empty


class UserStr(str):
    """A str whose characters in `_spans` came from the user (see the module comment)."""

    _spans: Spans | None = None  # None (an instance built as UserStr(text) elsewhere): all user text

    # -- building ---------------------------------------------------------------------------------
    def __add__(self, other):
        if not isinstance(other, str):
            return NotImplemented
        return concat((self, other))

    def __radd__(self, other):
        if not isinstance(other, str):
            return NotImplemented
        return concat((other, self))

    def __mul__(self, n):
        if not isinstance(n, int):
            return NotImplemented
        return concat((self,) * max(n, 0))

    __rmul__ = __mul__

    def __mod__(self, args):
        return full(str.__mod__(self, args))  # a user string used as a format: all of it is user text

    def __getitem__(self, key):
        return _getitem(self, key)

    def __iter__(self):
        spans = spans_of(self)
        j, n = 0, len(spans)
        for i, ch in enumerate(str.__iter__(self)):
            while j < n and spans[j][1] <= i:
                j += 1
            yield full(ch) if j < n and spans[j][0] <= i else ch

    def join(self, iterable):
        items = list(iterable)
        parts: list[str] = []
        for k, it in enumerate(items):
            if not isinstance(it, str):
                raise TypeError(f"sequence item {k}: expected str instance, {type(it).__name__} found")
            if k:
                parts.append(self)
            parts.append(it)
        return concat(parts)

    # -- substrings -------------------------------------------------------------------------------
    def strip(self, chars=None):
        r = str.strip(self, chars)
        left = len(self) - len(str.lstrip(self, chars))
        return slice_of(self, left, left + len(r))

    def lstrip(self, chars=None):
        r = str.lstrip(self, chars)
        return slice_of(self, len(self) - len(r), len(self))

    def rstrip(self, chars=None):
        return slice_of(self, 0, len(str.rstrip(self, chars)))

    def removeprefix(self, prefix):
        r = str.removeprefix(self, prefix)
        return slice_of(self, len(self) - len(r), len(self))

    def removesuffix(self, suffix):
        return slice_of(self, 0, len(str.removesuffix(self, suffix)))

    def split(self, sep=None, maxsplit=-1):
        return _locate(self, str.split(self, sep, maxsplit), sep, forward=True)

    def rsplit(self, sep=None, maxsplit=-1):
        return _locate(self, str.rsplit(self, sep, maxsplit), sep, forward=False)

    def splitlines(self, keepends=False):
        t = str(self)
        out, pos = [], 0
        for p in str.splitlines(self, keepends):
            if not t.startswith(p, pos):
                return [full(x) for x in str.splitlines(self, keepends)]
            out.append(slice_of(self, pos, pos + len(p)))
            pos += len(p)
            if not keepends and pos < len(t):
                pos += 2 if t.startswith("\r\n", pos) else 1
        return out

    def partition(self, sep):
        i = str.find(self, sep)
        if i < 0:
            return (self, "", "")
        return (slice_of(self, 0, i), slice_of(self, i, i + len(sep)), slice_of(self, i + len(sep), len(self)))

    def rpartition(self, sep):
        i = str.rfind(self, sep)
        if i < 0:
            return ("", "", self)
        return (slice_of(self, 0, i), slice_of(self, i, i + len(sep)), slice_of(self, i + len(sep), len(self)))

    # -- per-character maps -----------------------------------------------------------------------
    def _case(self, op, per_segment: bool):
        r = op(self)
        if len(r) == len(self):
            return make(r, spans_of(self))
        if not per_segment:
            return full(r)
        return concat(full(op(t)) if user else op(t) for t, user in segments(self))

    def upper(self):
        return self._case(str.upper, True)

    def lower(self):
        return self._case(str.lower, True)

    def casefold(self):
        return self._case(str.casefold, True)

    def swapcase(self):
        return self._case(str.swapcase, True)

    def title(self):
        return self._case(str.title, False)

    def capitalize(self):
        return self._case(str.capitalize, False)

    def replace(self, old, new, count=-1):
        return _replace(self, old, new, count)

    # -- padding ----------------------------------------------------------------------------------
    def _pad(self, r: str, left: int, fillchar: str):
        if spans_of(fillchar):
            return full(r)
        return make(r, _shift(spans_of(self), left))

    def ljust(self, width, fillchar=" "):
        return self._pad(str.ljust(self, width, fillchar), 0, fillchar)

    def rjust(self, width, fillchar=" "):
        r = str.rjust(self, width, fillchar)
        return self._pad(r, len(r) - len(self), fillchar)

    def center(self, width, fillchar=" "):
        r = str.center(self, width, fillchar)
        marg = width - len(self)
        left = marg // 2 + (marg & width & 1) if marg > 0 else 0
        return self._pad(r, left, fillchar)


# ---- span algebra -----------------------------------------------------------------------------------
def spans_of(x: Any) -> Spans:
    if type(x) is not UserStr:
        return ()
    sp = x._spans
    if sp is None:  # built by type(s)(...) somewhere: fail closed
        return ((0, len(x)),) if len(x) else ()
    return sp


def make(text: str, spans: Iterable) -> str:
    """`text` carrying `spans` (normalized: clipped, merged); a plain str when none remain. A tuple of
    spans is taken as already sorted (concat builds them in order); other iterables are sorted."""
    n = len(text)
    merged: list[list[int]] = []
    for a, b in spans if isinstance(spans, tuple) else sorted(spans):
        a, b = max(a, 0), min(b, n)
        if a >= b:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if not merged:
        return text if type(text) is str else str.__str__(text)
    u = str.__new__(UserStr, text)
    u._spans = tuple((a, b) for a, b in merged)
    return u


def full(text: str) -> str:
    """All of `text` is user text."""
    return make(text, ((0, len(text)),))


def _shift(spans: Spans, d: int) -> list:
    return [(a + d, b + d) for a, b in spans]


def slice_of(s: str, a: int, b: int) -> str:
    """s[a:b] (0 <= a <= b <= len) with its spans."""
    text = str.__getitem__(s, slice(a, b))
    return make(text, [(max(x, a) - a, min(y, b) - a) for x, y in spans_of(s) if x < b and y > a])


def concat(parts: Iterable[str]) -> str:
    parts = list(parts)
    spans, pos = [], 0
    for p in parts:
        for a, b in spans_of(p):
            spans.append((a + pos, b + pos))
        pos += len(p)
    return make("".join(parts), tuple(spans))


def segments(s: str):
    """(text, is_user) pieces covering s in order."""
    t, pos = str(s), 0
    for a, b in spans_of(s):
        if a > pos:
            yield t[pos:a], False
        yield t[a:b], True
        pos = b
    if pos < len(t) or not t:
        yield t[pos:], False


def _getitem(s: UserStr, key):
    if not isinstance(key, slice):
        ch = str.__getitem__(s, key)
        i = key + len(s) if key < 0 else key
        return full(ch) if any(a <= i < b for a, b in spans_of(s)) else ch
    start, stop, step = key.indices(len(s))
    if step == 1:
        return slice_of(s, start, max(start, stop))
    text = str.__getitem__(s, key)
    n, out = len(text), []
    for a, b in spans_of(s):
        if step > 0:
            lo, hi = -((start - a) // step), -((start - b) // step)
        else:
            st = -step
            lo, hi = -((b - 1 - start) // st), (start - a) // st + 1
        lo, hi = max(lo, 0), min(hi, n)
        if lo < hi:
            out.append((lo, hi))
    return make(text, sorted(out))


_WS = re.compile(r"\s*")


def _locate(s: UserStr, parts: list[str], sep, forward: bool) -> list[str]:
    """The pieces of a split, each sliced from s at its real position (spans kept)."""
    t = str(s)
    out = []
    if forward:
        pos = 0
        for p in parts:
            if sep is None:
                pos = _WS.match(t, pos).end()
            if not t.startswith(p, pos):
                return [full(x) for x in parts]
            out.append(slice_of(s, pos, pos + len(p)))
            pos += len(p) + (len(sep) if sep is not None else 0)
        return out
    pos = len(t)
    for p in reversed(parts):
        if sep is None:
            while pos > 0 and t[pos - 1].isspace():
                pos -= 1
        start = pos - len(p)
        if start < 0 or not t.startswith(p, start):
            return [full(x) for x in parts]
        out.append(slice_of(s, start, pos))
        pos = start - (len(sep) if sep is not None else 0)
    out.reverse()
    return out


def _replace(s: UserStr, old, new, count=-1):
    if not isinstance(old, str) or not isinstance(new, str):
        return str.replace(s, old, new, count)  # raises the usual TypeError
    t = str(s)
    spans = spans_of(s)
    st = limits.current()

    def piece(a: int, b: int) -> str:
        hit = any(x <= a <= y for x, y in spans) if a == b else any(x < b and a < y for x, y in spans)
        return full(new) if hit else new

    parts: list[str] = []
    pos, n = 0, 0
    if old == "":
        for i in range(len(t) + 1):
            if 0 <= count <= n:
                break
            if not i & 4095:
                st.check_time()
            parts.append(slice_of(s, pos, i))
            parts.append(piece(i, i))
            pos, n = i, n + 1
    else:
        while count < 0 or n < count:
            i = t.find(old, pos)
            if i < 0:
                break
            if not n & 4095:
                st.check_time()
            parts.append(slice_of(s, pos, i))
            parts.append(piece(i, i + len(old)))
            pos, n = i + len(old), n + 1
    parts.append(slice_of(s, pos, len(t)))
    return concat(parts)


# ---- whole values ---------------------------------------------------------------------------------
def taint_tree(value: Any, depth: int = 0) -> Any:
    """A copy of JSON-like user data with every string (and dict key) a UserStr."""
    if depth > limits.kMaxValueDepth:
        raise ValueError(f"nesting deeper than {limits.kMaxValueDepth}")
    if isinstance(value, str):
        return full(value)
    if isinstance(value, dict):
        return {taint_tree(k, depth + 1): taint_tree(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [taint_tree(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(taint_tree(v, depth + 1) for v in value)
    return value


def carries_taint(value: Any, marks: "Marks | None", depth: int = 0) -> bool:
    """Whether `value` holds user text anywhere (or captured text with user markers)."""
    if type(value) is UserStr:
        return True
    if isinstance(value, str):
        return marks is not None and marks.present(value)
    if depth > limits.kMaxValueDepth:
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(carries_taint(v, marks, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(carries_taint(k, marks, depth + 1) or carries_taint(v, marks, depth + 1)
                   for k, v in value.items())
    if isinstance(value, jinja2.utils.Namespace):
        return carries_taint(value._Namespace__attrs, marks, depth + 1)
    if isinstance(value, limits._DICT_VIEWS):
        return carries_taint(list(value), marks, depth + 1)
    return False


def over_taint(result: Any) -> Any:
    """Mark every string of an operation's result as user text (the fail-closed rule)."""
    if isinstance(result, str):
        return full(result)
    if isinstance(result, list):
        return [full(x) if isinstance(x, str) else x for x in result]
    if isinstance(result, tuple):
        return tuple(full(x) if isinstance(x, str) else x for x in result)
    return result


class MarkerError(Exception):
    """A template cut or reordered the markers of user text (the render fails closed)."""


class Marks:
    """The per-render markers that delimit user text in the output stream."""

    def __init__(self) -> None:
        nonce = f"{secrets.randbelow(10 ** 20):020d}"
        self.open = "\ufdd0" + nonce + "\ufdd1"
        self.close = "\ufdd2" + nonce + "\ufdd3"
        self._re = re.compile(re.escape(self.open) + "|" + re.escape(self.close))

    def present(self, s: str) -> bool:
        return self.open in s or self.close in s

    def wrap(self, s: str) -> str:
        """A plain str: s with each user span between markers."""
        out, pos = [], 0
        t = str(s)
        for a, b in spans_of(s):
            out += [t[pos:a], self.open, t[a:b], self.close]
            pos = b
        out.append(t[pos:])
        return "".join(out)

    def unwrap(self, s: str) -> str:
        """s with its markers removed; text between markers (and s's own spans) becomes user text."""
        if not self.present(s):
            return s
        t = str(s)
        parts: list[str] = []
        pos, inside = 0, False
        for m in self._re.finditer(t):
            chunk = slice_of(s, pos, m.start())
            parts.append(full(chunk) if inside and chunk else chunk)
            is_open = m.group() == self.open
            if is_open == inside:
                raise MarkerError("the template cut or reordered the markers of user text")
            inside = is_open
            pos = m.end()
        if inside:
            raise MarkerError("the template cut the end marker of user text")
        parts.append(slice_of(s, pos, len(t)))
        return concat(parts)

    def marker_chars(self, s: str) -> int:
        """How many characters of s are markers (not counted against the output budget)."""
        return (s.count(self.open) + s.count(self.close)) * len(self.open)


# ---- tojson -----------------------------------------------------------------------------------------
def to_json(value: Any, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    """json.dumps(value, ...) with user spans kept (each string is escaped segment by segment, which
    gives the same text since JSON escapes character by character) and the size budget checked as
    the text grows."""
    st = limits.current()
    if indent is not None and not isinstance(indent, str):
        if not isinstance(indent, int) or isinstance(indent, bool) or not 0 <= indent <= 64:
            raise limits.Budget("tojson indent must be an integer from 0 to 64")
        indent = " " * indent
    if isinstance(indent, str) and len(indent) > 64:
        raise limits.Budget("tojson indent longer than 64 characters")
    if separators is None:
        item_sep, key_sep = (",", ": ") if indent is not None else (", ", ": ")
    else:
        item_sep, key_sep = separators
    encode = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    parts: list[str] = []
    size = [0]

    def emit(p: str) -> None:
        size[0] += len(p)
        if size[0] > st.max_value:
            raise limits.Budget(f"tojson output would exceed the size budget of {st.max_value} characters")
        parts.append(p)

    def string(s: str) -> None:
        if not spans_of(s):
            emit(encode(s))
            return
        emit('"')
        for t, user in segments(s):
            p = encode(t)[1:-1]
            emit(full(p) if user and p else p)
        emit('"')

    def scalar_key(k):
        if isinstance(k, str):
            return k
        if isinstance(k, bool) or k is None:
            return {True: "true", False: "false", None: "null"}[k]
        if isinstance(k, float):
            return _float(k)
        if isinstance(k, int):
            return int.__repr__(k)
        raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")

    def walk(v, level: int) -> None:
        if level > limits.kMaxValueDepth:
            raise limits.Budget(f"tojson value nests deeper than {limits.kMaxValueDepth} levels")
        if isinstance(v, str):
            string(v)
        elif v is None or isinstance(v, bool):
            emit({True: "true", False: "false", None: "null"}[v])
        elif isinstance(v, int):
            emit(int.__repr__(v))
        elif isinstance(v, float):
            emit(_float(v))
        elif isinstance(v, (list, tuple)):
            if not v:
                emit("[]")
                return
            nl = "\n" + indent * (level + 1) if indent is not None else ""
            emit("[" + nl)
            for k, x in enumerate(v):
                if k:
                    emit(item_sep + nl)
                walk(x, level + 1)
            emit(("\n" + indent * level if indent is not None else "") + "]")
        elif isinstance(v, dict):
            if not v:
                emit("{}")
                return
            items = sorted(v.items()) if sort_keys else list(v.items())
            nl = "\n" + indent * (level + 1) if indent is not None else ""
            emit("{" + nl)
            for k, (key, x) in enumerate(items):
                if k:
                    emit(item_sep + nl)
                string(scalar_key(key))
                emit(key_sep)
                walk(x, level + 1)
            emit(("\n" + indent * level if indent is not None else "") + "}")
        else:
            raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")

    walk(value, 0)
    st.allocated += size[0]
    st.account("")
    return concat(parts)


def _float(f: float) -> str:
    if f != f:
        return "NaN"
    if f == float("inf"):
        return "Infinity"
    if f == -float("inf"):
        return "-Infinity"
    return float.__repr__(f)


__all__ = ["UserStr", "Marks", "MarkerError", "make", "full", "concat", "spans_of", "segments", "taint_tree",
           "carries_taint", "over_taint", "to_json"]
