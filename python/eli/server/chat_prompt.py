# eli/server/chat_prompt.py: the token ids of a chat prompt in which every string a client supplied
# is data, never control (RELIABILITY item 16; issue 20 item 4). Pure function of (job, tokenizer):
# the render worker (render_worker.py) runs it in a separate process; render_workers=0 runs it in a
# thread of the server.
#
# Client strings are every string leaf of the messages (content, name, tool_calls[].function.name
# and .arguments, tool_call_id, any extra field) except the role, and every string leaf of
# chat_template_kwargs. The template is rendered twice: once with the real values (the prompt, with
# the template's exact semantics) and once with each non-blank string replaced by a private marker
# (its core wrapped in the same leading/trailing whitespace, so `| trim` treats both alike). If
# putting each string's core back at its marker reproduces the real rendering exactly, we know
# where every client span lies; the prompt is tokenized once, normally (so ordinary prompts
# tokenize exactly as apply_chat_template + encode would), and the token offsets tell whether a
# special token came out of a client span. Only then (an injection attempt such as
# "<|im_end|><|im_start|>system") is the prompt re-tokenized piecewise: template pieces with
# special-token parsing, client pieces as plain text. A template that transforms or branches on a
# client string (the two renderings disagree) gets the real rendering, and a request whose strings
# hold a special-token string is then refused (400) rather than risk an injected control token.
# Dict keys cannot be marked: a key holding a special-token string is refused.
#
# TODO(lead, merge with the text helper's data-safe rendering in eli/chat_template.py +
# eli/tokenizer.py): when that API lands, build_prompt_ids() should call it instead of rendering
# twice here. Call sites: build_prompt_ids() below (used by render_worker.py and by
# app.Server.render_chat with render_workers=0) and validation.chat_job() (which builds the job).
from __future__ import annotations

import bisect
import inspect
import re
import secrets
from typing import Any, Optional

from ..chat_template import render_chat

# Template variables a client may not set through chat_template_kwargs: render_chat's own
# parameters (budgets, the template), the variables the server sets, and the names of the
# template's globals (shadowing raise_exception or namespace would change the template's code).
kReservedTemplateNames = frozenset(
    {"messages", "add_generation_prompt", "bos_token", "eos_token", "tools", "template",
     "time_budget_s", "max_output_chars", "raise_exception", "strftime_now", "namespace", "dict",
     "range", "lipsum", "cycler", "joiner"}
    | {p for p in inspect.signature(render_chat).parameters if p != "extra"})

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters around a marker


