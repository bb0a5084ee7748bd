# tests/python/test_chat_taint.py: the span algebra of eli.chat_taint.UserStr (user strings inside a
# chat template keep exact track of which characters came from the user).
#
# Oracle: strings over a small alphabet where UPPERCASE letters are user characters and lowercase
# letters template characters (separators and whitespace may be either). Every span-keeping operation
# must give exactly str's text, and in the result every uppercase letter must lie inside a span and
# no lowercase letter may. tojson is checked against json.dumps. Property-based (hypothesis),
# deterministic and bounded.
from __future__ import annotations

import json
import re

import pytest

from test_tokenizer_gguf import eli_module

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

chat_taint = eli_module("chat_taint")
UserStr, make, spans_of, full = chat_taint.UserStr, chat_taint.make, chat_taint.spans_of, chat_taint.full

FAST = settings(max_examples=120, deadline=None, derandomize=True, database=None)
kAlphabet = "abAB #\n\t="


@st.composite
def tainted(draw):
    text = draw(st.text(alphabet=kAlphabet, max_size=24))
    neutral_user = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    flags = [c.isupper() or (not c.isalpha() and u) for c, u in zip(text, neutral_user)]
    spans, start = [], None
    for i, f in enumerate(flags + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            spans.append((start, i))
            start = None
    return make(text, spans)


def _check(result, expected):
    """result has expected's text, and its spans agree with the letter cases."""
    if isinstance(expected, (list, tuple)):
        assert type(result) is type(expected) and len(result) == len(expected)
        for r, e in zip(result, expected):
            _check(r, e)
        return
    assert isinstance(result, str) and str(result) == expected
    spans = spans_of(result)
    user = [any(a <= i < b for a, b in spans) for i in range(len(result))]
    for ch, u in zip(str(result), user):
        if ch.isupper():
            assert u, (result, spans)
        elif ch.islower():
            assert not u, (result, spans)
    assert all(0 <= a < b <= len(result) for a, b in spans)
    assert list(spans) == sorted(spans) and all(spans[k][1] < spans[k + 1][0] for k in range(len(spans) - 1))


@FAST
@given(tainted(), st.integers(-30, 30), st.integers(-30, 30), st.sampled_from([None, 1, 2, 3, -1, -2, -3]))
def test_getitem(s, a, b, step):
    _check(s[a:b:step], str(s)[a:b:step])
    if str(s):
        _check(s[a % len(s)], str(s)[a % len(s)])
    _check(list(iter(s)), list(str(s)))


@FAST
@given(tainted(), st.sampled_from([None, " ", "#", "\n", " #", "a", "B"]))
def test_strip_family(s, chars):
    for name in ("strip", "lstrip", "rstrip"):
        _check(getattr(s, name)(chars), getattr(str(s), name)(chars))


@FAST
@given(tainted(), st.sampled_from([None, " ", "#", "=", "a", "#=", "AB"]), st.integers(-1, 3))
def test_split_family(s, sep, maxsplit):
    _check(s.split(sep, maxsplit), str(s).split(sep, maxsplit))
    _check(s.rsplit(sep, maxsplit), str(s).rsplit(sep, maxsplit))
    for keep in (False, True):
        _check(s.splitlines(keep), str(s).splitlines(keep))
    if sep:
        _check(s.partition(sep), str(s).partition(sep))
        _check(s.rpartition(sep), str(s).rpartition(sep))
        _check(s.removeprefix(sep), str(s).removeprefix(sep))
        _check(s.removesuffix(sep), str(s).removesuffix(sep))


@FAST
@given(tainted(), tainted(), st.integers(0, 3))
def test_concat_join_repeat(s, t, n):
    _check(s + t, str(s) + str(t))
    _check("ab" + s, "ab" + str(s))
    _check(s + "ab", str(s) + "ab")
    _check(s * n, str(s) * n)
    # (the sandbox joins through UserStr.join whatever the separator's type)
    _check(UserStr.join(t, [s, "ab", s]), str(t).join([str(s), "ab", str(s)]))
    _check(chat_taint.concat([s, t, "b"]), str(s) + str(t) + "b")


@FAST
@given(tainted(), st.sampled_from(["", " ", "#", "a", "A", "ab"]), st.sampled_from(["", "=", " #"]),
       st.integers(-1, 3))
def test_replace(s, old, new, count):
    # Replacement text is neutral: it may be user text (when it replaces user characters) or not.
    _check(s.replace(old, new, count), str(s).replace(old, new, count))
    r = s.replace(old, "x", count)
    assert str(r) == str(s).replace(old, "x", count)
    # An 'x' that replaced user characters is user text; one that replaced template letters is not.
    if old in ("a", "ab"):
        assert all(not any(a <= i < b for a, b in spans_of(r)) for i, c in enumerate(str(r)) if c == "x")


@FAST
@given(tainted(), st.integers(0, 30), st.sampled_from([" ", "#"]))
def test_padding(s, width, fill):
    for name in ("center", "ljust", "rjust"):
        _check(getattr(s, name)(width, fill), getattr(str(s), name)(width, fill))


@FAST
@given(tainted())
def test_case_maps_keep_positions(s):
    for name in ("upper", "lower", "swapcase", "casefold", "title", "capitalize"):
        r = getattr(s, name)()
        assert str(r) == getattr(str(s), name)()
        assert spans_of(r) == spans_of(s)  # same length for this alphabet: same positions


def test_case_maps_that_change_length():
    s = make("a\u00dfB\u00df", [(2, 4)])  # ß upper-cases to SS
    r = s.upper()
    assert str(r) == "ASSBSS" and spans_of(r) == ((3, 6),)
    assert spans_of(make("\u00dfa", [(0, 1)]).title()) == ((0, 3),)  # context-dependent: all user text


@FAST
@given(tainted(), tainted(), st.sampled_from([None, 0, 2]), st.booleans(), st.booleans())
def test_tojson_matches_json_dumps(s, t, indent, ensure_ascii, sort_keys):
    value = {"k": [s, 1, 2.5, None, True, {t: s}], s: "plain", "n": {}, "e": []}
    try:
        expected = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)
    except TypeError:
        return
    r = chat_taint.to_json(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)
    assert str(r) == expected
    users = [re.sub(r'\\(u[0-9a-f]{4}|.)', "", str(r)[a:b]) for a, b in spans_of(r)]  # minus JSON escapes
    assert all(not any(c.islower() for c in u) for u in users)
    assert sum(c.isupper() for u in users for c in u) == sum(c.isupper() for c in expected)


def test_userstr_built_elsewhere_is_all_user():
    # jinja2 rebuilds format() results as type(s)(...): such a UserStr has no spans and counts as user text.
    s = UserStr("abc")
    assert spans_of(s) == ((0, 3),)
    assert spans_of(s[1:]) == ((0, 2),)


def test_taint_tree_and_carries_taint():
    data = {"role": "user", "content": "x", "n": 3, "l": ["a", {"b": "c"}]}
    t = chat_taint.taint_tree(data)
    assert t == data
    assert all(type(k) is UserStr for k in t) and type(t["l"][1]["b"]) is UserStr
    assert chat_taint.carries_taint(t, None) and not chat_taint.carries_taint(data, None)
    marks = chat_taint.Marks()
    assert chat_taint.carries_taint(["x", marks.wrap(full("u"))], marks)