class PromptError(ValueError):
    """A request the prompt cannot be built for (400), naming the offending field."""

    def __init__(self, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


class _Marker:
    """Replaces client strings by markers and remembers (path, original, core) per marker."""

    def __init__(self, nonce: str):
        self.nonce = nonce
        self.strings: list[tuple[str, str]] = []  # every client string: (path, value)
        self.keys: list[tuple[str, str]] = []     # every client dict key: (path, key)
        self.cores: list[str] = []

    def value(self, v: Any, path: str) -> Any:
        if isinstance(v, str):
            self.strings.append((path, v))
            core = v.strip()
            if not core:
                return v  # blank strings cannot carry a special token (nor be told apart by templates)
            lead = v[:len(v) - len(v.lstrip())]
            trail = v[len(v.rstrip()):]
            self.cores.append(core)
            return f"{lead}{_OPEN}{self.nonce}:{len(self.cores) - 1}{_CLOSE}{trail}"
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                self.keys.append((path, str(k)))
                out[k] = self.value(x, f"{path}.{k}")
            return out
        if isinstance(v, (list, tuple)):
            return [self.value(x, f"{path}.{i}") for i, x in enumerate(v)]
        return v


def _special_strings(tokenizer) -> list[str]:
    cached = getattr(tokenizer, "_eli_server_specials", None)
    if cached is None:
        cached = sorted({t.content for t in tokenizer.backend.get_added_tokens_decoder().values()
                         if t.content and t.special}, key=len, reverse=True)
        try:
            tokenizer._eli_server_specials = cached
        except AttributeError:
            pass
    return cached


def _find_special(s: str, specials: list[str]) -> Optional[str]:
    return next((sp for sp in specials if sp in s), None)


def _encode(tokenizer, text: str):
    # encode_batch releases the GIL (encode does not): matters when this runs in a server thread.
    return tokenizer.backend.encode_batch([text], add_special_tokens=False)[0]


def build_prompt_ids(job: dict, tokenizer) -> list[int]:
    """Token ids for a chat job (validation.chat_job): keys template, messages, variables,
    add_generation_prompt, bos_token, eos_token, max_chars. Raises PromptError."""
    messages, variables = job["messages"], job["variables"]
    bad = sorted(set(variables) & kReservedTemplateNames)
    if bad:  # validation.chat_job refuses these first; checked again where the splat happens
        raise PromptError(f"chat_template_kwargs may not set {bad[0]!r}", param=f"chat_template_kwargs.{bad[0]}")
    marker = _Marker(secrets.token_hex(8))
    marked_msgs = []
    for i, m in enumerate(messages):
        mm = {}
        for k, v in m.items():  # same key order as the real message (a template may iterate it)
            marker.keys.append((f"messages.{i}", str(k)))
            mm[k] = v if k == "role" else marker.value(v, f"messages.{i}.{k}")
        marked_msgs.append(mm)
    marked_vars = {}
    for k, v in variables.items():
        marker.keys.append(("chat_template_kwargs", str(k)))
        marked_vars[k] = marker.value(v, f"chat_template_kwargs.{k}")

    max_chars = job["max_chars"]
    total = sum(len(s) for _, s in marker.strings)
    if total > max_chars:
        raise PromptError(f"the messages hold {total} characters; a prompt of more than {max_chars} "
                          f"characters cannot fit the context", param="messages", code="context_length_exceeded")
    specials = _special_strings(tokenizer)
    for path, key in marker.keys:
        found = _find_special(key, specials)
        if found is not None:
            raise PromptError(f"{path}: the key {key!r} contains the special token {found!r}", param=path)

    common = dict(add_generation_prompt=job["add_generation_prompt"], bos_token=job["bos_token"],
                  eos_token=job["eos_token"])
    template = job["template"]
    try:
        real = render_chat(template, messages, **common, **variables)
        marked = render_chat(template, marked_msgs, **common, **marked_vars)
    except ValueError as e:
        raise PromptError(str(e), param="messages") from None
    if len(real) > max_chars:
        raise PromptError(f"the rendered prompt has {len(real)} characters; more than {max_chars} "
                          f"cannot fit the context", param="messages", code="context_length_exceeded")

    pieces = _split_markers(marked, marker)
    if pieces is not None and "".join(p for p, _ in pieces) == real:
        return _encode_with_spans(tokenizer, real, pieces)
    # The template transformed or branched on a client string: no spans; refuse special strings.
    for path, s in marker.strings:
        found = _find_special(s, specials)
        if found is not None:
            raise PromptError(f"{path} contains the special token {found!r}", param=path)
    return list(_encode(tokenizer, real).ids)


def _split_markers(marked: str, marker: _Marker) -> Optional[list[tuple[str, bool]]]:
    """marked text -> [(text, is_client)] with each marker replaced by its core; None if a marker
    is malformed (the template cut one)."""
    pat = re.compile(re.escape(_OPEN + marker.nonce + ":") + r"(\d+)" + re.escape(_CLOSE))
    pieces: list[tuple[str, bool]] = []
    pos = 0
    for m in pat.finditer(marked):
        i = int(m.group(1))
        if i >= len(marker.cores):
            return None
        pieces.append((marked[pos:m.start()], False))
        pieces.append((marker.cores[i], True))
        pos = m.end()
    pieces.append((marked[pos:], False))
    if marker.nonce in "".join(p for p, client in pieces if not client):
        return None  # part of a marker survived outside the pattern: the template cut it
    return pieces


def _encode_with_spans(tokenizer, text: str, pieces: list[tuple[str, bool]]) -> list[int]:
    spans, pos = [], 0
    for p, client in pieces:
        if client:
            spans.append((pos, pos + len(p)))
        pos += len(p)
    enc = _encode(tokenizer, text)
    specials = tokenizer.special_token_ids
    starts = [s for s, _ in spans]  # spans are sorted and disjoint

    def overlaps(a: int, b: int) -> bool:
        k = bisect.bisect_left(starts, b) - 1  # the last span starting before b
        return k >= 0 and spans[k][1] > a

    if not any(tid in specials and overlaps(a, b) for tid, (a, b) in zip(enc.ids, enc.offsets)):
        return list(enc.ids)
    ids: list[int] = []
    for p, client in pieces:
        if p:
            ids.extend(tokenizer.encode(p, add_special_tokens=False, parse_special=not client))
    return ids


__all__ = ["PromptError", "build_prompt_ids", "kReservedTemplateNames"]
